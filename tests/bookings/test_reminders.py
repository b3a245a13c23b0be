"""Reminder e-mails (bookings/services/reminders.py): due the listing's number of hours before the
start, sent once per booking even by racing workers, never to a booking that is not confirmed,
and not at all to one confirmed after its reminder time; what the reminder says."""

import datetime as dt
import threading

import pytest
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend

from bookings import selectors, tasks
from bookings.models import Booking, BookingStatus, Listing, PlaceKind, Slot
from bookings.notifications import booking_reminder_send
from bookings.services import reminders_send
from tests.concurrency import run_concurrently
from tests.factories import make_booking, make_confirmed_booking, make_listing, make_slot
from tests.zoned import CLOCKS, zoned_slot

pytestmark = pytest.mark.django_db

HOUR = dt.timedelta(hours=1)
SECOND = dt.timedelta(seconds=1)


def confirmed(slot: Slot, *, confirmed_at: dt.datetime, **fields) -> Booking:
    booking = make_confirmed_booking(slot=slot, **fields)
    Booking.objects.filter(pk=booking.pk).update(confirmed_at=confirmed_at)
    booking.refresh_from_db()
    return booking


def reminded() -> list[str]:
    return [message.to[0] for message in mail.outbox if message.subject.startswith("Reminder:")]


@pytest.fixture
def day_ahead(stripe_settings_unset):
    """A slot three days ahead whose listing reminds 24 hours before, and its start."""
    slot = make_slot(listing=make_listing(reminder_hours=24), starts_in=dt.timedelta(days=3))
    mail.outbox.clear()
    return slot, slot.starts_at


def test_a_new_listing_reminds_24_hours_before_by_default():
    assert make_listing().reminder_hours == 24


def test_the_reminder_is_sent_from_exactly_its_time_and_once(day_ahead):
    slot, start = day_ahead
    booking = confirmed(slot, confirmed_at=start - 48 * HOUR)

    assert reminders_send(now=start - 24 * HOUR - SECOND) == 0
    assert reminders_send(now=start - 24 * HOUR) == 1
    assert reminders_send(now=start - 24 * HOUR + 5 * SECOND) == 0
    assert reminders_send(now=start - HOUR) == 0

    assert reminded() == [booking.customer_email]
    booking.refresh_from_db()
    assert booking.reminder_sent_at is not None


def test_a_booking_confirmed_exactly_at_the_reminder_time_is_reminded(day_ahead):
    slot, start = day_ahead
    booking = confirmed(slot, confirmed_at=start - 24 * HOUR)

    assert reminders_send(now=start - 24 * HOUR) == 1
    assert reminded() == [booking.customer_email]


def test_a_booking_confirmed_after_the_reminder_time_is_never_reminded(day_ahead):
    slot, start = day_ahead
    confirmed(slot, confirmed_at=start - 24 * HOUR + SECOND)

    for now in (start - 24 * HOUR + SECOND, start - 12 * HOUR, start - SECOND):
        assert reminders_send(now=now) == 0
    assert reminded() == []


def test_no_reminder_once_the_time_has_started_even_if_the_runs_stopped_until_then(day_ahead):
    slot, start = day_ahead
    late = confirmed(slot, confirmed_at=start - 48 * HOUR)

    assert reminders_send(now=start) == 0
    assert reminders_send(now=start - SECOND) == 1  # a run a second before still sends it
    assert reminded() == [late.customer_email]


def test_a_listing_with_no_reminder_sends_none(day_ahead):
    slot, start = day_ahead
    Listing.objects.filter(pk=slot.listing_id).update(reminder_hours=0)
    confirmed(slot, confirmed_at=start - 72 * HOUR)

    assert reminders_send(now=start - HOUR) == 0


@pytest.mark.parametrize("hours", [1, 3, 168])
def test_each_lead_time_is_honoured(hours, stripe_settings_unset):
    slot = make_slot(listing=make_listing(reminder_hours=hours), starts_in=dt.timedelta(days=9))
    confirmed(slot, confirmed_at=slot.starts_at - 200 * HOUR)

    assert reminders_send(now=slot.starts_at - hours * HOUR - SECOND) == 0
    assert reminders_send(now=slot.starts_at - hours * HOUR) == 1


@pytest.mark.parametrize(
    "status", [BookingStatus.PENDING, BookingStatus.EXPIRED, BookingStatus.CANCELLED, BookingStatus.REFUND_DUE, BookingStatus.REFUNDED]
)
def test_never_for_a_booking_that_is_not_confirmed(status, day_ahead):
    slot, start = day_ahead
    booking = confirmed(slot, confirmed_at=start - 48 * HOUR)
    Booking.objects.filter(pk=booking.pk).update(status=status)
    make_booking(slot=slot)  # and one still paying

    assert reminders_send(now=start - HOUR) == 0
    assert reminded() == []


def test_never_for_a_cancelled_time(day_ahead):
    slot, start = day_ahead
    confirmed(slot, confirmed_at=start - 48 * HOUR)
    Slot.objects.filter(pk=slot.pk).update(cancelled_at=start - 30 * HOUR)

    assert reminders_send(now=start - HOUR) == 0


def test_a_booking_refunded_after_it_was_found_due_is_not_reminded(day_ahead):
    slot, start = day_ahead
    booking = confirmed(slot, confirmed_at=start - 48 * HOUR)
    (found,) = selectors.bookings_due_reminder(now=start - HOUR)
    Booking.objects.filter(pk=booking.pk).update(status=BookingStatus.REFUNDED)

    assert booking_reminder_send(booking=found) is False  # the claim checks the status again
    assert reminded() == []


