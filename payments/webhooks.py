"""What a verified Stripe event means for bookings. Each event calls the same services as the
success page and `reconcile`, so the order in which they arrive does not matter."""

import datetime as dt
import logging
from enum import StrEnum

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from common.logs import log_event
from bookings.models import Booking, Refund, RefundStatus
from payments.models import StripeEvent
from bookings.services import (
    PaymentAccountMismatch,
    PaymentFactsMismatch,
    RefundNotCreated,
    booking_confirm,
    booking_expire_for_session,
    merchant_stripe_account_deauthorize,
    merchant_stripe_account_sync,
    refund_record_created,
    refund_record_update,
)
from payments import stripe_api

log = logging.getLogger("shop.webhooks")


class EventResult(StrEnum):
    PROCESSED = "processed"
    IGNORED = "ignored"
    DUPLICATE = "duplicate"
    IN_PROGRESS = "in_progress"  # another delivery is processing it: answer 500 so that Stripe sends it again
    FAILED_RETRY = "failed_retry"  # answer 500 so that Stripe sends it again
    FAILED_FINAL = "failed_final"  # recorded for a person to look at; a retry cannot help


CONFIRMING_EVENTS = {"checkout.session.completed", "checkout.session.async_payment_succeeded"}
EXPIRING_EVENTS = {"checkout.session.expired", "checkout.session.async_payment_failed"}
REFUND_EVENTS = {"refund.created", "refund.updated", "refund.failed", "charge.refund.updated"}
ACCOUNT_EVENTS = {"account.updated", "account.application.deauthorized"}
HANDLED_EVENTS = CONFIRMING_EVENTS | EXPIRING_EVENTS | REFUND_EVENTS | {"charge.refunded"} | ACCOUNT_EVENTS
# Settled by the database alone on their usual way (no call to Stripe): recorded together with
# their outcome in the transaction that settles the booking (`_receive_in_one_transaction`).
ONE_TRANSACTION_EVENTS = CONFIRMING_EVENTS | EXPIRING_EVENTS


class MalformedEvent(Exception):
    """A verified event whose object is not shaped as Stripe's are: a retry would bring the same."""


class _StripeCallNeeded(Exception):
    """Rolls back an event's one-transaction settlement: it must ask Stripe for a refund still
    owed, which is never done under uncommitted writes."""


_OPTIONAL_STRING = (str, type(None))
_OPTIONAL_INT = (int, type(None))
_EXPANDABLE = (str, dict, type(None))
# The fields each handled object must have the type of, when present: what _dispatch reads.
_SHAPES = {
    "checkout.session": {
        "client_reference_id": _OPTIONAL_STRING,
        "metadata": (dict, type(None)),
        "status": _OPTIONAL_STRING,
        "payment_status": _OPTIONAL_STRING,
        "amount_subtotal": _OPTIONAL_INT,
        "amount_total": _OPTIONAL_INT,
        "currency": _OPTIONAL_STRING,
        "payment_intent": _EXPANDABLE,
        "customer": _EXPANDABLE,
    },
    "refund": {"metadata": (dict, type(None)), "status": _OPTIONAL_STRING, "failure_reason": _OPTIONAL_STRING},
    "charge": {"payment_intent": _EXPANDABLE},
}


def _checked_object(event_type: str, obj: dict) -> dict:
    """The event's object, with the fields this module reads checked for their types."""
    if event_type in ACCOUNT_EVENTS:
        return obj
    if event_type in CONFIRMING_EVENTS | EXPIRING_EVENTS:
        shape = _SHAPES["checkout.session"]
    elif event_type in REFUND_EVENTS:
        shape = _SHAPES["refund"]
    else:
        shape = _SHAPES["charge"]
    if event_type != "charge.refunded" and not isinstance(obj.get("id"), str):
        raise MalformedEvent(f"{event_type} has no object id")
    for field, types in shape.items():
        value = obj.get(field)
        # bool is an int to Python, never to Stripe.
        if not isinstance(value, types) or isinstance(value, bool):
            raise MalformedEvent(f"{event_type} has a malformed {field}")
    metadata = obj.get("metadata") or {}
    if not all(isinstance(value, str) for value in metadata.values()):
        raise MalformedEvent(f"{event_type} has metadata that is not text")
    for field in ("payment_intent", "customer"):
        if isinstance(obj.get(field), dict) and not isinstance(obj[field].get("id"), str):
            raise MalformedEvent(f"{event_type} has a malformed {field}")
    return obj


