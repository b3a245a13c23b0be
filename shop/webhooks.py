"""What a verified Stripe event means for bookings. Each event calls the same services as the
success page and `reconcile`, so the order in which they arrive does not matter."""

import logging
from enum import StrEnum

from django.db import IntegrityError, transaction
from django.utils import timezone

from bookings.logs import log_event
from bookings.models import Booking, Refund, RefundStatus, StripeEvent
from bookings.services import (
    PaymentFactsMismatch,
    RefundNotCreated,
    booking_confirm,
    booking_expire,
    refund_record_created,
    refund_record_update,
)
from shop import payments

log = logging.getLogger("shop.webhooks")


class EventResult(StrEnum):
    PROCESSED = "processed"
    IGNORED = "ignored"
    DUPLICATE = "duplicate"
    FAILED_RETRY = "failed_retry"  # answer 500 so that Stripe sends it again
    FAILED_FINAL = "failed_final"  # recorded for a person to look at; a retry cannot help


CONFIRMING_EVENTS = {"checkout.session.completed", "checkout.session.async_payment_succeeded"}
EXPIRING_EVENTS = {"checkout.session.expired", "checkout.session.async_payment_failed"}
REFUND_EVENTS = {"refund.created", "refund.updated", "refund.failed", "charge.refund.updated"}
HANDLED_EVENTS = CONFIRMING_EVENTS | EXPIRING_EVENTS | REFUND_EVENTS | {"charge.refunded"}


class MalformedEvent(Exception):
    """A verified event whose object is not shaped as Stripe's are: a retry would bring the same."""


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


def stripe_event_receive(event: dict) -> EventResult:
    """Record a verified event once by its id and process it; a repeat of a processed event does nothing."""
    # Most deliveries are new: insert first (its first attempt counted in the same row), and
    # read the recorded event only when its id is already taken.
    try:
        with transaction.atomic():
            row = StripeEvent.objects.create(event_id=event["id"], type=event["type"], payload=event, attempts=1)
    except IntegrityError:
        row = StripeEvent.objects.get(event_id=event["id"])
    else:
        return _process(row)
    if row.status in (StripeEvent.Status.PROCESSED, StripeEvent.Status.IGNORED):
        return EventResult.DUPLICATE
    return stripe_event_process(row)


def stripe_event_process(row: StripeEvent) -> EventResult:
    """Process a recorded event (again, for one that failed) and record how it went."""
    StripeEvent.objects.filter(pk=row.pk).update(attempts=row.attempts + 1)
    return _process(row)


def _process(row: StripeEvent) -> EventResult:
    try:
        result = _dispatch(row.payload)
    except (RefundNotCreated, payments.PaymentsUnavailable) as error:
        _finish(row, StripeEvent.Status.FAILED, f"{type(error).__name__}: {error}")
        return EventResult.FAILED_RETRY
    except PaymentFactsMismatch as error:
        log_event(log, "payment_facts_mismatch", level=logging.ERROR, event_id=row.event_id, error=str(error))
        _finish(row, StripeEvent.Status.FAILED, f"PaymentFactsMismatch: {error}")
        return EventResult.FAILED_FINAL
    except MalformedEvent as error:
        log_event(log, "webhook_event_malformed", level=logging.ERROR, event_id=row.event_id, error=str(error))
        _finish(row, StripeEvent.Status.FAILED, f"MalformedEvent: {error}")
        return EventResult.FAILED_FINAL
    except Exception as error:
        log_event(log, "webhook_event_crashed", level=logging.ERROR, exc_info=True, event_id=row.event_id, type=row.type)
        _finish(row, StripeEvent.Status.FAILED, f"{type(error).__name__}: {error}")
        return EventResult.FAILED_RETRY
    _finish(row, StripeEvent.Status.PROCESSED if result == EventResult.PROCESSED else StripeEvent.Status.IGNORED, "")
    return result


def _finish(row: StripeEvent, status: str, error: str) -> None:
    StripeEvent.objects.filter(pk=row.pk).update(status=status, error=error[:2000], processed_at=timezone.now())


def _dispatch(event: dict) -> EventResult:
    event_type = event.get("type")
    if event_type not in HANDLED_EVENTS:
        return EventResult.IGNORED
    obj = _checked_object(event_type, (event.get("data") or {}).get("object") or {})
    if event_type in CONFIRMING_EVENTS:
        result = booking_confirm(facts=payments.checkout_facts_from_session(obj))
        return EventResult.IGNORED if result.booking is None else EventResult.PROCESSED
    if event_type in EXPIRING_EVENTS:
        booking = Booking.objects.filter(checkout_session_id=obj.get("id")).first()
        if booking is None:
            return EventResult.IGNORED
        booking_expire(booking=booking)
        return EventResult.PROCESSED
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
    payment_intent_id = payments.id_of(charge.get("payment_intent"))
    if not payment_intent_id or not Refund.objects.filter(booking__payment_intent_id=payment_intent_id).exists():
        return EventResult.IGNORED
    for refund_object in payments.refunds_of_payment(payment_intent_id):
        _refund_settle(refund_object)
    return EventResult.PROCESSED
