"""Refunds and what follows a booking's change after commit: opening a refund with its recorded
reason, asking the payment provider for it once (a lease, an idempotency key derived from the
row), recording what the provider says, and the follow-up that sends what a booking still owes."""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from bookings import notifications, selectors, tasks
from bookings.background import enqueue_after_commit
from bookings.gateway import PaymentGatewayError, payment_gateway
from bookings.models import (
    Booking,
    Refund,
    RefundReason,
    RefundStatus,
)
from bookings.money import format_money
from bookings.services.waitlist import seats_free_and_pass_on
from bookings.services.transitions import (
    BookingError,
    RefundNotCreated,
    S,
    _locked,
    booking_transition,
    refund_transition,
)
from bookings.storefront_cache import booking_changed
from common.logs import log_event

log = logging.getLogger("bookings.transitions")

# Refunds


def refund_gives_fee_back(booking: Booking, reason: str) -> bool:
    """Whether a refund for `reason` also refunds the platform's fee (Connect's
    `refund_application_fee`): by CONNECT_REFUND_FEE_REASONS (default: sold out while paying, the
    hold gone, and a cancelled time, where the customer got nothing); a refund the merchant makes
    keeps it. Only a direct charge with a fee has one to refund."""
    if not booking.stripe_account_id or booking.application_fee_amount <= 0:
        return False
    return reason in settings.CONNECT_REFUND_FEE_REASONS


def _refund_open(booking: Booking, *, amount: int, reason: str, asked_again: bool = False) -> Refund:
    outstanding = selectors.booking_refund_outstanding(booking)
    if outstanding < 1:
        raise BookingError("Everything paid for this booking is already refunded or being refunded.")
    if not 1 <= amount <= outstanding:
        most = format_money(outstanding, booking.currency)
        least = format_money(1, booking.currency)
        raise BookingError(f"Enter a refund between {least} and {most} (what is left to refund).")
    refund = Refund.objects.create(
        booking=booking,
        amount=amount,
        reason=reason,
        asked_again=asked_again,
        refund_application_fee=refund_gives_fee_back(booking, reason),
    )
    booking_changed(booking.checkout_session_id)  # its status panel tells of refunds
    return refund


def _release_seats(booking: Booking) -> None:
    """Give a sold booking's seats back to its time, in the caller's transaction (booking locked),
    and offer them at once to the time's waitlist: the first waiting customers whose count fits."""
    seats_free_and_pass_on(slot_id=booking.slot_id, quantity=booking.quantity, held=False)


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
        refundable = selectors.booking_refund_outstanding(booking)
        amount = refundable if amount is None else amount
        if booking.amount_paid == 0:
            booking_transition(booking, S.CANCELLED, ended_reason=RefundReason.MERCHANT)
            _release_seats(booking)
            refund = None
        elif amount == refundable:
            refund = _refund_open(booking, amount=amount, reason=RefundReason.MERCHANT)
            booking_transition(booking, S.REFUND_DUE, ended_reason=RefundReason.MERCHANT)
            _release_seats(booking)
        else:
            refund = _refund_open(booking, amount=amount, reason=RefundReason.MERCHANT)
        enqueue_after_commit(tasks.booking_follow_up, booking_id=booking.pk, raise_refund_errors=False)
    return refund


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
            stripe_account=booking.stripe_account_id,
            refund_application_fee=refund.refund_application_fee,
        )
    except PaymentGatewayError as error:
        Refund.objects.filter(pk=refund.pk).update(submit_lease_until=None, last_error=str(error)[:1000])
        log_event(
            log,
            "refund_not_created",
            level=logging.WARNING,
            booking=booking.pk,
            refund=refund.pk,
            payment_intent=booking.payment_intent_id,
            attempt=refund.attempts,
            retryable=error.retryable,
            error=str(error)[:200],
        )
        if not error.retryable:
            refund_record_failure(refund_id=refund.pk, failure_reason=str(error)[:255])
        raise RefundNotCreated(str(error)) from error
    return refund_record_created(
        refund_id=refund.pk, receipt_id=receipt.refund_id, status=receipt.status, failure_reason=receipt.failure_reason
    )


def _locked_with_refund(refund_id: int) -> tuple[Booking, Refund]:
    """Lock a refund's booking, then the refund: the order every refund writer keeps."""
    booking = _locked(Refund.objects.values_list("booking_id", flat=True).get(pk=refund_id))
    refund = Refund.objects.select_for_update().get(pk=refund_id)
    refund.booking = booking  # refund_transition keeps this locked booking's amount_refunded
    return booking, refund


