"""Paying a Checkout Session: the one code path behind the hosted form and the control API.

``pay`` checks the card like Checkout's form, then confirms the session's PaymentIntent:
declines record a failed Charge and ``last_payment_error`` and leave the session open; 3-D
Secure cards stop at ``requires_action`` until ``authenticate`` completes or fails the
challenge; a success creates the Charge, the PaymentMethod, the Customer and the Invoice the
session asked for, completes the session and emits Stripe's events in Stripe's order.
"""

from __future__ import annotations

import copy
import dataclasses
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .api.coupons import INVALID_CODE_MESSAGE, allocate_discount, find_promotion_code, promotion_code_refusal, redeem
from .api.customers import check_email, new_customer
from .backend import Action, Backend
from .connect import charge_application_fee
from .cards import AUTHENTICATION_FAILED_MESSAGE, CardDetails, CardFormError, Decline, card_details, check_card
from .errors import DOC_URL_BASE
from .events import changed, emit
from .ids import new_fingerprint, new_id, new_secret
from .timers import timer_handler


@dataclass
class PayOutcome:
    """What happened to a payment attempt, for the page or the control API to show."""

    kind: str  # completed | declined | requires_action | form_error | not_open | authentication_failed
    session: dict[str, Any]
    message: str | None = None
    field: str | None = None
    decline: Decline | None = None
    payment_intent: dict[str, Any] | None = None
    charge: dict[str, Any] | None = None
    payment_method: dict[str, Any] | None = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


# -- actions on behalf of the customer's browser -------------------------------------------

def session_action(backend: Backend, session_id: str) -> Action:
    """Events caused by the customer carry the API version the session was created with and no
    request (as Stripe's do: ``request.id`` is null for actions taken on hosted pages)."""
    internal = backend.store.get_internal(session_id)
    return backend.system_action(internal.get("api_version"))


def statement_descriptor(backend: Backend) -> str:
    letters = "".join(ch for ch in backend.business_name().upper() if ch.isalnum() or ch == " ")
    return letters.split("(")[0].strip()[:22] or "STRIPE EMULATOR"


# -- object builders ----------------------------------------------------------------------

def _address() -> dict[str, Any]:
    return {"city": None, "country": None, "line1": None, "line2": None, "postal_code": None, "state": None}


def billing_details(email: str | None, name: str | None) -> dict[str, Any]:
    return {"address": _address(), "email": email, "name": name, "phone": None, "tax_id": None}


def new_payment_intent(backend: Backend, action: Action, session: dict[str, Any]) -> dict[str, Any]:
    internal = backend.store.get_internal(session["id"])
    data = internal.get("payment_intent_data", {})
    intent_id = new_id("pi")
    intent = {
        "id": intent_id,
        "object": "payment_intent",
        "amount": session["amount_total"],
        "amount_capturable": 0,
        "amount_details": {"tip": {}},
        "amount_received": 0,
        "application": None,
        "application_fee_amount": data.get("application_fee_amount"),
        "automatic_payment_methods": None,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": "automatic_async",
        "client_secret": f"{intent_id}_secret_{new_secret(25)}",
        "confirmation_method": "automatic",
        "created": backend.now(),
        "currency": session["currency"],
        "customer": session["customer"],
        "customer_account": None,
        "description": data.get("description"),
        "excluded_payment_method_types": None,
        "last_payment_error": None,
        "latest_charge": None,
        "livemode": False,
        "metadata": data.get("metadata", {}),
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": None,
        "payment_method_configuration_details": None,
        "payment_method_options": {
            "card": {"installments": None, "mandate_options": None, "network": None, "request_three_d_secure": "automatic"}
        },
        "payment_method_types": ["card"],
        "processing": None,
        "receipt_email": data.get("receipt_email"),
        "review": None,
        "setup_future_usage": data.get("setup_future_usage"),
        "shipping": data.get("shipping"),
        "source": None,
        "statement_descriptor": data.get("statement_descriptor"),
        "statement_descriptor_suffix": data.get("statement_descriptor_suffix"),
        "status": "requires_payment_method",
        "transfer_data": None,
        "transfer_group": data.get("transfer_group"),
    }
    backend.store.insert(intent, {"session": session["id"]})
    emit(backend, action, "payment_intent.created", intent)
    return intent


