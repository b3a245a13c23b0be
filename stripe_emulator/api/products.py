"""Products and Prices: create, retrieve, list; Checkout's ``price_data`` makes inline ones."""

from __future__ import annotations

import re
from typing import Any

from ..backend import Action, Backend
from ..errors import InvalidRequestError, NotEmulated
from ..events import emit
from ..ids import new_id
from ..money import SUPPORTED
from .common import apply_metadata, list_page, new_metadata, respond
from .routing import route

_PRODUCT_ID = re.compile(r"^[A-Za-z0-9_\-]{1,200}$")


def check_currency(currency: str, param: str = "currency") -> str:
    currency = currency.lower()
    if currency not in SUPPORTED:
        raise InvalidRequestError(f"Invalid currency: {currency}. Stripe currently supports these currencies: "
                                  + ", ".join(sorted(SUPPORTED)), param=param)
    return currency


def new_product(backend: Backend, action: Action, data: dict[str, Any], *, product_id: str | None = None) -> dict[str, Any]:
    now = backend.now()
    features = [{"name": feature["name"]} for feature in data.get("marketing_features") or data.get("features") or []]
    product = {
        "id": product_id or new_id("prod"),
        "object": "product",
        "active": data.get("active", True),
        "created": now,
        "default_price": None,
        "description": data.get("description") or None,
        "features": features,
        "images": data.get("images") or [],
        "livemode": False,
        "marketing_features": features,
        "metadata": new_metadata(data),
        "name": data["name"],
        "package_dimensions": data.get("package_dimensions") or None,
        "shippable": data.get("shippable"),
        "statement_descriptor": data.get("statement_descriptor") or None,
        "tax_code": data.get("tax_code") or None,
        "type": "service",
        "unit_label": data.get("unit_label") or None,
        "updated": now,
        "url": data.get("url") or None,
    }
    backend.store.insert(product)
    emit(backend, action, "product.created", product)
    return product


def new_price(
    backend: Backend,
    action: Action,
    *,
    product: str,
    currency: str,
    unit_amount: int,
    active: bool = True,
    metadata: dict[str, str] | None = None,
    nickname: str | None = None,
    lookup_key: str | None = None,
    tax_behavior: str | None = None,
    recurring: dict[str, Any] | None = None,
) -> dict[str, Any]:
    price = {
        "id": new_id("price"),
        "object": "price",
        "active": active,
        "billing_scheme": "per_unit",
        "created": backend.now(),
        "currency": currency,
        "custom_unit_amount": None,
        "livemode": False,
        "lookup_key": lookup_key,
        "metadata": metadata or {},
        "nickname": nickname,
        "product": product,
        "recurring": recurring,
        "tax_behavior": tax_behavior or "unspecified",
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "recurring" if recurring else "one_time",
        "unit_amount": unit_amount,
        "unit_amount_decimal": str(unit_amount),
    }
    backend.store.insert(price)
    emit(backend, action, "price.created", price)
    return price


def _recurring(data: dict[str, Any] | None) -> dict[str, Any] | None:
    if not data:
        return None
    return {
        "aggregate_usage": None,
        "interval": data["interval"],
        "interval_count": data.get("interval_count", 1),
        "meter": None,
        "trial_period_days": None,
        "usage_type": "licensed",
    }


def unit_amount_of(data: dict[str, Any], param: str) -> int:
    """The amount of a price (``param`` is the hash holding it, "" at the top level)."""

    def where(name: str) -> str:
        return f"{param}[{name}]" if param else name

    if "unit_amount_decimal" in data and "unit_amount" in data:
        raise InvalidRequestError(
            f"You may only specify one of these parameters: {where('unit_amount')}, {where('unit_amount_decimal')}.",
            param=where("unit_amount_decimal"),
        )
    if "unit_amount_decimal" in data:
        decimal = data["unit_amount_decimal"]
        if not re.fullmatch(r"\d+(\.0+)?", decimal):
            raise NotEmulated(where("unit_amount_decimal"), "fractions of the minor unit")
        return int(decimal.split(".")[0])
    if "unit_amount" not in data:
        raise InvalidRequestError(f"Missing required param: {where('unit_amount')}.", param=where("unit_amount"), code="parameter_missing")
    amount = data["unit_amount"]
    if amount < 0:
        raise InvalidRequestError("This value must be greater than or equal to 0.", param=where("unit_amount"), code="parameter_invalid_integer")
    return amount


@route("POST", "/v1/products")
def create_product(backend: Backend, action: Action, params: dict[str, Any]) -> dict[str, Any]:
    if not params.get("name"):
        from ..params import empty_string_error

        raise empty_string_error("name")
    product_id = params.get("id")
    if product_id is not None:
        if not _PRODUCT_ID.match(product_id):
            raise InvalidRequestError(f"Invalid id: {product_id}", param="id")
        if backend.store.get(product_id) is not None:
            raise InvalidRequestError("Product already exists.", param="id", code="resource_already_exists")
    product = new_product(backend, action, params, product_id=product_id)
    default_price = params.get("default_price_data")
    if default_price:
        if default_price.get("recurring"):
            raise NotEmulated("default_price_data[recurring]", "only one-time prices are emulated")
        if default_price.get("currency_options"):
            raise NotEmulated("default_price_data[currency_options]")
        price = new_price(
            backend,
            action,
            product=product["id"],
            currency=check_currency(default_price["currency"], "default_price_data[currency]"),
            unit_amount=unit_amount_of(default_price, "default_price_data"),
            tax_behavior=default_price.get("tax_behavior"),
        )
        product["default_price"] = price["id"]
        backend.store.save(product)
    return respond(backend, product, params)


