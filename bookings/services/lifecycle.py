"""The booking lifecycle: starting a booking, attaching its checkout, the one confirm transaction
both the webhook and the polled success page call, expiry, and closing the checkouts of times
that can no longer be sold."""

import logging
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from bookings import selectors, tasks
from bookings.background import enqueue_after_commit
from bookings.gateway import CheckoutFacts, PaymentGatewayError, payment_gateway
from bookings.money import platform_fee
from bookings.models import (
    Booking,
    Refund,
    RefundReason,
    RefundStatus,
    Slot,
    WaitlistEntry,
    WaitlistStatus,
)
from bookings.policies import booking_terms_fields, listing_terms
from bookings.services.holds import (
    hold_back_to_offer,
    hold_convert,
    hold_extend_to,
    hold_minutes,
    hold_release,
    hold_take,
    hold_take_over_offer,
)
from bookings.services.waitlist import _closed_refusal, _locked_entry, _offer_end, waitlist_offer_is_expired
from bookings.services.refunds import booking_follow_up, refund_gives_fee_back
from bookings.services.transitions import (
    BookingError,
    PaymentAccountMismatch,
    PaymentFactsMismatch,
    RefundNotCreated,
    S,
    _locked,
    booking_transition,
)
from common.logs import log_event

log = logging.getLogger("bookings.transitions")

# Starting a booking


def _start_refusal(slot: Slot, quantity: int) -> str:
    """Why a checkout of `quantity` seats of this slot cannot start now, or "" when it can."""
    if slot.is_cancelled or not slot.is_on_sale or not slot.listing.is_active:
        return "This time is no longer on sale. Please pick another one."
    if slot.starts_at <= timezone.now():
        return "This time has already started. Please pick a later one."
    if slot.seats_left == 0:
        if slot.seats_held:
            return (
                "This time is sold out for now: its last seats are held by people paying. "
                f"They may free up within {hold_minutes(slot.listing)} minutes, or pick another time."
            )
        return "This time is sold out. Please pick another one."
    if quantity > slot.seats_left:
        seats = "seat is" if slot.seats_left == 1 else "seats are"
        return f"Only {slot.seats_left} {seats} left at this time. Please choose fewer."
    return ""


NOT_TAKING_BOOKINGS = "{merchant} is not taking bookings yet. Please check back soon."


def merchant_payments_refusal(merchant) -> str:
    """Why a merchant's customers cannot pay now (Connect on and their connected account cannot
    take charges), or "" when they can."""
    if merchant.can_take_payments:
        return ""
    return NOT_TAKING_BOOKINGS.format(merchant=merchant.display_name)


def _payment_terms(listing, amount_total: int) -> dict:
    """Where a new booking is paid: with Connect, on the merchant's connected account (recorded on
    the booking, so later calls use it even if the merchant's account changes) with the platform's
    fee; without, on the platform's own account."""
    if not settings.CONNECT_ENABLED:
        return {}
    return {
        "stripe_account_id": listing.merchant.stripe_account_id,
        "application_fee_amount": platform_fee(amount_total),
    }


def booking_start(*, slot: Slot, quantity: int, customer_email: str, customer_name: str) -> Booking:
    """Create a pending booking for a checkout, holding its seats (`hold_take`) in the same
    transaction: either both exist or neither. The hold ends `hold_minutes` from now, unless the
    checkout session, once open, says later. Raises BookingError when the seats are not free."""
    max_quantity = settings.BOOKING_MAX_QUANTITY
    if not 1 <= quantity <= max_quantity:
        raise BookingError(f"Choose between 1 and {max_quantity} seats.")
    slot = Slot.objects.select_related("listing__merchant").get(pk=slot.pk)
    if refusal := merchant_payments_refusal(slot.listing.merchant) or _start_refusal(slot, quantity):
        raise BookingError(refusal)
    expires_at = timezone.now() + timedelta(minutes=hold_minutes(slot.listing))
    with transaction.atomic():
        booking = Booking.objects.create(
            slot=slot,
            quantity=quantity,
            customer_email=customer_email,
            customer_name=customer_name,
            amount_total=slot.listing.price_amount * quantity,
            currency=slot.listing.currency,
            # The policy shown before payment is the one this booking keeps.
            **booking_terms_fields(listing_terms(slot.listing)),
            **_payment_terms(slot.listing, slot.listing.price_amount * quantity),
        )
        hold = hold_take(booking=booking, expires_at=expires_at)
        if hold is None:
            transaction.set_rollback(True)
    if hold is None:
        # Someone else took or held the seats since the slot was read: say what is left now.
        slot = Slot.objects.select_related("listing").get(pk=slot.pk)
        raise BookingError(_start_refusal(slot, quantity) or "These seats were just taken. Please try again.")
    log_event(log, "booking_started", booking=booking.pk, slot=slot.pk, quantity=quantity)
    return booking


