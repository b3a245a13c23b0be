"""Writes of the booking domain.

Every change of a booking's status goes through `booking_transition`. Seats are taken only by
`booking_confirm` and given back only with a transition out of `confirmed`, in the same
transaction. Side effects (e-mails, refunds at the payment provider) run after commit and are
idempotent, so running them again (a retried webhook, `reconcile`) never repeats them.
"""

import datetime as dt
import logging
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.text import slugify

from bookings import notifications, selectors, tasks
from bookings.background import enqueue_after_commit
from bookings.gateway import CheckoutFacts, PaymentGatewayError, payment_gateway
from common.logs import log_event
from bookings.models import (
    Booking,
    BookingStatus,
    Listing,
    Merchant,
    Refund,
    RefundReason,
    RefundStatus,
    Slot,
)
from bookings.money import SUPPORTED_CURRENCIES, format_money
from bookings.selectors import slot_series_plan
from bookings.storefront_cache import booking_changed
from bookings.timezones import validate_selectable_timezone

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
    """A request the domain refuses; the message is a sentence to show to the person who asked.

    The sentence is the service's error contract: every door (dashboard form, admin, command)
    shows the same refusal in the same words. `field` names the input it is about, if one."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field


class PaymentFactsMismatch(Exception):
    """The provider's session does not describe this booking: never confirm on it."""


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
    log_event(log, "booking_started", booking=booking.pk, slot=slot.pk, quantity=quantity)
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
    SLOT_CANCELLED_REFUND_DUE = "slot_cancelled_refund_due"
    SLOT_CANCELLED_NOTHING_CHARGED = "slot_cancelled_nothing_charged"
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
    booking that finds its slot sold out, or cancelled by the merchant, becomes `refund_due` (or
    `cancelled` when nothing was paid) with that reason recorded. A slot whose sales stopped, or
    whose listing was archived, still happens: a payment that raced the stop is honoured while
    seats are left. Whoever comes second gets ALREADY_DONE and changes nothing. E-mails and refunds run
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

    result = _booking_confirm_paid(facts)
    if result.outcome == ConfirmOutcome.ALREADY_DONE and _refund_still_to_ask(result.booking):
        # The payment's news again (Stripe retrying the webhook that answered 500, a late poll):
        # the moment to ask once more for a refund the first attempt could not make, not a no-op.
        booking_follow_up(booking_id=result.booking.pk)
    return result


def _refund_still_to_ask(booking: Booking) -> bool:
    return Refund.objects.filter(booking=booking, status=RefundStatus.REQUESTED).exists()


def _booking_confirm_paid(facts: CheckoutFacts) -> ConfirmResult:
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
            enqueue_after_commit(tasks.booking_confirmation_send, booking_id=booking.pk)
            return ConfirmResult(ConfirmOutcome.CONFIRMED, booking)
        slot_cancelled = Slot.objects.filter(pk=booking.slot_id, cancelled_at__isnull=False).exists()
        reason = RefundReason.SLOT_CANCELLED if slot_cancelled else RefundReason.SOLD_OUT
        if facts.amount_total > 0:
            booking_transition(booking, S.REFUND_DUE, ended_reason=reason, **payment)
            Refund.objects.create(booking=booking, amount=facts.amount_total, reason=reason)
            outcome = (
                ConfirmOutcome.SLOT_CANCELLED_REFUND_DUE if slot_cancelled else ConfirmOutcome.SOLD_OUT_REFUND_DUE
            )
        else:
            booking_transition(booking, S.CANCELLED, ended_reason=reason, **payment)
            outcome = (
                ConfirmOutcome.SLOT_CANCELLED_NOTHING_CHARGED
                if slot_cancelled
                else ConfirmOutcome.SOLD_OUT_NOTHING_CHARGED
            )
        enqueue_after_commit(tasks.booking_follow_up, booking_id=booking.pk)
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
    outstanding = selectors.booking_refund_outstanding(booking)
    if outstanding < 1:
        raise BookingError("Everything paid for this booking is already refunded or being refunded.")
    if not 1 <= amount <= outstanding:
        most = format_money(outstanding, booking.currency)
        least = format_money(1, booking.currency)
        raise BookingError(f"Enter a refund between {least} and {most} (what is left to refund).")
    refund = Refund.objects.create(booking=booking, amount=amount, reason=reason)
    booking_changed(booking.checkout_session_id)  # its status panel tells of refunds
    return refund


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


@dataclass(frozen=True)
class SlotCancellation:
    bookings_cancelled: int
    refunds_opened: int
    already_cancelled: bool


