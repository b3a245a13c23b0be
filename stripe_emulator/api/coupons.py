"""Coupons and Promotion codes, and how a discount spreads over a Checkout Session's items."""

from __future__ import annotations

import json
import re
import secrets
import string
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from ..backend import Action, Backend
from ..errors import InvalidRequestError, NotEmulated
from ..events import emit
from ..expand import includer, presenter
from ..ids import new_coupon_id, new_id
from .common import apply_metadata, list_page, new_metadata, respond
from .customers import load_live_customer
from .products import check_currency
from .routing import route

_CODE = re.compile(r"^[A-Za-z0-9\-]{1,500}$")
_COUPON_ID = re.compile(r"^[A-Za-z0-9_\-]{1,200}$")
INVALID_CODE_MESSAGE = "This code is invalid."
NOT_FOR_THESE_ITEMS_MESSAGE = "This code is not valid for the items in this order."


def coupon_is_valid(backend: Backend, coupon: dict[str, Any]) -> bool:
    if coupon.get("redeem_by") is not None and coupon["redeem_by"] <= backend.now():
        return False
    if coupon.get("max_redemptions") is not None and coupon["times_redeemed"] >= coupon["max_redemptions"]:
        return False
    return True


@presenter("coupon")
def present_coupon(backend: Backend, coupon: dict[str, Any]) -> dict[str, Any]:
    return {**coupon, "valid": coupon_is_valid(backend, coupon)}


@presenter("promotion_code")
def present_promotion_code(backend: Backend, promotion_code: dict[str, Any]) -> dict[str, Any]:
    coupon_id = promotion_code["promotion"]["coupon"]
    coupon = backend.store.get(coupon_id, "coupon")
    shown = dict(promotion_code)
    if coupon is not None:
        shown["coupon"] = present_coupon(backend, coupon)
    return shown


@route("POST", "/v1/coupons")
def create_coupon(backend: Backend, action: Action, params: dict[str, Any]) -> dict[str, Any]:
    for name in ("applies_to", "currency_options"):
        if name == "applies_to" and "products" in params.get(name, {}):
            continue
        if name in params:
            raise NotEmulated(name)
    percent_off = params.get("percent_off")
    amount_off = params.get("amount_off")
    if percent_off is None and amount_off is None:
        raise InvalidRequestError("Must provide either `percent_off` or `amount_off`.", param="percent_off")
    if percent_off is not None and amount_off is not None:
        raise InvalidRequestError("You may only specify one of these parameters: amount_off, percent_off.", param="amount_off")
    currency = None
    if amount_off is not None:
        if amount_off < 1:
            raise InvalidRequestError("This value must be greater than or equal to 1.", param="amount_off", code="parameter_invalid_integer")
        if not params.get("currency"):
            raise InvalidRequestError("You must pass currency when passing amount_off", param="currency")
        currency = check_currency(params["currency"])
    if percent_off is not None and not 0 < percent_off <= 100:
        raise InvalidRequestError("Percent off must be between 0 and 100.", param="percent_off")
    duration = params.get("duration", "once")
    if duration == "repeating" and not params.get("duration_in_months"):
        raise InvalidRequestError("Missing required param: duration_in_months.", param="duration_in_months", code="parameter_missing")
    coupon_id = params.get("id")
    if coupon_id is not None:
        if not _COUPON_ID.match(coupon_id):
            raise InvalidRequestError(f"Invalid id: {coupon_id}", param="id")
        if backend.store.get(coupon_id) is not None:
            raise InvalidRequestError("Coupon already exists.", param="id", code="resource_already_exists")
    name = params.get("name") or None
    if name and len(name) > 40:
        raise InvalidRequestError("Invalid name: must be at most 40 characters", param="name")
    if params.get("max_redemptions") is not None and params["max_redemptions"] < 1:
        raise InvalidRequestError("This value must be greater than or equal to 1.", param="max_redemptions",
                                  code="parameter_invalid_integer")
    if params.get("redeem_by") is not None and params["redeem_by"] <= backend.now():
        raise InvalidRequestError("Redeem by must be in the future.", param="redeem_by")
    for index, product_id in enumerate((params.get("applies_to") or {}).get("products") or []):
        backend.load(product_id, "product", "product", param=f"applies_to[products][{index}]")
    coupon = {
        "id": coupon_id or new_coupon_id(),
        "object": "coupon",
        "amount_off": amount_off,
        "created": backend.now(),
        "currency": currency,
        "duration": duration,
        "duration_in_months": params.get("duration_in_months") if duration == "repeating" else None,
        "livemode": False,
        "max_redemptions": params.get("max_redemptions"),
        "metadata": new_metadata(params),
        "name": name,
        "percent_off": percent_off,
        "redeem_by": params.get("redeem_by"),
        "times_redeemed": 0,
        "valid": True,
    }
    applies_to = (params.get("applies_to") or {}).get("products")
    internal = {"applies_to": applies_to} if applies_to else {}
    backend.store.insert(coupon, internal)
    emit(backend, action, "coupon.created", coupon)
    return respond(backend, coupon, params)


