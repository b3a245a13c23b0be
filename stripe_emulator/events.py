"""Event objects, recorded in the same transaction as the change they describe."""

from __future__ import annotations

import copy
from typing import Any

from .backend import Action, Backend
from .ids import new_id


_CURRENT = object()


def emit(
    backend: Backend,
    action: Action,
    event_type: str,
    obj: dict[str, Any],
    previous_attributes: dict[str, Any] | None = None,
    *,
    account: Any = _CURRENT,
) -> dict[str, Any]:
    """Record an event whose ``data.object`` is a snapshot of ``obj`` now, and queue its webhook
    delivery. Must run inside the transaction that made the change.

    The event belongs to the account the change happened on (the current scope, unless
    ``account`` says otherwise: ``""`` for the platform): an event of a connected account names
    it in ``account`` and goes to Connect endpoints only, as Stripe's Connect webhooks do. Its
    ``api_version`` is the account's API version (Stripe renders events in the account's, or
    the endpoint's, version, never in the version of the request that caused them)."""
    owner = backend.store.current_account() if account is _CURRENT else account
    owner = owner or ""
    data: dict[str, Any] = {"object": copy.deepcopy(obj)}
    if previous_attributes is not None:
        data["previous_attributes"] = previous_attributes
    event: dict[str, Any] = {"id": new_id("evt"), "object": "event"}
    if owner:
        event["account"] = owner
    event.update({
        "api_version": backend.account_api_version,
        "created": backend.now(),
        "data": data,
        "livemode": False,
        "pending_webhooks": backend.endpoint_count(owner, event_type),
        "request": {"id": action.request_id, "idempotency_key": action.idempotency_key},
        "type": event_type,
    })
    backend.store.insert(event, account=owner)
    if backend.dispatcher is not None:
        backend.dispatcher.enqueue(event)
    return event


def changed(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Stripe's ``previous_attributes``: the old values of what changed; inside a hash that
    still exists, only its changed keys."""
    previous: dict[str, Any] = {}
    for key in set(before) | set(after):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict) and "object" not in old:
            previous[key] = changed(old, new)
        else:
            previous[key] = copy.deepcopy(old)
    return dict(sorted(previous.items()))
