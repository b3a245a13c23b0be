"""Reading what a payment made: PaymentIntents, Charges, PaymentMethods, Invoices."""

from __future__ import annotations

import json
from typing import Any

from ..backend import Action, Backend
from ..errors import InvalidRequestError, NotEmulated
from ..expand import includer
from .common import apply_metadata, respond
from .routing import route


@route("GET", "/v1/payment_intents/{intent}")
def retrieve_payment_intent(backend: Backend, action: Action, params: dict[str, Any], intent: str) -> dict[str, Any]:
    found = backend.load(intent, "payment_intent", "payment_intent", param="intent")
    secret = params.get("client_secret")
    if secret is not None and secret != found["client_secret"]:
        raise InvalidRequestError(
            "The client_secret provided does not match the client_secret associated with the PaymentIntent.",
            param="client_secret",
        )
    return respond(backend, found, params)


_INTENT_UPDATABLE = ("metadata", "description", "receipt_email", "expand")


@route("POST", "/v1/payment_intents/{intent}")
def update_payment_intent(backend: Backend, action: Action, params: dict[str, Any], intent: str) -> dict[str, Any]:
    for name in params:
        if name not in _INTENT_UPDATABLE:
            raise NotEmulated(name, "only metadata, description and receipt_email can be updated")
    found = backend.load(intent, "payment_intent", "payment_intent", param="intent")
    if "metadata" in params:
        found["metadata"] = apply_metadata(found.get("metadata"), params["metadata"])
    for name in ("description", "receipt_email"):
        if name in params:
            found[name] = params[name] or None
    backend.store.save(found)
    return respond(backend, found, params)


@route("GET", "/v1/charges/{charge}")
def retrieve_charge(backend: Backend, action: Action, params: dict[str, Any], charge: str) -> dict[str, Any]:
    return respond(backend, backend.load(charge, "charge", "charge", param="charge"), params)


@route("GET", "/v1/payment_methods/{payment_method}")
def retrieve_payment_method(backend: Backend, action: Action, params: dict[str, Any], payment_method: str) -> dict[str, Any]:
    return respond(backend, backend.load(payment_method, "payment_method", "payment_method", param="payment_method"), params)


@route("GET", "/v1/invoices/{invoice}")
def retrieve_invoice(backend: Backend, action: Action, params: dict[str, Any], invoice: str) -> dict[str, Any]:
    return respond(backend, backend.load(invoice, "invoice", "invoice", param="invoice"), params)


@includer("charge", "refunds")
def include_charge_refunds(backend: Backend, charge: dict[str, Any]) -> dict[str, Any]:
    rows = backend.store.query(
        "SELECT data FROM objects WHERE type = 'refund' AND json_extract(data, '$.charge') = ? ORDER BY seq DESC LIMIT 11",
        (charge["id"],),
    )
    return {
        "object": "list",
        "data": [json.loads(row["data"]) for row in rows[:10]],
        "has_more": len(rows) > 10,
        "total_count": backend.store.query_one(
            "SELECT COUNT(*) AS n FROM objects WHERE type = 'refund' AND json_extract(data, '$.charge') = ?", (charge["id"],)
        )["n"],
        "url": f"/v1/charges/{charge['id']}/refunds",
    }
