"""Writes of the booking domain.

Every change of a booking's status goes through `booking_transition`. Seats are taken only by
`booking_confirm` and given back only with a transition out of `confirmed`, in the same
transaction. Side effects (e-mails, refunds at the payment provider) run after commit and are
idempotent, so running them again (a retried webhook, `reconcile`) never repeats them.
"""

import logging
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from bookings import notifications
from bookings.gateway import CheckoutFacts, PaymentGatewayError, payment_gateway
from bookings.models import Booking, BookingStatus, Refund, RefundReason, RefundStatus, Slot

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
    S.CANCELLED: frozenset(),
}


class BookingError(Exception):
    """A request the domain refuses; the message is a sentence to show to the person who asked."""


class PaymentFactsMismatch(Exception):
    """The provider's session does not describe this booking: never confirm on it."""


class RefundNotCreated(Exception):
    """The provider did not create a refund this time; it stays due and will be asked again."""


class IllegalTransition(Exception):
    pass


def booking_transition(booking: Booking, to_status: str, **fields) -> bool:
    """Move a booking, locked by the caller inside a transaction, to `to_status`.

    The only function that changes a booking's status. The update is conditional on the status
    the caller saw, so a stale instance changes nothing and returns False.
    """
    from_status = booking.status
    if to_status not in ALLOWED_TRANSITIONS[from_status]:
        raise IllegalTransition(f"A booking cannot go from {from_status} to {to_status}.")
    now = timezone.now()
    changed = Booking.objects.filter(pk=booking.pk, status=from_status).update(
        status=to_status, updated_at=now, **fields
    )
    if not changed:
        return False
    booking.status = to_status
    booking.updated_at = now
    for name, value in fields.items():
        if not hasattr(value, "resolve_expression"):
            setattr(booking, name, value)
    log.info(
        "booking_transition booking=%s from=%s to=%s slot=%s session=%s payment_intent=%s customer=%s refund=%s",
        booking.pk,
        from_status,
        to_status,
        booking.slot_id,
        booking.checkout_session_id or "-",
        booking.payment_intent_id or "-",
        booking.stripe_customer_id or "-",
        booking.refund_id or "-",
    )
    return True


def _locked(booking_id: int) -> Booking:
    return Booking.objects.select_for_update().get(pk=booking_id)


# Starting a booking


def booking_start(*, slot: Slot, quantity: int, customer_email: str, customer_name: str) -> Booking:
    """Create a pending booking for a checkout. Takes no seat: seats are taken when payment is confirmed."""
    max_quantity = settings.BOOKING_MAX_QUANTITY
    if not 1 <= quantity <= max_quantity:
        raise BookingError(f"Choose between 1 and {max_quantity} seats.")
    slot = Slot.objects.select_related("listing").get(pk=slot.pk)
    if slot.is_cancelled or not slot.is_on_sale or not slot.listing.is_active:
        raise BookingError("This time is no longer on sale. Please pick another one.")
    if slot.starts_at <= timezone.now():
        raise BookingError("This time has already started. Please pick a later one.")
    if slot.seats_left == 0:
        raise BookingError("This time is sold out. Please pick another one.")
    if quantity > slot.seats_left:
        seats = "seat is" if slot.seats_left == 1 else "seats are"
        raise BookingError(f"Only {slot.seats_left} {seats} left at this time. Please choose fewer.")
    booking = Booking.objects.create(
        slot=slot,
        quantity=quantity,
        customer_email=customer_email,
        customer_name=customer_name,
        amount_total=slot.listing.price_amount * quantity,
        currency=slot.listing.currency,
    )
    log.info("booking_started booking=%s slot=%s quantity=%s", booking.pk, slot.pk, quantity)
    return booking


def booking_reference(booking: Booking) -> str:
    """The reference a checkout session carries back to us (its `client_reference_id`)."""
    return f"booking-{booking.pk}"


def booking_checkout_attach(*, booking: Booking, session_id: str, expires_at, customer_id: str) -> None:
    """Record the checkout session opened for a pending booking."""
    Booking.objects.filter(pk=booking.pk, checkout_session_id__isnull=True).update(
        checkout_session_id=session_id,
        checkout_expires_at=expires_at,
        stripe_customer_id=customer_id,
        updated_at=timezone.now(),
    )
    booking.checkout_session_id = session_id
    booking.checkout_expires_at = expires_at
    booking.stripe_customer_id = customer_id


