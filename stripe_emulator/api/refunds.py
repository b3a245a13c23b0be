"""Refunds: create (full, partial, repeated; never more than is left), retrieve, update, list.

The bookkeeping runs in one transaction under the store's lock, so two concurrent refunds of
the same charge can never together exceed it. Refunds of the 4000 0000 0000 5126 card fail a
moment after they succeed; those of 4000 0000 0000 7726 stay pending a moment, as on Stripe.
"""

from __future__ import annotations

import copy
from typing import Any

from ..backend import Action, Backend
from ..errors import InvalidRequestError, NotEmulated, ResourceMissing
from ..connect import refund_fee_with_charge
from ..events import changed, emit
from ..ids import new_id
from ..money import format_amount
from ..timers import timer_handler
from .common import apply_metadata, list_page, new_metadata, respond
from .routing import route

TIMER_FAIL = "refund_failure"
TIMER_SETTLE = "refund_settlement"


def _charge_for(backend: Backend, params: dict[str, Any]) -> dict[str, Any]:
    charge_id = params.get("charge") or None
    intent_id = params.get("payment_intent") or None
    if charge_id and intent_id:
        raise InvalidRequestError("You may only specify one of these parameters: charge, payment_intent.", param="payment_intent")
    if not charge_id and not intent_id:
        raise InvalidRequestError("One of the following params should be provided for this request: payment_intent or charge.")
    if charge_id:
        charge = backend.store.get(charge_id, "charge")
        if charge is None:
            raise ResourceMissing("charge", charge_id, param="id")
        return charge
    intent = backend.store.get(intent_id, "payment_intent")
    if intent is None:
        raise ResourceMissing("payment_intent", intent_id, param="payment_intent")
    charge = backend.store.get(intent["latest_charge"], "charge") if intent.get("latest_charge") else None
    if intent["status"] != "succeeded" or charge is None or charge["status"] != "succeeded":
        raise InvalidRequestError(f"This PaymentIntent ({intent_id}) does not have a successful charge to refund.",
                                  param="payment_intent")
    return charge


@route("POST", "/v1/refunds")
def create_refund(backend: Backend, action: Action, params: dict[str, Any]) -> dict[str, Any]:
    for name in ("origin", "reverse_transfer", "currency", "customer"):
        if name in params:
            raise NotEmulated(name, "only refunds of card payments")
    charge = _charge_for(backend, params)
    if charge["status"] != "succeeded":
        raise InvalidRequestError(f"Charge {charge['id']} has not succeeded, so it cannot be refunded.", param="charge")
    remaining = charge["amount_captured"] - charge["amount_refunded"]
    if remaining <= 0:
        raise InvalidRequestError(f"Charge {charge['id']} has already been refunded.", code="charge_already_refunded")
    amount = params.get("amount", remaining)
    if amount < 1:
        raise InvalidRequestError("This value must be greater than or equal to 1.", param="amount", code="parameter_invalid_integer")
    if amount > remaining:
        raise InvalidRequestError(
            f"Refund amount ({format_amount(amount, charge['currency'])}) is greater than unrefunded amount on charge "
            f"({format_amount(remaining, charge['currency'])})",
            param="amount",
        )
    behaviour = backend.store.get_internal(charge["id"]).get("refund_behaviour", "succeeds")
    refund = {
        "id": new_id("re"),
        "object": "refund",
        "amount": amount,
        "balance_transaction": None,
        "charge": charge["id"],
        "created": backend.now(),
        "currency": charge["currency"],
        "customer": charge["customer"],
        "customer_account": None,
        "destination_details": {
            "card": {"reference_status": "pending", "reference_type": "acquirer_reference_number", "type": "refund"},
            "type": "card",
        },
        "metadata": new_metadata(params),
        "payment_intent": charge["payment_intent"],
        "payment_method": charge["payment_method"],
        "reason": params.get("reason"),
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": "pending" if behaviour == "pending" else "succeeded",
        "transfer_reversal": None,
    }
    if params.get("instructions_email"):
        refund["instructions_email"] = params["instructions_email"]
    if behaviour == "pending":
        refund["pending_reason"] = "processing"
    backend.store.insert(refund, {"api_version": action.api_version})
    charge["amount_refunded"] += amount
    charge["refunded"] = charge["amount_refunded"] >= charge["amount_captured"]
    backend.store.save(charge)
    emit(backend, action, "refund.created", refund)
    emit(backend, action, "charge.refunded", charge)
    if params.get("refund_application_fee"):
        # Stripe's "Issue refunds" for direct charges: the fee goes back in proportion to the refund.
        refund_fee_with_charge(backend, action, charge, amount)
    if behaviour == "fails":
        backend.timers.schedule(TIMER_FAIL, refund["id"], backend.clock.now() + backend.tuning.refund_failure_delay)
    elif behaviour == "pending":
        backend.timers.schedule(TIMER_SETTLE, refund["id"], backend.clock.now() + backend.tuning.refund_pending_delay)
    return respond(backend, refund, params)


