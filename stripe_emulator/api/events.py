"""Events: retrieve and list (``type`` with ``*`` wildcards, ``types[]``, ``created``, ``delivery_success``)."""

from __future__ import annotations

from typing import Any

from ..backend import Action, Backend
from ..errors import InvalidRequestError
from .common import list_page, respond
from .routing import route


@route("GET", "/v1/events/{id}")
def retrieve_event(backend: Backend, action: Action, params: dict[str, Any], id: str) -> dict[str, Any]:
    return respond(backend, backend.load(id, "event", "event", param="id"), params)


def _type_condition(pattern: str) -> tuple[str, list[Any]]:
    if "*" in pattern:
        return "json_extract(data, '$.type') GLOB ?", [pattern]
    return "json_extract(data, '$.type') = ?", [pattern]


@route("GET", "/v1/events")
def list_events(backend: Backend, action: Action, params: dict[str, Any]) -> dict[str, Any]:
    if params.get("type") and params.get("types"):
        raise InvalidRequestError("You may only specify one of these parameters: type, types.", param="types")
    conditions: list[str] = []
    args: list[Any] = []
    equals: dict[str, Any] = {}
    if params.get("type"):
        if "*" in params["type"]:
            sql, values = _type_condition(params["type"])
            conditions.append(sql)
            args.extend(values)
        else:
            equals["$.type"] = params["type"]
    if params.get("types"):
        if len(params["types"]) > 20:
            raise InvalidRequestError("You may pass up to 20 types.", param="types")
        parts = []
        for pattern in params["types"]:
            sql, values = _type_condition(pattern)
            parts.append(sql)
            args.extend(values)
        conditions.append("(" + " OR ".join(parts) + ")")
    if "delivery_success" in params:
        delivered = "EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = objects.id AND d.state = 'succeeded')"
        conditions.append(delivered if params["delivery_success"] else f"NOT {delivered}")
    return list_page(
        backend,
        params,
        object_type="event",
        object_name="event",
        url="/v1/events",
        equals=equals,
        extra_sql=" AND ".join(conditions),
        extra_args=tuple(args),
    )