def booking_checkout_abandon(*, booking: Booking) -> bool:
    """A checkout that could not be opened: the pending booking expires at once."""
    with transaction.atomic():
        locked = _locked(booking.pk)
        if locked.status != S.PENDING or locked.checkout_session_id:
            return False
        return booking_transition(locked, S.EXPIRED)


# Confirming: the one transaction both the webhook and the polled success page call


class ConfirmOutcome(StrEnum):
    CONFIRMED = "confirmed"
    SOLD_OUT_REFUND_DUE = "sold_out_refund_due"
    SOLD_OUT_NOTHING_CHARGED = "sold_out_nothing_charged"
    ALREADY_DONE = "already_done"
    NOT_PAID_YET = "not_paid_yet"
    EXPIRED = "expired"
    UNKNOWN_SESSION = "unknown_session"


@dataclass(frozen=True)
class ConfirmResult:
    outcome: ConfirmOutcome
    booking: Booking | None


def _booking_for_session(facts: CheckoutFacts, *, lock: bool = False) -> Booking | None:
    # Locking fetches what the confirmation e-mail needs too, so that it is sent without another read.
    bookings = (
        Booking.objects.select_for_update(of=("self",)).select_related("slot__listing__merchant")
        if lock
        else Booking.objects.all()
    )
    try:
        return bookings.get(checkout_session_id=facts.session_id)
    except Booking.DoesNotExist:
        pass
    # The session was opened but we crashed before storing its id: its reference still finds the booking.
    reference = facts.client_reference_id or ""
    if reference.startswith("booking-") and reference[8:].isdigit():
        return bookings.filter(pk=int(reference[8:]), checkout_session_id__isnull=True).first()
    return None


def _check_payment_facts(booking: Booking, facts: CheckoutFacts) -> None:
    if facts.client_reference_id != booking_reference(booking):
        raise PaymentFactsMismatch(
            f"Session {facts.session_id} names {facts.client_reference_id!r}, not booking {booking.pk}."
        )
    if facts.metadata_booking_id is not None and facts.metadata_booking_id != str(booking.pk):
        raise PaymentFactsMismatch(f"Session {facts.session_id} metadata names booking {facts.metadata_booking_id}.")
    if (facts.currency or "").lower() != booking.currency:
        raise PaymentFactsMismatch(f"Session {facts.session_id} is in {facts.currency}, booking in {booking.currency}.")
    if facts.amount_subtotal != booking.amount_total:
        raise PaymentFactsMismatch(
            f"Session {facts.session_id} is for {facts.amount_subtotal}, booking costs {booking.amount_total}."
        )
    if facts.amount_total is None or not 0 <= facts.amount_total <= booking.amount_total:
        raise PaymentFactsMismatch(f"Session {facts.session_id} total {facts.amount_total} is not a valid payment.")
    if facts.is_settled and facts.amount_total > 0 and not facts.payment_intent_id:
        raise PaymentFactsMismatch(f"Session {facts.session_id} is paid but names no PaymentIntent.")


def booking_confirm(*, facts: CheckoutFacts) -> ConfirmResult:
    """Settle a booking from its checkout session: confirm it and take its seats, exactly once.

    In one transaction: only a pending booking moves; seats are taken only if enough are left
    (a conditional decrement, with the database's check constraint as the last guard); a paid
    booking that finds its slot sold out becomes `refund_due` (or `cancelled` when nothing was
    paid). Whoever comes second gets ALREADY_DONE and changes nothing. E-mails and refunds run
    after commit. Raises PaymentFactsMismatch when the session does not describe the booking.
    """
    if facts.status == "expired" or not facts.is_settled:
        booking = _booking_for_session(facts)
        if booking is None:
            return ConfirmResult(ConfirmOutcome.UNKNOWN_SESSION, None)
        _check_payment_facts(booking, facts)
        if facts.status == "expired":
            return booking_expire(booking=booking)
        return ConfirmResult(ConfirmOutcome.NOT_PAID_YET, booking)

    with transaction.atomic():
        booking = _booking_for_session(facts, lock=True)
        if booking is None:
            return ConfirmResult(ConfirmOutcome.UNKNOWN_SESSION, None)
        _check_payment_facts(booking, facts)
        if booking.status not in (S.PENDING, S.EXPIRED):
            return ConfirmResult(ConfirmOutcome.ALREADY_DONE, booking)
        payment = {
            "checkout_session_id": facts.session_id,
            "payment_intent_id": facts.payment_intent_id or "",
            "stripe_customer_id": facts.customer_id or booking.stripe_customer_id,
            "amount_paid": facts.amount_total,
        }
        seats_taken = Slot.objects.filter(
            pk=booking.slot_id, cancelled_at__isnull=True, seats_left__gte=booking.quantity
        ).update(seats_left=F("seats_left") - booking.quantity)
        if seats_taken:
            booking_transition(booking, S.CONFIRMED, confirmed_at=timezone.now(), **payment)
            # A booking just confirmed has no refunds: its only follow-up is the confirmation e-mail.
            transaction.on_commit(partial(notifications.booking_confirmation_send, booking=booking))
            return ConfirmResult(ConfirmOutcome.CONFIRMED, booking)
        elif facts.amount_total > 0:
            booking_transition(booking, S.REFUND_DUE, **payment)
            Refund.objects.create(booking=booking, amount=facts.amount_total, reason=RefundReason.SOLD_OUT)
            outcome = ConfirmOutcome.SOLD_OUT_REFUND_DUE
        else:
            booking_transition(booking, S.CANCELLED, **payment)
            outcome = ConfirmOutcome.SOLD_OUT_NOTHING_CHARGED
        transaction.on_commit(partial(booking_follow_up, booking_id=booking.pk))
    return ConfirmResult(outcome, booking)


