"""Checkout Sessions (``mode=payment``): create, retrieve, list, expire, line items."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from ..backend import Action, Backend, missing_param
from .. import connect
from ..errors import InvalidRequestError, NotEmulated
from ..expand import expand, includer, present
from ..ids import new_id
from ..money import format_amount
from ..payments import TIMER_EXPIRE, apply_discount, expire_session, load_open_session
from .common import check_limit, exclusive, list_page, new_metadata
from .coupons import coupon_is_valid, promotion_code_refusal
from .customers import check_email, load_live_customer
from .products import check_currency, new_price, new_product, unit_amount_of
from .routing import route

# Stripe takes at most eight digits in the minor unit for one payment.
AMOUNT_MAX = 99_999_999

MIN_LIFETIME = 30 * 60
MAX_LIFETIME = 24 * 3600
# A caller computing "now + 30 minutes" on its own clock is a moment behind ours by the time the
# request arrives; a few seconds of leeway keep that from failing at random.
LIFETIME_LEEWAY = 10
_URL = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)

# Stripe accepts these; emulating them would need behaviour the hosted page does not have.
_NOT_EMULATED = ("after_expiration", "consent_collection", "customer_update", "setup_intent_data",
                 "shipping_address_collection", "shipping_options", "subscription_data", "payment_method_options")


# Stripe's minimum charge amounts ("Supported currencies › Minimum and maximum charge amounts"),
# with the way its Checkout error writes each amount.
MINIMUM_CHARGE: dict[str, tuple[int, str]] = {
    "usd": (50, "$0.50"), "aed": (200, "2.00 د.إ"), "aud": (50, "$0.50"), "bgn": (100, "лв1.00"),
    "brl": (50, "R$0.50"), "cad": (50, "$0.50"), "chf": (50, "0.50 Fr"), "czk": (1500, "15.00Kč"),
    "dkk": (250, "2.50 kr."), "eur": (50, "€0.50"), "gbp": (30, "£0.30"), "hkd": (400, "$4.00"),
    "huf": (17500, "175.00 Ft"), "inr": (50, "₹0.50"), "jpy": (50, "¥50"), "mxn": (1000, "$10.00"),
    "myr": (200, "RM2.00"), "nok": (300, "3.00 kr"), "nzd": (50, "$0.50"), "pln": (200, "2.00 zł"),
    "ron": (200, "2.00 lei"), "sek": (300, "3.00 kr"), "sgd": (50, "$0.50"), "thb": (1000, "฿10.00"),
}


def _check_minimum(amount_total: int, currency: str) -> None:
    """A session that charges something must charge at least Stripe's minimum for its currency
    (a free order, 100 % off, charges nothing and is allowed)."""
    minimum = MINIMUM_CHARGE.get(currency)
    if minimum is None or amount_total == 0 or amount_total >= minimum[0]:
        return
    raise InvalidRequestError(
        f"The Checkout Session's total amount due must add up to at least {minimum[1]} {currency}",
        param="line_items",
    )


def _check_account_can_charge(backend: Backend) -> None:
    account_id = backend.store.current_account()
    if not account_id:
        return
    with backend.store.scoped(connect.PLATFORM):
        account = backend.store.get(account_id, "account")
    if account is not None and not account["charges_enabled"]:
        raise InvalidRequestError(
            "Your account cannot currently make charges. To find out why charge creation is currently disabled, "
            f"look at the `requirements.disabled_reason` property on this account (/v1/accounts/{account_id}).",
        )


def _check_url(params: dict[str, Any], name: str) -> str | None:
    url = params.get(name)
    if url is None:
        return None
    if url == "" or not _URL.match(url) or len(url) > 5000:
        raise InvalidRequestError("Not a valid URL", param=name, code="url_invalid")
    return url


def _refuse_unemulated(params: dict[str, Any]) -> None:
    for name in _NOT_EMULATED:
        if name in params:
            raise NotEmulated(name)
    for name in ("automatic_tax", "phone_number_collection", "tax_id_collection"):
        if params.get(name, {}).get("enabled"):
            raise NotEmulated(f"{name}[enabled]", "only false")
    if params.get("custom_fields"):
        raise NotEmulated("custom_fields")
    if params.get("billing_address_collection") == "required":
        raise NotEmulated("billing_address_collection", "only auto")
    types = params.get("payment_method_types")
    if types is not None and types != ["card"]:
        raise NotEmulated("payment_method_types", "only card")
    data = params.get("payment_intent_data", {})
    for name in ("on_behalf_of", "transfer_data"):
        if name in data:
            raise NotEmulated(f"payment_intent_data[{name}]", "Connect")
    if data.get("capture_method") == "manual":
        raise NotEmulated("payment_intent_data[capture_method]", "only automatic capture")
    ui_mode = params.get("ui_mode")
    if ui_mode not in (None, "hosted", "hosted_page"):
        raise NotEmulated("ui_mode", "only the hosted page")


def _line_items(backend: Backend, action: Action, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Resolve each line item to a price (creating inline products and prices for
    ``price_data``) and its quantity."""
    items = params.get("line_items")
    if not items:
        raise missing_param("line_items")
    if len(items) > 100:
        raise InvalidRequestError("You can only have up to 100 line items in `payment` mode.", param="line_items")
    resolved = []
    for index, item in enumerate(items):
        where = f"line_items[{index}]"
        for name in ("adjustable_quantity", "dynamic_tax_rates", "tax_rates"):
            if name in item:
                raise NotEmulated(f"{where}[{name}]")
        if "price" in item and "price_data" in item:
            raise InvalidRequestError(f"You may only specify one of these parameters: {where}[price], {where}[price_data].",
                                      param=f"{where}[price_data]")
        if "quantity" not in item:
            raise missing_param(f"{where}[quantity]")
        quantity = item["quantity"]
        if quantity < 1:
            raise InvalidRequestError("This value must be greater than or equal to 1.", param=f"{where}[quantity]",
                                      code="parameter_invalid_integer")
        if quantity > 999_999:
            raise InvalidRequestError("This value must be less than or equal to 999999.", param=f"{where}[quantity]",
                                      code="parameter_invalid_integer")
        if item.get("price"):
            price = backend.load(item["price"], "price", "price", param=f"{where}[price]")
            if not price["active"]:
                raise InvalidRequestError("The price specified is inactive. This field only accepts active prices.",
                                          param=f"{where}[price]")
        elif "price_data" in item:
            price = _inline_price(backend, action, item["price_data"], f"{where}[price_data]")
        else:
            raise InvalidRequestError(f"You must specify either `price` or `price_data` in {where}.", param=f"{where}[price]")
        if price["type"] == "recurring":
            raise InvalidRequestError(
                "You specified `payment` mode but passed a recurring price. Either switch to `subscription` mode or use only one-time prices.",
                param=f"{where}[price]",
            )
        resolved.append({"price": price, "quantity": quantity})
    return resolved


