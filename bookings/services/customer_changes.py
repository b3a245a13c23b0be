"""A customer cancels or moves their own booking, under the terms it was sold with.

Both lock the booking first (the order of every booking transaction), then re-read its terms
and status under that lock: a merchant's edit of the policy, a merchant's refund or another
tab's cancellation that got there first is seen, never overwritten. Both refuse with a
BookingError sentence and change nothing when the booking cannot be changed.
"""

import datetime as dt
import logging

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from bookings import tasks
from bookings.background import enqueue_after_commit
from bookings.models import Booking, RefundReason, Slot
from bookings.money import format_money
from bookings.policies import CancelQuote, cancel_quote, reschedule_refusal
from bookings.storefront_cache import booking_changed
from bookings.services.refunds import _refund_open, _release_seats
from bookings.services.transitions import BookingError, S, _locked, booking_transition
from common.logs import log_event

log = logging.getLogger("bookings.customer_changes")


class TermsChanged(BookingError):
    """What cancelling gives back changed since the customer was shown it."""


def booking_customer_cancel(*, booking: Booking, expected_refund: int, now: dt.datetime | None = None) -> CancelQuote:
    """Cancel a confirmed booking for its customer, refunding what its terms allow now.

    In one transaction: the booking locked and its terms re-read; the seats returned at once
    (`_release_seats`); a refund of the allowed amount opened with the reason "customer
    cancellation" and the booking moved to `refund_due`, or, with nothing to refund, to
    `cancelled`. The refund is asked of the provider after commit by the same follow-up as a
    merchant's refund (idempotent, retried, its failure alerted), which also e-mails the customer
    and the merchant once each. Raises TermsChanged, changing nothing, when the amount differs
    from `expected_refund` (what the customer confirmed), and BookingError when it cannot be
    cancelled (already cancelled, no self-service, started)."""
    # One moment for the quote and the record: what the booking is owed later is worked out
    # from `cancelled_by_customer_at` by the same rule (policies.cancellation_kept).
    now = now or timezone.now()
    with transaction.atomic():
        locked = _locked(booking.pk)
        locked.slot = Slot.objects.get(pk=locked.slot_id)
        quote = cancel_quote(locked, now=now)
        if not quote.allowed:
            raise BookingError(quote.refusal)
        if quote.refund != expected_refund:
            raise TermsChanged(
                "What you get back has changed since you looked: it is now "
                f"{format_money(quote.refund, locked.currency)}. Nothing was cancelled; please check and confirm again."
            )
        cancelled_at = now
        if quote.refund > 0:
            _refund_open(locked, amount=quote.refund, reason=RefundReason.CUSTOMER_CANCELLED)
            booking_transition(
                locked, S.REFUND_DUE, ended_reason=RefundReason.CUSTOMER_CANCELLED, cancelled_by_customer_at=cancelled_at
            )
        else:
            booking_transition(
                locked, S.CANCELLED, ended_reason=RefundReason.CUSTOMER_CANCELLED, cancelled_by_customer_at=cancelled_at
            )
        _release_seats(locked)
        enqueue_after_commit(tasks.booking_follow_up, booking_id=locked.pk, raise_refund_errors=False)
    log_event(log, "booking_customer_cancelled", booking=locked.pk, refund=quote.refund, free=quote.free)
    return quote


def _reminder_after_move(to_slot: Slot, *, now: dt.datetime) -> dt.datetime | None:
    """The booking's `reminder_sent_at` after a move to `to_slot`: None (owed again) while the new
    time's reminder moment is ahead; else `now`, closing it, by the reminders' own rule that a
    booking made after its reminder moment gets none (the move's e-mail carries the new time)."""
    hours = to_slot.listing.reminder_hours
    if not hours or to_slot.starts_at.astimezone(dt.UTC) - dt.timedelta(hours=hours) > now:
        return None
    return now


def booking_reschedule(*, booking: Booking, to_slot_id: int, now: dt.datetime | None = None) -> Booking:
    """Move a confirmed booking to another time of the same listing, before its terms' deadline.

    One transaction: the booking locked, then both slots locked in primary-key order (so two
    reschedules crossing the same slots wait for each other instead of deadlocking); the new
    time's free seats (`seats_left`, which excludes seats held by open checkouts) must cover the
    booking, then they are taken and the old ones returned. The payment stays with the booking
    (same listing, same price); the old seats are offered to the old time's waitlist in the same
    transaction. The calendar entry's SEQUENCE goes up, and the reminder is owed again for the
    new time, unless its moment has already passed (as for a booking made after the reminder
    time, the move's e-mail is then the reminder). The customer is e-mailed the new time after
    commit, once, with the updated calendar entry."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = _locked(booking.pk)
        if locked.slot_id == to_slot_id:
            raise BookingError("Your booking is already at this time. Choose another one.", field="slot")
        slot_ids = sorted({locked.slot_id, to_slot_id})
        slots = {slot.pk: slot for slot in Slot.objects.select_for_update().filter(pk__in=slot_ids).order_by("pk")}
        to_slot = slots.get(to_slot_id)
        locked.slot = slots[locked.slot_id]
        if refusal := reschedule_refusal(locked, now=now):
            raise BookingError(refusal)
        if to_slot is None or to_slot.listing_id != locked.slot.listing_id:
            raise BookingError("Choose one of the other times of this listing.", field="slot")
        if to_slot.cancelled_at is not None:
            raise BookingError("That time was cancelled by the host. Choose another one.", field="slot")
        if to_slot.starts_at <= now:
            raise BookingError("That time has already started. Choose a later one.", field="slot")
        if not to_slot.is_on_sale:
            raise BookingError("That time is not open for booking. Choose another one.", field="slot")
        if to_slot.seats_left < locked.quantity:
            raise BookingError(
                f"That time has {to_slot.seats_left} free seat{'s' if to_slot.seats_left != 1 else ''}, "
                f"and your booking needs {locked.quantity}. Choose another time.",
                field="slot",
            )
        taken = Slot.objects.filter(pk=to_slot.pk, seats_left__gte=locked.quantity).update(
            seats_left=F("seats_left") - locked.quantity
        )
        if not taken:  # the lock makes this unreachable; the constraint is the last guard
            raise BookingError("Those seats were just taken. Choose another time.", field="slot")
        from_slot_id = locked.slot_id
        # The old seats go back and are offered at once to the old time's waitlist.
        _release_seats(locked)
        Booking.objects.filter(pk=locked.pk).update(
            slot=to_slot,
            reschedules=F("reschedules") + 1,
            # The calendar entry (same UID) replaces the old one: a higher SEQUENCE.
            calendar_sequence=F("calendar_sequence") + 1,
            reminder_sent_at=_reminder_after_move(to_slot, now=now),
            updated_at=timezone.now(),
        )
        # The success page's kept status panel shows the time: it must not show the old one.
        booking_changed(locked.checkout_session_id)
        enqueue_after_commit(tasks.booking_follow_up, booking_id=locked.pk, raise_refund_errors=False)
    log_event(log, "booking_rescheduled", booking=locked.pk, from_slot=from_slot_id, to_slot=to_slot.pk)
    locked.refresh_from_db()
    return locked