@timer_handler(TIMER_FAIL)
def fail_refund(backend: Backend, refund_id: str) -> None:
    """The card can no longer receive money: the refund fails and the amount is no longer
    counted as refunded on the charge (Stripe returns it to the balance)."""
    refund = backend.store.get(refund_id, "refund")
    if refund is None or refund["status"] != "succeeded":
        return
    action = backend.system_action(backend.store.get_internal(refund_id).get("api_version"))
    before = copy.deepcopy(refund)
    refund["status"] = "failed"
    refund["failure_reason"] = "expired_or_canceled_card"
    backend.store.save(refund)
    previous = changed(before, refund)
    charge = backend.store.get(refund["charge"], "charge")
    if charge is not None:
        charge["amount_refunded"] = max(0, charge["amount_refunded"] - refund["amount"])
        charge["refunded"] = charge["amount_refunded"] >= charge["amount_captured"]
        backend.store.save(charge)
    emit(backend, action, "refund.updated", refund, previous)
    emit(backend, action, "refund.failed", refund)
    emit(backend, action, "charge.refund.updated", refund, previous)


@timer_handler(TIMER_SETTLE)
def settle_refund(backend: Backend, refund_id: str) -> None:
    refund = backend.store.get(refund_id, "refund")
    if refund is None or refund["status"] != "pending":
        return
    action = backend.system_action(backend.store.get_internal(refund_id).get("api_version"))
    before = copy.deepcopy(refund)
    refund["status"] = "succeeded"
    refund.pop("pending_reason", None)
    backend.store.save(refund)
    previous = changed(before, refund)
    emit(backend, action, "refund.updated", refund, previous)
    emit(backend, action, "charge.refund.updated", refund, previous)


@route("GET", "/v1/refunds/{refund}")
def retrieve_refund(backend: Backend, action: Action, params: dict[str, Any], refund: str) -> dict[str, Any]:
    return respond(backend, backend.load(refund, "refund", "refund", param="refund"), params)


@route("POST", "/v1/refunds/{refund}")
def update_refund(backend: Backend, action: Action, params: dict[str, Any], refund: str) -> dict[str, Any]:
    current = backend.load(refund, "refund", "refund", param="refund")
    before = copy.deepcopy(current)
    if "metadata" in params:
        current["metadata"] = apply_metadata(current.get("metadata"), params["metadata"])
    if current != before:
        backend.store.save(current)
        previous = changed(before, current)
        emit(backend, action, "refund.updated", current, previous)
        emit(backend, action, "charge.refund.updated", current, previous)
    return respond(backend, current, params)


@route("GET", "/v1/refunds")
def list_refunds(backend: Backend, action: Action, params: dict[str, Any]) -> dict[str, Any]:
    equals: dict[str, Any] = {}
    if params.get("charge"):
        equals["$.charge"] = params["charge"]
    if params.get("payment_intent"):
        equals["$.payment_intent"] = params["payment_intent"]
    return list_page(backend, params, object_type="refund", object_name="refund", url="/v1/refunds", equals=equals)
