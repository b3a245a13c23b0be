"""The merchant's pages and CSV export show a slot's time as the merchant's clock shows it, for
merchants whose zone is not the server's TIME_ZONE (see tests/zoned.py)."""

import csv
import io

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from bookings.models import Slot
from tests.factories import make_confirmed_booking
from tests.zoned import CLOCKS, zoned_slot

pytestmark = pytest.mark.django_db


@pytest.fixture(params=sorted(CLOCKS))
def clock(request):
    return CLOCKS[request.param]


@pytest.fixture
def booking(clock, stripe_settings_unset):
    return make_confirmed_booking(slot=zoned_slot(clock), customer_name="Ada")


@pytest.fixture
def signed_in(client, booking):
    client.force_login(booking.slot.listing.merchant.user)
    return client


def _page(client, name, *args) -> str:
    response = client.get(reverse(name, args=args))
    assert response.status_code == 200
    return response.content.decode()


def test_the_dashboard_shows_upcoming_times_on_the_merchants_clock(signed_in, clock, booking):
    html = _page(signed_in, "merchant:dashboard")

    assert f">{clock.short_no_year}</a>" in html
    assert f"Times in {clock.zone}" in html


def test_the_booking_list_shows_times_on_the_merchants_clock(signed_in, clock, booking):
    assert f">{clock.short}</a>" in _page(signed_in, "merchant:booking_list")


def test_a_bookings_page_and_its_refund_form_show_the_time_on_the_merchants_clock(signed_in, clock, booking):
    detail = _page(signed_in, "merchant:booking_detail", booking.pk)
    refund = _page(signed_in, "merchant:booking_refund", booking.pk)

    assert f">{clock.long}</a>" in detail
    assert f"{booking.slot.listing.title}, {clock.long} · paid" in refund


def test_the_listing_and_slot_pages_show_the_time_on_the_merchants_clock(signed_in, clock, booking):
    slot = booking.slot

    assert f">{clock.short}</a>" in _page(signed_in, "merchant:listing_detail", slot.listing.pk)
    assert f"<h1>{clock.long} " in _page(signed_in, "merchant:slot_detail", slot.pk)
    assert f"<h1>Capacity of {clock.long}</h1>" in _page(signed_in, "merchant:slot_capacity", slot.pk)
    cancel = _page(signed_in, "merchant:slot_cancel", slot.pk)
    assert f"<title>Cancel {clock.short_no_year}" in cancel
    assert f"Cancel {clock.long_no_year}?" in cancel


def test_the_messages_after_adding_and_cancelling_a_time_name_it_on_the_merchants_clock(signed_in, clock, booking):
    listing = booking.slot.listing
    later = clock.wall.replace(hour=(clock.wall.hour + 3) % 24)
    response = signed_in.post(
        reverse("merchant:slot_create", args=[listing.pk]),
        {"starts_at": f"{later:%Y-%m-%dT%H:%M}", "capacity": "4"},
    )
    added = Slot.objects.get(listing=listing, capacity=4)
    cancelled = signed_in.post(reverse("merchant:slot_cancel", args=[added.pk]))

    texts = [str(m) for m in get_messages(response.wsgi_request)] + [str(m) for m in get_messages(cancelled.wsgi_request)]
    assert f"Added {later:%A} {later.day} {later:%B} {later.year}, {later:%H:%M} with 4 seats." in texts
    assert any(text.startswith(f"{later:%A} {later.day} {later:%B}, {later:%H:%M} is cancelled.") for text in texts)


def test_the_csv_export_writes_times_on_the_merchants_clock_and_names_the_zone(signed_in, clock, booking):
    response = signed_in.get(reverse("merchant:booking_export"))
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))

    assert [(row["starts_at"], row["timezone"]) for row in rows] == [(clock.csv, clock.zone)]
