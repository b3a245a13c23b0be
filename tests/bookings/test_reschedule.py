"""A customer moves their booking to another time of the same listing: seats taken and returned in
one transaction, held seats counted as taken, the payment kept, the customer e-mailed the new
time once; every refusal a sentence that changes nothing; two reschedules into the last seat
race on PostgreSQL with real threads (one wins, no oversell, no deadlock)."""

import datetime as dt
import zoneinfo

import pytest
from django.core import mail
from django.db import connection
from django.utils import timezone

from bookings.models import Booking, BookingStatus, Slot
from bookings.services import BookingError, booking_follow_up, booking_reschedule, booking_start
from tests.concurrency import run_concurrently
from tests.factories import make_confirmed_booking, make_listing, make_merchant, make_slot

pytestmark = pytest.mark.django_db

PARIS = zoneinfo.ZoneInfo("Europe/Paris")


@pytest.fixture
def paris_listing(db):
    merchant = make_merchant(timezone_name="Europe/Paris", display_name="Canal Tours")
    return make_listing(merchant=merchant, title="Canal cruise", cancel_free_hours=24, cancel_late_keep_percent=100)


def seats(*slots):
    return [Slot.objects.get(pk=slot.pk).seats_left for slot in slots]


def test_a_move_takes_the_new_seats_returns_the_old_keeps_the_payment_and_emails_the_new_time_once(
    paris_listing, django_capture_on_commit_callbacks
):
    year = timezone.now().year + 1
    old = make_slot(listing=paris_listing, capacity=4, starts_at=dt.datetime(year, 6, 1, 9, 0, tzinfo=PARIS))
    new = make_slot(listing=paris_listing, capacity=4, starts_at=dt.datetime(year, 6, 2, 18, 30, tzinfo=PARIS))
    booking = make_confirmed_booking(slot=old, quantity=3)
    Booking.objects.filter(pk=booking.pk).update(confirmation_email_sent_at=timezone.now())  # told at payment
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        moved = booking_reschedule(booking=booking, to_slot_id=new.pk)
    booking_follow_up(booking_id=booking.pk)  # again: no second e-mail

    assert moved.slot_id == new.pk and moved.status == BookingStatus.CONFIRMED
    assert (moved.amount_paid, moved.amount_refunded, moved.reschedules) == (7500, 0, 1)
    assert seats(old, new) == [4, 1]
    assert [m.subject for m in mail.outbox] == ["Your booking is moved: Canal cruise"]
    body = mail.outbox[0].body
    assert f"When:      Wednesday 2 June {year}, 18:30 (Europe/Paris)" in body
    # The start is the only time of day an e-mail states: the policy in hours before it.
    assert "Cancellation: Free cancellation until 24 hours before the start; no refund after that." in body


def test_seats_held_by_open_checkouts_count_as_taken(paris_listing, stripe_settings_unset):
    old = make_slot(listing=paris_listing, capacity=3)
    new = make_slot(listing=paris_listing, capacity=2, starts_in=dt.timedelta(days=5))
    booking = make_confirmed_booking(slot=old, quantity=1)
    booking_start(slot=new, quantity=2, customer_email="payer@example.com", customer_name="Payer")  # holds both seats

    with pytest.raises(BookingError, match="That time has 0 free seats, and your booking needs 1. Choose another time."):
        booking_reschedule(booking=booking, to_slot_id=new.pk)
    assert seats(old, new) == [2, 0]
    booking.refresh_from_db()
    assert booking.slot_id == old.pk and booking.reschedules == 0


@pytest.mark.parametrize(
    ("target", "sentence"),
    [
        ("full", "That time has 1 free seat, and your booking needs 2. Choose another time."),
        ("past", "That time has already started. Choose a later one."),
        ("cancelled", "That time was cancelled by the host. Choose another one."),
        ("off_sale", "That time is not open for booking. Choose another one."),
        ("other_listing", "Choose one of the other times of this listing."),
        ("same", "Your booking is already at this time. Choose another one."),
        ("missing", "Choose one of the other times of this listing."),
    ],
)
def test_a_move_to_a_time_it_cannot_have_is_refused_and_changes_nothing(paris_listing, target, sentence):
    old = make_slot(listing=paris_listing, capacity=4)
    booking = make_confirmed_booking(slot=old, quantity=2)
    now = timezone.now()
    targets = {
        "full": lambda: make_slot(listing=paris_listing, capacity=3, seats_left=1, starts_in=dt.timedelta(days=4)),
        "past": lambda: make_slot(listing=paris_listing, capacity=3, starts_at=now - dt.timedelta(hours=1)),
        "cancelled": lambda: make_slot(listing=paris_listing, capacity=3, cancelled_at=now, starts_in=dt.timedelta(days=4)),
        "off_sale": lambda: make_slot(listing=paris_listing, capacity=3, is_on_sale=False, starts_in=dt.timedelta(days=4)),
        "other_listing": lambda: make_slot(capacity=3, starts_in=dt.timedelta(days=4)),
        "same": lambda: old,
        "missing": lambda: Slot(pk=10**9),
    }
    to_slot = targets[target]()
    before = {s.pk: s.seats_left for s in Slot.objects.all()}

    with pytest.raises(BookingError, match=sentence):
        booking_reschedule(booking=booking, to_slot_id=to_slot.pk)

    assert {s.pk: s.seats_left for s in Slot.objects.all()} == before
    booking.refresh_from_db()
    assert booking.slot_id == old.pk and booking.reschedules == 0