def waitlist_offer_refusal(entry: WaitlistEntry, *, now=None) -> str:
    """Why the seats offered to a waitlist entry cannot be paid for now, or "" when they can."""
    now = now or timezone.now()
    status = entry.status
    if status == WaitlistStatus.BOOKED:
        return "You have already used this offer: its seats went with the checkout you opened from it."
    if status == WaitlistStatus.LEFT:
        return "You left the waitlist for this time, so this offer has ended."
    if status == WaitlistStatus.CLOSED:
        return "This time was cancelled, so this offer has ended."
    if status == WaitlistStatus.LAPSED or waitlist_offer_is_expired(entry, now=now):
        return "This offer has expired: the seats were held for you until its end time and have passed to the next person in line."
    if status != WaitlistStatus.OFFERED:
        return "No seats are offered to you at this time yet."
    return _closed_refusal(entry.slot, now)


def booking_start_from_offer(*, entry: WaitlistEntry, customer_name: str) -> Booking:
    """Create a pending booking for the seats offered to a waitlist entry: the offer's hold becomes
    the booking's checkout hold in the same transaction (`hold_take_over_offer`), so the seats are
    never free in between, and the entry is used up. An offer whose time is up lapses here and
    passes on. Raises BookingError with the sentence to show when the offer cannot be taken up."""
    now = timezone.now()
    refusal = ""
    with transaction.atomic():
        entry = _locked_entry(entry.pk)
        slot = Slot.objects.select_related("listing__merchant").get(pk=entry.slot_id)
        entry.slot = slot
        if waitlist_offer_is_expired(entry, now=now):
            _offer_end(entry, status=WaitlistStatus.LAPSED, now=now)
        refusal = merchant_payments_refusal(slot.listing.merchant) or waitlist_offer_refusal(entry, now=now)
        if not refusal:
            booking = Booking.objects.create(
                slot=slot,
                quantity=entry.quantity,
                customer_email=entry.customer_email,
                customer_name=customer_name,
                amount_total=slot.listing.price_amount * entry.quantity,
                currency=slot.listing.currency,
                # As for any booking: the policy shown before payment is the one it keeps.
                **booking_terms_fields(listing_terms(slot.listing)),
                **_payment_terms(slot.listing, slot.listing.price_amount * entry.quantity),
            )
            expires_at = now + timedelta(minutes=hold_minutes(slot.listing))
            if hold_take_over_offer(booking=booking, offer=entry.offer_hold, expires_at=expires_at) is None:
                raise RuntimeError(f"Offer of waitlist entry {entry.pk} ended while the entry was locked.")
            WaitlistEntry.objects.filter(pk=entry.pk).update(status=WaitlistStatus.BOOKED, booking=booking, ended_at=now)
    if refusal:
        raise BookingError(refusal)
    log_event(log, "booking_started_from_offer", booking=booking.pk, entry=entry.pk, slot=slot.pk)
    return booking


def booking_reference(booking: Booking) -> str:
    """The reference a checkout session carries back to us (its `client_reference_id`)."""
    return f"booking-{booking.pk}"


def booking_checkout_attach(*, booking: Booking, session_id: str, expires_at, customer_id: str) -> None:
    """Record the checkout session opened for a pending booking; its hold ends with the session."""
    Booking.objects.filter(pk=booking.pk, checkout_session_id__isnull=True).update(
        checkout_session_id=session_id,
        checkout_expires_at=expires_at,
        stripe_customer_id=customer_id,
        updated_at=timezone.now(),
    )
    hold_extend_to(booking=booking, expires_at=expires_at)
    booking.checkout_session_id = session_id
    booking.checkout_expires_at = expires_at
    booking.stripe_customer_id = customer_id


def booking_hold_ensure(*, booking: Booking) -> bool:
    """A pending booking about to open its checkout late (it waited in the fair queue) still holds
    its seats, or holds them again now if its hold ended meanwhile and enough are free. False when
    it is no longer pending or the seats are gone; the caller then ends it."""
    with transaction.atomic():
        locked = _locked(booking.pk)
        if locked.status != S.PENDING or locked.checkout_session_id:
            return False
        if selectors.booking_open_hold(locked) is not None:
            return True
        slot = Slot.objects.select_related("listing").get(pk=locked.slot_id)
        if _start_refusal(slot, locked.quantity):
            return False
        expires_at = timezone.now() + timedelta(minutes=hold_minutes(slot.listing))
        return hold_take(booking=locked, expires_at=expires_at) is not None