def booking_expire(*, booking: Booking) -> ConfirmResult:
    """The checkout session expired or its payment failed: a pending booking expires. No seat was taken."""
    with transaction.atomic():
        booking = _locked(booking.pk)
        if booking.status != S.PENDING:
            return ConfirmResult(ConfirmOutcome.ALREADY_DONE, booking)
        booking_transition(booking, S.EXPIRED)
    return ConfirmResult(ConfirmOutcome.EXPIRED, booking)


# Refunds


def _refund_open(booking: Booking, *, amount: int, reason: str) -> Refund:
    if not 1 <= amount <= booking.amount_refundable:
        raise BookingError(f"A refund must be between 1 and {booking.amount_refundable} (what is left to refund).")
    return Refund.objects.create(booking=booking, amount=amount, reason=reason)


def _release_seats(booking: Booking) -> None:
    Slot.objects.filter(pk=booking.slot_id).update(seats_left=F("seats_left") + booking.quantity)


def booking_refund(*, booking: Booking, amount: int | None = None) -> Refund | None:
    """A merchant refunds a confirmed booking, fully (the default) or in part.

    A full refund gives the seats back and moves the booking to `refund_due` until the provider
    has the refund; a partial one leaves the booking confirmed. A booking paid with a 100% code
    has nothing to refund and is cancelled. The refund itself is asked for after commit.
    """
    with transaction.atomic():
        booking = _locked(booking.pk)
        if booking.status != S.CONFIRMED:
            raise BookingError("Only a confirmed booking can be refunded.")
        refundable = booking.amount_refundable
        amount = refundable if amount is None else amount
        if refundable == 0:
            booking_transition(booking, S.CANCELLED)
            _release_seats(booking)
            refund = None
        elif amount == refundable:
            refund = _refund_open(booking, amount=amount, reason=RefundReason.MERCHANT)
            booking_transition(booking, S.REFUND_DUE)
            _release_seats(booking)
        else:
            refund = _refund_open(booking, amount=amount, reason=RefundReason.MERCHANT)
        transaction.on_commit(partial(booking_follow_up, booking_id=booking.pk, raise_refund_errors=False))
    return refund


@dataclass(frozen=True)
class SlotCancellation:
    bookings_cancelled: int
    refunds_opened: int
    already_cancelled: bool


def slot_cancel(*, slot: Slot) -> SlotCancellation:
    """Cancel a slot: stop selling it and refund every confirmed booking of it, once.

    Safe to run again: a second run finds no confirmed booking left and only asks again for
    refunds the provider has not created yet. A booking still paying when the slot is cancelled
    is refunded when its payment arrives (it finds the slot cancelled, as if sold out).
    """
    with transaction.atomic():
        slot = Slot.objects.select_for_update().get(pk=slot.pk)
        already_cancelled = slot.cancelled_at is not None
        if not already_cancelled:
            Slot.objects.filter(pk=slot.pk).update(cancelled_at=timezone.now(), is_on_sale=False)
        booking_ids = list(slot.bookings.filter(status=S.CONFIRMED).order_by("pk").values_list("pk", flat=True))
        refunds_opened = 0
        for booking_id in booking_ids:
            booking = _locked(booking_id)
            if booking.status != S.CONFIRMED:
                continue
            if booking.amount_refundable:
                _refund_open(booking, amount=booking.amount_refundable, reason=RefundReason.SLOT_CANCELLED)
                booking_transition(booking, S.REFUND_DUE)
                refunds_opened += 1
            else:
                booking_transition(booking, S.CANCELLED)
            _release_seats(booking)
        pending_refunds = Refund.objects.filter(booking__slot=slot, status=RefundStatus.REQUESTED)
        follow_ups = set(booking_ids) | set(pending_refunds.values_list("booking_id", flat=True))
        for booking_id in sorted(follow_ups):
            transaction.on_commit(partial(booking_follow_up, booking_id=booking_id, raise_refund_errors=False))
    log.info("slot_cancelled slot=%s bookings=%s refunds=%s", slot.pk, len(booking_ids), refunds_opened)
    return SlotCancellation(len(booking_ids), refunds_opened, already_cancelled)


