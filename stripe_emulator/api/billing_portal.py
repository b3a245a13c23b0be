"""Customer portal sessions: short-lived links to a page of the customer's payments."""

from __future__ import annotations

from typing import Any

from ..backend import Action, Backend
from ..errors import NotEmulated
from ..ids import new_id
from .checkout import _check_url
from .common import respond
from .customers import load_live_customer
from .routing import route

DEFAULT_CONFIGURATION_KEY = "billing_portal_configuration"


def default_configuration_id(backend: Backend) -> str:
    """The account's default portal configuration, made once like the Dashboard's."""
    configuration_id = backend.store.meta_get(DEFAULT_CONFIGURATION_KEY)
    if configuration_id is None:
        configuration_id = new_id("bpc")
        backend.store.meta_set(DEFAULT_CONFIGURATION_KEY, configuration_id)
    return configuration_id


@route("POST", "/v1/billing_portal/sessions")
def create_portal_session(backend: Backend, action: Action, params: dict[str, Any]) -> dict[str, Any]:
    for name in ("configuration", "flow_data", "on_behalf_of"):
        if name in params:
            raise NotEmulated(name)
    backend.require_nonempty(params, "customer")
    customer = load_live_customer(backend, params["customer"], "customer")
    return_url = _check_url(params, "return_url")
    session_id = new_id("bps")
    session = {
        "id": session_id,
        "object": "billing_portal.session",
        "after_expiration": None,
        "configuration": default_configuration_id(backend),
        "created": backend.now(),
        "customer": customer["id"],
        "customer_account": None,
        "flow": None,
        "livemode": False,
        "locale": params.get("locale"),
        "on_behalf_of": None,
        "return_url": return_url,
        "url": f"{backend.public_url}/p/session/{session_id}",
    }
    backend.store.insert(session, {"first_visit": None})
    return respond(backend, session, params)