def new_payment_method(
    backend: Backend, card: CardDetails, *, email: str | None, name: str | None, customer: str | None
) -> dict[str, Any]:
    brand = card.card.brand
    payment_method = {
        "id": new_id("pm"),
        "object": "payment_method",
        "allow_redisplay": "limited",
        "billing_details": billing_details(email, name),
        "card": {
            "brand": brand,
            "checks": {
                "address_line1_check": card.card.address_line1_check,
                "address_postal_code_check": card.card.address_postal_code_check,
                "cvc_check": card.card.cvc_check,
            },
            "country": card.card.country,
            "display_brand": brand,
            "exp_month": card.exp_month,
            "exp_year": card.exp_year,
            "fingerprint": new_fingerprint(card.number),
            "funding": card.card.funding,
            "generated_from": None,
            "last4": card.last4,
            "networks": {"available": [brand], "preferred": None},
            "regulated_status": "unregulated",
            "three_d_secure_usage": {"supported": True},
            "wallet": None,
        },
        "created": backend.now(),
        "customer": customer,
        "livemode": False,
        "metadata": {},
        "radar_options": {},
        "type": "card",
    }
    backend.store.insert(payment_method, {"test_card": card.number})
    return payment_method


def _outcome(decline: Decline | None, risk_level: str = "normal") -> dict[str, Any]:
    if decline is None:
        return {
            "advice_code": None,
            "network_advice_code": None,
            "network_decline_code": None,
            "network_status": "approved_by_network",
            "reason": "elevated_risk_level" if risk_level == "elevated" else None,
            "risk_level": risk_level,
            "risk_score": 67 if risk_level == "elevated" else 32,
            "seller_message": "Stripe evaluated this payment as having elevated risk, and placed it in your manual "
                              "review queue." if risk_level == "elevated" else "Payment complete.",
            "type": "manual_review" if risk_level == "elevated" else "authorized",
        }
    return {
        "advice_code": None,
        "network_advice_code": None,
        "network_decline_code": None,
        "network_status": decline.network_status,
        "reason": decline.decline_code if decline.outcome_type != "blocked" else "highest_risk_level",
        "risk_level": decline.risk_level,
        "risk_score": 85 if decline.risk_level == "highest" else 38,
        "seller_message": decline.seller_message or f"The bank returned the decline code `{decline.decline_code}`.",
        "type": decline.outcome_type,
    }