# A claim older than this is taken to belong to a process that died while processing the event.
EVENT_CLAIM_LEASE = dt.timedelta(minutes=10)


def _claimable(now) -> Q:
    return Q(status__in=[StripeEvent.Status.RECEIVED, StripeEvent.Status.FAILED]) | Q(
        status=StripeEvent.Status.PROCESSING, claimed_at__lt=now - EVENT_CLAIM_LEASE
    )


def stripe_events_unfinished():
    """Recorded events no delivery is processing that still need it: failed ones, and ones whose
    processing died with its process."""
    return StripeEvent.objects.filter(_claimable(timezone.now()))


class EventAccountMismatch(Exception):
    """A verified event names a booking (or an account) that is not of the account the event is of."""


def _event_booking(event: dict) -> Booking | None:
    """The booking a handled event is about, if we know it (read only; of a checkout's, only the
    account it was paid on, which is all the check reads, on every payment)."""
    event_type = event.get("type")
    try:
        # A malformed object names nothing: it is recorded and fails as before.
        obj = _checked_object(event_type, (event.get("data") or {}).get("object") or {})
    except MalformedEvent:
        return None
    if event_type in CONFIRMING_EVENTS | EXPIRING_EVENTS:
        bookings = Booking.objects.only("pk", "stripe_account_id")
        booking = bookings.filter(checkout_session_id=obj.get("id")).first() if obj.get("id") else None
        if booking is None:
            reference = obj.get("client_reference_id")
            if isinstance(reference, str) and reference.startswith("booking-") and reference[8:].isdigit():
                booking = bookings.filter(pk=int(reference[8:])).first()
        return booking
    if event_type in REFUND_EVENTS:
        row = _refund_row(obj)
        return row.booking if row is not None else None
    if event_type == "charge.refunded":
        payment_intent_id = stripe_api.id_of(obj.get("payment_intent"))
        return Booking.objects.filter(payment_intent_id=payment_intent_id).first() if payment_intent_id else None
    return None


def stripe_event_account_check(event: dict, *, account: str) -> None:
    """Refuse (EventAccountMismatch) a verified event whose account does not own what it names:
    a booking paid on another account (or on the platform, for a Connect event, and the reverse),
    or an account event about another account. Nothing is written. `stripe_event_receive` runs
    it before recording an event; a checkout's payment or expiry settled in one transaction is
    checked on the booking row that transaction reads, with no read of its own."""
    event_type = event.get("type")
    if event_type in ACCOUNT_EVENTS:
        if not account:
            return  # the platform's own account: not a merchant's, ignored
        obj = (event.get("data") or {}).get("object") or {}
        if event_type == "account.updated" and obj.get("id") != account:
            raise EventAccountMismatch(f"{event_type} of {account} describes another account")
        return
    if event_type not in HANDLED_EVENTS:
        return
    booking = _event_booking(event)
    if booking is not None and booking.stripe_account_id != account:
        raise EventAccountMismatch(
            f"{event_type} of account {account or 'platform'} names booking {booking.pk}, "
            f"paid on {booking.stripe_account_id or 'the platform'}"
        )


def stripe_event_receive(event: dict, *, account: str = "") -> EventResult:
    """Record a verified event once per (account, id) and process it, however many identical deliveries
    arrive at once: exactly one processes it at a time (the one that recorded it, or that claimed
    it by a conditional update); a repeat of a processed event does nothing. A checkout's payment
    or expiry is recorded in the transaction that settles it, so a repeat arriving meanwhile waits
    for that commit and finds it done. For the other events, and a checkout event that must call
    Stripe, a repeat arriving while another delivery processes it is answered IN_PROGRESS, so
    that Stripe sends it again and it is not lost if that processing fails."""
    # Most deliveries are new: insert first, already claimed (its first attempt counted in the
    # same row), and read the recorded event only when its id is already taken. A type nothing
    # handles is inserted already ignored: its one commit records both the event and its outcome.
    now = timezone.now()
    if event["type"] in ONE_TRANSACTION_EVENTS:
        result = _receive_in_one_transaction(event, account=account, now=now)
        if result is not None:
            return result
    stripe_event_account_check(event, account=account)
    ignored = event["type"] not in HANDLED_EVENTS
    try:
        with transaction.atomic():
            row = _recorded(
                event, account=account, now=now,
                status=StripeEvent.Status.IGNORED if ignored else StripeEvent.Status.PROCESSING,
            )
    except IntegrityError:
        row = StripeEvent.objects.get(account=account, event_id=event["id"])
    else:
        return EventResult.IGNORED if ignored else _process(row)
    return stripe_event_process(row)


