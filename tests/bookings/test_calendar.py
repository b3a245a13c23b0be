"""A booking's calendar entry (bookings/calendar.py): the .ics parsed back with `icalendar` and
its start compared with the slot, for merchants in Europe/Paris (on and across the day its
clocks go forward) and Asia/Kolkata; one UID per booking whatever the method; SEQUENCE from the
booking; the online link only while the booking is confirmed; the file attached to the
confirmation e-mail, and a CANCEL to the e-mails of a booking ended after it was confirmed."""

import datetime as dt
import zoneinfo
from urllib.parse import parse_qs, urlsplit

import icalendar
import pytest
from django.core import mail

from bookings.calendar import booking_calendar_file, booking_calendar_uid, google_calendar_url
from bookings.models import Booking, BookingStatus, Listing, PlaceKind, Refund, RefundReason, RefundStatus
from bookings.notifications import booking_confirmation_send, refund_notice_send
from bookings.services import booking_confirm, slot_cancel
from tests.factories import make_booking, make_confirmed_booking, make_listing, make_merchant, make_slot, paid_facts
from tests.zoned import CLOCKS, KOLKATA, PARIS, Clock, zoned_slot

pytestmark = pytest.mark.django_db

ONLINE = "https://meet.example.com/walk-42"


def parsed(content: bytes) -> tuple[icalendar.Calendar, icalendar.Event]:
    calendar = icalendar.Calendar.from_ical(content)
    (event,) = calendar.walk("VEVENT")
    return calendar, event


def with_place(slot, **place) -> None:
    Listing.objects.filter(pk=slot.listing_id).update(**place)
    slot.listing.refresh_from_db()


@pytest.mark.parametrize("clock_name", sorted(CLOCKS))
def test_the_ics_starts_at_the_slot_on_the_merchants_clock_with_that_zones_vtimezone(clock_name, settings):
    settings.SITE_URL = "https://slotbook.example"
    clock = CLOCKS[clock_name]
    slot = zoned_slot(clock)
    booking = make_confirmed_booking(slot=slot, quantity=2)

    calendar, event = parsed(booking_calendar_file(booking=booking, method="PUBLISH").content)

    assert event.start == slot.starts_at  # the same instant
    assert event.start.tzinfo == zoneinfo.ZoneInfo(clock.zone)
    assert event.start.replace(tzinfo=None) == clock.wall  # as the merchant's clock reads it
    assert event.end - event.start == dt.timedelta(minutes=slot.listing.duration_minutes)
    # The VTIMEZONE in the file, read on its own, gives the wall clock the same offset as the zone.
    (vtimezone,) = calendar.walk("VTIMEZONE")
    assert vtimezone["TZID"] == clock.zone
    assert clock.wall.replace(tzinfo=vtimezone.to_tz()).utcoffset() == clock.starts_at.utcoffset()
    raw = booking_calendar_file(booking=booking, method="PUBLISH").content.decode()
    assert f"DTSTART;TZID={clock.zone}:{clock.wall:%Y%m%dT%H%M%S}" in raw
    assert calendar["METHOD"] == "PUBLISH"
    assert str(event["SUMMARY"]) == slot.listing.title
    assert str(event["URL"]) == f"https://slotbook.example/b/{booking.public_token}/"
    assert f"Your booking: https://slotbook.example/b/{booking.public_token}/" in str(event["DESCRIPTION"])
    assert "2 seats" in str(event["DESCRIPTION"])


def test_kolkata_start_is_the_evening_before_in_utc():
    booking = make_confirmed_booking(slot=zoned_slot(KOLKATA))

    _, event = parsed(booking_calendar_file(booking=booking, method="REQUEST").content)

    utc = event.start.astimezone(dt.timezone.utc)
    assert (utc.day, utc.hour, utc.minute) == (9, 20, 45)  # 02:15 +05:30 on the 10th
    assert (event.start.day, event.start.hour, event.start.minute) == (10, 2, 15)


def test_a_time_across_the_clock_change_lasts_its_duration_and_ends_on_the_new_offset():
    # 01:30 in Paris on the night its clocks go forward at 02:00: 90 minutes later it is 04:00.
    night = Clock("Europe/Paris", PARIS.wall.replace(hour=1, minute=30))
    merchant = make_merchant(timezone_name=night.zone)
    slot = make_slot(listing=make_listing(merchant=merchant, duration_minutes=90), starts_at=night.starts_at)
    booking = make_confirmed_booking(slot=slot)

    _, event = parsed(booking_calendar_file(booking=booking, method="REQUEST").content)

    assert event.start == slot.starts_at
    assert event.start.utcoffset() == dt.timedelta(hours=1)
    assert event.end.utcoffset() == dt.timedelta(hours=2)
    assert event.end.replace(tzinfo=None) == night.wall.replace(hour=4, minute=0)
    assert event.end.astimezone(dt.timezone.utc) - event.start.astimezone(dt.timezone.utc) == dt.timedelta(minutes=90)