def _inline_price(backend: Backend, action: Action, data: dict[str, Any], where: str) -> dict[str, Any]:
    if data.get("recurring"):
        raise InvalidRequestError(
            "You specified `payment` mode but passed a recurring price. Either switch to `subscription` mode or use only one-time prices.",
            param=f"{where}[recurring]",
        )
    if data.get("product") and data.get("product_data"):
        raise InvalidRequestError(f"You may only specify one of these parameters: {where}[product], {where}[product_data].",
                                  param=f"{where}[product_data]")
    if data.get("product"):
        product_id = backend.load(data["product"], "product", "product", param=f"{where}[product]")["id"]
    elif data.get("product_data"):
        product_data = data["product_data"]
        if not product_data.get("name"):
            from ..params import empty_string_error

            raise empty_string_error(f"{where}[product_data][name]")
        product_id = new_product(backend, action, product_data)["id"]
    else:
        raise InvalidRequestError(f"You must specify either `product` or `product_data` in {where}.", param=f"{where}[product]")
    return new_price(
        backend,
        action,
        product=product_id,
        currency=check_currency(data["currency"], f"{where}[currency]"),
        unit_amount=unit_amount_of(data, where),
        active=False,
        tax_behavior=data.get("tax_behavior"),
    )


def _product_name(backend: Backend, product_id: str) -> str:
    product = backend.store.get(product_id, "product")
    return product["name"] if product else product_id