def slot_cancel(*, slot: Slot) -> SlotCancellation:
    """Cancel a slot: stop selling it and refund every confirmed booking of it, once.

    Safe to run again: a second run finds no confirmed booking left and only asks again for
    refunds the provider has not created yet. After commit, the open checkouts of bookings still
    paying are expired at the provider (`checkouts_close`); a payment that arrives all the same
    is refunded with the cancellation as its reason.
    """
    # First the slot, in a transaction of its own: once it commits no confirmation can take a
    # seat, and every booking confirmed before it is visible below.
    with transaction.atomic():
        already_cancelled = not Slot.objects.filter(pk=slot.pk, cancelled_at__isnull=True).update(
            cancelled_at=timezone.now(), is_on_sale=False
        )
    # Then each booking in a transaction of its own that locks the booking before the slot, in
    # the order of `booking_confirm` and `booking_refund`, so that none of them can deadlock.
    booking_ids = list(
        Booking.objects.filter(slot_id=slot.pk, status=S.CONFIRMED).order_by("pk").values_list("pk", flat=True)
    )
    cancelled = refunds_opened = 0
    for booking_id in booking_ids:
        with transaction.atomic():
            booking = _locked(booking_id)
            if booking.status != S.CONFIRMED:
                continue
            outstanding = selectors.booking_refund_outstanding(booking)
            if outstanding:
                _refund_open(booking, amount=outstanding, reason=RefundReason.SLOT_CANCELLED)
                booking_transition(booking, S.REFUND_DUE, ended_reason=RefundReason.SLOT_CANCELLED)
                refunds_opened += 1
            elif booking.amount_refunded >= booking.amount_paid:
                booking_transition(booking, S.CANCELLED, ended_reason=RefundReason.SLOT_CANCELLED)
            else:
                # Refunds already asked for cover what is left: they finish the booking.
                booking_transition(booking, S.REFUND_DUE, ended_reason=RefundReason.SLOT_CANCELLED)
            _release_seats(booking)
            cancelled += 1
    pending_refunds = Refund.objects.filter(booking__slot_id=slot.pk, status=RefundStatus.REQUESTED)
    follow_ups = set(booking_ids) | set(pending_refunds.values_list("booking_id", flat=True))
    for booking_id in sorted(follow_ups):
        enqueue_after_commit(tasks.booking_follow_up, booking_id=booking_id, raise_refund_errors=False)
    enqueue_after_commit(tasks.checkouts_close, slot_id=slot.pk)
    log_event(log, "slot_cancelled", slot=slot.pk, bookings=cancelled, refunds=refunds_opened)
    return SlotCancellation(cancelled, refunds_opened, already_cancelled)


def checkouts_close(*, slot_id: int | None = None, listing_id: int | None = None) -> int:
    """Make unpayable the open checkout of every pending booking of a time that can no longer be
    sold (of one slot, one listing, or all), and settle each booking from what the provider then
    says: the session expired, so the booking expires; or the payment got there first, so it is
    confirmed while seats are left, or refunded with the time's cancellation as its reason.

    Asks the provider, so it runs after commit and never under a lock. A checkout the provider
    could not be asked about stays pending for `reconcile`, which calls this again. Returns the
    number of bookings settled.
    """
    settled = 0
    gateway = payment_gateway()
    for booking in selectors.pending_checkouts_unsellable(slot_id=slot_id, listing_id=listing_id):
        try:
            facts = gateway.checkout_expire(session_id=booking.checkout_session_id)
            booking_confirm(facts=facts)
        except PaymentGatewayError as error:
            log_event(log, "checkout_close_failed", level=logging.WARNING, booking=booking.pk, error=str(error)[:200])
            continue
        except PaymentFactsMismatch as error:
            log_event(log, "payment_facts_mismatch", level=logging.ERROR, booking=booking.pk, error=str(error))
            continue
        except RefundNotCreated:
            pass  # the booking is settled; its refund is asked for again by reconcile
        settled += 1
    if settled:
        log_event(log, "checkouts_closed", slot=slot_id, listing=listing_id, bookings=settled)
    return settled


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


