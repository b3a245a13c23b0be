"""The two state machines of the domain: a booking's status and a refund's status.

Every change of either goes through `booking_transition` / `refund_transition`, which refuse a
move the table does not allow and make it with a conditional update, so a concurrent writer that
got there first wins and the loser changes nothing.
"""

import logging

from django.db.models import F
from django.utils import timezone

from bookings.models import (
    Booking,
    BookingStatus,
    Refund,
    RefundStatus,
)
from bookings.storefront_cache import booking_changed
from common.logs import log_event

log = logging.getLogger("bookings.transitions")

S = BookingStatus
ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({S.CONFIRMED, S.REFUND_DUE, S.CANCELLED, S.EXPIRED}),
    # Stripe never pays an expired session, but a payment reported after all must not be lost.
    S.EXPIRED: frozenset({S.CONFIRMED, S.REFUND_DUE, S.CANCELLED}),
    S.CONFIRMED: frozenset({S.REFUND_DUE, S.CANCELLED}),
    S.REFUND_DUE: frozenset({S.REFUNDED, S.REFUND_FAILED, S.CANCELLED}),
    S.REFUNDED: frozenset({S.REFUND_FAILED}),
    S.REFUND_FAILED: frozenset({S.REFUND_DUE, S.REFUNDED}),
    # A customer's cancellation that refunded nothing more, the merchant's refund covering what
    # the policy gives back: that refund can still fail.
    S.CANCELLED: frozenset({S.REFUND_FAILED}),
}


class BookingError(Exception):
    """A request the domain refuses; the message is a sentence to show to the person who asked.

    The sentence is the service's error contract: every door (dashboard form, admin, command)
    shows the same refusal in the same words. `field` names the input it is about, if one."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field


class PaymentFactsMismatch(Exception):
    """The provider's session does not describe this booking: never confirm on it."""


class PaymentAccountMismatch(PaymentFactsMismatch):
    """The session was read on (or its event came from) another Stripe account than the one the
    booking is paid on: it says nothing of this booking."""

    def __init__(self, *, session_id: str, booking_id: int, paid_on: str, told_on: str):
        super().__init__(
            f"Session {session_id} of account {told_on or 'platform'} names booking {booking_id}, "
            f"paid on {paid_on or 'the platform'}."
        )
        self.booking_id = booking_id
        self.paid_on = paid_on


class RefundNotCreated(Exception):
    """The provider did not create a refund this time; it stays due and will be asked again."""


class IllegalTransition(Exception):
    pass


def _status_move(row: Booking | Refund, table: dict[str, frozenset[str]], to_status: str, fields: dict) -> bool:
    """Move `row` along its transition table with an update conditional on the status it has."""
    from_status = row.status
    if to_status not in table[from_status]:
        raise IllegalTransition(f"A {row._meta.model_name} cannot go from {from_status} to {to_status}.")
    now = timezone.now()
    changed = type(row).objects.filter(pk=row.pk, status=from_status).update(status=to_status, updated_at=now, **fields)
    if not changed:
        return False
    row.status = to_status
    row.updated_at = now
    for name, value in fields.items():
        if not hasattr(value, "resolve_expression"):
            setattr(row, name, value)
    return True


def booking_transition(booking: Booking, to_status: str, **fields) -> bool:
    """Move a booking, locked by the caller inside a transaction, to `to_status`.

    The only function that changes a booking's status. The update is conditional on the status
    the caller saw, so a stale instance changes nothing and returns False.
    """
    from_status = booking.status
    if not _status_move(booking, ALLOWED_TRANSITIONS, to_status, fields):
        return False
    booking_changed(booking.checkout_session_id)
    log_event(
        log,
        "booking_transition",
        booking=booking.pk,
        from_status=from_status,
        to_status=to_status,
        slot=booking.slot_id,
        checkout_session=booking.checkout_session_id,
        payment_intent=booking.payment_intent_id,
        customer=booking.stripe_customer_id,
    )
    return True


R = RefundStatus
REFUND_TRANSITIONS: dict[str, frozenset[str]] = {
    # Created at the provider (pending or succeeded at once), or refused outright.
    R.REQUESTED: frozenset({R.PENDING, R.FAILED}),
    R.PENDING: frozenset({R.SUCCEEDED, R.FAILED}),
    # A refund can fail days after it succeeded; asking again opens a new Refund.
    R.SUCCEEDED: frozenset({R.FAILED}),
    R.FAILED: frozenset(),
}
# The statuses whose amount the provider has (for now) given back: counted in Booking.amount_refunded.
REFUND_COUNTED = frozenset({R.PENDING, R.SUCCEEDED})


def refund_transition(refund: Refund, to_status: str, **fields) -> bool:
    """Move a refund, locked with its booking by the caller inside a transaction, to `to_status`.

    The only function that changes a refund's status, and the only one that moves its booking's
    `amount_refunded`: up when the refund becomes counted, down when a counted one fails. The
    update is conditional on the status the caller saw, so a stale instance changes nothing and
    returns False. `refund.booking` must be the caller's locked booking.
    """
    from_status = refund.status
    if not _status_move(refund, REFUND_TRANSITIONS, to_status, fields):
        return False
    booking = refund.booking
    delta = (to_status in REFUND_COUNTED) - (from_status in REFUND_COUNTED)
    if delta:
        Booking.objects.filter(pk=booking.pk).update(amount_refunded=F("amount_refunded") + delta * refund.amount)
        booking.amount_refunded += delta * refund.amount
    booking_changed(booking.checkout_session_id)  # its status panel tells of refunds
    log_event(
        log,
        "refund_transition",
        refund=refund.pk,
        booking=booking.pk,
        from_status=from_status,
        to_status=to_status,
        stripe_refund=refund.stripe_refund_id,
    )
    return True


def _locked(booking_id: int) -> Booking:
    return Booking.objects.select_for_update().get(pk=booking_id)