@route("GET", "/v1/coupons/{coupon}")
def retrieve_coupon(backend: Backend, action: Action, params: dict[str, Any], coupon: str) -> dict[str, Any]:
    return respond(backend, backend.load(coupon, "coupon", "coupon"), params)


@includer("coupon", "applies_to")
def include_coupon_applies_to(backend: Backend, coupon: dict[str, Any]) -> dict[str, Any] | None:
    """``applies_to`` is only in a coupon that is asked for it (``expand[]=applies_to``), and then
    only when the coupon was made for some products."""
    products = backend.store.get_internal(coupon["id"]).get("applies_to")
    return {"products": list(products)} if products else None


@route("POST", "/v1/coupons/{coupon}")
def update_coupon(backend: Backend, action: Action, params: dict[str, Any], coupon: str) -> dict[str, Any]:
    """Only a coupon's name, metadata and currency options change: its discount, duration,
    limits and products are fixed once made."""
    if "currency_options" in params:
        raise NotEmulated("currency_options")
    with backend.store.transaction():
        found = backend.load(coupon, "coupon", "coupon")
        if "name" in params:
            name = params["name"] or None
            if name and len(name) > 40:
                raise InvalidRequestError("Invalid name: must be at most 40 characters", param="name")
            found["name"] = name
        if "metadata" in params:
            found["metadata"] = apply_metadata(found["metadata"], params["metadata"])
        backend.store.save(found)
    emit(backend, action, "coupon.updated", present_coupon(backend, found))
    return respond(backend, found, params)


@route("GET", "/v1/coupons")
def list_coupons(backend: Backend, action: Action, params: dict[str, Any]) -> dict[str, Any]:
    return list_page(backend, params, object_type="coupon", object_name="coupon", url="/v1/coupons")


def _new_code() -> str:
    return "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(8))


@route("POST", "/v1/promotion_codes")
def create_promotion_code(backend: Backend, action: Action, params: dict[str, Any]) -> dict[str, Any]:
    promotion = params.get("promotion") or {}
    coupon_id = params.get("coupon") or promotion.get("coupon")
    if params.get("coupon") and promotion:
        raise InvalidRequestError("You may only specify one of these parameters: coupon, promotion.", param="promotion")
    if not coupon_id:
        # Since 2025-09-30 the coupon is named under promotion[coupon].
        name = "promotion[coupon]" if promotion or action.api_version >= "2025-09-30" else "coupon"
        raise InvalidRequestError(f"Missing required param: {name}.", param=name, code="parameter_missing")
    coupon_param = "coupon" if params.get("coupon") else "promotion[coupon]"
    coupon = backend.load(coupon_id, "coupon", "coupon", param=coupon_param)
    code = params.get("code") or _new_code()
    if not _CODE.match(code):
        raise InvalidRequestError(
            f"Invalid code: {code}. Codes may only contain letters, digits and dashes.", param="code"
        )
    clash = _active_code_on_this_account(backend, code)
    if clash is not None:
        raise InvalidRequestError(
            f"An active promotion code with `code: {code}` already exists.", param="code", code="resource_already_exists"
        )
    customer = params.get("customer") or None
    if customer:
        load_live_customer(backend, customer, "customer")
    restrictions_in = params.get("restrictions") or {}
    if "currency_options" in restrictions_in:
        raise NotEmulated("restrictions[currency_options]")
    minimum_amount = restrictions_in.get("minimum_amount")
    minimum_currency = restrictions_in.get("minimum_amount_currency")
    if (minimum_amount is None) != (minimum_currency is None):
        raise InvalidRequestError(
            "You must pass both `restrictions[minimum_amount]` and `restrictions[minimum_amount_currency]`.",
            param="restrictions[minimum_amount_currency]",
        )
    if params.get("max_redemptions") is not None and params["max_redemptions"] < 1:
        raise InvalidRequestError("This value must be greater than or equal to 1.", param="max_redemptions",
                                  code="parameter_invalid_integer")
    if params.get("expires_at") is not None:
        if params["expires_at"] <= backend.now():
            raise InvalidRequestError("Expires at must be in the future.", param="expires_at")
        if coupon.get("redeem_by") is not None and params["expires_at"] > coupon["redeem_by"]:
            raise InvalidRequestError(
                "The promotion code's `expires_at` may not be after the coupon's `redeem_by`.", param="expires_at"
            )
    if params.get("active", True) and not coupon_is_valid(backend, coupon):
        raise InvalidRequestError(f"Coupon {coupon['id']} is no longer valid.", param=coupon_param)
    promotion_code = {
        "id": new_id("promo"),
        "object": "promotion_code",
        "active": params.get("active", True),
        "code": code,
        "coupon": coupon,
        "created": backend.now(),
        "customer": customer,
        "customer_account": None,
        "expires_at": params.get("expires_at"),
        "livemode": False,
        "max_redemptions": params.get("max_redemptions"),
        "metadata": new_metadata(params),
        "promotion": {"coupon": coupon["id"], "type": "coupon"},
        "restrictions": {
            "currency_options": {},
            "first_time_transaction": restrictions_in.get("first_time_transaction", False),
            "minimum_amount": minimum_amount,
            "minimum_amount_currency": check_currency(minimum_currency) if minimum_currency else None,
        },
        "times_redeemed": 0,
    }
    backend.store.insert(promotion_code)
    emit(backend, action, "promotion_code.created", present_promotion_code(backend, promotion_code))
    return respond(backend, promotion_code, params)


