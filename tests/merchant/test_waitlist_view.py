"""The merchant sees each time's seats sold, held and free, its waitlist in line order, and the
open offers with their end time on the merchant's clock."""

import pytest
from django.urls import reverse
from django.utils import timezone

from bookings.services import booking_expire, booking_start, waitlist_join
from tests.factories import make_confirmed_booking, make_listing, make_merchant, make_slot

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_time_page_shows_seats_the_waitlist_and_offers_on_the_merchants_clock(client):
    merchant = make_merchant(timezone_name="America/New_York", display_name="Harbor Tours")
    slot = make_slot(listing=make_listing(merchant=merchant, title="Harbor sunset"), capacity=3)
    make_confirmed_booking(slot=slot)
    holder = booking_start(slot=slot, quantity=2, customer_email="h@example.com", customer_name="Holder")
    ada = waitlist_join(slot=slot, quantity=1, customer_email="ada@example.com", customer_name="Ada Lovelace")
    waitlist_join(slot=slot, quantity=3, customer_email="big@example.com", customer_name="Big Party")
    booking_expire(booking=holder)  # 2 free: Ada (1) is offered; the party of 3 waits; 1 seat stays free
    ada.refresh_from_db()
    client.force_login(merchant.user)

    page = client.get(reverse("merchant:slot_detail", args=[slot.pk])).content.decode()

    until = timezone.localtime(ada.offer_hold.expires_at, merchant.zone)
    assert '<dd data-testid="seats-held">1 <small class="muted">offered to the waitlist</small></dd>' in page
    assert '<dd data-testid="seats-free">1</dd>' in page
    assert '<dd data-testid="waitlist-length">2 in line</dd>' in page
    assert page.index("Ada Lovelace") < page.index("Big Party")
    assert f"Seats held until {until:%H:%M}" in page

    listing_page = client.get(reverse("merchant:listing_detail", args=[slot.listing.pk])).content.decode()
    assert "· 2 waiting" in listing_page

    bookings = client.get(reverse("merchant:booking_list")).content.decode()
    assert "Seats offered to the waitlist" in bookings and "ada@example.com" in bookings
    assert f'<td data-label="Held until" data-testid="offer-until">{until:%H:%M}</td>' in bookings
