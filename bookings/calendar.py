"""A booking's calendar entry: the .ics file (RFC 5545, made with `icalendar`) and a Google
Calendar link.

One entry per booking, identified by a UID made of its number (never of its private token, which
would then sit in every calendar it reaches). Its start is the slot's, written in the merchant's
zone with that zone's VTIMEZONE (or in UTC for a merchant on UTC); its end is the start plus the
listing's duration, counted in elapsed time (so a time across a clock change lasts what it says).
`Booking.calendar_sequence` is its SEQUENCE: whatever changes the booking's time raises it, and
the calendar then replaces the entry with the same UID instead of adding a second one.

Methods (RFC 5546): REQUEST in the confirmation e-mail (the customer is the attendee, the
merchant the organiser), PUBLISH for the file downloaded from the booking page, CANCEL when the
booking ends after it was confirmed (its time cancelled, or refunded): STATUS:CANCELLED with a
SEQUENCE one above the last one sent, so calendars take it as newer than the entry they hold.
"""

import datetime as dt
from dataclasses import dataclass
from email.mime.text import MIMEText
from urllib.parse import urlencode, urlsplit

import icalendar
from django.conf import settings
from django.utils import timezone

from bookings.links import booking_page_url
from bookings.models import Booking, BookingStatus, PlaceKind

PRODID = "-//Slotbook//Bookings//EN"
METHODS = ("REQUEST", "PUBLISH", "CANCEL")
UTC_ZONES = {"UTC", "Etc/UTC", "Etc/UCT", "Etc/Universal", "Etc/Zulu", "UCT", "Universal", "Zulu", "GMT", "Etc/GMT"}


@dataclass(frozen=True)
class CalendarFile:
    method: str
    content: bytes
    filename: str

    @property
    def content_type(self) -> str:
        return f"text/calendar; charset=utf-8; method={self.method}"

    def as_mime(self) -> MIMEText:
        """The file as an e-mail attachment, with its method in the Content-Type as calendar
        programs expect (RFC 6047)."""
        part = MIMEText(self.content.decode(), "calendar", "utf-8")
        part.set_param("method", self.method)
        part.add_header("Content-Disposition", "attachment", filename=self.filename)
        return part


def booking_calendar_uid(booking: Booking) -> str:
    host = urlsplit(settings.SITE_URL).hostname or "slotbook.invalid"
    return f"booking-{booking.pk}@{host}"


def booking_times(booking: Booking) -> tuple[dt.datetime, dt.datetime]:
    """The booking's start and end on the merchant's clock (UTC for a merchant on UTC)."""
    merchant = booking.slot.listing.merchant
    zone = dt.timezone.utc if merchant.timezone in UTC_ZONES else merchant.zone
    starts_utc = booking.slot.starts_at.astimezone(dt.timezone.utc)
    ends_utc = starts_utc + dt.timedelta(minutes=booking.slot.listing.duration_minutes)
    return starts_utc.astimezone(zone), ends_utc.astimezone(zone)


def booking_online_url(booking: Booking) -> str:
    """The listing's online link, for a confirmed booking only: never for one that is waiting for
    its payment, ended, or refunded."""
    listing = booking.slot.listing
    if listing.place_kind == PlaceKind.ONLINE and booking.status == BookingStatus.CONFIRMED:
        return listing.online_url
    return ""


def booking_location(booking: Booking) -> str:
    """The place as one line for a calendar: the address or meeting point, or the online link
    (for a confirmed booking; else just "Online")."""
    listing = booking.slot.listing
    if listing.place_kind == PlaceKind.ONLINE:
        return booking_online_url(booking) or "Online"
    return listing.place_text