def new_charge(
    backend: Backend,
    action: Action,
    intent: dict[str, Any],
    payment_method: dict[str, Any],
    card: CardDetails,
    *,
    decline: Decline | None,
    three_d_secure: bool,
) -> dict[str, Any]:
    charge_id = new_id("ch")
    succeeded = decline is None
    amount = intent["amount"]
    card_details = payment_method["card"]
    charge = {
        "id": charge_id,
        "object": "charge",
        "amount": amount,
        "amount_captured": amount if succeeded else 0,
        "amount_refunded": 0,
        "application": None,
        "application_fee": None,
        "application_fee_amount": None,
        "balance_transaction": None,
        "billing_details": copy.deepcopy(payment_method["billing_details"]),
        "calculated_statement_descriptor": statement_descriptor(backend),
        "captured": succeeded,
        "created": backend.now(),
        "currency": intent["currency"],
        "customer": intent["customer"],
        "description": intent["description"],
        "disputed": False,
        "failure_balance_transaction": None,
        "failure_code": decline.code if decline else None,
        "failure_message": decline.message if decline else None,
        "fraud_details": {},
        "livemode": False,
        "metadata": copy.deepcopy(intent["metadata"]),
        "on_behalf_of": None,
        "outcome": _outcome(decline, card.card.risk_level),
        "paid": succeeded,
        "payment_intent": intent["id"],
        "payment_method": payment_method["id"],
        "payment_method_details": {
            "card": {
                "amount_authorized": amount if succeeded else None,
                "authorization_code": None,
                "brand": card_details["brand"],
                "checks": copy.deepcopy(card_details["checks"]),
                "country": card_details["country"],
                "exp_month": card_details["exp_month"],
                "exp_year": card_details["exp_year"],
                "extended_authorization": {"status": "disabled"},
                "fingerprint": card_details["fingerprint"],
                "funding": card_details["funding"],
                "incremental_authorization": {"status": "unavailable"},
                "installments": None,
                "last4": card_details["last4"],
                "mandate": None,
                "multicapture": {"status": "unavailable"},
                "network": card_details["brand"],
                "network_token": {"used": False},
                "network_transaction_id": new_secret(15).upper() if succeeded else None,
                "overcapture": {"maximum_amount_capturable": amount, "status": "unavailable"},
                "regulated_status": "unregulated",
                "three_d_secure": {
                    "authentication_flow": "challenge",
                    "electronic_commerce_indicator": "05",
                    "exemption_indicator": None,
                    "result": "authenticated",
                    "result_reason": None,
                    "transaction_id": str(uuid.uuid4()),
                    "version": "2.2.0",
                } if three_d_secure else None,
                "wallet": None,
            },
            "type": "card",
        },
        "radar_options": {},
        "receipt_email": intent["receipt_email"],
        "receipt_number": None,
        "receipt_url": f"{backend.public_url}/receipts/payment/{charge_id}" if succeeded else None,
        "refunded": False,
        "review": None,
        "shipping": intent["shipping"],
        "source": None,
        "source_transfer": None,
        "statement_descriptor": intent["statement_descriptor"],
        "statement_descriptor_suffix": intent["statement_descriptor_suffix"],
        "status": "succeeded" if succeeded else "failed",
        "transfer_data": None,
        "transfer_group": intent["transfer_group"],
    }
    if succeeded and intent.get("application_fee_amount") is not None:
        # A direct charge on a connected account: the platform's fee is taken from it.
        charge_application_fee(backend, action, intent, charge)
    backend.store.insert(charge, {"test_card": card.number, "refund_behaviour": card.card.refund})
    emit(backend, action, "charge.succeeded" if succeeded else "charge.failed", charge)
    return charge


def card_error_body(
    decline: Decline, *, charge: dict[str, Any] | None, payment_method: dict[str, Any], intent: dict[str, Any] | None
) -> dict[str, Any]:
    """Stripe's ``last_payment_error`` / 402 error for a declined card."""
    error: dict[str, Any] = {
        "code": decline.code,
        "decline_code": decline.decline_code,
        "doc_url": DOC_URL_BASE + decline.code.replace("_", "-"),
        "message": decline.message,
        "payment_method": copy.deepcopy(payment_method),
        "type": "card_error",
    }
    if charge is not None:
        error["charge"] = charge["id"]
    if decline.param:
        error["param"] = decline.param
    if intent is not None:
        error["payment_intent"] = intent
    return error


