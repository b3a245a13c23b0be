"""Customers: create, retrieve, update, list (``email``), search (Stripe's query language)."""

from __future__ import annotations

import base64
import copy
import json
import re
import secrets
from typing import Any

from ..backend import Action, Backend
from ..errors import InvalidRequestError, NotEmulated, ResourceMissing
from ..events import changed, emit
from ..expand import expand, present
from ..ids import new_id
from .common import apply_metadata, check_limit, list_page, new_metadata, respond
from .routing import route

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

# Accepted by Stripe and stored as given; they do not change anything the emulator does.
_ECHOED = ("address", "balance", "description", "invoice_prefix", "next_invoice_sequence", "phone",
           "preferred_locales", "shipping", "tax_exempt", "business_name", "individual_name")
_NOT_EMULATED = ("cash_balance", "coupon", "payment_method", "promotion_code", "source", "tax", "tax_id_data",
                 "test_clock", "bank_account", "card", "default_alipay_account", "default_bank_account",
                 "default_card", "default_source")


def check_email(email: str | None, param: str = "email") -> None:
    if email and not _EMAIL.match(email):
        raise InvalidRequestError(f"Invalid email address: {email}", param=param, code="email_invalid")


def load_live_customer(backend: Backend, customer_id: str, param: str) -> dict[str, Any]:
    """A customer another object refers to: a deleted one is as good as missing."""
    customer = backend.store.get(customer_id, "customer")
    if customer is None or customer.get("deleted"):
        raise ResourceMissing("customer", customer_id, param=param)
    return customer