def test_a_merchant_on_utc_gets_utc_times():
    merchant = make_merchant(timezone_name="UTC")
    starts = dt.datetime(PARIS.wall.year, 7, 1, 18, 0, tzinfo=dt.timezone.utc)
    booking = make_confirmed_booking(slot=make_slot(listing=make_listing(merchant=merchant), starts_at=starts))

    content = booking_calendar_file(booking=booking, method="PUBLISH").content
    calendar, event = parsed(content)

    assert f"DTSTART:{starts:%Y%m%dT%H%M%S}Z" in content.decode()
    assert event.start == starts
    assert calendar.walk("VTIMEZONE") == []


def test_one_uid_per_booking_made_of_its_number_not_its_token_and_the_sequence_is_the_bookings(settings):
    settings.SITE_URL = "https://slotbook.example"
    booking = make_confirmed_booking()
    other = make_confirmed_booking(slot=booking.slot)

    uids = {
        str(parsed(booking_calendar_file(booking=booking, method=method).content)[1]["UID"])
        for method in ("REQUEST", "PUBLISH", "CANCEL")
    }

    assert uids == {f"booking-{booking.pk}@slotbook.example"} == {booking_calendar_uid(booking)}
    assert booking_calendar_uid(other) != booking_calendar_uid(booking)
    assert booking.public_token not in booking_calendar_uid(booking)
    assert parsed(booking_calendar_file(booking=booking, method="REQUEST").content)[1]["SEQUENCE"] == 0
    # A reschedule raises calendar_sequence: the same entry, newer.
    Booking.objects.filter(pk=booking.pk).update(calendar_sequence=3)
    booking.refresh_from_db()
    _, event = parsed(booking_calendar_file(booking=booking, method="REQUEST").content)
    assert (str(event["UID"]), event["SEQUENCE"], str(event["STATUS"])) == (booking_calendar_uid(booking), 3, "CONFIRMED")


def test_a_cancel_has_the_same_uid_a_higher_sequence_and_status_cancelled():
    booking = make_confirmed_booking()
    Booking.objects.filter(pk=booking.pk).update(calendar_sequence=2)
    booking.refresh_from_db()

    calendar, event = parsed(booking_calendar_file(booking=booking, method="CANCEL").content)

    assert calendar["METHOD"] == "CANCEL"
    assert str(event["STATUS"]) == "CANCELLED"
    assert event["SEQUENCE"] == 3
    assert str(event["UID"]) == booking_calendar_uid(booking)
    assert event.start == booking.slot.starts_at.replace(microsecond=0)  # iCalendar counts whole seconds


def test_request_names_the_merchant_as_organiser_and_the_customer_as_attendee():
    merchant = make_merchant(display_name="Harbour Tours", support_email="hello@harbour.example")
    booking = make_confirmed_booking(
        slot=make_slot(listing=make_listing(merchant=merchant)), customer_email="ada@example.com", customer_name="Ada"
    )

    _, event = parsed(booking_calendar_file(booking=booking, method="REQUEST").content)

    assert str(event["ORGANIZER"]) == "mailto:hello@harbour.example"
    assert event["ORGANIZER"].params["CN"] == "Harbour Tours"
    assert str(event["ATTENDEE"]) == "mailto:ada@example.com"
    assert event["ATTENDEE"].params["PARTSTAT"] == "ACCEPTED"


def test_the_location_is_the_address_with_its_map_in_the_description():
    slot = zoned_slot(PARIS)
    with_place(slot, place_kind=PlaceKind.ADDRESS, place_text="12 Quai des Belges, 13001 Marseille")
    booking = make_confirmed_booking(slot=slot)

    _, event = parsed(booking_calendar_file(booking=booking, method="PUBLISH").content)

    assert str(event["LOCATION"]) == "12 Quai des Belges, 13001 Marseille"
    assert (
        "map: https://www.openstreetmap.org/search?query=12+Quai+des+Belges%2C+13001+Marseille"
        in str(event["DESCRIPTION"])
    )


def test_the_online_link_is_in_the_entry_only_while_the_booking_is_confirmed():
    slot = make_slot()
    with_place(slot, place_kind=PlaceKind.ONLINE, online_url=ONLINE)
    booking = make_confirmed_booking(slot=slot)

    _, event = parsed(booking_calendar_file(booking=booking, method="REQUEST").content)
    assert str(event["LOCATION"]) == ONLINE
    assert f"Join online: {ONLINE}" in str(event["DESCRIPTION"])

    booking.status = BookingStatus.REFUNDED
    content = booking_calendar_file(booking=booking, method="CANCEL").content
    _, event = parsed(content)
    assert str(event["LOCATION"]) == "Online"
    assert ONLINE.encode() not in content


def test_the_google_calendar_link_has_the_times_in_utc_and_the_place():
    slot = zoned_slot(KOLKATA)
    with_place(slot, place_kind=PlaceKind.MEETING_POINT, place_text="Gate 3, Lodhi Garden")
    booking = make_confirmed_booking(slot=slot)

    url = urlsplit(google_calendar_url(booking))
    query = {name: values[0] for name, values in parse_qs(url.query).items()}

    assert (url.scheme, url.netloc, url.path) == ("https", "calendar.google.com", "/calendar/render")
    ends = KOLKATA.wall.replace(hour=3)  # 60 minutes later
    assert query["action"] == "TEMPLATE"
    assert query["dates"] == f"{KOLKATA.wall.year}0209T204500Z/{ends.year}0209T214500Z"
    assert query["text"] == slot.listing.title
    assert query["location"] == "Gate 3, Lodhi Garden"
    assert f"/b/{booking.public_token}/" in query["details"]


