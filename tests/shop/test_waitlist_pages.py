"""The waitlist's pages: joining (with htmx and without), the rate limit, the offer page and its
checkout, leaving, and links that are forged, used or expired (a sentence and a 4xx)."""

import datetime as dt
import re

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from bookings.models import BookingStatus, Hold, WaitlistEntry, WaitlistStatus
from bookings.services import booking_expire, booking_start, waitlist_join
from bookings.waitlist_links import waitlist_entry_by_leave_token, waitlist_leave_token, waitlist_offer_token
from tests.factories import make_listing, make_merchant, make_slot

pytestmark = pytest.mark.django_db(transaction=True)

W = WaitlistStatus


@pytest.fixture
def paris_slot():
    merchant = make_merchant(timezone_name="Europe/Paris", display_name="Atelier Nord")
    listing = make_listing(merchant=merchant, title="Sea cave explorer", price_amount=2500)
    starts = timezone.make_aware(dt.datetime.combine(timezone.now().date() + dt.timedelta(days=5), dt.time(9, 30)), merchant.zone)
    return make_slot(listing=listing, capacity=1, starts_at=starts)


def hold_last_seat(slot, name="Holder"):
    return booking_start(slot=slot, quantity=1, customer_email=f"{name.lower()}@example.com", customer_name=name)


def join_data(slot, **overrides):
    return {"slot": slot.pk, "quantity": 1, "customer_name": "Grace Hopper", "customer_email": "grace@example.com", **overrides}


def join_url(slot):
    return reverse("shop:waitlist_join", args=[slot.listing.slug])


def offered_entry(slot, name="Grace"):
    booking = hold_last_seat(slot)
    entry = waitlist_join(slot=slot, quantity=1, customer_email=f"{name.lower()}@example.com", customer_name=name)
    booking_expire(booking=booking)
    entry.refresh_from_db()
    assert entry.status == W.OFFERED
    return entry


def test_a_sold_out_time_on_the_listing_links_to_its_waitlist(client, paris_slot):
    hold_last_seat(paris_slot)
    page = client.get(reverse("shop:listing", args=[paris_slot.listing.slug])).content.decode()
    assert f'data-waitlist-link="{paris_slot.pk}"' in page
    assert f'href="{join_url(paris_slot)}?slot={paris_slot.pk}"' in page


def test_the_waitlist_form_shows_the_time_on_the_merchants_clock_with_and_without_htmx(client, paris_slot):
    hold_last_seat(paris_slot)
    page = client.get(join_url(paris_slot), {"slot": paris_slot.pk})
    assert page.status_code == 200
    when = timezone.localtime(paris_slot.starts_at, paris_slot.listing.merchant.zone)
    assert f"{when:%A} {when.day} {when:%B %Y}, 09:30" in page.content.decode()
    assert "<html" in page.content.decode()
    partial = client.get(join_url(paris_slot), {"slot": paris_slot.pk}, headers={"HX-Request": "true"})
    assert "<html" not in partial.content.decode() and 'id="waitlist"' in partial.content.decode()


def test_joining_says_so_and_emails_a_leave_link(client, paris_slot):
    hold_last_seat(paris_slot)
    response = client.post(join_url(paris_slot), join_data(paris_slot))
    assert response.status_code == 201
    text = response.content.decode()
    assert "You're on the waitlist" in text and "You are first in line" in text
    entry = WaitlistEntry.objects.get()
    assert (entry.customer_email, entry.quantity, entry.status) == ("grace@example.com", 1, W.WAITING)
    [email] = [m for m in mail.outbox if m.subject == "You're on the waitlist: Sea cave explorer"]
    # The link's token is signed with the second it was made: read it from the e-mail, and check
    # it leads to this entry (a token signed again here could name the next second).
    [token] = re.findall(r"/waitlist/leave/([^/\s]+)/", email.body)
    assert waitlist_entry_by_leave_token(token) == entry
    assert "09:30 (Europe/Paris)" in email.body


def test_joining_with_htmx_answers_the_panel_alone(client, paris_slot):
    hold_last_seat(paris_slot)
    client.post(join_url(paris_slot), join_data(paris_slot, customer_email="ada@example.com"))
    response = client.post(join_url(paris_slot), join_data(paris_slot), headers={"HX-Request": "true"})
    text = response.content.decode()
    assert response.status_code == 201 and "<html" not in text
    assert "1 person is ahead of you" in text


def test_joining_a_time_with_free_seats_is_refused_with_a_sentence(client, paris_slot):
    response = client.post(join_url(paris_slot), join_data(paris_slot))
    assert response.status_code == 409
    assert "1 seat is free at this time: book them now instead of waiting." in response.content.decode()
    assert not WaitlistEntry.objects.exists()


def test_bad_join_input_is_told_and_nothing_written(client, paris_slot):
    hold_last_seat(paris_slot)
    response = client.post(join_url(paris_slot), join_data(paris_slot, customer_email="not-an-address", quantity=0))
    text = response.content.decode()
    assert response.status_code == 400
    assert "Enter a valid e-mail address." in text and "Book at least one seat." in text
    response = client.post(join_url(paris_slot), {**join_data(paris_slot), "slot": "999999"})
    assert response.status_code == 400 and "That time is no longer on sale" in response.content.decode()
    assert client.get(join_url(paris_slot), {"slot": "x"}).status_code == 404
    assert not WaitlistEntry.objects.exists()