def new_customer(
    backend: Backend,
    action: Action,
    *,
    email: str | None = None,
    name: str | None = None,
    metadata: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Create a Customer and emit ``customer.created``; Checkout uses this too."""
    customer = {
        "id": new_id("cus"),
        "object": "customer",
        "address": None,
        "balance": 0,
        "created": backend.now(),
        "currency": None,
        "customer_account": None,
        "default_source": None,
        "delinquent": False,
        "description": None,
        "discount": None,
        "email": email,
        "invoice_prefix": secrets.token_hex(4).upper(),
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": metadata or {},
        "name": name,
        "next_invoice_sequence": 1,
        "phone": None,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
    }
    for key, value in (extra or {}).items():
        if value is None and key in _OPTIONAL_STRINGS:
            continue
        customer[key] = value
    backend.store.insert(customer)
    emit(backend, action, "customer.created", customer)
    return customer


def _refuse_not_emulated(params: dict[str, Any]) -> None:
    for name in _NOT_EMULATED:
        if name in params:
            raise NotEmulated(name)


# Non-nullable strings in Stripe's current spec: absent until set, never null.
_OPTIONAL_STRINGS = ("business_name", "individual_name")


def _echoed(params: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in _ECHOED:
        if name not in params:
            continue
        value = params[name]
        if name == "invoice_settings":
            continue
        values[name] = None if value == "" else value
    if "invoice_settings" in params:
        settings = params["invoice_settings"]
        if "default_payment_method" in settings:
            raise NotEmulated("invoice_settings[default_payment_method]")
        values["invoice_settings"] = {
            "custom_fields": settings.get("custom_fields") or None,
            "default_payment_method": None,
            "footer": settings.get("footer") or None,
            "rendering_options": settings.get("rendering_options") or None,
        }
    if values.get("preferred_locales") is None and "preferred_locales" in values:
        values["preferred_locales"] = []
    return values


@route("POST", "/v1/customers")
def create_customer(backend: Backend, action: Action, params: dict[str, Any]) -> dict[str, Any]:
    _refuse_not_emulated(params)
    email = params.get("email") or None
    check_email(email)
    customer = new_customer(
        backend,
        action,
        email=email,
        name=params.get("name") or None,
        metadata=new_metadata(params),
        extra=_echoed(params),
    )
    return respond(backend, customer, params)


@route("GET", "/v1/customers/{customer}")
def retrieve_customer(backend: Backend, action: Action, params: dict[str, Any], customer: str) -> dict[str, Any]:
    return respond(backend, backend.load(customer, "customer", "customer", param="id"), params)


@route("POST", "/v1/customers/{customer}")
def update_customer(backend: Backend, action: Action, params: dict[str, Any], customer: str) -> dict[str, Any]:
    _refuse_not_emulated(params)
    current = backend.load(customer, "customer", "customer", param="id")
    if current.get("deleted"):
        raise InvalidRequestError("You cannot update a deleted customer.", param="id")
    before = copy.deepcopy(current)
    if "email" in params:
        check_email(params["email"] or None)
        current["email"] = params["email"] or None
    if "name" in params:
        current["name"] = params["name"] or None
    if "metadata" in params:
        current["metadata"] = apply_metadata(current.get("metadata"), params["metadata"])
    current.update(_echoed(params))
    for name in _OPTIONAL_STRINGS:
        if name in current and current[name] is None:
            del current[name]  # emptied: absent again, as an unset one is
    if current != before:
        backend.store.save(current)
        emit(backend, action, "customer.updated", current, changed(before, current))
    return respond(backend, current, params)


@route("DELETE", "/v1/customers/{customer}")
def delete_customer(backend: Backend, action: Action, params: dict[str, Any], customer: str) -> dict[str, Any]:
    """Stripe keeps a deleted customer as a stub that retrieving still answers."""
    current = backend.load(customer, "customer", "customer", param="id")
    if current.get("deleted"):
        raise InvalidRequestError(f"No such customer: '{customer}'", param="id", code="resource_missing", status=404)
    stub = {"id": current["id"], "object": "customer", "deleted": True}
    backend.store.save(stub)
    emit(backend, action, "customer.deleted", current)
    return stub


@route("GET", "/v1/customers")
def list_customers(backend: Backend, action: Action, params: dict[str, Any]) -> dict[str, Any]:
    if params.get("test_clock"):
        raise NotEmulated("test_clock")
    equals = {"$.email": params["email"]} if params.get("email") else None
    return list_page(backend, params, object_type="customer", object_name="customer", url="/v1/customers", equals=equals,
                     extra_sql="json_extract(data, '$.deleted') IS NULL")


# -- search -------------------------------------------------------------------------------

_CLAUSE = re.compile(
    r"""\s*(?P<negate>-)?(?P<field>metadata\[(?P<q>['"])(?P<key>.*?)(?P=q)\]|[a-z_]+)\s*
        (?P<op>:|~|>=|<=|>|<)\s*
        (?:(?P<vq>['"])(?P<value>(?:\\.|(?!(?P=vq)).)*)(?P=vq)|(?P<number>-?\d+))\s*""",
    re.VERBOSE,
)
_SEARCHABLE = {"email", "name", "phone", "created", "metadata"}


def _parse_query(query: str) -> tuple[list[dict[str, Any]], str]:
    clauses: list[dict[str, Any]] = []
    connector = ""
    position = 0
    while True:
        found = _CLAUSE.match(query, position)
        if not found:
            raise InvalidRequestError(
                f"Search query is invalid near position {position}: {query[position:position + 30]!r}. "
                "Queries look like email:'jenny@example.com' AND metadata['key']:'value'.",
                param="query",
            )
        field = "metadata" if found.group("key") is not None else found.group("field")
        if field not in _SEARCHABLE:
            raise InvalidRequestError(f"Field '{field}' is an unsupported search field for customers.", param="query")
        value = found.group("value")
        if value is not None:
            value = re.sub(r"\\(.)", r"\1", value)
        clause = {
            "negate": bool(found.group("negate")),
            "field": field,
            "key": found.group("key"),
            "op": found.group("op"),
            "value": value if value is not None else int(found.group("number")),
        }
        if clause["op"] in ("<", ">", "<=", ">=") and field != "created":
            raise InvalidRequestError(f"Range comparisons are only supported on numeric fields, not '{field}'.", param="query")
        if clause["op"] == "~" and (not isinstance(clause["value"], str) or len(clause["value"]) < 3):
            raise InvalidRequestError("Substring matching with `~` needs a value of at least 3 characters.", param="query")
        clauses.append(clause)
        position = found.end()
        if position >= len(query):
            return clauses, connector or "AND"
        joiner = re.compile(r"(AND|OR)\s+").match(query, position)
        if not joiner:
            raise InvalidRequestError(
                f"Search query is invalid near position {position}: {query[position:position + 30]!r}.", param="query"
            )
        if connector and joiner.group(1) != connector:
            raise InvalidRequestError("Search queries can not mix AND and OR.", param="query")
        connector = joiner.group(1)
        position = joiner.end()


def _clause_sql(clause: dict[str, Any]) -> tuple[str, list[Any]]:
    if clause["field"] == "created":
        sql = {":": "created = ?", ">": "created > ?", "<": "created < ?", ">=": "created >= ?", "<=": "created <= ?"}[clause["op"]]
        args: list[Any] = [int(clause["value"])]
    else:
        path = f"$.{clause['field']}" if clause["field"] != "metadata" else "$.metadata." + json.dumps(clause["key"])
        if clause["op"] == "~":
            sql = "instr(lower(COALESCE(json_extract(data, ?), '')), lower(?)) > 0"
        else:
            # Stripe matches exact values of strings case-insensitively.
            sql = "lower(COALESCE(json_extract(data, ?), '')) = lower(?)"
        args = [path, str(clause["value"])]
    if clause["negate"]:
        sql = f"NOT ({sql})"
    return sql, args


@route("GET", "/v1/customers/search")
def search_customers(backend: Backend, action: Action, params: dict[str, Any]) -> dict[str, Any]:
    limit = check_limit(params)
    query = params.get("query") or ""
    if not query.strip():
        raise InvalidRequestError("Missing required param: query.", param="query", code="parameter_missing")
    clauses, connector = _parse_query(query)
    parts, args = [], []
    for clause in clauses:
        sql, clause_args = _clause_sql(clause)
        parts.append(sql)
        args.extend(clause_args)
    where = "(" + f" {connector} ".join(parts) + ")"
    after_seq = None
    if params.get("page"):
        try:
            after_seq = int(json.loads(base64.urlsafe_b64decode(params["page"].encode()))["after"])
        except (ValueError, KeyError, TypeError):
            raise InvalidRequestError(f"Invalid page: {params['page']}", param="page") from None
    items, has_more = backend.store.list(
        "customer", extra_sql=f"{where} AND json_extract(data, '$.deleted') IS NULL", extra_args=tuple(args),
        limit=limit, after_seq=after_seq,
    )
    next_page = None
    if has_more and items:
        last_seq = backend.store.seq_of(items[-1]["id"], "customer")
        next_page = base64.urlsafe_b64encode(json.dumps({"after": last_seq}).encode()).decode()
    result = {
        "object": "search_result",
        "data": [present(backend, item) for item in items],
        "has_more": has_more,
        "next_page": next_page,
        "url": "/v1/customers/search",
    }
    return expand(backend, result, params.get("expand"))