@route("GET", "/v1/promotion_codes/{promotion_code}")
def retrieve_promotion_code(
    backend: Backend, action: Action, params: dict[str, Any], promotion_code: str
) -> dict[str, Any]:
    return respond(backend, backend.load(promotion_code, "promotion_code", "promotion code"), params)


@route("POST", "/v1/promotion_codes/{promotion_code}")
def update_promotion_code(
    backend: Backend, action: Action, params: dict[str, Any], promotion_code: str
) -> dict[str, Any]:
    """Pause or resume a code (``active``) and change its metadata; its coupon, code, customer,
    expiry and limit are fixed once made. A code is reactivated only while it could be redeemed:
    its coupon still valid, not expired, not used up, and no other active code with its text."""
    if (params.get("restrictions") or {}).get("currency_options"):
        raise NotEmulated("restrictions[currency_options]")
    with backend.store.transaction():
        found = backend.load(promotion_code, "promotion_code", "promotion code")
        if "active" in params and params["active"] and not found["active"]:
            coupon = backend.store.get(found["promotion"]["coupon"], "coupon")
            if coupon is None or not coupon_is_valid(backend, coupon):
                raise InvalidRequestError(
                    "This promotion code cannot be reactivated because its coupon is no longer valid.", param="active"
                )
            if found.get("expires_at") is not None and found["expires_at"] <= backend.now():
                raise InvalidRequestError(
                    "This promotion code cannot be reactivated because it has expired.", param="active"
                )
            if found.get("max_redemptions") is not None and found["times_redeemed"] >= found["max_redemptions"]:
                raise InvalidRequestError(
                    "This promotion code cannot be reactivated because it has reached its maximum number of redemptions.",
                    param="active",
                )
            clash = _active_code_on_this_account(backend, found["code"], besides=found["id"])
            if clash is not None:
                raise InvalidRequestError(
                    f"An active promotion code with `code: {found['code']}` already exists.",
                    param="active", code="resource_already_exists",
                )
        if "active" in params:
            found["active"] = bool(params["active"])
        if "metadata" in params:
            found["metadata"] = apply_metadata(found["metadata"], params["metadata"])
        backend.store.save(found)
    emit(backend, action, "promotion_code.updated", present_promotion_code(backend, found))
    return respond(backend, found, params)


@route("GET", "/v1/promotion_codes")
def list_promotion_codes(backend: Backend, action: Action, params: dict[str, Any]) -> dict[str, Any]:
    equals: dict[str, Any] = {}
    if "active" in params:
        equals["$.active"] = 1 if params["active"] else 0
    if params.get("code"):
        equals["$.code"] = params["code"]
    if params.get("coupon"):
        equals["$.promotion.coupon"] = params["coupon"]
    if params.get("customer"):
        equals["$.customer"] = params["customer"]
    return list_page(backend, params, object_type="promotion_code", object_name="promotion code",
                     url="/v1/promotion_codes", equals=equals)


# -- discounts on a Checkout Session ------------------------------------------------------

