"""A customer's cancel and move wired to the rest of the booking: seats freed go to the waitlist
(the first in line is e-mailed an offer), the calendar entry is moved (REQUEST, same UID, higher
SEQUENCE) or cancelled (METHOD:CANCEL), and the reminder is owed again for the new time unless
its moment has already passed."""

import datetime as dt
import zoneinfo

import icalendar
import pytest
from django.core import mail
from django.utils import timezone

from bookings.calendar import booking_calendar_uid
from bookings.models import Booking, BookingStatus, RefundReason, Slot, WaitlistStatus
from bookings.services import booking_customer_cancel, booking_reschedule, reminders_send, waitlist_join
from tests.factories import make_confirmed_booking, make_listing, make_merchant, make_slot

pytestmark = pytest.mark.django_db(transaction=True)  # e-mails and offers go after commit

PARIS = zoneinfo.ZoneInfo("Europe/Paris")
KOLKATA = zoneinfo.ZoneInfo("Asia/Kolkata")
HOUR = dt.timedelta(hours=1)


def listing_in(zone: str, **fields):
    merchant = make_merchant(timezone_name=zone, display_name="Canal Tours")
    fields = {"title": "Canal cruise", "cancel_free_hours": 24, "cancel_late_keep_percent": 100, **fields}
    return make_listing(merchant=merchant, **fields)


def join(slot: Slot, name: str):
    return waitlist_join(slot=slot, quantity=1, customer_email=f"{name.lower()}@example.com", customer_name=name)


def offers_to(address: str) -> list:
    return [m for m in mail.outbox if m.subject.startswith("Seats are free for you") and m.to == [address]]


def calendar_of(message) -> tuple[icalendar.Calendar, icalendar.Event]:
    parts = [part for part in message.message().walk() if part.get_content_type() == "text/calendar"]
    assert len(parts) == 1, [part.get_content_type() for part in message.message().walk()]
    calendar = icalendar.Calendar.from_ical(parts[0].get_payload(decode=True))
    (event,) = calendar.walk("VEVENT")
    assert parts[0].get_param("method") == calendar["METHOD"]
    return calendar, event


def test_a_customer_cancel_offers_the_seat_to_the_first_waiting_customer_by_email(stripe_settings_unset):
    slot = make_slot(listing=listing_in("Europe/Paris"), capacity=1)
    booking = make_confirmed_booking(slot=slot)
    ada, bob = join(slot, "Ada"), join(slot, "Bob")
    mail.outbox.clear()

    booking_customer_cancel(booking=booking, expected_refund=booking.amount_paid)

    ada.refresh_from_db()
    bob.refresh_from_db()
    slot.refresh_from_db()
    assert (ada.status, bob.status) == (WaitlistStatus.OFFERED, WaitlistStatus.WAITING)
    assert (slot.seats_sold, slot.seats_held, slot.seats_left) == (0, 1, 0)
    [offer] = offers_to("ada@example.com")
    assert "/waitlist/offer/" in offer.body and "Canal cruise" in offer.subject
    assert offers_to("bob@example.com") == []


def test_a_move_offers_the_old_seats_to_the_old_times_waitlist(stripe_settings_unset):
    listing = listing_in("Asia/Kolkata")
    old = make_slot(listing=listing, capacity=2, starts_in=dt.timedelta(days=5))
    new = make_slot(listing=listing, capacity=4, starts_in=dt.timedelta(days=6))
    booking = make_confirmed_booking(slot=old, quantity=2)
    ada = join(old, "Ada")
    mail.outbox.clear()

    booking_reschedule(booking=booking, to_slot_id=new.pk)

    ada.refresh_from_db()
    old.refresh_from_db()
    new.refresh_from_db()
    assert ada.status == WaitlistStatus.OFFERED and ada.offer_hold.slot_id == old.pk
    assert (old.seats_sold, old.seats_held, old.seats_left) == (0, 1, 1)
    assert (new.seats_sold, new.seats_left) == (2, 2)
    assert len(offers_to("ada@example.com")) == 1