def _new_invoice(
    backend: Backend,
    action: Action,
    session: dict[str, Any],
    customer: dict[str, Any],
    intent: dict[str, Any] | None,
    charge: dict[str, Any] | None,
) -> dict[str, Any]:
    internal = backend.store.get_internal(session["id"])
    invoice_data = internal.get("invoice_data", {})
    now = backend.now()
    invoice_id = new_id("in")
    number = f"{customer['invoice_prefix']}-{customer['next_invoice_sequence']:04d}"
    customer_before = copy.deepcopy(customer)
    customer["next_invoice_sequence"] += 1
    backend.store.save(customer)
    lines = []
    for item in line_items_of(backend, session["id"]):
        price = item["price"]
        lines.append({
            "id": new_id("il"),
            "object": "line_item",
            "amount": item["amount_subtotal"],
            "amount_excluding_tax": item["amount_subtotal"],
            "currency": item["currency"],
            "description": item["description"],
            "discount_amounts": [],
            "discountable": True,
            "discounts": [],
            "invoice": invoice_id,
            "livemode": False,
            "metadata": {},
            "parent": None,
            "period": {"end": now, "start": now},
            "price": copy.deepcopy(price),
            "pricing": {
                "price_details": {"price": price["id"], "product": price["product"]},
                "type": "price_details",
                "unit_amount_decimal": price["unit_amount_decimal"],
            },
            "proration": False,
            "proration_details": {"credited_items": None},
            "quantity": item["quantity"],
            "subscription": None,
            "tax_amounts": [],
            "tax_rates": [],
            "taxes": [],
            "type": "invoiceitem",
            "unit_amount_excluding_tax": price["unit_amount_decimal"],
        })
    total = session["amount_total"]
    subtotal = session["amount_subtotal"]
    discount = session["total_details"]["amount_discount"]
    invoice = {
        "id": invoice_id,
        "object": "invoice",
        "account_country": "US",
        "account_name": backend.business_name(),
        "account_tax_ids": None,
        "amount_due": total,
        "amount_overpaid": 0,
        "amount_paid": total,
        "amount_paid_off_stripe": 0,
        "amount_remaining": 0,
        "amount_shipping": 0,
        "application": None,
        "attempt_count": 0,
        "attempted": True,
        "auto_advance": False,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None, "provider": None, "status": None},
        "automatically_finalizes_at": None,
        "billing_reason": "manual",
        "collection_method": "charge_automatically",
        "confirmation_secret": None,
        "created": now,
        "currency": session["currency"],
        "custom_fields": invoice_data.get("custom_fields") or None,
        "customer": customer["id"],
        "customer_account": None,
        "customer_address": None,
        "customer_email": customer["email"],
        "customer_name": customer["name"],
        "customer_phone": None,
        "customer_shipping": None,
        "customer_tax_exempt": "none",
        "customer_tax_ids": [],
        "default_payment_method": None,
        "default_source": None,
        "default_tax_rates": [],
        "description": invoice_data.get("description"),
        "discounts": [],
        "due_date": None,
        "effective_at": now,
        "ending_balance": 0,
        "footer": invoice_data.get("footer"),
        "from_invoice": None,
        "hosted_invoice_url": f"{backend.public_url}/i/{invoice_id}",
        "invoice_pdf": None,
        "issuer": {"type": "self"},
        "last_finalization_error": None,
        "latest_revision": None,
        "lines": {
            "object": "list",
            "data": lines,
            "has_more": False,
            "total_count": len(lines),
            "url": f"/v1/invoices/{invoice_id}/lines",
        },
        "livemode": False,
        "metadata": invoice_data.get("metadata", {}),
        "next_payment_attempt": None,
        "number": number,
        "on_behalf_of": None,
        "paid": True,
        "paid_out_of_band": intent is None,
        "parent": None,
        "payment_settings": {"default_mandate": None, "payment_method_options": None, "payment_method_types": None},
        "period_end": now,
        "period_start": now,
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "receipt_number": None,
        "rendering": None,
        "shipping_cost": None,
        "shipping_details": None,
        "starting_balance": 0,
        "statement_descriptor": None,
        "status": "paid",
        "status_transitions": {"finalized_at": now, "marked_uncollectible_at": None, "paid_at": now, "voided_at": None},
        "subtotal": subtotal,
        "subtotal_excluding_tax": subtotal,
        "test_clock": None,
        "total": total,
        "total_discount_amounts": [],
        "total_excluding_tax": total,
        "total_pretax_credit_amounts": [{"amount": discount, "credit_balance_transaction": None, "discount": None,
                                         "type": "discount"}] if discount else [],
        "total_tax_amounts": [],
        "total_taxes": [],
        "webhooks_delivered_at": now,
    }
    backend.store.insert(invoice, {"session": session["id"], "payment_intent": intent["id"] if intent else None,
                                   "charge": charge["id"] if charge else None})
    emit(backend, action, "customer.updated", customer, changed(customer_before, customer))
    draft = {**invoice, "status": "draft", "paid": False, "amount_paid": 0, "amount_remaining": total,
             "number": None, "status_transitions": {**invoice["status_transitions"], "finalized_at": None, "paid_at": None}}
    emit(backend, action, "invoice.created", draft)
    finalized = {**invoice, "status": "open", "paid": False, "amount_paid": 0, "amount_remaining": total,
                 "status_transitions": {**invoice["status_transitions"], "paid_at": None}}
    emit(backend, action, "invoice.finalized", finalized)
    emit(backend, action, "invoice.paid", invoice)
    emit(backend, action, "invoice.payment_succeeded", invoice)
    return invoice