def _active_code_on_this_account(backend: Backend, code: str, *, besides: str = "") -> dict[str, Any] | None:
    """The active promotion code with this text (without regard to case) on the account of the
    current scope: Stripe's codes are unique per account, so another account's code neither
    clashes with it nor is found by its Checkout."""
    account = backend.store.current_account()
    scope_sql, scope_args = ("", []) if account is None else (" AND account = ?", [account])
    row = backend.store.query_one(
        "SELECT data FROM objects WHERE type = 'promotion_code' AND lower(json_extract(data, '$.code')) = lower(?) "
        f"AND json_extract(data, '$.active') = 1 AND id != ?{scope_sql} ORDER BY seq DESC LIMIT 1",
        (code, besides, *scope_args),
    )
    return json.loads(row["data"]) if row else None


def find_promotion_code(backend: Backend, code: str) -> dict[str, Any] | None:
    """The active code a customer typed on a Checkout Session, among the codes of the session's
    account only (a hosted page acts in the scope of its session's account)."""
    return _active_code_on_this_account(backend, code.strip())


def promotion_code_refusal(
    backend: Backend,
    promotion_code: dict[str, Any],
    *,
    currency: str,
    subtotal: int,
    customer: str | None,
    creates_customer: bool,
    products: list[str] | None = None,
) -> str | None:
    """Why Checkout would refuse this code for this order (whose line items are of
    ``products``), or None when it applies."""
    coupon = backend.store.get(promotion_code["promotion"]["coupon"], "coupon")
    if coupon is None or not promotion_code["active"] or not coupon_is_valid(backend, coupon):
        return INVALID_CODE_MESSAGE
    applies_to = backend.store.get_internal(coupon["id"]).get("applies_to")
    if applies_to and products is not None and not set(applies_to) & set(products):
        return NOT_FOR_THESE_ITEMS_MESSAGE
    now = backend.now()
    if promotion_code.get("expires_at") is not None and promotion_code["expires_at"] <= now:
        return INVALID_CODE_MESSAGE
    if promotion_code.get("max_redemptions") is not None and promotion_code["times_redeemed"] >= promotion_code["max_redemptions"]:
        return INVALID_CODE_MESSAGE
    if promotion_code.get("customer") and promotion_code["customer"] != customer:
        return INVALID_CODE_MESSAGE
    if coupon.get("amount_off") is not None and coupon["currency"] != currency:
        return INVALID_CODE_MESSAGE
    restrictions = promotion_code["restrictions"]
    if restrictions.get("minimum_amount") is not None:
        if restrictions["minimum_amount_currency"] != currency or subtotal < restrictions["minimum_amount"]:
            return INVALID_CODE_MESSAGE
    if restrictions.get("first_time_transaction"):
        if customer is None and not creates_customer:
            return INVALID_CODE_MESSAGE
        if customer is not None:
            paid = backend.store.query_one(
                "SELECT 1 FROM objects WHERE type = 'charge' AND json_extract(data, '$.customer') = ? "
                "AND json_extract(data, '$.status') = 'succeeded' LIMIT 1",
                (customer,),
            )
            if paid is not None:
                return INVALID_CODE_MESSAGE
    return None


def allocate_discount(coupon: dict[str, Any], applies_to: list[str] | None, lines: list[dict[str, Any]]) -> list[int]:
    """The discount on each line (``amount_subtotal`` and ``product`` per line): the coupon's
    total over the eligible lines, spread in proportion, remainders to the largest shares."""
    eligible = [applies_to is None or line["product"] in applies_to for line in lines]
    base = sum(line["amount_subtotal"] for line, ok in zip(lines, eligible) if ok)
    if base <= 0:
        return [0] * len(lines)
    if coupon.get("percent_off") is not None:
        total = int((Decimal(base) * Decimal(str(coupon["percent_off"])) / 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    else:
        total = min(coupon["amount_off"], base)
    shares = [Decimal(total) * line["amount_subtotal"] / base if ok else Decimal(0) for line, ok in zip(lines, eligible)]
    amounts = [int(share) for share in shares]
    leftover = total - sum(amounts)
    order = sorted(range(len(lines)), key=lambda i: shares[i] - amounts[i], reverse=True)
    for index in order[:leftover]:
        amounts[index] += 1
    return amounts


def redeem(backend: Backend, coupon_id: str, promotion_code_id: str | None) -> None:
    coupon = backend.store.get(coupon_id, "coupon")
    if coupon is not None:
        coupon["times_redeemed"] += 1
        coupon["valid"] = coupon_is_valid(backend, coupon)
        backend.store.save(coupon)
    if promotion_code_id:
        promotion_code = backend.store.get(promotion_code_id, "promotion_code")
        if promotion_code is not None:
            promotion_code["times_redeemed"] += 1
            backend.store.save(promotion_code)