def refund_record_created(*, refund_id: int, receipt_id: str, status: str, failure_reason: str = "") -> Refund:
    """Record that the provider created a refund; counts its amount as refunded exactly once."""
    with transaction.atomic():
        booking, refund = _locked_with_refund(refund_id)
        if refund.status != RefundStatus.REQUESTED:
            return refund
        refund_transition(refund, RefundStatus.PENDING, stripe_refund_id=receipt_id, submit_lease_until=None)
        if booking.status in (S.REFUND_DUE, S.REFUND_FAILED) and booking.amount_refunded == booking.amount_paid:
            booking_transition(booking, S.REFUNDED)
        enqueue_after_commit(tasks.booking_follow_up, booking_id=booking.pk, raise_refund_errors=False)
    return refund_record_update(refund_id=refund_id, status=status, failure_reason=failure_reason)


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
    refunded, a fully refunded booking becomes `refund_failed`, and the merchant is alerted."""
    with transaction.atomic():
        booking, refund = _locked_with_refund(refund_id)
        if refund.status == RefundStatus.FAILED:
            return refund
        refund_transition(
            refund, RefundStatus.FAILED, failure_reason=failure_reason[:255], submit_lease_until=None
        )
        if booking.status in (S.REFUND_DUE, S.REFUNDED):
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
    """A merchant asks again for the refund of a booking whose refund failed."""
    with transaction.atomic():
        booking = _locked(booking.pk)
        if booking.status != S.REFUND_FAILED:
            raise BookingError("Only a booking whose refund failed can be refunded again.")
        refund = _refund_open(booking, amount=selectors.booking_refund_outstanding(booking), reason=RefundReason.MERCHANT)
        booking_transition(booking, S.REFUND_DUE)
        enqueue_after_commit(tasks.booking_follow_up, booking_id=booking.pk, raise_refund_errors=False)
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


# Merchants, listings and slots
#
# Everything a merchant changes from the dashboard, apart from the booking lifecycle above.
# Each function checks what a form cannot know (the database's current state) and raises
# BookingError with a sentence to show next to the form.

SLOT_CAPACITY_MAX = 10_000
SERIES_MAX_SLOTS = 500
SERIES_MAX_DAYS = 366
SERIES_MAX_START_TIMES = 24
SLOT_HORIZON = timedelta(days=731)


def _check_timezone(name: str, *, current: str = "") -> None:
    try:
        validate_selectable_timezone(name, current=current)
    except ValidationError as error:
        raise BookingError(" ".join(error.messages)) from None


def merchant_create(
    *, username: str, email: str, password: str | None, display_name: str, timezone_name: str, support_email: str = ""
) -> Merchant:
    """Create a sign-in and its merchant together, or neither. Without a password the account
    gets an unusable one, and the merchant chooses theirs with a password reset e-mail."""
    user_model = get_user_model()
    if user_model.objects.filter(username__iexact=username).exists():
        raise BookingError(f"There is already an account named “{username}”. Choose another user name.")
    _check_timezone(timezone_name)
    with transaction.atomic():
        user = user_model.objects.create_user(username=username, email=email, password=password)
        if password is None:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        merchant = Merchant.objects.create(
            user=user, display_name=display_name, timezone=timezone_name, support_email=support_email
        )
    log_event(log, "merchant_created", merchant=merchant.pk, user=user.pk)
    return merchant


def merchant_update(*, merchant: Merchant, display_name: str, timezone_name: str, support_email: str) -> Merchant:
    """Change how a merchant is shown to customers and in which timezone they enter and read times."""
    _check_timezone(timezone_name, current=merchant.timezone)
    merchant.display_name = display_name
    merchant.timezone = timezone_name
    merchant.support_email = support_email
    merchant.save(update_fields=["display_name", "timezone", "support_email"])
    return merchant


def _listing_slug(title: str) -> str:
    base = slugify(title)[:100].strip("-") or "listing"
    slug, n = base, 1
    while Listing.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


def listing_create(
    *, merchant: Merchant, title: str, description: str, price_amount: int, currency: str, duration_minutes: int
) -> Listing:
    """Create an active listing with a unique slug made from its title (kept when it is renamed,
    so links to it keep working)."""
    if currency not in SUPPORTED_CURRENCIES:
        raise BookingError("Choose one of the currencies in the list.")
    for attempt in range(5):
        try:
            with transaction.atomic():
                listing = Listing.objects.create(
                    merchant=merchant,
                    slug=_listing_slug(title),
                    title=title,
                    description=description,
                    price_amount=price_amount,
                    currency=currency,
                    duration_minutes=duration_minutes,
                )
        except IntegrityError:
            if attempt == 4:
                raise
            continue  # another listing took the same slug a moment ago
        log_event(log, "listing_created", listing=listing.pk, merchant=merchant.pk)
        return listing
    raise AssertionError("unreachable")


def listing_update(
    *, listing: Listing, title: str, description: str, price_amount: int, currency: str, duration_minutes: int
) -> Listing:
    """Change a listing. Bookings already started keep the price and currency they were made at."""
    if currency not in SUPPORTED_CURRENCIES:
        raise BookingError("Choose one of the currencies in the list.")
    listing.title = title
    listing.description = description
    listing.price_amount = price_amount
    listing.currency = currency
    listing.duration_minutes = duration_minutes
    listing.save(update_fields=["title", "description", "price_amount", "currency", "duration_minutes", "updated_at"])
    return listing


def listing_archive(*, listing: Listing) -> bool:
    """Take a listing out of the catalog. Its slots and bookings stay. After commit the open
    checkouts of its times are expired at the provider (`checkouts_close`); a payment that
    raced the archiving is honoured while seats are left. Returns False when it was already
    archived."""
    changed = Listing.objects.filter(pk=listing.pk, is_active=True).update(is_active=False, updated_at=timezone.now())
    enqueue_after_commit(tasks.checkouts_close, listing_id=listing.pk)
    listing.is_active = False
    return bool(changed)


def listing_restore(*, listing: Listing) -> bool:
    """Put an archived listing back in the catalog. Returns False when it was already active."""
    changed = Listing.objects.filter(pk=listing.pk, is_active=False).update(is_active=True, updated_at=timezone.now())
    listing.is_active = True
    return bool(changed)


# The rules of a time's start, capacity and series. Public, so that the dashboard's forms call
# them instead of restating them; each raises BookingError with `field` set.


def validate_slot_start(starts_at: dt.datetime, *, now: dt.datetime) -> None:
    """A time starts in the future, within SLOT_HORIZON."""
    if starts_at <= now:
        raise BookingError("Choose a time in the future.", field="starts_at")
    if starts_at > now + SLOT_HORIZON:
        raise BookingError("Choose a time within the next two years.", field="starts_at")


def validate_capacity(capacity: int) -> None:
    """A time has between 1 and SLOT_CAPACITY_MAX seats."""
    if capacity < 1:
        raise BookingError("A time needs at least 1 seat.", field="capacity")
    if capacity > SLOT_CAPACITY_MAX:
        raise BookingError(f"A time can have at most {SLOT_CAPACITY_MAX:,} seats.", field="capacity")


def validate_capacity_floor(*, capacity: int, seats_sold: int) -> None:
    """A time's capacity never goes below the seats already sold."""
    if capacity < seats_sold:
        seats = "1 seat is" if seats_sold == 1 else f"{seats_sold} seats are"
        raise BookingError(f"{seats} already sold, so capacity cannot go below {seats_sold}.", field="capacity")