def test_joining_is_rate_limited_like_checkout_starts(client, paris_slot, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "waitlist_per_ip": "2/10m"}
    hold_last_seat(paris_slot)
    answers = [
        client.post(join_url(paris_slot), join_data(paris_slot, customer_email=f"p{i}@example.com")).status_code
        for i in range(3)
    ]
    assert answers == [201, 201, 429]
    assert WaitlistEntry.objects.count() == 2


def test_a_checkout_refused_as_sold_out_offers_the_waitlist_with_the_choices_filled_in(client, paris_slot):
    hold_last_seat(paris_slot)
    response = client.post(
        reverse("shop:checkout_create", args=[paris_slot.listing.slug]),
        {"slot": paris_slot.pk, "quantity": 1, "customer_name": "Grace Hopper", "customer_email": "grace@example.com"},
    )
    assert response.status_code == 409
    text = response.content.decode()
    assert "This time is sold out for now" in text
    assert "Join this time&#x27;s waitlist and we will e-mail you if seats free up" in text
    form = re.search(r'<form method="post" action="' + re.escape(join_url(paris_slot)) + r'".*?</form>', text, re.S).group(0)
    assert 'value="grace@example.com"' in form and 'value="Grace Hopper"' in form
    assert f'name="slot" value="{paris_slot.pk}"' in form


def test_the_offer_page_shows_until_when_the_seats_are_held_on_the_merchants_clock(client, paris_slot):
    entry = offered_entry(paris_slot)
    page = client.get(reverse("shop:waitlist_offer", args=[waitlist_offer_token(entry)]))
    assert page.status_code == 200
    until = timezone.localtime(entry.offer_hold.expires_at, paris_slot.listing.merchant.zone)
    text = page.content.decode()
    assert f"held for you until <strong>{until:%H:%M}</strong>" in text and "(Europe/Paris)" in text
    assert "€25.00" in text


def test_paying_from_the_offer_opens_checkout_on_the_offers_seats(client, paris_slot, stripe_emulator):
    entry = offered_entry(paris_slot)
    url = reverse("shop:waitlist_offer", args=[waitlist_offer_token(entry)])
    response = client.post(url, {"customer_name": "Grace H."})
    assert response.status_code == 303 and "/c/pay/cs_test_" in response["Location"]
    entry.refresh_from_db()
    booking = entry.booking
    assert entry.status == W.BOOKED and booking.status == BookingStatus.PENDING
    assert booking.checkout_session_id and booking.customer_name == "Grace H."
    paris_slot.refresh_from_db()
    assert (paris_slot.seats_held, paris_slot.seats_left) == (1, 0)
    used = client.get(url)
    assert used.status_code == 409 and "You have already used this offer" in used.content.decode()


def test_an_expired_offer_link_says_so_with_410_and_passes_the_seats_on(client, paris_slot):
    entry = offered_entry(paris_slot)
    ada = waitlist_join(slot=paris_slot, quantity=1, customer_email="ada@example.com", customer_name="Ada")
    Hold.objects.filter(pk=entry.offer_hold_id).update(expires_at=timezone.now() - dt.timedelta(minutes=1))
    for method in (client.get, client.post):
        response = method(reverse("shop:waitlist_offer", args=[waitlist_offer_token(entry)]))
        assert response.status_code == 410
        assert "This offer has expired" in response.content.decode()
    ada.refresh_from_db()
    assert ada.status == W.OFFERED


@pytest.mark.parametrize("token", ["forged", "x" * 300, "MQ:1t2XyZ:abcdefabcdefabcdefabcdefabc", "%00"])
def test_a_forged_offer_or_leave_link_is_a_clear_404(client, paris_slot, token):
    for name in ("shop:waitlist_offer", "shop:waitlist_leave"):
        response = client.get(reverse(name, args=[token]))
        assert response.status_code == 404
        assert "We could not recognise this link" in response.content.decode()


def test_an_offer_link_cannot_be_made_from_a_leave_link(client, paris_slot):
    entry = offered_entry(paris_slot)
    response = client.get(reverse("shop:waitlist_offer", args=[waitlist_leave_token(entry)]))
    assert response.status_code == 404


def test_leaving_from_the_email_asks_first_then_passes_an_offer_on(client, paris_slot):
    entry = offered_entry(paris_slot)
    ada = waitlist_join(slot=paris_slot, quantity=1, customer_email="ada@example.com", customer_name="Ada")
    url = reverse("shop:waitlist_leave", args=[waitlist_leave_token(entry)])
    ask = client.get(url)
    assert ask.status_code == 200 and "Leave the waitlist?" in ask.content.decode()
    entry.refresh_from_db()
    assert entry.status == W.OFFERED  # a mail scanner following the link changes nothing
    left = client.post(url)
    assert left.status_code == 200 and "You've left the waitlist" in left.content.decode()
    entry.refresh_from_db()
    ada.refresh_from_db()
    assert (entry.status, ada.status) == (W.LEFT, W.OFFERED)
    offer = client.get(reverse("shop:waitlist_offer", args=[waitlist_offer_token(entry)]))
    assert offer.status_code == 410 and "You left the waitlist" in offer.content.decode()
    again = client.post(url)
    assert again.status_code == 200 and "You've left the waitlist" in again.content.decode()


def test_the_waitlist_of_a_time_with_free_seats_says_to_book_instead(client, paris_slot):
    response = client.get(join_url(paris_slot), {"slot": paris_slot.pk})
    assert response.status_code == 409
    assert "1 seat is free at this time: book them now instead of waiting." in response.content.decode()