@route("GET", "/v1/products/{id}")
def retrieve_product(backend: Backend, action: Action, params: dict[str, Any], id: str) -> dict[str, Any]:
    return respond(backend, backend.load(id, "product", "product"), params)


_PRODUCT_UPDATABLE = ("name", "description", "active", "url", "statement_descriptor", "unit_label", "images")


@route("POST", "/v1/products/{id}")
def update_product(backend: Backend, action: Action, params: dict[str, Any], id: str) -> dict[str, Any]:
    """Change a product's name, description, activity and other plain fields, and its metadata.
    An empty description, url or unit label unsets it; the name may not be emptied."""
    for name in ("default_price", "marketing_features", "package_dimensions", "shippable", "tax_code"):
        if name in params:
            raise NotEmulated(name)
    with backend.store.transaction():
        product = backend.load(id, "product", "product")
        if "name" in params and not params["name"]:
            from ..params import empty_string_error

            raise empty_string_error("name")
        for name in _PRODUCT_UPDATABLE:
            if name in params:
                value = params[name]
                product[name] = (value or []) if name == "images" else (value if name == "active" or value else None)
        if "metadata" in params:
            product["metadata"] = apply_metadata(product["metadata"], params["metadata"])
        product["updated"] = backend.now()
        backend.store.save(product)
    emit(backend, action, "product.updated", product)
    return respond(backend, product, params)


@route("GET", "/v1/products")
def list_products(backend: Backend, action: Action, params: dict[str, Any]) -> dict[str, Any]:
    equals: dict[str, Any] = {}
    if "active" in params:
        equals["$.active"] = 1 if params["active"] else 0
    if "shippable" in params:
        equals["$.shippable"] = 1 if params["shippable"] else 0
    if params.get("url"):
        equals["$.url"] = params["url"]
    extra_sql, extra_args = "", ()
    if params.get("ids"):
        ids = params["ids"]
        extra_sql = "id IN (" + ",".join("?" for _ in ids) + ")"
        extra_args = tuple(ids)
    return list_page(backend, params, object_type="product", object_name="product", url="/v1/products",
                     equals=equals, extra_sql=extra_sql, extra_args=extra_args)


_PRICE_NOT_EMULATED = ("currency_options", "custom_unit_amount", "tiers", "tiers_mode", "transform_quantity", "transfer_lookup_key")


@route("POST", "/v1/prices")
def create_price(backend: Backend, action: Action, params: dict[str, Any]) -> dict[str, Any]:
    for name in _PRICE_NOT_EMULATED:
        if name in params:
            raise NotEmulated(name)
    if params.get("billing_scheme", "per_unit") != "per_unit":
        raise NotEmulated("billing_scheme", "only per_unit")
    currency = check_currency(params["currency"])
    product_id = params.get("product")
    if product_id and params.get("product_data"):
        raise InvalidRequestError("You may only specify one of these parameters: product, product_data.", param="product_data")
    if product_id:
        backend.load(product_id, "product", "product", param="product")
    elif params.get("product_data"):
        product_id = new_product(backend, action, params["product_data"])["id"]
    else:
        raise InvalidRequestError("You must specify either `product` or `product_data` when creating a price.", param="product")
    lookup_key = params.get("lookup_key") or None
    if lookup_key:
        taken = backend.store.list("price", equals={"$.lookup_key": lookup_key}, limit=1)[0]
        if taken:
            raise InvalidRequestError(
                f"A price (`{taken[0]['id']}`) already uses that lookup key.", param="lookup_key", code="lookup_key_already_exists"
            )
    price = new_price(
        backend,
        action,
        product=product_id,
        currency=currency,
        unit_amount=unit_amount_of(params, ""),
        active=params.get("active", True),
        metadata=new_metadata(params),
        nickname=params.get("nickname") or None,
        lookup_key=lookup_key,
        tax_behavior=params.get("tax_behavior"),
        recurring=_recurring(params.get("recurring")),
    )
    return respond(backend, price, params)


@route("GET", "/v1/prices/{price}")
def retrieve_price(backend: Backend, action: Action, params: dict[str, Any], price: str) -> dict[str, Any]:
    return respond(backend, backend.load(price, "price", "price"), params)


@route("GET", "/v1/prices")
def list_prices(backend: Backend, action: Action, params: dict[str, Any]) -> dict[str, Any]:
    equals: dict[str, Any] = {}
    if "active" in params:
        equals["$.active"] = 1 if params["active"] else 0
    if params.get("currency"):
        equals["$.currency"] = params["currency"].lower()
    if params.get("product"):
        equals["$.product"] = params["product"]
    if params.get("type"):
        equals["$.type"] = params["type"]
    if params.get("recurring"):
        raise NotEmulated("recurring", "filtering by recurrence")
    extra_sql, extra_args = "", ()
    if params.get("lookup_keys"):
        keys = params["lookup_keys"]
        extra_sql = "json_extract(data, '$.lookup_key') IN (" + ",".join("?" for _ in keys) + ")"
        extra_args = tuple(keys)
    return list_page(backend, params, object_type="price", object_name="price", url="/v1/prices",
                     equals=equals, extra_sql=extra_sql, extra_args=extra_args)