_PROVIDER_REFUND_STATUS = {
    "succeeded": RefundStatus.SUCCEEDED,
    "pending": RefundStatus.PENDING,
    "requires_action": RefundStatus.PENDING,
    "failed": RefundStatus.FAILED,
    "canceled": RefundStatus.FAILED,
}


REFUND_SUBMIT_LEASE = timedelta(seconds=120)


class RefundInProgress(RefundNotCreated):
    """Another process is asking the provider for this refund right now."""


def refund_submit(*, refund_id: int) -> Refund:
    """Ask the provider for a recorded refund, never creating two.

    One process at a time holds the refund's lease. The first attempt uses a key derived from
    the booking, so the SDK's own retries and a lost answer are replayed by Stripe; a later
    attempt first looks for a refund an earlier one created, and only then asks with a new key.
    Raises RefundNotCreated when the provider refused or could not be reached; the refund stays
    requested for the next try (a webhook retry or `reconcile`).
    """
    now = timezone.now()
    claimed = (
        Refund.objects.filter(pk=refund_id, status=RefundStatus.REQUESTED)
        .filter(Q(submit_lease_until__isnull=True) | Q(submit_lease_until__lt=now))
        .update(submit_lease_until=now + REFUND_SUBMIT_LEASE, attempts=F("attempts") + 1)
    )
    refund = Refund.objects.select_related("booking").get(pk=refund_id)
    if not claimed:
        if refund.status == RefundStatus.REQUESTED:
            raise RefundInProgress(f"Refund {refund.pk} is being asked for by another process.")
        return refund
    booking = refund.booking
    try:
        receipt = payment_gateway().refund_create(
            payment_intent_id=booking.payment_intent_id,
            amount=refund.amount,
            idempotency_key=refund.idempotency_key(refund.attempts),
            metadata={"booking_id": str(booking.pk), "refund_id": str(refund.pk), "reason": refund.reason},
            look_first=refund.attempts > 1,
        )
    except PaymentGatewayError as error:
        Refund.objects.filter(pk=refund.pk).update(submit_lease_until=None, last_error=str(error)[:1000])
        log.warning(
            "refund_not_created booking=%s refund=%s attempt=%s retryable=%s error=%s",
            booking.pk,
            refund.pk,
            refund.attempts,
            error.retryable,
            str(error)[:200],
        )
        if not error.retryable:
            refund_record_failure(refund_id=refund.pk, failure_reason=str(error)[:255])
        raise RefundNotCreated(str(error)) from error
    return refund_record_created(
        refund_id=refund.pk, receipt_id=receipt.refund_id, status=receipt.status, failure_reason=receipt.failure_reason
    )


def refund_record_created(*, refund_id: int, receipt_id: str, status: str, failure_reason: str = "") -> Refund:
    """Record that the provider created a refund; counts its amount as refunded exactly once."""
    with transaction.atomic():
        booking = _locked(Refund.objects.values_list("booking_id", flat=True).get(pk=refund_id))
        refund = Refund.objects.select_for_update().get(pk=refund_id)
        if refund.status != RefundStatus.REQUESTED:
            return refund
        refund.stripe_refund_id = receipt_id
        refund.status = RefundStatus.PENDING
        refund.submit_lease_until = None
        refund.save(update_fields=["stripe_refund_id", "status", "submit_lease_until", "updated_at"])
        Booking.objects.filter(pk=booking.pk).update(amount_refunded=F("amount_refunded") + refund.amount)
        booking.amount_refunded += refund.amount
        if booking.status in (S.REFUND_DUE, S.REFUND_FAILED) and booking.amount_refunded == booking.amount_paid:
            booking_transition(booking, S.REFUNDED, refund_id=receipt_id)
        else:
            Booking.objects.filter(pk=booking.pk).update(refund_id=receipt_id)
        transaction.on_commit(partial(booking_follow_up, booking_id=booking.pk, raise_refund_errors=False))
    return refund_record_update(refund_id=refund_id, status=status, failure_reason=failure_reason)


