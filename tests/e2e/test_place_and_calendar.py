"""Place and "Add to calendar" in a browser, for a Europe/Paris merchant, at a desktop and a phone
width: the merchant sets the place in the listing form, the listing shows it with a map link,
and a paid booking's page shows it with the .ics download (its start read back with icalendar)
and the Google Calendar link."""

import datetime as dt
import zoneinfo
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import icalendar
import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from bookings.models import Booking, Listing
from payments.checkout import checkout_start
from tests.e2e.pages import sign_in
from tests.e2e.test_pages import SCREENSHOTS, WIDTHS, fits_the_width
from tests.factories import make_listing, make_merchant, make_slot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PARIS = zoneinfo.ZoneInfo("Europe/Paris")
ADDRESS = "14 Rue Oberkampf, 75011 Paris"


@pytest.mark.parametrize("width", WIDTHS)
def test_a_place_on_the_listing_and_add_to_calendar_on_the_booking(width, new_context, shop, stripe, tmp_path):
    merchant = make_merchant(timezone_name="Europe/Paris", display_name="Atelier Lumière", username=f"lumiere{width}")
    listing = make_listing(merchant=merchant, title="Pottery evening", price_amount=2500, currency="eur", duration_minutes=120)
    day = timezone.localdate(timezone=PARIS) + dt.timedelta(days=5)
    starts = dt.datetime.combine(day, dt.time(18, 30), tzinfo=PARIS)
    slot = make_slot(listing=listing, capacity=6, starts_at=starts)
    page = new_context(accept_downloads=True, **WIDTHS[width]).new_page()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def shoot(name: str) -> None:
        page.screenshot(path=SCREENSHOTS / f"{name}-{width}.png", full_page=True)
        assert fits_the_width(page), f"the {name} page scrolls sideways at the {width} width"

    # The merchant gives the address and a reminder a day before, in the listing form.
    sign_in(page, shop.base_url, merchant.user.username)
    page.goto(shop.url(reverse("merchant:listing_edit", args=[listing.pk])))
    page.get_by_label("Where it happens").select_option("address")
    page.get_by_label("Address or meeting point").fill(ADDRESS)
    page.get_by_label("Reminder e-mail").select_option("24")
    shoot("merchant-listing-place")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator("body")).to_contain_text("Your changes are saved.")
    listing.refresh_from_db()
    assert (listing.place_kind, listing.place_text, listing.reminder_hours) == ("address", ADDRESS, 24)

    page.goto(shop.url(reverse("shop:listing", args=[listing.slug])))
    place = page.get_by_test_id("listing-place")
    expect(place).to_contain_text(ADDRESS)
    expect(place.get_by_role("link", name="Open in OpenStreetMap")).to_have_attribute(
        "href", "https://www.openstreetmap.org/search?query=14+Rue+Oberkampf%2C+75011+Paris"
    )
    shoot("listing-place")

    started = checkout_start(
        slot=slot,
        quantity=2,
        customer_email="ada@example.com",
        customer_name="Ada Lovelace",
        success_url=shop.url(reverse("shop:checkout_success")) + "?session_id={CHECKOUT_SESSION_ID}",
        cancel_url=shop.url("/"),
    )
    stripe.control.pay_session(started.booking.checkout_session_id)
    stripe.control.wait_for_webhooks()
    booking = Booking.objects.get(pk=started.booking.pk)
    assert booking.status == Booking.Status.CONFIRMED

    page.goto(shop.url(reverse("shop:booking", args=[booking.public_token])))
    expect(page.locator(".badge")).to_have_text("Confirmed")
    when = f"{starts:%A} {starts.day} {starts:%B} {starts.year}, 18:30 (Europe/Paris)"
    expect(page.locator(".facts dd").first).to_have_text(when)
    expect(page.get_by_test_id("booking-place")).to_contain_text(ADDRESS)
    calendar = page.get_by_test_id("add-to-calendar")
    expect(calendar.get_by_role("heading", name="Add to calendar")).to_be_visible()
    google = calendar.get_by_role("link", name="Google Calendar").get_attribute("href")
    query = parse_qs(urlsplit(google).query)
    utc = starts.astimezone(dt.timezone.utc)
    assert query["dates"] == [f"{utc:%Y%m%dT%H%M%S}Z/{utc + dt.timedelta(hours=2):%Y%m%dT%H%M%S}Z"]
    assert query["location"] == [ADDRESS]
    shoot("booking-place-calendar")

    with page.expect_download() as download_info:
        calendar.get_by_role("link", name="Download .ics").click()
    download = download_info.value
    assert download.suggested_filename == f"booking-{booking.pk}.ics"
    content = Path(download.path()).read_bytes()
    (event,) = icalendar.Calendar.from_ical(content).walk("VEVENT")
    assert event.start == starts and event.start.replace(tzinfo=None) == starts.replace(tzinfo=None)
    assert event.end - event.start == dt.timedelta(hours=2)
    assert str(event["LOCATION"]) == ADDRESS
    assert Listing.objects.get(pk=listing.pk).place_text == ADDRESS