def _recorded(event: dict, *, account: str, now, status: str) -> StripeEvent:
    """The event's row, its first delivery counted and claimed at `now` (and done at `now`,
    unless it is still being processed)."""
    return StripeEvent.objects.create(
        event_id=event["id"],
        account=account,
        type=event["type"],
        payload=event,
        attempts=1,
        status=status,
        claimed_at=now,
        processed_at=None if status == StripeEvent.Status.PROCESSING else now,
    )


def _receive_in_one_transaction(event: dict, *, account: str, now) -> EventResult | None:
    """A checkout's payment or expiry, recorded as done in the very transaction that settles its
    booking: one commit where the other events take three (record, settle, record the outcome).
    A repeat delivery meanwhile waits at the event's unique key until that commit (nothing here
    calls Stripe, so milliseconds), then finds the event done. None, with all of it rolled back,
    when this delivery must take the way of the other events instead: the event is recorded
    already, settling it failed (it is then recorded as failed there), or the payment's refund is
    still owed and Stripe must be asked for it. Raises EventAccountMismatch, with nothing written,
    when the booking it names is paid on another account than the event's."""
    committed = False

    def mark_committed() -> None:
        nonlocal committed
        committed = True

    try:
        with transaction.atomic():
            row = _recorded(event, account=account, now=now, status=StripeEvent.Status.PROCESSED)
            # Registered before the settlement's own hooks, so it runs first after the commit: an
            # error raised after it comes from those side effects run in this process (no broker).
            transaction.on_commit(mark_committed)
            result = _dispatch(event, account=account, in_callers_transaction=True)
            if result == EventResult.IGNORED:
                StripeEvent.objects.filter(pk=row.pk).update(status=StripeEvent.Status.IGNORED)
    except PaymentAccountMismatch as error:  # rolled back: nothing written
        raise EventAccountMismatch(
            f"{event['type']} of account {account or 'platform'} names booking {error.booking_id}, "
            f"paid on {error.paid_on or 'the platform'}"
        ) from error
    except Exception as error:  # noqa: BLE001 - rolled back: the other way records what happens
        if not committed:
            return None
        return _failed(row, error)
    return result


def stripe_event_process(row: StripeEvent) -> EventResult:
    """Claim a recorded event and process it (again, for one that failed) and record how it went.
    The claim is one conditional update, so two callers never process the event at once."""
    now = timezone.now()
    claimed = StripeEvent.objects.filter(_claimable(now), pk=row.pk).update(
        status=StripeEvent.Status.PROCESSING, claimed_at=now, attempts=F("attempts") + 1
    )
    if not claimed:
        status = StripeEvent.objects.filter(pk=row.pk).values_list("status", flat=True).first()
        if status in (StripeEvent.Status.PROCESSED, StripeEvent.Status.IGNORED):
            return EventResult.DUPLICATE
        return EventResult.IN_PROGRESS
    return _process(row)


def _process(row: StripeEvent) -> EventResult:
    try:
        result = _dispatch(row.payload, account=row.account)
    except Exception as error:  # noqa: BLE001 - every failure is recorded on the event
        return _failed(row, error)
    _finish(row, StripeEvent.Status.PROCESSED if result == EventResult.PROCESSED else StripeEvent.Status.IGNORED, "")
    return result


def _failed(row: StripeEvent, error: Exception) -> EventResult:
    """Record that processing the event failed (called while `error` is being handled)."""
    if isinstance(error, (RefundNotCreated, stripe_api.PaymentsUnavailable)):
        _finish(row, StripeEvent.Status.FAILED, f"{type(error).__name__}: {error}")
        return EventResult.FAILED_RETRY
    if isinstance(error, PaymentFactsMismatch):
        log_event(log, "payment_facts_mismatch", level=logging.ERROR, event_id=row.event_id, error=str(error))
        _finish(row, StripeEvent.Status.FAILED, f"PaymentFactsMismatch: {error}")
        return EventResult.FAILED_FINAL
    if isinstance(error, MalformedEvent):
        log_event(log, "webhook_event_malformed", level=logging.ERROR, event_id=row.event_id, error=str(error))
        _finish(row, StripeEvent.Status.FAILED, f"MalformedEvent: {error}")
        return EventResult.FAILED_FINAL
    log_event(log, "webhook_event_crashed", level=logging.ERROR, exc_info=True, event_id=row.event_id, type=row.type)
    _finish(row, StripeEvent.Status.FAILED, f"{type(error).__name__}: {error}")
    return EventResult.FAILED_RETRY


