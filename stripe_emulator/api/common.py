"""Helpers shared by the resources: list pages, cursors, ``created`` filters, metadata updates."""

from __future__ import annotations

from typing import Any

from ..backend import Backend
from ..errors import InvalidRequestError, ResourceMissing
from ..expand import expand, present


def check_limit(params: dict[str, Any]) -> int:
    limit = params.get("limit", 10)
    if limit < 1:
        raise InvalidRequestError("This value must be greater than or equal to 1.", param="limit", code="parameter_invalid_integer")
    if limit > 100:
        raise InvalidRequestError("This value must be less than or equal to 100.", param="limit", code="parameter_invalid_integer")
    return limit


def created_filter(params: dict[str, Any], name: str = "created") -> dict[str, int]:
    value = params.get(name)
    if value is None or value == "":
        return {}
    if isinstance(value, int):
        return {"eq": value}
    return {op: int(bound) for op, bound in value.items()}


def cursors(
    backend: Backend, params: dict[str, Any], object_type: str, object_name: str
) -> tuple[int | None, int | None]:
    after = params.get("starting_after")
    before = params.get("ending_before")
    if after and before:
        raise InvalidRequestError("You may only specify one of these parameters: ending_before, starting_after.", param="starting_after")
    after_seq = before_seq = None
    if after:
        after_seq = backend.store.seq_of(after, object_type)
        if after_seq is None:
            raise ResourceMissing(object_name, after, param="starting_after")
    if before:
        before_seq = backend.store.seq_of(before, object_type)
        if before_seq is None:
            raise ResourceMissing(object_name, before, param="ending_before")
    return after_seq, before_seq


def list_page(
    backend: Backend,
    params: dict[str, Any],
    *,
    object_type: str,
    object_name: str,
    url: str,
    equals: dict[str, Any] | None = None,
    extra_sql: str = "",
    extra_args: tuple[Any, ...] = (),
) -> dict[str, Any]:
    limit = check_limit(params)
    after_seq, before_seq = cursors(backend, params, object_type, object_name)
    items, has_more = backend.store.list(
        object_type,
        equals=equals,
        created=created_filter(params),
        extra_sql=extra_sql,
        extra_args=extra_args,
        limit=limit,
        after_seq=after_seq,
        before_seq=before_seq,
    )
    page = {
        "object": "list",
        "data": [present(backend, item) for item in items],
        "has_more": has_more,
        "url": url,
    }
    return expand(backend, page, params.get("expand"))


def respond(backend: Backend, obj: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    return expand(backend, present(backend, obj), params.get("expand"))


def apply_metadata(current: dict[str, Any] | None, update: Any) -> dict[str, Any]:
    """Stripe's metadata update: keys merge, an empty value deletes a key, an empty
    ``metadata`` deletes them all."""
    if update == "":
        return {}
    merged = dict(current or {})
    for key, value in (update or {}).items():
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    check_metadata(merged)
    return merged


def check_metadata(metadata: dict[str, Any], param: str = "metadata") -> None:
    if len(metadata) > 50:
        raise InvalidRequestError(
            "Invalid metadata: metadata can have up to 50 keys, but you passed in " f"{len(metadata)} keys.",
            param=param,
        )
    for key, value in metadata.items():
        if len(key) > 40:
            raise InvalidRequestError(
                f"Metadata keys can have up to 40 characters, but you passed in a key that is {len(key)} characters: {key}",
                param=f"{param}[{key}]",
            )
        if len(value) > 500:
            raise InvalidRequestError(
                f"Metadata values can have up to 500 characters, but you passed in a value that is {len(value)} characters.",
                param=f"{param}[{key}]",
            )


def new_metadata(params: dict[str, Any], name: str = "metadata") -> dict[str, Any]:
    metadata = params.get(name) or {}
    if metadata == "":
        metadata = {}
    metadata = {key: value for key, value in metadata.items() if value != ""}
    check_metadata(metadata, name)
    return metadata


def exclusive(params: dict[str, Any], *names: str) -> None:
    given = [name for name in names if params.get(name) not in (None, "")]
    if len(given) > 1:
        raise InvalidRequestError(f"You may only specify one of these parameters: {', '.join(given)}.", param=given[-1])