def booking_checkout_abandon(*, booking: Booking) -> bool:
    """A checkout that could not be opened: the pending booking expires and its seats are
    released at once, in one transaction."""
    with transaction.atomic():
        locked = _locked(booking.pk)
        if locked.status != S.PENDING or locked.checkout_session_id:
            return False
        entry = (
            WaitlistEntry.objects.select_for_update()
            .filter(booking=locked, status=WaitlistStatus.BOOKED)
            .first()
        )
        if entry is not None:
            # Opened from a waitlist offer: the customer keeps the offer, for its own time (at
            # least a few minutes more), and may try again from the same link.
            until = max(entry.offered_at + timedelta(minutes=settings.WAITLIST_OFFER_MINUTES), timezone.now() + timedelta(minutes=5))
            offer = hold_back_to_offer(booking=locked, expires_at=until)
            if offer is not None:
                WaitlistEntry.objects.filter(pk=entry.pk).update(
                    status=WaitlistStatus.OFFERED, offer_hold=offer, booking=None, ended_at=None
                )
        else:
            hold_release(booking=locked)
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
    # A repeat of a payment whose refund Stripe has still to be asked for, left unasked because
    # the caller's transaction holds this one, where Stripe is never called (`in_callers_transaction`).
    refund_left_to_ask: bool = False


def _booking_for_session(facts: CheckoutFacts, *, lock: bool = False) -> Booking | None:
    # The booking alone: the confirmation e-mail's task reads its slot, listing and merchant itself.
    bookings = Booking.objects.select_for_update() if lock else Booking.objects.all()
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
    if facts.account is not None and facts.account != booking.stripe_account_id:
        raise PaymentAccountMismatch(
            session_id=facts.session_id, booking_id=booking.pk, paid_on=booking.stripe_account_id, told_on=facts.account
        )
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


def booking_confirm(*, facts: CheckoutFacts, in_callers_transaction: bool = False) -> ConfirmResult:
    """Settle a booking from its checkout session: confirm it and take its seats, exactly once.

    In one transaction: only a pending booking moves; its open hold becomes the sale (the seats
    never free in between); without one (it ended: a late payment) seats are taken only if enough are left
    (a conditional decrement, with the database's check constraint as the last guard); a paid
    booking that finds its slot sold out, or cancelled by the merchant, becomes `refund_due` (or
    `cancelled` when nothing was paid) with that reason recorded. A slot whose sales stopped, or
    whose listing was archived, still happens: a payment that raced the stop is honoured while
    seats are left. Whoever comes second gets ALREADY_DONE and changes nothing. E-mails and refunds run
    after commit. Raises PaymentFactsMismatch when the session does not describe the booking.

    A repeat of a payment whose refund is still owed asks Stripe for it again at once. A caller
    whose own transaction holds this one (the webhook's, which records the event with it) passes
    `in_callers_transaction=True`: it is told of such a refund instead (`refund_left_to_ask`), so
    that Stripe is never called under its uncommitted writes, and no savepoint is made, so an
    error raised here leaves the caller's whole transaction to roll back.
    """
    if facts.status == "expired" or not facts.is_settled:
        booking = _booking_for_session(facts)
        if booking is None:
            return ConfirmResult(ConfirmOutcome.UNKNOWN_SESSION, None)
        _check_payment_facts(booking, facts)
        if facts.status == "expired":
            return booking_expire(booking=booking)
        return ConfirmResult(ConfirmOutcome.NOT_PAID_YET, booking)

    result = _booking_confirm_paid(facts, savepoint=not in_callers_transaction)
    if result.outcome == ConfirmOutcome.ALREADY_DONE and _refund_still_to_ask(result.booking):
        # The payment's news again (Stripe retrying the webhook that answered 500, a late poll):
        # the moment to ask once more for a refund the first attempt could not make, not a no-op.
        if in_callers_transaction:
            return ConfirmResult(result.outcome, result.booking, refund_left_to_ask=True)
        booking_follow_up(booking_id=result.booking.pk)
    return result


def _refund_still_to_ask(booking: Booking) -> bool:
    return Refund.objects.filter(booking=booking, status=RefundStatus.REQUESTED).exists()