def _finish(row: StripeEvent, status: str, error: str) -> None:
    StripeEvent.objects.filter(pk=row.pk).update(status=status, error=error[:2000], processed_at=timezone.now())


def _dispatch(event: dict, *, account: str, in_callers_transaction: bool = False) -> EventResult:
    """What the event means for bookings, as an event of `account` (the endpoint's: "" the
    platform's, else the connected account a Connect event names). `in_callers_transaction` inside
    a transaction of the caller's: a refund still owed is not asked for there (_StripeCallNeeded),
    and an error leaves that whole transaction to roll back."""
    event_type = event.get("type")
    if event_type not in HANDLED_EVENTS:
        return EventResult.IGNORED
    obj = _checked_object(event_type, (event.get("data") or {}).get("object") or {})
    if event_type in ACCOUNT_EVENTS:
        return _account_event(event_type, obj, account=account, created=event.get("created"))
    if event_type in CONFIRMING_EVENTS:
        facts = stripe_api.checkout_facts_from_session(obj, account=account)
        result = booking_confirm(facts=facts, in_callers_transaction=in_callers_transaction)
        if result.refund_left_to_ask:
            raise _StripeCallNeeded(f"booking {result.booking.pk} still owes a refund request")
        return EventResult.IGNORED if result.booking is None else EventResult.PROCESSED
    if event_type in EXPIRING_EVENTS:
        result = booking_expire_for_session(
            session_id=obj.get("id"), account=account, in_callers_transaction=in_callers_transaction
        )
        return EventResult.IGNORED if result is None else EventResult.PROCESSED
    if event_type in REFUND_EVENTS:
        return _refund_settle(obj)
    if event_type == "charge.refunded":
        return _charge_refunds_settle(obj)
    return EventResult.IGNORED


def _refund_row(refund_object: dict) -> Refund | None:
    row = Refund.objects.filter(stripe_refund_id=refund_object.get("id")).first()
    if row is not None:
        return row
    # Created by us, but its answer was lost before we stored the id: the metadata names it.
    refund_id = (refund_object.get("metadata") or {}).get("refund_id", "")
    if refund_id.isdigit():
        return Refund.objects.filter(pk=int(refund_id), stripe_refund_id__isnull=True).first()
    return None


def _refund_settle(refund_object: dict) -> EventResult:
    row = _refund_row(refund_object)
    if row is None:
        return EventResult.IGNORED
    status = refund_object.get("status") or ""
    failure_reason = refund_object.get("failure_reason") or ""
    if row.status == RefundStatus.REQUESTED:
        refund_record_created(
            refund_id=row.pk, receipt_id=refund_object["id"], status=status, failure_reason=failure_reason
        )
    else:
        refund_record_update(refund_id=row.pk, status=status, failure_reason=failure_reason)
    return EventResult.PROCESSED


def _charge_refunds_settle(charge: dict) -> EventResult:
    payment_intent_id = stripe_api.id_of(charge.get("payment_intent"))
    refund = Refund.objects.filter(booking__payment_intent_id=payment_intent_id).select_related("booking").first()
    if not payment_intent_id or refund is None:
        return EventResult.IGNORED
    for refund_object in stripe_api.refunds_of_payment(payment_intent_id, stripe_account=refund.booking.stripe_account_id):
        _refund_settle(refund_object)
    return EventResult.PROCESSED


def _account_event(event_type: str, obj: dict, *, account: str, created) -> EventResult:
    """A merchant's connected account changed (`account.updated`: its charges, payouts and
    requirements) or was disconnected (`account.application.deauthorized`). Only Connect events
    (of a connected account) say anything of a merchant."""
    if not account:
        return EventResult.IGNORED
    if event_type == "account.application.deauthorized":
        merchant = merchant_stripe_account_deauthorize(account_id=account)
        return EventResult.IGNORED if merchant is None else EventResult.PROCESSED
    as_of = dt.datetime.fromtimestamp(created, dt.UTC) if isinstance(created, int) and not isinstance(created, bool) else None
    merchant = merchant_stripe_account_sync(facts=stripe_api.account_facts_from_object(obj), as_of=as_of)
    return EventResult.IGNORED if merchant is None else EventResult.PROCESSED