def _expiry(backend: Backend, params: dict[str, Any], now: int) -> int:
    expires_at = params.get("expires_at")
    if expires_at is None:
        return now + MAX_LIFETIME
    if expires_at < now + MIN_LIFETIME - LIFETIME_LEEWAY:
        raise InvalidRequestError("The `expires_at` timestamp must be at least 30 minutes from Checkout Session creation.",
                                  param="expires_at")
    if expires_at > now + MAX_LIFETIME:
        raise InvalidRequestError("The `expires_at` timestamp must be less than 24 hours from Checkout Session creation.",
                                  param="expires_at")
    return expires_at


def _initial_discount(backend: Backend, params: dict[str, Any], currency: str, subtotal: int,
                      customer: str | None, creates_customer: bool, products: list[str]) -> dict[str, Any] | None:
    discounts = params.get("discounts") or []
    if not discounts:
        return None
    if len(discounts) > 1:
        raise InvalidRequestError("You may only specify one discount.", param="discounts")
    discount = discounts[0]
    if discount.get("coupon") and discount.get("promotion_code"):
        raise InvalidRequestError("You may only specify one of these parameters: discounts[0][coupon], discounts[0][promotion_code].",
                                  param="discounts[0][promotion_code]")
    if discount.get("coupon"):
        coupon = backend.load(discount["coupon"], "coupon", "coupon", param="discounts[0][coupon]")
        if not coupon_is_valid(backend, coupon):
            raise InvalidRequestError(f"Coupon {coupon['id']} is no longer valid.", param="discounts[0][coupon]")
        if coupon.get("amount_off") is not None and coupon["currency"] != currency:
            raise InvalidRequestError(
                f"The coupon {coupon['id']} is in {coupon['currency']}, but this Checkout Session is in {currency}.",
                param="discounts[0][coupon]",
            )
        applies_to = backend.store.get_internal(coupon["id"]).get("applies_to")
        if applies_to and not set(applies_to) & set(products):
            raise InvalidRequestError(f"Coupon {coupon['id']} does not apply to any of this Checkout Session's line items.",
                                      param="discounts[0][coupon]")
        return {"coupon": coupon["id"], "promotion_code": None}
    if discount.get("promotion_code"):
        promotion_code = backend.load(discount["promotion_code"], "promotion_code", "promotion code",
                                      param="discounts[0][promotion_code]")
        refusal = promotion_code_refusal(backend, promotion_code, currency=currency, subtotal=subtotal,
                                         customer=customer, creates_customer=creates_customer, products=products)
        if refusal:
            raise InvalidRequestError(f"The promotion code {promotion_code['code']} cannot be redeemed for this Checkout Session.",
                                      param="discounts[0][promotion_code]")
        return {"coupon": promotion_code["promotion"]["coupon"], "promotion_code": promotion_code["id"]}
    raise InvalidRequestError("You must specify either `coupon` or `promotion_code` in discounts[0].", param="discounts[0]")