def validate_series_start_times(start_times: tuple[dt.time, ...]) -> None:
    """A series has between 1 and SERIES_MAX_START_TIMES start times a day."""
    if not start_times:
        raise BookingError("Enter at least one start time, such as 10:00.", field="start_times")
    if len(start_times) > SERIES_MAX_START_TIMES:
        raise BookingError(f"Enter at most {SERIES_MAX_START_TIMES} start times.", field="start_times")


def validate_series_range(*, first_day: dt.date, last_day: dt.date, today: dt.date) -> None:
    """A series starts today or later, ends on or after its first day, covers at most
    SERIES_MAX_DAYS days, and stays within SLOT_HORIZON. `today` is the merchant's."""
    if first_day < today:
        raise BookingError("Start the series today or later.", field="first_day")
    if first_day > today + SLOT_HORIZON:
        raise BookingError("Start the series within the next two years.", field="first_day")
    if last_day < first_day:
        raise BookingError("End the series on or after its first day.", field="last_day")
    if (last_day - first_day).days >= SERIES_MAX_DAYS:
        raise BookingError(
            f"A series can cover at most {SERIES_MAX_DAYS} days. Choose an earlier end.", field="last_day"
        )
    if last_day > today + SLOT_HORIZON:
        raise BookingError("End the series within the next two years.", field="last_day")


def slot_create(*, listing: Listing, starts_at: dt.datetime, capacity: int) -> Slot:
    """Add one time to a listing: in the future, at a time the listing does not already have."""
    validate_capacity(capacity)
    validate_slot_start(starts_at, now=timezone.now())
    if not listing.is_active:
        raise BookingError("This listing is archived. Restore it before adding times.")
    try:
        with transaction.atomic():
            slot = Slot.objects.create(listing=listing, starts_at=starts_at, capacity=capacity, seats_left=capacity)
    except IntegrityError:
        raise BookingError("This listing already has a time then. Choose another time.") from None
    log_event(log, "slot_created", slot=slot.pk, listing=listing.pk)
    return slot


@dataclass(frozen=True)
class SeriesCreated:
    created: list[Slot]
    skipped_existing: int