def line_items_of(backend: Backend, session_id: str) -> list[dict[str, Any]]:
    import json

    rows = backend.store.query(
        "SELECT data FROM objects WHERE type = 'item' AND json_extract(internal, '$.session') = ? ORDER BY seq ASC",
        (session_id,),
    )
    return [json.loads(row["data"]) for row in rows]


# -- discounts chosen on the page ----------------------------------------------------------

def apply_promotion_code(backend: Backend, session_id: str, code: str) -> tuple[dict[str, Any], str | None]:
    """Apply a code typed by the customer; returns the session and the refusal, if any."""

    with backend.store.transaction():
        session = load_open_session(backend, session_id)
        if session is None:
            return backend.store.get(session_id, "checkout.session") or {}, "This Checkout Session is no longer active."
        if not session.get("allow_promotion_codes"):
            return session, "Promotion codes are not accepted for this order."
        code = (code or "").strip()
        if not code:
            return session, "Enter a promotion code."
        promotion_code = find_promotion_code(backend, code)
        if promotion_code is None:
            return session, INVALID_CODE_MESSAGE
        internal = backend.store.get_internal(session_id)
        refusal = promotion_code_refusal(
            backend,
            promotion_code,
            currency=session["currency"],
            subtotal=session["amount_subtotal"],
            customer=session["customer"],
            creates_customer=session.get("customer_creation") == "always" or internal.get("invoice_creation", False),
            products=[item["price"]["product"] for item in line_items_of(backend, session_id)],
        )
        if refusal:
            return session, refusal
        session = apply_discount(backend, session, promotion_code["promotion"]["coupon"], promotion_code["id"])
        return session, None


def remove_promotion_code(backend: Backend, session_id: str) -> dict[str, Any]:

    with backend.store.transaction():
        session = load_open_session(backend, session_id)
        if session is None:
            return backend.store.get(session_id, "checkout.session") or {}
        return apply_discount(backend, session, None, None)


# -- paying -------------------------------------------------------------------------------

def _today(backend: Backend) -> tuple[int, int]:
    now = datetime.fromtimestamp(backend.clock.now(), tz=timezone.utc)
    return now.year, now.month


def pay(
    backend: Backend,
    session_id: str,
    *,
    email: str | None,
    name: str | None,
    card_number: str | None,
    expiry: str | None,
    cvc: str | None,
    promotion_code: str | None = None,
    fallback_email: str | None = None,
) -> PayOutcome:
    """Pay a session with a card (``fallback_email`` is used when neither the form nor the
    session knows the customer's e-mail)."""

    if promotion_code:
        session, refusal = apply_promotion_code(backend, session_id, promotion_code)
        if refusal:
            return PayOutcome("form_error", session, message=refusal, field="promotionCode")
    with backend.store.transaction():
        session = load_open_session(backend, session_id)
        if session is None:
            return PayOutcome("not_open", backend.store.get(session_id, "checkout.session") or {})
        action = session_action(backend, session_id)
        customer = backend.store.get(session["customer"], "customer") if session["customer"] else None
        email = (email or "").strip() or (customer or {}).get("email") or session.get("customer_email") or fallback_email
        if not email:
            return PayOutcome("form_error", session, message="Your email address is incomplete.", field="email")
        try:
            check_email(email)
        except Exception:
            return PayOutcome("form_error", session, message="Your email address is invalid.", field="email")
        name = (name or "").strip() or None
        if session["amount_total"] == 0:
            return _complete(backend, action, session, email=email, name=name, intent=None, charge=None, payment_method=None)
        try:
            card = check_card(card_number or "", expiry or "", cvc or "", today=_today(backend))
        except CardFormError as error:
            return PayOutcome("form_error", session, message=error.message, field=error.field)
        intent = _session_intent(backend, action, session)
        payment_method = new_payment_method(backend, card, email=email, name=name, customer=None)
        if card.card.decline is not None and not card.card.three_d_secure:
            return _decline(backend, action, session, intent, payment_method, card)
        if card.card.three_d_secure:
            return _require_action(backend, action, session, intent, payment_method, email=email, name=name)
        return _succeed(backend, action, session, intent, payment_method, card, email=email, name=name, three_d_secure=False)