def test_a_booking_moved_to_another_time_after_it_was_found_due_is_not_reminded_of_the_old_one(day_ahead):
    slot, start = day_ahead
    booking = confirmed(slot, confirmed_at=start - 48 * HOUR)
    (found,) = selectors.bookings_due_reminder(now=start - HOUR)
    later = make_slot(listing=slot.listing, starts_in=dt.timedelta(days=10))
    Booking.objects.filter(pk=booking.pk).update(slot=later)

    assert booking_reminder_send(booking=found) is False
    assert Booking.objects.get(pk=booking.pk).reminder_sent_at is None


def test_a_mail_server_failure_releases_the_claim_and_the_next_run_sends_it(day_ahead, monkeypatch):
    slot, start = day_ahead
    booking = confirmed(slot, confirmed_at=start - 48 * HOUR)
    real_send = EmailBackend.send_messages
    failures = iter([True])

    def flaky(self, messages):
        if next(failures, False):
            raise ConnectionRefusedError("the mail server is down")
        return real_send(self, messages)

    monkeypatch.setattr(EmailBackend, "send_messages", flaky)

    assert reminders_send(now=start - 2 * HOUR) == 0
    assert Booking.objects.get(pk=booking.pk).reminder_sent_at is None
    assert reminders_send(now=start - 2 * HOUR + dt.timedelta(minutes=1)) == 1
    assert reminded() == [booking.customer_email]


@pytest.mark.parametrize("clock_name", sorted(CLOCKS))
def test_the_reminder_states_the_time_on_the_merchants_clock_the_place_and_the_booking_link(clock_name, settings):
    settings.SITE_URL = "https://slotbook.example"
    clock = CLOCKS[clock_name]
    slot = zoned_slot(clock, display_name="Atelier Lumière")
    Listing.objects.filter(pk=slot.listing_id).update(
        place_kind=PlaceKind.ADDRESS, place_text="12 Quai des Belges, Marseille", reminder_hours=24
    )
    booking = confirmed(slot, confirmed_at=slot.starts_at - 100 * HOUR, customer_name="Ada")
    mail.outbox.clear()

    assert reminders_send(now=slot.starts_at - 23 * HOUR) == 1

    (message,) = mail.outbox
    html = message.alternatives[0][0]
    assert message.subject == f"Reminder: {slot.listing.title}"
    assert message.to == [booking.customer_email]
    wall = clock.wall
    day = f"{wall:%A} {wall.day} {wall:%B} {wall.year}"
    assert f"starts {day} at {clock.hhmm} ({clock.zone})" in message.body
    assert f"When:      {clock.long} ({clock.zone})" in message.body
    assert "Where:     12 Quai des Belges, Marseille" in message.body
    assert "Map:       https://www.openstreetmap.org/search?query=12+Quai+des+Belges%2C+Marseille" in message.body
    assert f"Your booking: https://slotbook.example/b/{booking.public_token}/" in message.body
    assert f"{clock.hhmm} ({clock.zone})" in html
    assert "https://www.openstreetmap.org/search?query=12+Quai+des+Belges%2C+Marseille" in html
    assert f"https://slotbook.example/b/{booking.public_token}/" in html
    assert message.reply_to == [slot.listing.merchant.support_email]


def test_the_reminder_of_an_online_time_carries_its_link(day_ahead):
    slot, start = day_ahead
    Listing.objects.filter(pk=slot.listing_id).update(place_kind=PlaceKind.ONLINE, online_url="https://meet.example.com/x")
    confirmed(slot, confirmed_at=start - 48 * HOUR)

    reminders_send(now=start - 2 * HOUR)

    (message,) = mail.outbox
    assert "Where:     Online: https://meet.example.com/x" in message.body
    assert 'href="https://meet.example.com/x"' in message.alternatives[0][0]


@pytest.mark.django_db(transaction=True)
def test_two_workers_running_the_task_at_once_send_each_reminder_once(stripe_settings_unset, monkeypatch):
    """Real threads, each with its own database connection (PostgreSQL with DATABASE_URL). Both
    find every booking due before either claims one, so each booking is raced for."""
    slot = make_slot(listing=make_listing(reminder_hours=3), capacity=30, starts_in=dt.timedelta(hours=2))
    bookings = [confirmed(slot, confirmed_at=slot.starts_at - 48 * HOUR) for _ in range(20)]
    mail.outbox.clear()
    found = selectors.bookings_due_reminder
    both_found = threading.Barrier(2)

    def found_then_wait(*, now):
        due = list(found(now=now))
        both_found.wait(timeout=30)
        return due

    monkeypatch.setattr(selectors, "bookings_due_reminder", found_then_wait)
    sent_by = []
    real_send = booking_reminder_send

    def counting_send(*, booking):
        sent = real_send(booking=booking)
        if sent:
            sent_by.append(threading.get_ident())
        return sent

    monkeypatch.setattr("bookings.notifications.booking_reminder_send", counting_send)

    results = run_concurrently([tasks.reminders_send, tasks.reminders_send])

    assert results == [None, None]
    assert sorted(reminded()) == sorted(b.customer_email for b in bookings)  # each once
    assert len(sent_by) == 20
    assert Booking.objects.filter(slot=slot, reminder_sent_at__isnull=False).count() == 20
    assert list(found(now=slot.starts_at - HOUR)) == []  # and a later run finds nothing left