def test_a_move_after_the_deadline_or_of_a_cancelled_booking_or_without_self_service_is_refused(paris_listing):
    late = make_confirmed_booking(slot=make_slot(listing=paris_listing, starts_in=dt.timedelta(hours=23)))
    later = make_slot(listing=paris_listing, starts_in=dt.timedelta(days=6))
    with pytest.raises(BookingError, match="The last moment to move this booking has passed."):
        booking_reschedule(booking=late, to_slot_id=later.pk)
    # Exactly at the deadline it is still allowed; a moment later it is not.
    deadline = late.slot.starts_at - dt.timedelta(hours=24)
    with pytest.raises(BookingError, match="The last moment"):
        booking_reschedule(booking=late, to_slot_id=later.pk, now=deadline + dt.timedelta(microseconds=1))
    assert booking_reschedule(booking=late, to_slot_id=later.pk, now=deadline).slot_id == later.pk

    none = make_listing(cancel_policy="none")
    fixed = make_confirmed_booking(slot=make_slot(listing=none))
    with pytest.raises(BookingError, match="cannot be cancelled or moved online"):
        booking_reschedule(booking=fixed, to_slot_id=make_slot(listing=none, starts_in=dt.timedelta(days=5)).pk)


@pytest.mark.django_db(transaction=True)
def test_two_reschedules_into_the_last_seat_one_wins_no_oversell_no_deadlock(paris_listing):
    if connection.vendor != "postgresql":
        pytest.skip("row locks are proven on PostgreSQL")
    rounds = 15
    for round_number in range(rounds):
        a_slot = make_slot(listing=paris_listing, capacity=2, starts_in=dt.timedelta(days=3, minutes=round_number))
        b_slot = make_slot(listing=paris_listing, capacity=2, starts_in=dt.timedelta(days=4, minutes=round_number))
        last = make_slot(listing=paris_listing, capacity=1, starts_in=dt.timedelta(days=5, minutes=round_number))
        a = make_confirmed_booking(slot=a_slot)
        b = make_confirmed_booking(slot=b_slot)

        results = run_concurrently(
            [
                lambda a=a, last=last: booking_reschedule(booking=a, to_slot_id=last.pk),
                lambda b=b, last=last: booking_reschedule(booking=b, to_slot_id=last.pk),
            ]
        )

        won = [r for r in results if not isinstance(r, Exception)]
        lost = [r for r in results if isinstance(r, Exception)]
        assert len(won) == 1 and len(lost) == 1, results
        assert isinstance(lost[0], BookingError) and str(lost[0]).startswith("That time has 0 free seats")
        last.refresh_from_db()
        assert last.seats_left == 0 and last.seats_sold == 1
        moved = won[0]
        stayed = b if moved.pk == a.pk else a
        stayed.refresh_from_db()
        assert seats(a_slot, b_slot) == ([2, 1] if moved.pk == a.pk else [1, 2])
        assert stayed.slot_id in (a_slot.pk, b_slot.pk)


@pytest.mark.django_db(transaction=True)
def test_two_reschedules_crossing_the_same_two_times_both_succeed_without_deadlock(paris_listing):
    if connection.vendor != "postgresql":
        pytest.skip("row locks are proven on PostgreSQL")
    for round_number in range(15):
        first = make_slot(listing=paris_listing, capacity=2, starts_in=dt.timedelta(days=3, minutes=round_number))
        second = make_slot(listing=paris_listing, capacity=2, starts_in=dt.timedelta(days=4, minutes=round_number))
        a = make_confirmed_booking(slot=first)
        b = make_confirmed_booking(slot=second)

        results = run_concurrently(
            [
                lambda a=a, second=second: booking_reschedule(booking=a, to_slot_id=second.pk),
                lambda b=b, first=first: booking_reschedule(booking=b, to_slot_id=first.pk),
            ]
        )

        assert not any(isinstance(r, Exception) for r in results), results
        assert seats(first, second) == [1, 1]