def _fee_share(booking: Booking, refund: Refund) -> int:
    """The part of the platform's fee a refund with `refund_application_fee` gives back, by
    Stripe's rule ("Create direct charges", refunds): in proportion to the part of the charge
    refunded, rounded down, and all of what is left of the fee once the charge is fully refunded."""
    if not refund.refund_application_fee or booking.application_fee_amount <= 0 or booking.amount_paid <= 0:
        return 0
    given_back = sum(
        booking.refunds.filter(status__in=(RefundStatus.PENDING, RefundStatus.SUCCEEDED)).values_list(
            "application_fee_refunded", flat=True
        )
    )
    left = max(0, booking.application_fee_amount - given_back)
    if booking.amount_refunded + refund.amount >= booking.amount_paid:
        return left
    return min(left, booking.application_fee_amount * refund.amount // booking.amount_paid)


def refund_record_created(*, refund_id: int, receipt_id: str, status: str, failure_reason: str = "") -> Refund:
    """Record that the provider created a refund; counts its amount as refunded exactly once, and
    (Connect) the part of the platform's fee it gave back."""
    with transaction.atomic():
        booking, refund = _locked_with_refund(refund_id)
        if refund.status != RefundStatus.REQUESTED:
            return refund
        refund_transition(
            refund,
            RefundStatus.PENDING,
            stripe_refund_id=receipt_id,
            submit_lease_until=None,
            application_fee_refunded=_fee_share(booking, refund),
        )
        if booking.status in (S.REFUND_DUE, S.REFUND_FAILED) and _all_owed_refunded(booking):
            booking_transition(booking, S.REFUNDED)
        enqueue_after_commit(tasks.booking_follow_up, booking_id=booking.pk, raise_refund_errors=False)
    return refund_record_update(refund_id=refund_id, status=status, failure_reason=failure_reason)


def _all_owed_refunded(booking: Booking) -> bool:
    """Whether an ended booking has got back all it is owed (`selectors.booking_refund_owed`):
    everything paid, or, cancelled by its customer under a policy that keeps a share, what the
    policy gave back, with no refund still waiting to be created."""
    if booking.amount_refunded == booking.amount_paid:
        return True
    return (
        booking.ended_reason == RefundReason.CUSTOMER_CANCELLED
        and not Refund.objects.filter(booking=booking, status=RefundStatus.REQUESTED).exists()
        and selectors.booking_refund_owed(booking) == 0
    )


def refund_record_update(*, refund_id: int, status: str, failure_reason: str = "") -> Refund:
    """Record what the provider now says of a created refund (it can fail days later)."""
    new_status = _PROVIDER_REFUND_STATUS.get(status)
    if new_status == RefundStatus.FAILED:
        return refund_record_failure(refund_id=refund_id, failure_reason=failure_reason or status)
    with transaction.atomic():
        booking, refund = _locked_with_refund(refund_id)
        if new_status == RefundStatus.SUCCEEDED and refund.status == RefundStatus.PENDING:
            refund_transition(refund, RefundStatus.SUCCEEDED)
    return refund


def refund_record_failure(*, refund_id: int, failure_reason: str) -> Refund:
    """A refund failed at the provider (at once, or later). Its amount is no longer counted as
    refunded; an ended booking whose customer is now owed money back (`booking_refund_owed`)
    becomes `refund_failed`, and the merchant is alerted. That includes a booking its customer
    cancelled with nothing more to refund because the merchant's refund covered what the policy
    gives back: when that refund fails, the policy's share is owed again."""
    with transaction.atomic():
        booking, refund = _locked_with_refund(refund_id)
        if refund.status == RefundStatus.FAILED:
            return refund
        refund_transition(
            refund, RefundStatus.FAILED, failure_reason=failure_reason[:255], submit_lease_until=None
        )
        if booking.status in (S.REFUND_DUE, S.REFUNDED, S.CANCELLED) and selectors.booking_refund_owed(booking) > 0:
            booking_transition(booking, S.REFUND_FAILED)
        enqueue_after_commit(tasks.booking_follow_up, booking_id=booking.pk, raise_refund_errors=False)
    log_event(
        log,
        "refund_failed",
        level=logging.WARNING,
        booking=booking.pk,
        refund=refund.pk,
        stripe_refund=refund.stripe_refund_id,
        reason=failure_reason[:100],
    )
    return refund


def booking_refund_retry(*, booking: Booking) -> Refund:
    """A merchant asks again for the refund of a booking whose refund failed: what its customer is
    owed (`booking_refund_owed`: all that is left, or what a customer's cancellation gave back
    under its terms). The new refund keeps the failed one's reason, so the customer is told again
    why the money comes back."""
    with transaction.atomic():
        booking = _locked(booking.pk)
        if booking.status != S.REFUND_FAILED:
            raise BookingError("Only a booking whose refund failed can be refunded again.")
        failed = booking.refunds.filter(status=RefundStatus.FAILED).order_by("-pk").first()
        reason = failed.reason if failed else (booking.ended_reason or RefundReason.MERCHANT)
        refund = _refund_open(booking, amount=selectors.booking_refund_owed(booking), reason=reason, asked_again=True)
        booking_transition(booking, S.REFUND_DUE)
        enqueue_after_commit(tasks.booking_follow_up, booking_id=booking.pk, raise_refund_errors=False)
    return refund


def booking_refunds_resubmit(*, booking: Booking) -> bool:
    """Ask the provider again, now, for the refunds of a booking that are recorded but not created
    yet (the provider was unreachable). Never creates a refund twice. Returns True when nothing
    is left to ask for."""
    try:
        booking_follow_up(booking_id=booking.pk, raise_refund_errors=True)
    except RefundNotCreated:
        return False
    return True


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
    if booking.status == S.CONFIRMED and booking.reschedules > booking.reschedules_notified:
        notifications.booking_rescheduled_send(booking=booking)
    if booking.cancelled_by_customer_at is not None and booking.merchant_cancel_notice_sent_at is None:
        notifications.customer_cancelled_merchant_send(booking=booking)
    for refund in refunds:
        if refund.status in (RefundStatus.PENDING, RefundStatus.SUCCEEDED) and refund.customer_notified_at is None:
            notifications.refund_notice_send(refund=refund, booking=booking)
        elif refund.status == RefundStatus.FAILED:
            if refund.merchant_alerted_at is None:
                notifications.refund_failed_alert_send(refund=refund, booking=booking)
            if refund.customer_notified_at is not None and refund.customer_told_failed_at is None:
                notifications.refund_failed_customer_send(refund=refund, booking=booking)
    if refund_error is not None and raise_refund_errors:
        raise refund_error
