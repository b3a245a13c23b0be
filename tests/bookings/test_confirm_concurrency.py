"""Concurrency with real threads against the real database: no seat oversold, nothing done twice."""

import pytest
from django.core import mail

from bookings.models import BookingStatus
from bookings.services import ConfirmOutcome, booking_confirm
from tests.concurrency import run_concurrently
from tests.factories import make_booking, make_slot, paid_facts

pytestmark = pytest.mark.django_db(transaction=True)


def test_20_threads_confirming_one_session_confirm_it_once_and_send_one_email():
    slot = make_slot(capacity=5)
    booking = make_booking(slot=slot, quantity=2)
    facts = paid_facts(booking)

    results = run_concurrently([lambda: booking_confirm(facts=facts)] * 20)

    outcomes = [r.outcome for r in results]
    booking.refresh_from_db()
    slot.refresh_from_db()
    assert outcomes.count(ConfirmOutcome.CONFIRMED) == 1
    assert outcomes.count(ConfirmOutcome.ALREADY_DONE) == 19
    assert booking.status == BookingStatus.CONFIRMED
    assert slot.seats_left == 3
    assert len(mail.outbox) == 1


def test_the_last_seat_goes_to_exactly_one_of_many_free_bookings():
    slot = make_slot(capacity=1)
    bookings = [make_booking(slot=slot) for _ in range(12)]
    free = [
        paid_facts(b, payment_status="no_payment_required", amount_total=0, payment_intent_id=None) for b in bookings
    ]

    results = run_concurrently([lambda f=f: booking_confirm(facts=f) for f in free])

    outcomes = [r.outcome for r in results]
    slot.refresh_from_db()
    assert outcomes.count(ConfirmOutcome.CONFIRMED) == 1
    assert outcomes.count(ConfirmOutcome.SOLD_OUT_NOTHING_CHARGED) == 11
    assert slot.seats_left == 0
