"""Webhook requests signed the way Stripe signs them, computed independently of the SDK."""

import hashlib
import hmac
import json
import time


def stripe_signature(payload: bytes, secret: str, *, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def event_payload(event_type: str, obj: dict, *, event_id: str = "evt_test_1") -> bytes:
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "api_version": "2026-10-28.endive",
            "created": int(time.time()),
            "data": {"object": obj},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": event_type,
        }
    ).encode()


def session_object(booking, **overrides) -> dict:
    obj = {
        "id": booking.checkout_session_id,
        "object": "checkout.session",
        "client_reference_id": f"booking-{booking.pk}",
        "metadata": {"booking_id": str(booking.pk)},
        "status": "complete",
        "payment_status": "paid",
        "amount_subtotal": booking.amount_total,
        "amount_total": booking.amount_total,
        "currency": booking.currency,
        "payment_intent": f"pi_test_{booking.pk}",
        "customer": f"cus_test_{booking.pk}",
    }
    obj.update(overrides)
    return obj