@route("POST", "/v1/checkout/sessions")
def create_session(backend: Backend, action: Action, params: dict[str, Any]) -> dict[str, Any]:
    _refuse_unemulated(params)
    if "mode" not in params:
        raise missing_param("mode")
    if params["mode"] != "payment":
        raise NotEmulated("mode", f"only payment, not {params['mode']}")
    success_url = _check_url(params, "success_url")
    if success_url is None:
        raise missing_param("success_url")
    cancel_url = _check_url(params, "cancel_url")
    exclusive(params, "customer", "customer_email")
    exclusive(params, "customer", "customer_creation")
    exclusive(params, "allow_promotion_codes", "discounts")
    now = backend.now()
    expires_at = _expiry(backend, params, now)
    customer_id = params.get("customer") or None
    if customer_id:
        load_live_customer(backend, customer_id, "customer")
    customer_email = params.get("customer_email") or None
    check_email(customer_email, "customer_email")
    items = _line_items(backend, action, params)
    currencies = {item["price"]["currency"] for item in items}
    if len(currencies) > 1:
        raise InvalidRequestError("All line items must have the same currency.", param="line_items")
    currency = currencies.pop()
    if params.get("currency") and params["currency"].lower() != currency:
        raise InvalidRequestError(f"The currency {params['currency'].lower()} does not match the line items' currency {currency}.",
                                  param="currency")
    lines = [
        {"product": item["price"]["product"], "amount_subtotal": item["price"]["unit_amount"] * item["quantity"]}
        for item in items
    ]
    subtotal = sum(line["amount_subtotal"] for line in lines)
    if subtotal > AMOUNT_MAX:
        raise InvalidRequestError(
            f"The Checkout Session's total amount due must be no more than {format_amount(AMOUNT_MAX, currency)}.",
            param="line_items",
            code="amount_too_large",
        )
    invoice_creation = params.get("invoice_creation") or {}
    invoice_enabled = bool(invoice_creation.get("enabled"))
    invoice_data_in = invoice_creation.get("invoice_data") or {}
    if "account_tax_ids" in invoice_data_in or "issuer" in invoice_data_in:
        raise NotEmulated("invoice_creation[invoice_data][account_tax_ids]")
    if invoice_data_in and not invoice_enabled:
        raise InvalidRequestError("`invoice_creation[invoice_data]` can only be used when `invoice_creation[enabled]` is true.",
                                  param="invoice_creation[invoice_data]")
    customer_creation = params.get("customer_creation")
    creates_customer = customer_creation == "always" or invoice_enabled
    discount = _initial_discount(backend, params, currency, subtotal, customer_id, creates_customer,
                                 [line["product"] for line in lines])
    session_id = new_id("cs_test")
    intent_data = copy.deepcopy(params.get("payment_intent_data") or {})
    intent_data["metadata"] = new_metadata(intent_data) if intent_data.get("metadata") is not None else {}
    invoice_data = {
        "custom_fields": invoice_data_in.get("custom_fields") or None,
        "description": invoice_data_in.get("description") or None,
        "footer": invoice_data_in.get("footer") or None,
        "metadata": new_metadata(invoice_data_in) if invoice_data_in.get("metadata") else {},
        "rendering_options": invoice_data_in.get("rendering_options") or None,
    }
    ui_mode = params.get("ui_mode") or ("hosted_page" if action.api_version >= "2026" else "hosted")
    session = {
        "id": session_id,
        "object": "checkout.session",
        "adaptive_pricing": {"enabled": bool((params.get("adaptive_pricing") or {}).get("enabled", False))},
        "after_expiration": None,
        "allow_promotion_codes": params.get("allow_promotion_codes"),
        "amount_subtotal": subtotal,
        "amount_total": subtotal,
        "automatic_tax": {"enabled": False, "liability": None, "provider": None, "status": None},
        "billing_address_collection": params.get("billing_address_collection"),
        "cancel_url": cancel_url,
        "client_reference_id": params.get("client_reference_id") or None,
        "client_secret": None,
        "collected_information": None,
        "consent": None,
        "consent_collection": None,
        "created": now,
        "currency": currency,
        "currency_conversion": None,
        "custom_fields": [],
        "custom_text": {
            "after_submit": (params.get("custom_text") or {}).get("after_submit") or None,
            "shipping_address": None,
            "submit": (params.get("custom_text") or {}).get("submit") or None,
            "terms_of_service_acceptance": None,
        },
        "customer": customer_id,
        "customer_account": None,
        "customer_creation": None if customer_id else (customer_creation or "if_required"),
        "customer_details": None,
        "customer_email": customer_email,
        "discounts": [],
        "expires_at": expires_at,
        "integration_identifier": None,
        "invoice": None,
        "invoice_creation": {
            "enabled": invoice_enabled,
            "invoice_data": {
                "account_tax_ids": None,
                "custom_fields": invoice_data["custom_fields"],
                "description": invoice_data["description"],
                "footer": invoice_data["footer"],
                "issuer": None,
                "metadata": invoice_data["metadata"],
                "rendering_options": invoice_data["rendering_options"],
            },
        },
        "livemode": False,
        "locale": params.get("locale"),
        "managed_payments": {"enabled": False},
        "metadata": new_metadata(params),
        "mode": "payment",
        "origin_context": params.get("origin_context"),
        "payment_intent": None,
        "payment_link": None,
        "payment_method_collection": params.get("payment_method_collection", "if_required"),
        "payment_method_configuration_details": None,
        "payment_method_options": {"card": {"request_three_d_secure": "automatic"}},
        "payment_method_types": ["card"],
        "payment_status": "unpaid",
        "permissions": None,
        "phone_number_collection": {"enabled": False},
        "recovered_from": None,
        "saved_payment_method_options": (
            {"allow_redisplay_filters": ["always"], "payment_method_remove": "disabled", "payment_method_save": None}
            if customer_id else None
        ),
        "setup_intent": None,
        "shipping_address_collection": None,
        "shipping_cost": None,
        "shipping_options": [],
        "status": "open",
        "submit_type": params.get("submit_type"),
        "subscription": None,
        "success_url": success_url,
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "ui_mode": ui_mode,
        "url": f"{backend.public_url}/c/pay/{session_id}",
        "wallet_options": None,
    }
    if customer_email or customer_id:
        email = customer_email or (backend.store.get(customer_id, "customer") or {}).get("email")
        if email:
            session["customer_details"] = {
                "address": None, "business_name": None, "email": email, "individual_name": None,
                "name": None, "phone": None, "tax_exempt": "none", "tax_ids": None,
            }
    internal = {
        "api_version": action.api_version,
        "payment_intent_data": intent_data,
        "invoice_creation": invoice_enabled,
        "invoice_data": invoice_data,
        "discount": None,
    }
    backend.store.insert(session, internal)
    for item in items:
        price = item["price"]
        line = {
            "id": new_id("li"),
            "object": "item",
            "adjustable_quantity": None,
            "amount_discount": 0,
            "amount_subtotal": price["unit_amount"] * item["quantity"],
            "amount_tax": 0,
            "amount_total": price["unit_amount"] * item["quantity"],
            "currency": currency,
            "description": _product_name(backend, price["product"]),
            "metadata": {},
            "price": copy.deepcopy(price),
            "quantity": item["quantity"],
        }
        backend.store.insert(line, {"session": session_id, "discounts": []})
    if discount:
        session = apply_discount(backend, session, discount["coupon"], discount["promotion_code"])
    _check_minimum(session["amount_total"], currency)
    connect.check_application_fee(backend, intent_data.get("application_fee_amount"), session["amount_total"], currency)
    _check_account_can_charge(backend)
    backend.timers.schedule(TIMER_EXPIRE, session_id, expires_at)
    return respond_session(backend, session, params)