def authenticate(backend: Backend, session_id: str, result: str) -> PayOutcome:
    """The customer's answer on the 3-D Secure challenge page: ``complete`` or ``fail``."""

    with backend.store.transaction():
        session = load_open_session(backend, session_id)
        if session is None:
            return PayOutcome("not_open", backend.store.get(session_id, "checkout.session") or {})
        intent_id = session_internal(backend, session_id).get("payment_intent")
        intent = backend.store.get(intent_id, "payment_intent") if intent_id else None
        if intent is None or intent["status"] != "requires_action":
            return PayOutcome("form_error", session, message="There is no payment waiting for authentication.", payment_intent=intent)
        action = session_action(backend, session_id)
        pending = backend.store.get_internal(intent["id"]).get("pending", {})
        payment_method = backend.store.get(intent["payment_method"], "payment_method")
        if result == "complete":
            card = card_details(pending["card_number"], pending["exp_month"], pending["exp_year"], pending["cvc"])
            if card.card.decline is not None:
                # Authenticated, then declined by the issuer (4000 0084 0000 1629).
                return _decline(backend, action, session, intent, payment_method, card, three_d_secure=True)
            return _succeed(backend, action, session, intent, payment_method, card,
                            email=pending["email"], name=pending["name"], three_d_secure=True)
        intent.update({
            "last_payment_error": {
                "code": "payment_intent_authentication_failure",
                "doc_url": DOC_URL_BASE + "payment-intent-authentication-failure",
                "message": AUTHENTICATION_FAILED_MESSAGE,
                "payment_method": copy.deepcopy(payment_method),
                "type": "invalid_request_error",
            },
            "next_action": None,
            "payment_method": None,
            "status": "requires_payment_method",
        })
        backend.store.save(intent)
        emit(backend, action, "payment_intent.payment_failed", intent)
        return PayOutcome("authentication_failed", session, message=AUTHENTICATION_FAILED_MESSAGE,
                          payment_intent=intent, payment_method=payment_method)


def cancel_payment_intent(backend: Backend, action: Action, intent_id: str) -> None:
    """Cancel a session's unfinished PaymentIntent (the session expired, or became free)."""
    intent = backend.store.get(intent_id, "payment_intent")
    if intent is None or intent["status"] in ("succeeded", "canceled"):
        return
    intent.update({
        "canceled_at": backend.now(),
        "cancellation_reason": "automatic",
        "next_action": None,
        "status": "canceled",
    })
    backend.store.save(intent)
    emit(backend, action, "payment_intent.canceled", intent)


def session_internal(backend: Backend, session_id: str) -> dict[str, Any]:
    return backend.store.get_internal(session_id)


def _session_intent(backend: Backend, action: Action, session: dict[str, Any]) -> dict[str, Any]:
    """The session's PaymentIntent, made at the first attempt to pay as Checkout does; later
    attempts reuse it, with the amount brought up to date (a code applied in between)."""
    internal = backend.store.get_internal(session["id"])
    intent_id = internal.get("payment_intent")
    if intent_id:
        intent = backend.store.get(intent_id, "payment_intent")
        if intent is not None:
            if intent["amount"] != session["amount_total"]:
                intent["amount"] = session["amount_total"]
                backend.store.save(intent)
            return intent
    intent = new_payment_intent(backend, action, session)
    internal["payment_intent"] = intent["id"]
    backend.store.set_internal(session["id"], internal)
    return intent