def slot_series_create(
    *,
    listing: Listing,
    weekdays: frozenset[int],
    start_times: tuple[dt.time, ...],
    first_day: dt.date,
    last_day: dt.date,
    capacity: int,
) -> SeriesCreated:
    """Create the slots of a recurring series (weekdays × start times × dates, in the merchant's
    timezone) in one transaction: all of them or none.

    Times that already exist are skipped, not doubled; so are times already past and wall-clock
    times a daylight-saving change skips. The series is planned again inside the transaction,
    so a time added since the preview is skipped too; one added at the very same moment by
    someone else makes the whole series fail with a sentence asking to preview again.
    """
    validate_capacity(capacity)
    validate_series_start_times(start_times)
    today = timezone.localtime(timezone.now(), listing.merchant.zone).date()
    validate_series_range(first_day=first_day, last_day=last_day, today=today)
    if not listing.is_active:
        raise BookingError("This listing is archived. Restore it before adding times.")
    try:
        with transaction.atomic():
            plan = slot_series_plan(
                listing=listing,
                weekdays=weekdays,
                start_times=start_times,
                first_day=first_day,
                last_day=last_day,
            )
            if not plan.new:
                raise BookingError("There is nothing to add: every time of this series already exists or has passed.")
            if len(plan.new) > SERIES_MAX_SLOTS:
                raise BookingError(
                    f"This series would make {len(plan.new)} times; one series can make at most {SERIES_MAX_SLOTS}. "
                    "Choose a shorter date range, or fewer days or start times."
                )
            slots = Slot.objects.bulk_create(
                [
                    Slot(listing=listing, starts_at=item.starts_at, capacity=capacity, seats_left=capacity)
                    for item in plan.new
                ]
            )
    except IntegrityError:
        raise BookingError(
            "Some of these times were added by someone else just now. Preview the series again."
        ) from None
    log_event(log, "slot_series_created", listing=listing.pk, slots=len(slots))
    return SeriesCreated(created=slots, skipped_existing=len(plan.existing))


def slot_capacity_change(*, slot: Slot, capacity: int) -> Slot:
    """Set a slot's capacity, never below the seats already sold.

    One conditional UPDATE moves capacity and seats left by the same difference, so a
    confirmation that takes seats at the same moment is never lost: either it comes first and
    the condition sees its seats sold, or it comes after and finds the new seats left.
    """
    validate_capacity(capacity)
    now = timezone.now()
    changed = Slot.objects.filter(
        pk=slot.pk, cancelled_at__isnull=True, starts_at__gt=now, capacity__lte=F("seats_left") + capacity
    ).update(capacity=capacity, seats_left=F("seats_left") + capacity - F("capacity"))
    fresh = Slot.objects.get(pk=slot.pk)
    slot.capacity, slot.seats_left, slot.cancelled_at = fresh.capacity, fresh.seats_left, fresh.cancelled_at
    if not changed:
        if fresh.is_cancelled:
            raise BookingError("This time is cancelled, so its capacity can no longer change.")
        if fresh.starts_at <= now:
            raise BookingError("This time has already started, so its capacity can no longer change.")
        validate_capacity_floor(capacity=capacity, seats_sold=fresh.seats_sold)
        # Seats given back between the refused update and this read: the floor has moved.
        raise BookingError("The seats sold changed just now. Check them and try again.", field="capacity")
    log_event(log, "slot_capacity_changed", slot=slot.pk, capacity=fresh.capacity, seats_left=fresh.seats_left)
    return slot


def slot_selling_set(*, slot: Slot, on_sale: bool) -> bool:
    """Stop or resume selling a slot. When sales stop, the open checkouts of the slot are expired
    at the provider after commit (`checkouts_close`); a payment that raced the stop is honoured
    while seats are left, since the time still happens. A cancelled slot cannot be put back on
    sale. Returns False when nothing changed."""
    if on_sale and slot.is_cancelled:
        raise BookingError("This time is cancelled and cannot be sold again. Add a new time instead.")
    selling = Slot.objects.filter(pk=slot.pk, cancelled_at__isnull=True).exclude(is_on_sale=on_sale)
    changed = selling.update(is_on_sale=on_sale)
    if not on_sale:
        enqueue_after_commit(tasks.checkouts_close, slot_id=slot.pk)
    slot.is_on_sale = on_sale if changed else Slot.objects.values_list("is_on_sale", flat=True).get(pk=slot.pk)
    return bool(changed)


def booking_refunds_resubmit(*, booking: Booking) -> bool:
    """Ask the provider again, now, for the refunds of a booking that are recorded but not created
    yet (the provider was unreachable). Never creates a refund twice. Returns True when nothing
    is left to ask for."""
    try:
        booking_follow_up(booking_id=booking.pk, raise_refund_errors=True)
    except RefundNotCreated:
        return False
    return True