def discount_object(backend: Backend, session_id: str, discount: dict[str, Any]) -> dict[str, Any]:
    coupon = backend.store.get(discount["coupon"], "coupon")
    return {
        "id": discount["id"],
        "object": "discount",
        "checkout_session": session_id,
        "coupon": present(backend, coupon) if coupon else None,
        "customer": None,
        "customer_account": None,
        "end": None,
        "invoice": None,
        "invoice_item": None,
        "promotion_code": discount.get("promotion_code"),
        "source": {"coupon": discount["coupon"], "type": "coupon"},
        "start": discount["start"],
        "subscription": None,
        "subscription_item": None,
    }


def respond_session(backend: Backend, session: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    paths = list(params.get("expand") or [])
    breakdown = "total_details.breakdown" in paths
    paths = [path for path in paths if path != "total_details.breakdown"]
    shown = expand(backend, session, paths)
    if breakdown and shown.get("total_details") is not None:
        discount = backend.store.get_internal(session["id"]).get("discount")
        discounts = []
        if discount:
            discounts.append({"amount": session["total_details"]["amount_discount"],
                              "discount": discount_object(backend, session["id"], discount)})
        shown["total_details"]["breakdown"] = {"discounts": discounts, "taxes": []}
    return shown


@includer("checkout.session", "line_items")
def include_line_items(backend: Backend, session: dict[str, Any]) -> dict[str, Any]:
    return line_items_page(backend, session["id"], {"limit": 10})


@includer("item", "discounts")
def include_item_discounts(backend: Backend, item: dict[str, Any]) -> list[dict[str, Any]]:
    row = backend.store.query_one("SELECT internal FROM objects WHERE id = ?", (item["id"],))
    internal = json.loads(row["internal"]) if row else {}
    session_discount = backend.store.get_internal(internal.get("session", "")).get("discount")
    if not session_discount:
        return []
    return [
        {"amount": entry["amount"], "discount": discount_object(backend, internal["session"], session_discount)}
        for entry in internal.get("discounts", [])
    ]


@includer("item", "taxes")
def include_item_taxes(backend: Backend, item: dict[str, Any]) -> list[dict[str, Any]]:
    return []


def line_items_page(backend: Backend, session_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """Line items in the order given at creation (not newest first)."""
    limit = check_limit(params)
    where, args = ["type = 'item'", "json_extract(internal, '$.session') = ?"], [session_id]
    if params.get("starting_after"):
        seq = backend.store.seq_of(params["starting_after"], "item")
        if seq is None:
            raise InvalidRequestError(f"No such line item: '{params['starting_after']}'", param="starting_after",
                                      code="resource_missing", status=404)
        where.append("seq > ?")
        args.append(seq)
    if params.get("ending_before"):
        seq = backend.store.seq_of(params["ending_before"], "item")
        if seq is None:
            raise InvalidRequestError(f"No such line item: '{params['ending_before']}'", param="ending_before",
                                      code="resource_missing", status=404)
        rows = backend.store.query(
            f"SELECT data FROM objects WHERE {' AND '.join(where)} AND seq < ? ORDER BY seq DESC LIMIT ?",
            [*args, seq, limit + 1],
        )
        has_more = len(rows) > limit
        rows = list(reversed(rows[:limit]))
    else:
        rows = backend.store.query(
            f"SELECT data FROM objects WHERE {' AND '.join(where)} ORDER BY seq ASC LIMIT ?", [*args, limit + 1]
        )
        has_more = len(rows) > limit
        rows = rows[:limit]
    return {
        "object": "list",
        "data": [json.loads(row["data"]) for row in rows],
        "has_more": has_more,
        "url": f"/v1/checkout/sessions/{session_id}/line_items",
    }


def _fresh(backend: Backend, session_id: str, param: str = "session") -> dict[str, Any]:
    backend.load(session_id, "checkout.session", "checkout.session", param=param)
    load_open_session(backend, session_id)
    return backend.store.get(session_id, "checkout.session")  # type: ignore[return-value]


@route("GET", "/v1/checkout/sessions/{session}")
def retrieve_session(backend: Backend, action: Action, params: dict[str, Any], session: str) -> dict[str, Any]:
    return respond_session(backend, _fresh(backend, session), params)


@route("POST", "/v1/checkout/sessions/{session}/expire")
def expire_session_endpoint(backend: Backend, action: Action, params: dict[str, Any], session: str) -> dict[str, Any]:
    current = _fresh(backend, session)
    if current["status"] != "open":
        raise InvalidRequestError(
            'Only Checkout Sessions with a status in ["open"] can be expired. '
            f"This Checkout Session has a status of `{current['status']}`."
        )
    return respond_session(backend, expire_session(backend, action, current), params)


@route("GET", "/v1/checkout/sessions/{session}/line_items")
def list_session_line_items(backend: Backend, action: Action, params: dict[str, Any], session: str) -> dict[str, Any]:
    _fresh(backend, session)
    return expand(backend, line_items_page(backend, session, params), params.get("expand"))


@route("GET", "/v1/checkout/sessions")
def list_sessions(backend: Backend, action: Action, params: dict[str, Any]) -> dict[str, Any]:
    equals: dict[str, Any] = {}
    for name in ("payment_intent", "customer", "payment_link", "subscription", "status"):
        if params.get(name):
            equals[f"$.{name}"] = params[name]
    email = (params.get("customer_details") or {}).get("email")
    if email:
        equals["$.customer_details.email"] = email
    page = list_page(backend, params, object_type="checkout.session", object_name="checkout.session",
                     url="/v1/checkout/sessions", equals=equals)
    return page