def test_the_move_email_carries_the_same_calendar_entry_at_the_new_time_with_a_higher_sequence(stripe_settings_unset):
    year = timezone.now().year + 1
    listing = listing_in("Europe/Paris")
    # The new time is after Paris moves its clocks back: the entry's start is still the slot's.
    old = make_slot(listing=listing, starts_at=dt.datetime(year, 10, 1, 9, 0, tzinfo=PARIS))
    new = make_slot(listing=listing, starts_at=dt.datetime(year, 11, 2, 18, 30, tzinfo=PARIS))
    booking = make_confirmed_booking(slot=old)
    _, confirmation_event = calendar_of(next(m for m in mail.outbox if m.subject.startswith("You're booked")))
    mail.outbox.clear()

    booking_reschedule(booking=booking, to_slot_id=new.pk)
    booking_reschedule(booking=Booking.objects.get(pk=booking.pk), to_slot_id=old.pk)
    booking_reschedule(booking=Booking.objects.get(pk=booking.pk), to_slot_id=new.pk)

    moves = [m for m in mail.outbox if m.subject == "Your booking is moved: Canal cruise"]
    assert len(moves) == 3
    sequences = []
    for message, slot in zip(moves, [new, old, new]):
        calendar, event = calendar_of(message)
        assert calendar["METHOD"] == "REQUEST" and str(event["STATUS"]) == "CONFIRMED"
        assert str(event["UID"]) == str(confirmation_event["UID"]) == booking_calendar_uid(booking)
        assert event.start == slot.starts_at
        assert event.end - event.start == dt.timedelta(minutes=listing.duration_minutes)
        sequences.append(event["SEQUENCE"])
    assert confirmation_event["SEQUENCE"] == 0 and sequences == [1, 2, 3]
    assert f"booking-{booking.pk}.ics moves the entry already in your calendar" in moves[0].body
    assert Booking.objects.get(pk=booking.pk).calendar_sequence == 3


def test_a_customer_cancel_sends_a_cancel_for_the_calendar_entry(stripe_settings_unset):
    slot = make_slot(listing=listing_in("Asia/Kolkata"), starts_in=dt.timedelta(hours=10))  # late: keep 100%
    booking = make_confirmed_booking(slot=slot)
    mail.outbox.clear()

    quote = booking_customer_cancel(booking=booking, expected_refund=0)

    assert quote.refund == 0
    booking.refresh_from_db()
    assert (booking.status, booking.ended_reason) == (BookingStatus.CANCELLED, RefundReason.CUSTOMER_CANCELLED)
    [to_customer] = [m for m in mail.outbox if m.to == [booking.customer_email]]
    assert to_customer.subject == "You cancelled your booking: Canal cruise"
    calendar, event = calendar_of(to_customer)
    assert (calendar["METHOD"], str(event["STATUS"]), event["SEQUENCE"]) == ("CANCEL", "CANCELLED", 1)
    assert str(event["UID"]) == booking_calendar_uid(booking) and event.start == slot.starts_at.replace(microsecond=0)


def test_after_a_move_the_reminder_comes_again_for_the_new_time_with_the_policy(stripe_settings_unset):
    listing = listing_in("Europe/Paris", reminder_hours=24)
    old = make_slot(listing=listing, starts_in=dt.timedelta(days=3))
    new = make_slot(listing=listing, starts_in=dt.timedelta(days=6))
    booking = make_confirmed_booking(slot=old)
    assert reminders_send(now=old.starts_at - 23 * HOUR) == 1  # the old time's reminder
    mail.outbox.clear()

    booking_reschedule(booking=booking, to_slot_id=new.pk)

    assert Booking.objects.get(pk=booking.pk).reminder_sent_at is None
    assert reminders_send(now=new.starts_at - 25 * HOUR) == 0  # not yet
    assert reminders_send(now=new.starts_at - 24 * HOUR) == 1
    assert reminders_send(now=new.starts_at - 23 * HOUR) == 0  # once
    [reminder] = [m for m in mail.outbox if m.subject == "Reminder: Canal cruise"]
    local = timezone.localtime(new.starts_at, PARIS)
    assert f"at {local:%H:%M} (Europe/Paris)" in reminder.body
    assert "Cancellation: Free cancellation until 24 hours before the start; no refund after that." in reminder.body


def test_a_move_to_a_time_whose_reminder_moment_has_passed_gets_no_reminder(stripe_settings_unset):
    listing = listing_in("Asia/Kolkata", reminder_hours=24)
    old = make_slot(listing=listing, starts_in=dt.timedelta(days=3))
    soon = make_slot(listing=listing, starts_in=10 * HOUR)
    booking = make_confirmed_booking(slot=old)
    mail.outbox.clear()

    booking_reschedule(booking=booking, to_slot_id=soon.pk)

    assert Booking.objects.get(pk=booking.pk).reminder_sent_at is not None
    assert reminders_send(now=timezone.now() + HOUR) == 0
    assert [m.subject for m in mail.outbox] == ["Your booking is moved: Canal cruise"]
