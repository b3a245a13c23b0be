"""Concurrency with real threads against the real database: no seat oversold, nothing done twice."""

import pytest
from django.core import mail

from bookings.models import BookingStatus
from bookings.services import ConfirmOutcome, booking_confirm
from tests.connect_mode import on_account
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


def test_30_paid_sessions_10_within_their_hold_20_after_it_lapsed_confirm_10_and_refund_20_once_each(
    stripe_emulator, settings
):
    """Holds keep 30 buyers from paying for 10 seats; a payment reported after its hold lapsed
    (all seats sold meanwhile) is still refunded exactly once, however many confirm at once."""
    from bookings.models import Refund
    from bookings.services import booking_expire, slot_capacity_change
    from payments import stripe_api
    from payments.checkout import checkout_start

    settings.STRIPE_MAX_NETWORK_RETRIES = 2
    # Thirty starts in a row: past the fair queue's 20 a second on a fast machine, the later ones
    # would wait in line with no session. The queue is not what this test is about.
    settings.STRIPE_REQUESTS_PER_SECOND = 0
    slot = make_slot(capacity=30)
    bookings = []
    for i in range(30):
        started = checkout_start(
            slot=slot,
            quantity=1,
            customer_email=f"racer{i}@example.com",
            customer_name=f"Racer {i}",
            success_url="http://testserver/checkout/success/?session_id={CHECKOUT_SESSION_ID}",
            cancel_url="http://testserver/",
        )
        stripe_emulator.pay_session(started.booking.checkout_session_id, "4242424242424242")
        bookings.append(started.booking)
    facts = [stripe_api.checkout_facts(b.checkout_session_id, stripe_account=b.stripe_account_id) for b in bookings]
    # 20 holds lapse before their payment is heard of, and the time shrinks to the 10 still held.
    for late in bookings[10:]:
        booking_expire(booking=late)
    slot_capacity_change(slot=slot, capacity=10)

    results = run_concurrently([lambda f=f: booking_confirm(facts=f) for f in facts])

    assert not [r for r in results if isinstance(r, BaseException)], results
    outcomes = [r.outcome for r in results]
    slot.refresh_from_db()
    assert outcomes.count(ConfirmOutcome.CONFIRMED) == 10
    assert outcomes.count(ConfirmOutcome.SOLD_OUT_REFUND_DUE) == 20
    assert slot.seats_left == 0
    statuses = sorted(b.status for b in type(bookings[0]).objects.filter(slot=slot))
    assert statuses == ["confirmed"] * 10 + ["refunded"] * 20
    stripe_refunds = list(
        stripe_api.stripe_client().v1.refunds.list(params={"limit": 100}, options=on_account(bookings[0])).auto_paging_iter()
    )
    refunded_intents = [r.payment_intent for r in stripe_refunds]
    assert len(refunded_intents) == 20 == len(set(refunded_intents))
    assert Refund.objects.filter(reason="sold_out").count() == 20
    assert len([m for m in mail.outbox if "sold out" in m.subject]) == 20
    assert len([m for m in mail.outbox if "You're booked" in m.subject]) == 10