def _decline(backend: Backend, action: Action, session: dict[str, Any], intent: dict[str, Any],
             payment_method: dict[str, Any], card: CardDetails, *, three_d_secure: bool = False) -> PayOutcome:
    decline = card.card.decline
    assert decline is not None
    charge = new_charge(backend, action, intent, payment_method, card, decline=decline, three_d_secure=three_d_secure)
    intent.update({
        "last_payment_error": card_error_body(decline, charge=charge, payment_method=payment_method, intent=None),
        "latest_charge": charge["id"],
        "next_action": None,
        "payment_method": None,
        "status": "requires_payment_method",
    })
    backend.store.save(intent)
    emit(backend, action, "payment_intent.payment_failed", intent)
    return PayOutcome("declined", session, message=decline.message, field="cardNumber", decline=decline,
                      payment_intent=intent, charge=charge, payment_method=payment_method)


def _require_action(backend: Backend, action: Action, session: dict[str, Any], intent: dict[str, Any],
                    payment_method: dict[str, Any], *, email: str, name: str | None) -> PayOutcome:
    challenge_url = f"{backend.public_url}/c/pay/{session['id']}/authenticate"
    intent.update({
        "last_payment_error": None,
        "next_action": {
            "redirect_to_url": {"return_url": f"{backend.public_url}/c/pay/{session['id']}", "url": challenge_url},
            "type": "redirect_to_url",
        },
        "payment_method": payment_method["id"],
        "status": "requires_action",
    })
    backend.store.save(intent)
    card_internal = backend.store.get_internal(payment_method["id"])
    internal = backend.store.get_internal(intent["id"])
    internal["pending"] = {
        "card_number": card_internal["test_card"],
        "exp_month": payment_method["card"]["exp_month"],
        "exp_year": payment_method["card"]["exp_year"],
        "cvc": "",
        "email": email,
        "name": name,
    }
    backend.store.set_internal(intent["id"], internal)
    emit(backend, action, "payment_intent.requires_action", intent)
    return PayOutcome("requires_action", session, payment_intent=intent, payment_method=payment_method,
                      details={"redirect_url": challenge_url})


def _succeed(backend: Backend, action: Action, session: dict[str, Any], intent: dict[str, Any],
             payment_method: dict[str, Any], card: CardDetails, *, email: str, name: str | None,
             three_d_secure: bool) -> PayOutcome:
    customer = _customer_for(backend, action, session, email=email, name=name)
    if customer is not None:
        intent["customer"] = customer["id"]
        payment_method["customer"] = customer["id"]
        backend.store.save(payment_method)
        emit(backend, action, "payment_method.attached", payment_method)
    charge = new_charge(backend, action, intent, payment_method, card, decline=None, three_d_secure=three_d_secure)
    intent.update({
        "amount_received": intent["amount"],
        "last_payment_error": None,
        "latest_charge": charge["id"],
        "next_action": None,
        "payment_method": payment_method["id"],
        "status": "succeeded",
    })
    backend.store.save(intent)
    emit(backend, action, "payment_intent.succeeded", intent)
    return _complete(backend, action, session, email=email, name=name, intent=intent, charge=charge,
                     payment_method=payment_method, customer=customer)


def _customer_for(backend: Backend, action: Action, session: dict[str, Any], *, email: str,
                  name: str | None) -> dict[str, Any] | None:
    if session["customer"]:
        return backend.store.get(session["customer"], "customer")
    internal = backend.store.get_internal(session["id"])
    wants_customer = (
        session.get("customer_creation") == "always"
        or internal.get("invoice_creation", False)
        or session["amount_total"] == 0
    )
    if not wants_customer:
        return None
    return new_customer(backend, action, email=email, name=name)


