"""``expand[]``: replace ids by the objects they name, following dotted paths
(``payment_intent.latest_charge``, ``data.customer`` on lists), as Stripe does.

Which fields may be expanded comes from the spec's ``x-expandableFields``; fields that only
appear when expanded (a session's ``line_items``, a charge's ``refunds``) are computed here.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

from .backend import Backend
from .errors import InvalidRequestError

MAX_DEPTH = 4

# Fields Stripe added after the 2023-08-16 spec, or fields whose spec entry is inline.
EXTRA_EXPANDABLE: dict[str, set[str]] = {
    "refund": {"customer", "payment_method"},
    "promotion_code": {"promotion.coupon"},
    "checkout.session": {"discounts"},
    "invoice": {"payments"},
}

Includer = Callable[[Backend, dict[str, Any]], Any]
_INCLUDERS: dict[tuple[str, str], Includer] = {}


def includer(object_name: str, field: str) -> Callable[[Includer], Includer]:
    """Register how to compute a field that is absent unless expanded."""

    def register(function: Includer) -> Includer:
        _INCLUDERS[(object_name, field)] = function
        return function

    return register


def _tree(paths: list[str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in paths:
        parts = path.split(".")
        if len(parts) > MAX_DEPTH:
            raise InvalidRequestError(
                f"You cannot expand more than {MAX_DEPTH} levels of a property. Property: {path}", param="expand"
            )
        node = tree
        for part in parts:
            node = node.setdefault(part, {})
    return tree


def expand(backend: Backend, obj: dict[str, Any], paths: list[str] | None) -> dict[str, Any]:
    if not paths:
        return obj
    result = copy.deepcopy(obj)
    _expand_node(backend, result, _tree(paths), "")
    return result


def _allowed(backend: Backend, object_name: str, field: str) -> bool:
    if object_name in ("list", "search_result"):
        return field == "data"
    if (object_name, field) in _INCLUDERS:
        return True
    return field in backend.spec.expandable_fields(object_name) or field in EXTRA_EXPANDABLE.get(object_name, set())


def _expand_node(backend: Backend, obj: dict[str, Any], tree: dict[str, Any], prefix: str) -> None:
    object_name = obj.get("object", "")
    for field, subtree in tree.items():
        path = f"{prefix}{field}"
        if not _allowed(backend, object_name, field):
            raise InvalidRequestError(f"This property cannot be expanded ({path}).", param="expand")
        if (object_name, field) in _INCLUDERS:
            obj[field] = _INCLUDERS[(object_name, field)](backend, obj)
        value = obj.get(field)
        obj[field] = _expand_value(backend, value, subtree, f"{path}.")


def _expand_value(backend: Backend, value: Any, subtree: dict[str, Any], prefix: str) -> Any:
    if isinstance(value, str):
        loaded = backend.store.get(value)
        if loaded is None:
            return value
        loaded = present(backend, loaded)
        if subtree:
            _expand_node(backend, loaded, subtree, prefix)
        return loaded
    if isinstance(value, list):
        return [_expand_value(backend, item, subtree, prefix) for item in value]
    if isinstance(value, dict):
        if subtree:
            _expand_node_or_sub(backend, value, subtree, prefix)
        return value
    return value


def _expand_node_or_sub(backend: Backend, value: dict[str, Any], subtree: dict[str, Any], prefix: str) -> None:
    if "object" in value:
        _expand_node(backend, value, subtree, prefix)
        return
    # A sub-hash (``total_details``, ``promotion``): its keys follow the spec of the parent.
    for field, deeper in subtree.items():
        value[field] = _expand_value(backend, value.get(field), deeper, f"{prefix}{field}.")


_PRESENTERS: dict[str, Callable[[Backend, dict[str, Any]], dict[str, Any]]] = {}


def presenter(object_name: str) -> Callable:
    """Register a function that brings a stored object up to date when it is read (for example
    the coupon embedded in a promotion code)."""

    def register(function: Callable[[Backend, dict[str, Any]], dict[str, Any]]) -> Callable:
        _PRESENTERS[object_name] = function
        return function

    return register


def present(backend: Backend, obj: dict[str, Any]) -> dict[str, Any]:
    function = _PRESENTERS.get(obj.get("object", ""))
    return function(backend, obj) if function else obj