# E-mails


def attachment(message) -> tuple[str, icalendar.Calendar, icalendar.Event]:
    parts = [part for part in message.message().walk() if part.get_content_type() == "text/calendar"]
    assert len(parts) == 1, [part.get_content_type() for part in message.message().walk()]
    part = parts[0]
    calendar, event = parsed(part.get_payload(decode=True))
    assert part.get_param("method") == calendar["METHOD"]
    return part.get_filename(), calendar, event


def test_the_confirmation_email_carries_a_request_for_the_slot(stripe_settings_unset, django_capture_on_commit_callbacks):
    slot = zoned_slot(PARIS)
    booking = make_booking(slot=slot)
    with django_capture_on_commit_callbacks(execute=True):
        booking_confirm(facts=paid_facts(booking))

    (message,) = mail.outbox
    filename, calendar, event = attachment(message)

    assert filename == f"booking-{booking.pk}.ics"
    assert calendar["METHOD"] == "REQUEST"
    assert event.start == slot.starts_at and event.start.replace(tzinfo=None) == PARIS.wall
    assert f"booking-{booking.pk}.ics puts it in your calendar" in message.body


def test_a_time_cancelled_by_the_merchant_sends_a_cancel_for_the_entry(stripe_settings_unset, django_capture_on_commit_callbacks):
    slot = zoned_slot(KOLKATA)
    free = make_booking(slot=slot)
    booking_confirm(facts=paid_facts(free, payment_status="no_payment_required", amount_total=0, payment_intent_id=None))
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        slot_cancel(slot=slot)

    (message,) = mail.outbox
    assert "is cancelled" in message.subject
    filename, calendar, event = attachment(message)
    assert filename == f"cancelled-{free.pk}.ics"
    assert (calendar["METHOD"], str(event["STATUS"]), event["SEQUENCE"]) == ("CANCEL", "CANCELLED", 1)
    assert str(event["UID"]) == booking_calendar_uid(free)
    assert event.start == slot.starts_at


@pytest.mark.parametrize("reason", [RefundReason.MERCHANT, RefundReason.SLOT_CANCELLED])
def test_the_refund_notice_of_a_booking_ended_after_confirmation_carries_a_cancel(reason):
    booking = make_confirmed_booking()
    Booking.objects.filter(pk=booking.pk).update(status=BookingStatus.REFUNDED, amount_refunded=booking.amount_paid)
    booking.refresh_from_db()
    refund = Refund.objects.create(booking=booking, amount=booking.amount_paid, reason=reason, status=RefundStatus.SUCCEEDED)
    mail.outbox.clear()

    assert refund_notice_send(refund=refund, booking=booking)

    _, calendar, event = attachment(mail.outbox[0])
    assert calendar["METHOD"] == "CANCEL" and str(event["UID"]) == booking_calendar_uid(booking)


def test_no_calendar_with_a_refund_that_leaves_the_booking_confirmed_or_one_never_confirmed():
    kept = make_confirmed_booking()  # a partial refund: the customer still comes
    partial = Refund.objects.create(booking=kept, amount=100, reason=RefundReason.MERCHANT, status=RefundStatus.SUCCEEDED)
    sold_out = make_booking(status=BookingStatus.REFUNDED, amount_paid=2500, amount_refunded=2500)
    never = Refund.objects.create(booking=sold_out, amount=2500, reason=RefundReason.SOLD_OUT, status=RefundStatus.SUCCEEDED)
    mail.outbox.clear()

    assert refund_notice_send(refund=partial, booking=kept)
    assert refund_notice_send(refund=never, booking=sold_out)

    for message in mail.outbox:
        assert not [part for part in message.message().walk() if part.get_content_type() == "text/calendar"]


def test_the_online_link_is_in_the_confirmation_and_not_in_the_refund_notice():
    slot = make_slot()
    with_place(slot, place_kind=PlaceKind.ONLINE, online_url=ONLINE)
    booking = make_confirmed_booking(slot=slot)
    mail.outbox.clear()
    assert booking_confirmation_send(booking=booking)
    Booking.objects.filter(pk=booking.pk).update(status=BookingStatus.REFUNDED, amount_refunded=booking.amount_paid)
    booking.refresh_from_db()
    refund = Refund.objects.create(booking=booking, amount=booking.amount_paid, reason=RefundReason.MERCHANT, status=RefundStatus.SUCCEEDED)
    assert refund_notice_send(refund=refund, booking=booking)

    confirmation, notice = mail.outbox
    assert f"Where:     Online: {ONLINE}" in confirmation.body
    assert ONLINE in confirmation.alternatives[0][0]
    assert "Where:     Online\n" in notice.body
    assert ONLINE not in notice.body and ONLINE not in notice.alternatives[0][0]
    assert ONLINE.encode() not in notice.message().as_bytes()