def _complete(backend: Backend, action: Action, session: dict[str, Any], *, email: str, name: str | None,
              intent: dict[str, Any] | None, charge: dict[str, Any] | None, payment_method: dict[str, Any] | None,
              customer: dict[str, Any] | None = None) -> PayOutcome:

    if customer is None:
        customer = _customer_for(backend, action, session, email=email, name=name)
    internal = backend.store.get_internal(session["id"])
    if intent is None and internal.get("payment_intent"):
        # A code made the order free after a card had been tried: that attempt's intent is void.
        cancel_payment_intent(backend, action, internal["payment_intent"])
    invoice = None
    if internal.get("invoice_creation") and customer is not None:
        invoice = _new_invoice(backend, action, session, customer, intent, charge)
    discount = internal.get("discount")
    if discount:
        redeem(backend, discount["coupon"], discount.get("promotion_code"))
    session.update({
        "collected_information": {"business_name": None, "individual_name": None, "shipping_details": None},
        "customer": customer["id"] if customer else None,
        "customer_details": {
            "address": _address(),
            "business_name": None,
            "email": email,
            "individual_name": None,
            "name": name,
            "phone": None,
            "tax_exempt": "none",
            "tax_ids": [],
        },
        "invoice": invoice["id"] if invoice else None,
        "payment_intent": intent["id"] if intent else None,
        "payment_status": "paid" if intent else "no_payment_required",
        "status": "complete",
        "url": None,
    })
    backend.store.save(session)
    backend.timers.cancel(TIMER_EXPIRE, session["id"])
    emit(backend, action, "checkout.session.completed", session)
    return PayOutcome("completed", session, payment_intent=intent, charge=charge, payment_method=payment_method)


# Checkout Sessions: discounts, and expiry (by the API, the control API or the session's timer).

TIMER_EXPIRE = "checkout_session_expiry"


def apply_discount(backend: Backend, session: dict[str, Any], coupon_id: str | None,
                   promotion_code_id: str | None) -> dict[str, Any]:
    """Set (or with ``coupon_id`` None, remove) the session's discount and recompute every
    amount: each item's ``amount_discount``/``amount_total``, the totals and ``total_details``."""
    internal = backend.store.get_internal(session["id"])
    items = line_items_of(backend, session["id"])
    coupon = backend.store.get(coupon_id, "coupon") if coupon_id else None
    if coupon is None:
        shares = [0] * len(items)
    else:
        applies_to = backend.store.get_internal(coupon["id"]).get("applies_to")
        lines = [{"product": item["price"]["product"], "amount_subtotal": item["amount_subtotal"]} for item in items]
        shares = allocate_discount(coupon, applies_to, lines)
    discount_id = new_id("di") if coupon else None
    for item, share in zip(items, shares):
        item["amount_discount"] = share
        item["amount_total"] = item["amount_subtotal"] - share
        backend.store.save(item)
        item_internal = backend.store.get_internal(item["id"])
        item_internal["discounts"] = [{"amount": share, "discount_id": discount_id}] if coupon and share else []
        backend.store.set_internal(item["id"], item_internal)
    total_discount = sum(shares)
    session["amount_total"] = session["amount_subtotal"] - total_discount
    session["total_details"]["amount_discount"] = total_discount
    session["discounts"] = [{"coupon": coupon["id"], "promotion_code": promotion_code_id}] if coupon else []
    backend.store.save(session)
    internal["discount"] = {"coupon": coupon["id"], "promotion_code": promotion_code_id, "id": discount_id,
                            "start": backend.now()} if coupon else None
    backend.store.set_internal(session["id"], internal)
    return session


def load_open_session(backend: Backend, session_id: str) -> dict[str, Any] | None:
    """The session if a customer can still pay it; a session past ``expires_at`` whose timer
    has not fired yet is expired now. Call inside a transaction."""
    session = backend.store.get(session_id, "checkout.session")
    if session is None or session["status"] != "open":
        return None
    if session["expires_at"] <= backend.now():
        expire_session(backend, backend.system_action(backend.store.get_internal(session_id).get("api_version")), session)
        return None
    return session


def expire_session(backend: Backend, action: Action, session: dict[str, Any]) -> dict[str, Any]:
    internal = backend.store.get_internal(session["id"])
    if internal.get("payment_intent"):
        cancel_payment_intent(backend, action, internal["payment_intent"])
    session["status"] = "expired"
    session["url"] = None
    backend.store.save(session)
    backend.timers.cancel(TIMER_EXPIRE, session["id"])
    emit(backend, action, "checkout.session.expired", session)
    return session


@timer_handler(TIMER_EXPIRE)
def expire_when_due(backend: Backend, session_id: str) -> None:
    session = backend.store.get(session_id, "checkout.session")
    if session is not None and session["status"] == "open":
        internal = backend.store.get_internal(session_id)
        expire_session(backend, backend.system_action(internal.get("api_version")), session)