def _description(booking: Booking, *, cancelled: bool) -> str:
    listing = booking.slot.listing
    seats = f"{booking.quantity} seat{'s' if booking.quantity != 1 else ''}"
    lines = [f"{listing.title}, hosted by {listing.merchant.display_name}. Booking #{booking.pk}, {seats}."]
    if cancelled:
        lines.append("This booking is cancelled.")
    elif listing.place_kind == PlaceKind.ONLINE:
        lines.append(f"Join online: {booking_online_url(booking)}")
    elif listing.place_kind == PlaceKind.ADDRESS:
        lines.append(f"Where: {listing.place_text} (map: {listing.map_url})")
    elif listing.place_kind == PlaceKind.MEETING_POINT:
        lines.append(f"Meeting point: {listing.place_text}")
    lines.append(f"Your booking: {booking_page_url(booking)}")
    return "\n".join(lines)


def _organizer(booking: Booking) -> icalendar.vCalAddress:
    merchant = booking.slot.listing.merchant
    address = merchant.support_email or merchant.user.email or settings.DEFAULT_FROM_EMAIL
    organizer = icalendar.vCalAddress(f"mailto:{address}")
    organizer.params["CN"] = merchant.display_name
    return organizer


def _attendee(booking: Booking, *, cancelled: bool) -> icalendar.vCalAddress:
    attendee = icalendar.vCalAddress(f"mailto:{booking.customer_email}")
    attendee.params["CN"] = booking.customer_name
    attendee.params["ROLE"] = "REQ-PARTICIPANT"
    attendee.params["PARTSTAT"] = "DECLINED" if cancelled else "ACCEPTED"
    attendee.params["RSVP"] = "FALSE"
    return attendee


def booking_calendar(*, booking: Booking, method: str, now: dt.datetime | None = None) -> icalendar.Calendar:
    """The booking's calendar (one VEVENT, with the VTIMEZONE it needs) for `method`."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    cancelled = method == "CANCEL"
    listing = booking.slot.listing
    starts, ends = booking_times(booking)

    event = icalendar.Event()
    event.add("uid", booking_calendar_uid(booking))
    event.add("dtstamp", (now or timezone.now()).astimezone(dt.timezone.utc))
    event.add("sequence", booking.calendar_sequence + (1 if cancelled else 0))
    event.add("dtstart", starts)
    event.add("dtend", ends)
    event.add("summary", listing.title)
    event.add("description", _description(booking, cancelled=cancelled))
    location = booking_location(booking)
    if location:
        event.add("location", location)
    event.add("url", booking_page_url(booking))
    event.add("status", "CANCELLED" if cancelled else "CONFIRMED")
    event.add("transp", "OPAQUE")
    event.add("organizer", _organizer(booking))
    if method != "PUBLISH":
        event.add("attendee", _attendee(booking, cancelled=cancelled))

    calendar = icalendar.Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", method)
    calendar.add_component(event)
    # The zone's rules around the booking only: a VTIMEZONE of a few lines, not of decades.
    calendar.add_missing_timezones(
        first_date=starts.date() - dt.timedelta(days=366), last_date=ends.date() + dt.timedelta(days=366)
    )
    return calendar


def booking_calendar_file(*, booking: Booking, method: str) -> CalendarFile:
    """The .ics of a booking for `method` (REQUEST, PUBLISH or CANCEL). Reads the booking's slot,
    listing and merchant (select them with it)."""
    content = booking_calendar(booking=booking, method=method).to_ical()
    name = "cancelled" if method == "CANCEL" else "booking"
    return CalendarFile(method=method, content=content, filename=f"{name}-{booking.pk}.ics")


GOOGLE_CALENDAR_URL = "https://calendar.google.com/calendar/render"


def google_calendar_url(booking: Booking) -> str:
    """A link that opens Google Calendar's new-event form filled with the booking (in UTC)."""
    starts, ends = booking_times(booking)
    stamp = "%Y%m%dT%H%M%SZ"
    query = {
        "action": "TEMPLATE",
        "text": booking.slot.listing.title,
        "dates": f"{starts.astimezone(dt.timezone.utc):{stamp}}/{ends.astimezone(dt.timezone.utc):{stamp}}",
        "details": _description(booking, cancelled=False),
    }
    location = booking_location(booking)
    if location:
        query["location"] = location
    return f"{GOOGLE_CALENDAR_URL}?{urlencode(query)}"
