"""The overview: occupancy of upcoming slots, revenue per listing, bookings needing attention;
and every dashboard page's query count, which must not grow with the data."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from bookings.models import Booking, Refund
from bookings.selectors import merchant_revenue
from bookings.services import booking_refund, refund_record_created, refund_record_failure
from tests.factories import make_booking, make_confirmed_booking, make_listing, make_merchant, make_slot

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed_in(client, merchant):
    client.force_login(merchant.user)
    return client


def test_the_overview_shows_seats_sold_against_capacity_for_upcoming_slots(signed_in, merchant):
    listing = make_listing(merchant=merchant, title="Sea caves")
    slot = make_slot(listing=listing, capacity=8)
    make_confirmed_booking(slot=slot, quantity=3)
    make_slot(listing=listing, capacity=4, starts_in=dt.timedelta(days=-1))  # past: not upcoming

    html = signed_in.get(reverse("merchant:dashboard")).content.decode()

    assert 'aria-label="3 of 8 seats sold"' in html
    assert 'width="37.5%"' in html
    assert "3<small class=\"muted\"> / 8</small>" in html
    assert "style=" not in html


def test_revenue_per_listing_is_paid_minus_refunded_per_currency_over_30_days(merchant, stripe_settings_unset):
    kayak = make_listing(merchant=merchant, title="Kayak", price_amount=4500, currency="gbp")
    pottery = make_listing(merchant=merchant, title="Pottery", price_amount=5500, currency="eur")
    kayak_slot, pottery_slot = make_slot(listing=kayak, capacity=20), make_slot(listing=pottery, capacity=20)
    a = make_confirmed_booking(slot=kayak_slot, quantity=2)  # £90
    make_confirmed_booking(slot=kayak_slot, quantity=1)  # £45
    b = make_confirmed_booking(slot=pottery_slot, quantity=1)  # €55
    refund = booking_refund(booking=a, amount=2000)
    refund_record_created(refund_id=refund.pk, receipt_id="re_1", status="succeeded")  # £20 back
    asked = booking_refund(booking=b, amount=500)  # not at Stripe yet: not counted
    failed = booking_refund(booking=b, amount=700)
    refund_record_failure(refund_id=failed.pk, failure_reason="declined")  # failed: not counted
    old = make_confirmed_booking(slot=kayak_slot, quantity=1)
    Booking.objects.filter(pk=old.pk).update(created_at=timezone.now() - dt.timedelta(days=31))
    make_confirmed_booking(slot=make_slot(listing=make_listing(merchant=make_merchant())))  # not theirs
    assert asked.status == Refund.Status.REQUESTED

    lines = {(line.title, line.currency): (line.paid, line.refunded, line.net) for line in merchant_revenue(merchant)}

    assert lines == {("Kayak", "gbp"): (13500, 2000, 11500), ("Pottery", "eur"): (5500, 0, 5500)}


def test_the_overview_shows_revenue_per_currency_without_adding_currencies_together(signed_in, merchant):
    make_confirmed_booking(slot=make_slot(listing=make_listing(merchant=merchant, price_amount=4500, currency="gbp")))
    make_confirmed_booking(slot=make_slot(listing=make_listing(merchant=merchant, price_amount=5500, currency="eur")))

    html = signed_in.get(reverse("merchant:dashboard")).content.decode()

    assert "£45.00" in html and "€55.00" in html
    assert "Total GBP" in html and "Total EUR" in html


def test_bookings_needing_attention_are_shown_first(signed_in, merchant, stripe_settings_unset):
    slot = make_slot(listing=make_listing(merchant=merchant), capacity=10)
    failed = make_confirmed_booking(slot=slot, customer_name="Failing Fiona")
    refund = booking_refund(booking=failed)
    refund_record_failure(refund_id=refund.pk, failure_reason="expired_or_canceled_card")
    due = make_confirmed_booking(slot=slot, customer_name="Waiting Walter")
    booking_refund(booking=due)
    make_confirmed_booking(slot=slot, customer_name="Happy Harriet")

    html = signed_in.get(reverse("merchant:dashboard")).content.decode()

    attention = html[html.index("Needs your attention") : html.index("upcoming time")]
    assert "Failing Fiona" in attention and "Waiting Walter" in attention
    assert "Happy Harriet" not in attention
    assert "Sort it out" in attention


def test_a_new_merchant_sees_how_to_start(signed_in):
    html = signed_in.get(reverse("merchant:dashboard")).content.decode()

    assert "Create your first listing" in html
    assert "Needs your attention" not in html


# Constant queries


def add_data(merchant, *, listings: int, slots: int, bookings: int) -> None:
    for _ in range(listings):
        listing = make_listing(merchant=merchant)
        for n in range(slots):
            slot = make_slot(listing=listing, capacity=bookings + 5, starts_in=dt.timedelta(days=2, hours=n))
            for _ in range(bookings):
                booking = make_confirmed_booking(slot=slot)
            refund = booking_refund(booking=booking, amount=100)
            refund_record_created(refund_id=refund.pk, receipt_id=f"re_{refund.pk}", status="succeeded")
            failed = make_confirmed_booking(slot=slot)
            refund_record_failure(refund_id=booking_refund(booking=failed).pk, failure_reason="declined")
            make_booking(slot=slot)


def queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    if hasattr(response, "streaming_content"):
        with CaptureQueriesContext(connection) as streamed:
            b"".join(response.streaming_content)
        return len(captured) + len(streamed)
    return len(captured)


PAGES = [
    ("dashboard", None),
    ("listing_list", None),
    ("booking_list", None),
    ("booking_export", None),
    ("listing_detail", "listing"),
    ("slot_detail", "slot"),
    ("booking_detail", "booking"),
]


@pytest.mark.parametrize("name,target", PAGES, ids=[name for name, _ in PAGES])
def test_dashboard_pages_issue_as_many_queries_with_one_row_as_with_many(signed_in, merchant, name, target, stripe_settings_unset):
    listing = make_listing(merchant=merchant)
    slot = make_slot(listing=listing, capacity=100)
    booking = make_confirmed_booking(slot=slot)
    objects = {"listing": listing, "slot": slot, "booking": booking}
    url = reverse(f"merchant:{name}", args=[objects[target].pk] if target else [])
    few = queries(signed_in, url)

    add_data(merchant, listings=6, slots=4, bookings=3)
    for _ in range(12):  # more slots for this listing, more bookings for this slot, refunds for this booking
        make_slot(listing=listing, starts_in=dt.timedelta(days=5, minutes=len(str(_)) + _))
        make_confirmed_booking(slot=slot)
    for amount in (100, 200):
        refund_record_created(refund_id=booking_refund(booking=booking, amount=amount).pk, receipt_id=f"re_this_booking_{amount}", status="succeeded")
    many = queries(signed_in, url)

    assert few == many
