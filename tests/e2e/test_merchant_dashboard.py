"""The dashboard's htmx controls in a real browser, under the site's Content-Security-Policy:
inline capacity edits, the live series preview, filters that push their address."""

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from bookings.models import Slot
from tests.e2e.pages import sign_in
from tests.factories import make_confirmed_booking, make_listing, make_merchant, make_slot

# CSP violations fail any browser test: see `page_problems` in conftest.py.
pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def signed_in(page, live_server):
    page.merchant = make_merchant(username="e2e", timezone_name="Europe/London")
    sign_in(page, live_server.url, "e2e")
    return page


def test_capacity_is_edited_inline_and_the_rule_is_shown_beside_the_field(signed_in, live_server):
    page = signed_in
    listing = make_listing(merchant=page.merchant)
    slot = make_slot(listing=listing, capacity=5)
    make_confirmed_booking(slot=slot, quantity=3)
    url = live_server.url + reverse("merchant:listing_detail", args=[listing.pk])
    page.goto(url)

    page.locator(f"#slot-{slot.pk}").get_by_role("link", name="Change").click()
    field = page.locator(f"#capacity-{slot.pk}")
    field.fill("2")
    page.locator(f"#slot-{slot.pk}").get_by_role("button", name="Save").click()
    error = page.locator(f"#capacity-{slot.pk}-error")
    error.wait_for()
    assert error.inner_text() == "3 seats are already sold, so capacity cannot go below 3."

    field.fill("9")
    page.locator(f"#slot-{slot.pk}").get_by_role("button", name="Save").click()
    page.locator(f"#slot-{slot.pk}", has_text="3/9").wait_for()

    slot.refresh_from_db()
    assert (slot.capacity, slot.seats_left) == (9, 6)
    assert page.url == url  # swapped in place, no page load


def test_the_series_preview_appears_as_the_form_is_filled_and_nothing_is_saved_before_create(signed_in, live_server):
    page = signed_in
    listing = make_listing(merchant=page.merchant)
    page.goto(live_server.url + reverse("merchant:slot_series", args=[listing.pk]))
    monday = timezone.now().astimezone(page.merchant.zone).date()
    monday += dt.timedelta(days=7 - monday.weekday())

    page.check("input[name=weekdays][value='0']")
    page.fill("#id_start_times", "09:00, 11:00")
    page.fill("#id_first_day", monday.isoformat())
    page.fill("#id_last_day", (monday + dt.timedelta(days=13)).isoformat())
    page.locator("#id_capacity").click()
    page.locator("#series-preview", has_text="4 new times").wait_for()
    assert not Slot.objects.filter(listing=listing).exists()

    page.get_by_role("button", name="Create these times").click()
    page.wait_for_url(f"**{reverse('merchant:listing_detail', args=[listing.pk])}")
    assert Slot.objects.filter(listing=listing).count() == 4


def test_booking_filters_update_the_table_and_push_their_address(signed_in, live_server):
    page = signed_in
    slot = make_slot(listing=make_listing(merchant=page.merchant), capacity=10)
    make_confirmed_booking(slot=slot, customer_email="ada@example.com")
    make_confirmed_booking(slot=slot, customer_email="bob@example.com")
    page.goto(live_server.url + reverse("merchant:booking_list"))

    page.fill("#id_q", "ada")
    page.wait_for_url("**?q=ada")

    results = page.locator("#booking-results")
    assert "ada@example.com" in results.inner_text()
    assert "bob@example.com" not in results.inner_text()
    page.go_back()
    page.wait_for_url(f"**{reverse('merchant:booking_list')}")