def refund_record_update(*, refund_id: int, status: str, failure_reason: str = "") -> Refund:
    """Record what the provider now says of a created refund (it can fail days later)."""
    new_status = _PROVIDER_REFUND_STATUS.get(status)
    if new_status == RefundStatus.FAILED:
        return refund_record_failure(refund_id=refund_id, failure_reason=failure_reason or status)
    with transaction.atomic():
        refund = Refund.objects.select_for_update().get(pk=refund_id)
        if new_status == RefundStatus.SUCCEEDED and refund.status == RefundStatus.PENDING:
            refund.status = RefundStatus.SUCCEEDED
            refund.save(update_fields=["status", "updated_at"])
    return refund


def refund_record_failure(*, refund_id: int, failure_reason: str) -> Refund:
    """A refund failed at the provider (at once, or later). Its amount is no longer counted as
    refunded, a fully refunded booking becomes `refund_failed`, and the merchant is alerted."""
    with transaction.atomic():
        booking = _locked(Refund.objects.values_list("booking_id", flat=True).get(pk=refund_id))
        refund = Refund.objects.select_for_update().get(pk=refund_id)
        if refund.status == RefundStatus.FAILED:
            return refund
        refund.submit_lease_until = None
        was_counted = refund.status in (RefundStatus.PENDING, RefundStatus.SUCCEEDED)
        refund.status = RefundStatus.FAILED
        refund.failure_reason = failure_reason[:255]
        refund.save(update_fields=["status", "failure_reason", "submit_lease_until", "updated_at"])
        if was_counted:
            Booking.objects.filter(pk=booking.pk).update(amount_refunded=F("amount_refunded") - refund.amount)
            booking.amount_refunded -= refund.amount
        if booking.status in (S.REFUND_DUE, S.REFUNDED):
            booking_transition(booking, S.REFUND_FAILED)
        transaction.on_commit(partial(booking_follow_up, booking_id=booking.pk, raise_refund_errors=False))
    log.warning("refund_failed booking=%s refund=%s reason=%s", booking.pk, refund.pk, failure_reason[:100])
    return refund


def booking_refund_retry(*, booking: Booking) -> Refund:
    """A merchant asks again for the refund of a booking whose refund failed."""
    with transaction.atomic():
        booking = _locked(booking.pk)
        if booking.status != S.REFUND_FAILED:
            raise BookingError("Only a booking whose refund failed can be refunded again.")
        refund = _refund_open(booking, amount=booking.amount_refundable, reason=RefundReason.MERCHANT)
        booking_transition(booking, S.REFUND_DUE)
        transaction.on_commit(partial(booking_follow_up, booking_id=booking.pk, raise_refund_errors=False))
    return refund


# After commit


def booking_follow_up(*, booking_id: int, raise_refund_errors: bool = True) -> None:
    """Do what a booking's state still asks for: refunds to request, e-mails to send.

    Idempotent: each e-mail is claimed by a conditional update before it is sent and each
    refund is asked for with its own idempotency key, so running this again repeats nothing.
    With `raise_refund_errors`, a refund the provider did not create raises RefundNotCreated
    (the webhook then answers 500 so that Stripe retries).
    """
    bookings = Booking.objects.select_related("slot__listing__merchant__user")
    booking = bookings.get(pk=booking_id)
    refunds = list(booking.refunds.all())
    refund_error = None
    requested = [refund.pk for refund in refunds if refund.status == RefundStatus.REQUESTED]
    for refund_id in requested:
        try:
            refund_submit(refund_id=refund_id)
        except RefundNotCreated as error:
            refund_error = error
    if requested:
        booking = bookings.get(pk=booking_id)
        refunds = list(booking.refunds.all())
    if booking.status == S.CONFIRMED and booking.confirmation_email_sent_at is None:
        notifications.booking_confirmation_send(booking=booking)
    if booking.status == S.CANCELLED and booking.cancellation_email_sent_at is None:
        notifications.booking_cancelled_send(booking=booking)
    for refund in refunds:
        if refund.status in (RefundStatus.PENDING, RefundStatus.SUCCEEDED) and refund.customer_notified_at is None:
            notifications.refund_notice_send(refund=refund, booking=booking)
        elif refund.status == RefundStatus.FAILED and refund.merchant_alerted_at is None:
            notifications.refund_failed_alert_send(refund=refund, booking=booking)
    if refund_error is not None and raise_refund_errors:
        raise refund_error
