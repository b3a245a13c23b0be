"""The place on the public listing and on the booking page (an online link only for a confirmed
booking, never on a public page), and "Add to calendar": the .ics under the booking's private
address and the Google Calendar link."""

import html
from urllib.parse import parse_qs, urlsplit

import icalendar
import pytest
from django.urls import reverse

from bookings.models import Booking, BookingStatus, Listing, PlaceKind
from tests.factories import make_booking, make_confirmed_booking
from tests.zoned import KOLKATA, PARIS, zoned_slot

pytestmark = pytest.mark.django_db

SECRET_LINK = "https://meet.example.com/secret-room-42"


def placed_slot(clock, **place):
    slot = zoned_slot(clock)
    Listing.objects.filter(pk=slot.listing_id).update(**place)
    slot.listing.refresh_from_db()
    return slot


def page_of(client, name: str, *args) -> str:
    response = client.get(reverse(name, args=args))
    assert response.status_code == 200
    return html.unescape(response.content.decode())


def test_the_listing_shows_its_address_with_an_openstreetmap_link(client):
    slot = placed_slot(PARIS, place_kind=PlaceKind.ADDRESS, place_text="12 Quai des Belges, 13001 Marseille")

    page = page_of(client, "shop:listing", slot.listing.slug)

    assert "12 Quai des Belges, 13001 Marseille" in page
    assert 'href="https://www.openstreetmap.org/search?query=12+Quai+des+Belges%2C+13001+Marseille"' in page


def test_the_listing_shows_a_meeting_point_without_a_map(client):
    slot = placed_slot(PARIS, place_kind=PlaceKind.MEETING_POINT, place_text="Under the clock, Gare Saint-Charles")

    page = page_of(client, "shop:listing", slot.listing.slug)

    assert "Meeting point" in page and "Under the clock, Gare Saint-Charles" in page
    assert "openstreetmap" not in page


def test_an_online_link_is_never_on_the_public_pages(client):
    slot = placed_slot(PARIS, place_kind=PlaceKind.ONLINE, online_url=SECRET_LINK)

    listing_page = page_of(client, "shop:listing", slot.listing.slug)
    catalog = page_of(client, "shop:catalog")

    assert "once your booking is confirmed" in listing_page
    assert "secret-room" not in listing_page and "secret-room" not in catalog


@pytest.mark.parametrize(
    "status", [BookingStatus.PENDING, BookingStatus.EXPIRED, BookingStatus.REFUND_DUE, BookingStatus.REFUNDED, BookingStatus.CANCELLED]
)
def test_a_booking_that_is_not_confirmed_never_gets_the_online_link_nor_a_calendar(client, status):
    slot = placed_slot(KOLKATA, place_kind=PlaceKind.ONLINE, online_url=SECRET_LINK)
    booking = make_confirmed_booking(slot=slot)
    Booking.objects.filter(pk=booking.pk).update(status=status)

    page = page_of(client, "shop:booking", booking.public_token)
    calendar = client.get(reverse("shop:booking_calendar", args=[booking.public_token]))

    assert "secret-room" not in page
    assert "Online" in page
    assert "Add to calendar" not in page and "calendar.google.com" not in page
    assert calendar.status_code == 409
    assert calendar.content.decode() == "There is no calendar entry for this booking: it is not confirmed. Its page says why."
    assert b"secret-room" not in calendar.content


def test_a_pending_booking_is_told_where_the_online_link_will_appear(client):
    slot = placed_slot(PARIS, place_kind=PlaceKind.ONLINE, online_url=SECRET_LINK)
    booking = make_booking(slot=slot)

    page = page_of(client, "shop:booking", booking.public_token)

    assert "the link appears here once your payment is confirmed" in page


def test_a_confirmed_booking_shows_the_online_link_and_add_to_calendar(client):
    slot = placed_slot(PARIS, place_kind=PlaceKind.ONLINE, online_url=SECRET_LINK)
    booking = make_confirmed_booking(slot=slot)

    page = page_of(client, "shop:booking", booking.public_token)

    assert f'Online: <a href="{SECRET_LINK}"' in page
    assert "Add to calendar" in page
    assert f'href="/b/{booking.public_token}/calendar.ics"' in page


def test_the_booking_page_shows_the_address_its_map_and_a_google_calendar_link_in_utc(client):
    slot = placed_slot(PARIS, place_kind=PlaceKind.ADDRESS, place_text="12 Quai des Belges, Marseille")
    booking = make_confirmed_booking(slot=slot)

    page = page_of(client, "shop:booking", booking.public_token)

    assert "12 Quai des Belges, Marseille" in page
    assert "https://www.openstreetmap.org/search?query=12+Quai+des+Belges%2C+Marseille" in page
    google = next(part.split('"')[0] for part in page.split('href="')[1:] if part.startswith("https://calendar.google.com"))
    query = parse_qs(urlsplit(google).query)
    wall = PARIS.wall  # 09:30 in Paris on the day its clocks went forward: 07:30 UTC
    assert query["dates"] == [f"{wall:%Y%m%d}T073000Z/{wall:%Y%m%d}T083000Z"]
    assert query["location"] == ["12 Quai des Belges, Marseille"]
    assert query["text"] == [slot.listing.title]


def test_the_ics_download_is_a_calendar_file_whose_start_is_the_slot(client):
    slot = placed_slot(PARIS, place_kind=PlaceKind.ADDRESS, place_text="12 Quai des Belges, Marseille")
    booking = make_confirmed_booking(slot=slot)

    response = client.get(reverse("shop:booking_calendar", args=[booking.public_token]))

    assert response.status_code == 200
    assert response["Content-Type"] == "text/calendar; charset=utf-8; method=PUBLISH"
    assert response["Content-Disposition"] == f'attachment; filename="booking-{booking.pk}.ics"'
    assert "no-store" in response["Cache-Control"]
    calendar = icalendar.Calendar.from_ical(response.content)
    (event,) = calendar.walk("VEVENT")
    assert event.start == slot.starts_at and event.start.replace(tzinfo=None) == PARIS.wall
    assert str(event["LOCATION"]) == "12 Quai des Belges, Marseille"


def test_the_ics_of_a_booking_that_does_not_exist_is_a_404(client):
    response = client.get(reverse("shop:booking_calendar", args=["no-such-booking-token"]))
    assert response.status_code == 404


def test_the_ics_address_only_answers_get(client):
    booking = make_confirmed_booking()
    assert client.post(reverse("shop:booking_calendar", args=[booking.public_token])).status_code == 405