def _booking_confirm_paid(facts: CheckoutFacts, *, savepoint: bool) -> ConfirmResult:
    with transaction.atomic(savepoint=savepoint):
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
            # A code typed on Checkout may leave less to pay than the fee asked when it opened: the
            # provider collects at most what was charged (nothing at all for a free order).
            "application_fee_amount": min(booking.application_fee_amount, facts.amount_total),
        }
        # Paid within its hold: the held seats become sold. Otherwise (no hold, its hold ended,
        # or the time was cancelled) any seats still held go back and free seats are taken if left.
        # Read once, under the booking's lock: the hold cannot end meanwhile (every end locks the booking).
        hold = selectors.booking_open_hold(booking)
        seats_taken = hold is not None and hold_convert(booking=booking, hold=hold)
        if not seats_taken:
            # Not passed on to the waitlist: this payment takes the seats first if it can.
            if hold is not None:
                hold_release(booking=booking, pass_on=False, hold=hold)
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
            Refund.objects.create(
                booking=booking,
                amount=facts.amount_total,
                reason=reason,
                refund_application_fee=refund_gives_fee_back(booking, reason),
            )
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
    """The checkout session expired or its payment failed: a pending booking expires and the
    seats it held are free again at once (`lapsed` if its time was up, else `released`). No seat was sold."""
    with transaction.atomic():
        return _booking_expire_locked(_locked(booking.pk))


def booking_expire_for_session(
    *, session_id: str, account: str, in_callers_transaction: bool = False
) -> ConfirmResult | None:
    """`booking_expire` for the booking of a checkout session of `account` ("" the platform's),
    found and locked in one read. None when no booking has this session; raises
    PaymentAccountMismatch, changing nothing, when its booking was paid on another account.
    `in_callers_transaction` as for `booking_confirm`: no savepoint."""
    with transaction.atomic(savepoint=not in_callers_transaction):
        booking = Booking.objects.select_for_update().filter(checkout_session_id=session_id).first()
        if booking is None:
            return None
        if booking.stripe_account_id != account:
            raise PaymentAccountMismatch(
                session_id=session_id, booking_id=booking.pk, paid_on=booking.stripe_account_id, told_on=account
            )
        return _booking_expire_locked(booking)


def _booking_expire_locked(booking: Booking) -> ConfirmResult:
    if booking.status != S.PENDING:
        return ConfirmResult(ConfirmOutcome.ALREADY_DONE, booking)
    hold_release(booking=booking)
    booking_transition(booking, S.EXPIRED)
    return ConfirmResult(ConfirmOutcome.EXPIRED, booking)


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
            facts = gateway.checkout_expire(session_id=booking.checkout_session_id, stripe_account=booking.stripe_account_id)
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


# A checkout that was opened but never stored its session (a crash, or Stripe's answer lost) may
# still have a session at the provider ending a few seconds after its hold: wait that long more.
UNATTACHED_HOLD_GRACE = timedelta(minutes=1)


def holds_lapse(*, now=None) -> int:
    """End every hold whose time is up with nothing heard: make its checkout session unpayable
    at the provider and settle the booking from what the provider then says (expired: the seats
    are free again and the hold `lapsed`; paid just in time: confirmed on the hold). Run every
    minute by `reconcile`, so no hold outlives its session by more than a minute.

    Asks the provider, so it runs after commit and never under a lock; a hold the provider could
    not be asked about stays for the next run. Returns the number of holds ended."""
    now = now or timezone.now()
    ended = 0
    gateway = payment_gateway()
    for hold in selectors.holds_lapsed(now=now):
        booking = hold.booking
        if booking is None or booking.status != S.PENDING:
            continue
        if not booking.checkout_session_id:
            if hold.expires_at + UNATTACHED_HOLD_GRACE <= now:
                ended += booking_checkout_abandon(booking=booking)
            continue
        try:
            booking_confirm(facts=gateway.checkout_expire(session_id=booking.checkout_session_id, stripe_account=booking.stripe_account_id))
        except PaymentGatewayError as error:
            log_event(log, "hold_lapse_failed", level=logging.WARNING, booking=booking.pk, error=str(error)[:200])
            continue
        except PaymentFactsMismatch as error:
            log_event(log, "payment_facts_mismatch", level=logging.ERROR, booking=booking.pk, error=str(error))
            continue
        except RefundNotCreated:
            pass
        ended += 1
    if ended:
        log_event(log, "holds_lapsed", holds=ended)
    return ended
