"""The refund's own state machine: every status change goes through `refund_transition`, which
keeps the booking's `amount_refunded` equal to the sum of its counted refunds."""

import pytest
from django.db import transaction

from bookings.models import Booking, Refund, RefundReason, RefundStatus
from bookings.services import REFUND_TRANSITIONS, IllegalTransition, refund_transition
from tests.factories import make_confirmed_booking

pytestmark = pytest.mark.django_db

R = RefundStatus
# The path that reaches each status from a fresh (requested) refund.
PATH_TO = {
    R.REQUESTED: [],
    R.PENDING: [R.PENDING],
    R.SUCCEEDED: [R.PENDING, R.SUCCEEDED],
    R.FAILED: [R.FAILED],
}
ALLOWED = [(from_status, to_status) for from_status, targets in REFUND_TRANSITIONS.items() for to_status in targets]


def locked(refund: Refund) -> Refund:
    refund = Refund.objects.select_for_update().get(pk=refund.pk)
    refund.booking = Booking.objects.select_for_update().get(pk=refund.booking_id)
    return refund


def move(refund: Refund, to_status: str, **fields) -> Refund:
    with transaction.atomic():
        refund = locked(refund)
        assert refund_transition(refund, to_status, **fields)
    return refund


def test_the_table_names_every_status_and_failed_is_final():
    assert set(REFUND_TRANSITIONS) == set(RefundStatus.values)
    assert REFUND_TRANSITIONS[R.FAILED] == frozenset()
    assert sorted(ALLOWED) == sorted(
        [(R.REQUESTED, R.PENDING), (R.REQUESTED, R.FAILED), (R.PENDING, R.SUCCEEDED), (R.PENDING, R.FAILED), (R.SUCCEEDED, R.FAILED)]
    )


@pytest.mark.parametrize(("from_status", "to_status"), ALLOWED, ids=[f"{a}->{b}" for a, b in ALLOWED])
def test_every_allowed_transition_moves_the_refund_and_keeps_amount_refunded(from_status, to_status):
    booking = make_confirmed_booking()  # paid 25.00
    refund = Refund.objects.create(booking=booking, amount=1000, reason=RefundReason.MERCHANT)
    for step in PATH_TO[from_status]:
        refund = move(refund, step, stripe_refund_id="re_table" if step == R.PENDING else refund.stripe_refund_id)

    moved = move(refund, to_status, failure_reason="declined" if to_status == R.FAILED else "")

    refund.refresh_from_db()
    booking.refresh_from_db()
    assert refund.status == to_status
    counted = 1000 if to_status in (R.PENDING, R.SUCCEEDED) else 0
    assert booking.amount_refunded == counted
    assert moved.booking.amount_refunded == counted  # the caller's locked instance agrees
    if to_status == R.FAILED:
        assert refund.failure_reason == "declined"


def test_an_illegal_transition_is_refused_and_changes_nothing():
    booking = make_confirmed_booking()
    refund = Refund.objects.create(booking=booking, amount=1000, reason=RefundReason.MERCHANT)
    refund = move(refund, R.FAILED, failure_reason="declined")

    with transaction.atomic(), pytest.raises(IllegalTransition, match="from failed to succeeded"):
        refund_transition(locked(refund), R.SUCCEEDED)
    with transaction.atomic(), pytest.raises(IllegalTransition, match="from requested to succeeded"):
        fresh = Refund.objects.create(booking=booking, amount=500, reason=RefundReason.MERCHANT)
        refund_transition(locked(fresh), R.SUCCEEDED)

    refund.refresh_from_db()
    booking.refresh_from_db()
    assert refund.status == R.FAILED
    assert booking.amount_refunded == 0
    assert Refund.objects.filter(status=R.SUCCEEDED).count() == 0


def test_a_stale_instance_changes_nothing():
    booking = make_confirmed_booking()
    refund = Refund.objects.create(booking=booking, amount=1000, reason=RefundReason.MERCHANT)
    with transaction.atomic():
        stale = locked(refund)
        move(refund, R.PENDING, stripe_refund_id="re_first")
        assert refund_transition(stale, R.PENDING, stripe_refund_id="re_second") is False

    refund.refresh_from_db()
    booking.refresh_from_db()
    assert (refund.status, refund.stripe_refund_id) == (R.PENDING, "re_first")
    assert booking.amount_refunded == 1000  # counted once, not twice
