"""Connect on the API: accounts (create, retrieve, update, list, delete, reject), Account Links,
login links, application fees and their refunds. The domain rules are in ``connect.py``."""

from __future__ import annotations

from typing import Any

from .. import connect
from ..backend import Action, Backend, missing_param
from ..errors import InvalidRequestError, NotEmulated, PermissionDenied, ResourceMissing
from ..events import changed, emit
from ..money import format_amount
from .common import apply_metadata, list_page, new_metadata, respond
from .routing import route


def _platform_only(backend: Backend, action: Action, what: str) -> None:
    account = backend.store.current_account()
    if account:
        raise PermissionDenied(
            f"The provided key '{action.key_hint}' does not have the required permissions for this endpoint on "
            f"account '{account}'. Having more permissions would allow this request to continue. ({what} are "
            "managed by the platform, without `Stripe-Account`.)",
            code="account_invalid",
        )


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else key, inner, out)
    elif value not in (None, ""):
        out[prefix] = value


def _submitted(params: dict[str, Any]) -> dict[str, Any]:
    """Requirement values a create or update gives (``individual[first_name]`` fulfils
    ``individual.first_name``...)."""
    values: dict[str, Any] = {}
    for name in ("individual", "company", "business_profile"):
        if isinstance(params.get(name), dict):
            _flatten(name, params[name], values)
    if params.get("business_type"):
        values["business_type"] = params["business_type"]
    if params.get("external_account") or params.get("bank_account"):
        values["external_account"] = True
    tos = params.get("tos_acceptance") or {}
    if tos.get("date") and tos.get("ip"):
        values["tos_acceptance.date"] = tos["date"]
        values["tos_acceptance.ip"] = tos["ip"]
    return values


_REFUSED = ("account_token", "documents", "settings")


@route("POST", "/v1/accounts")
def create_account(backend: Backend, action: Action, params: dict[str, Any]) -> dict[str, Any]:
    _platform_only(backend, action, "Connected accounts")
    for name in _REFUSED:
        if name in params:
            raise NotEmulated(name)
    account = connect.new_account(backend, action, params)
    submitted = _submitted(params)
    if submitted:
        account = connect.update_account(backend, action, account, {}, submitted)
    return respond(backend, account, params)


@route("GET", "/v1/accounts/{account}")
def retrieve_account(backend: Backend, action: Action, params: dict[str, Any], account: str) -> dict[str, Any]:
    return respond(backend, connect.load_account(backend, action, account), params)


@route("POST", "/v1/accounts/{account}")
def update_account(backend: Backend, action: Action, params: dict[str, Any], account: str) -> dict[str, Any]:
    _platform_only(backend, action, "Connected accounts")
    current = connect.load_account(backend, action, account)
    for name in _REFUSED:
        if name in params:
            raise NotEmulated(name)
    changes: dict[str, Any] = {}
    if "metadata" in params:
        changes["metadata"] = apply_metadata(current.get("metadata"), params["metadata"])
    if "email" in params:
        changes["email"] = params["email"] or None
    if "business_type" in params:
        changes["business_type"] = params["business_type"] or None
    if isinstance(params.get("business_profile"), dict):
        profile = {key: (value or None) for key, value in params["business_profile"].items()
                   if key in current["business_profile"] and not isinstance(value, dict)}
        changes["business_profile"] = profile
        if profile.get("name"):
            current["settings"]["dashboard"]["display_name"] = profile["name"]
    if "default_currency" in params:
        changes["default_currency"] = params["default_currency"].lower()
    tos = params.get("tos_acceptance") or {}
    if tos:
        changes["tos_acceptance"] = {"date": tos.get("date"), "ip": tos.get("ip"), "user_agent": tos.get("user_agent")}
    updated = connect.update_account(backend, action, current, changes, _submitted(params))
    return respond(backend, updated, params)


@route("GET", "/v1/accounts")
def list_accounts(backend: Backend, action: Action, params: dict[str, Any]) -> dict[str, Any]:
    _platform_only(backend, action, "Connected accounts")
    return list_page(backend, params, object_type="account", object_name="account", url="/v1/accounts")


@route("DELETE", "/v1/accounts/{account}")
def delete_account(backend: Backend, action: Action, params: dict[str, Any], account: str) -> dict[str, Any]:
    """Test-mode accounts can be deleted at any time (Stripe's "Delete an account")."""
    _platform_only(backend, action, "Connected accounts")
    connect.load_account(backend, action, account)
    backend.store.execute("DELETE FROM objects WHERE id = ? AND type = 'account'", (account,))
    return {"id": account, "object": "account", "deleted": True}


@route("POST", "/v1/accounts/{account}/reject")
def reject_account(backend: Backend, action: Action, params: dict[str, Any], account: str) -> dict[str, Any]:
    _platform_only(backend, action, "Connected accounts")
    current = connect.load_account(backend, action, account)
    reason = params.get("reason")
    if not reason:
        raise missing_param("reason")
    if reason not in connect.REJECT_REASONS:
        raise InvalidRequestError(f"Invalid reason: must be one of {', '.join(connect.REJECT_REASONS)}", param="reason")
    if current["controller"]["losses"]["payments"] != "application":
        raise InvalidRequestError(
            "Only accounts where your platform is liable for negative account balances, which includes Custom and "
            "Express accounts, can be rejected.",
            param="account",
        )
    if backend.store.get_internal(account).get("rejected"):
        raise InvalidRequestError(f"The account {account} has already been rejected.", param="account")
    return respond(backend, connect.reject(backend, action, current, reason), params)


@route("POST", "/v1/account_links")
def create_account_link(backend: Backend, action: Action, params: dict[str, Any]) -> dict[str, Any]:
    _platform_only(backend, action, "Account Links")
    account = connect.load_account(backend, action, params["account"])
    link_type = params["type"]
    if link_type not in ("account_onboarding", "account_update"):
        raise InvalidRequestError("Invalid type: must be one of account_onboarding or account_update", param="type")
    if not params.get("return_url"):
        raise missing_param("return_url")
    if not params.get("refresh_url"):
        raise missing_param("refresh_url")
    if link_type == "account_update" and account["controller"]["requirement_collection"] != "application":
        raise InvalidRequestError(
            "You cannot create `account_update` type Account Links for accounts where Stripe collects requirements "
            "(Standard and Express accounts): use `account_onboarding`.",
            param="type",
        )
    if params.get("collect") or params.get("collection_options"):
        raise NotEmulated("collect", "the onboarding page asks for everything currently due")
    return connect.new_account_link(backend, account, params)


@route("POST", "/v1/accounts/{account}/login_links")
def create_login_link(backend: Backend, action: Action, params: dict[str, Any], account: str) -> dict[str, Any]:
    _platform_only(backend, action, "Login links")
    current = connect.load_account(backend, action, account)
    if current["controller"]["stripe_dashboard"]["type"] != "express":
        raise InvalidRequestError(
            "Cannot create a login link for an account that is not an Express account.", param="account"
        )
    if not current["details_submitted"]:
        raise InvalidRequestError(
            "Cannot create a login link for an account that has not completed onboarding.", param="account"
        )
    return connect.new_login_link(backend, current)


# -- application fees ----------------------------------------------------------------------

def _fee(backend: Backend, fee_id: str, param: str = "id") -> dict[str, Any]:
    fee = backend.store.get(fee_id, "application_fee")
    if fee is None:
        raise ResourceMissing("application fee", fee_id, param=param)
    return fee


@route("GET", "/v1/application_fees")
def list_application_fees(backend: Backend, action: Action, params: dict[str, Any]) -> dict[str, Any]:
    equals = {"$.charge": params["charge"]} if params.get("charge") else None
    return list_page(backend, params, object_type="application_fee", object_name="application fee",
                     url="/v1/application_fees", equals=equals)


@route("GET", "/v1/application_fees/{id}")
def retrieve_application_fee(backend: Backend, action: Action, params: dict[str, Any], id: str) -> dict[str, Any]:
    return respond(backend, _fee(backend, id), params)


def _refund_fee(backend: Backend, action: Action, params: dict[str, Any], fee_id: str) -> dict[str, Any]:
    fee = _fee(backend, fee_id)
    left = fee["amount"] - fee["amount_refunded"]
    if left <= 0:
        raise InvalidRequestError(f"Application fee {fee_id} has already been refunded.", param="id")
    amount = params.get("amount", left)
    if amount < 1:
        raise InvalidRequestError("This value must be greater than or equal to 1.", param="amount",
                                  code="parameter_invalid_integer")
    if amount > left:
        raise InvalidRequestError(
            f"Refund amount ({format_amount(amount, fee['currency'])}) is greater than unrefunded amount on "
            f"application fee ({format_amount(left, fee['currency'])})",
            param="amount",
        )
    return connect.refund_application_fee(backend, action, fee, amount, new_metadata(params))


@route("POST", "/v1/application_fees/{id}/refunds")
def create_fee_refund(backend: Backend, action: Action, params: dict[str, Any], id: str) -> dict[str, Any]:
    return respond(backend, _refund_fee(backend, action, params, id), params)


@route("POST", "/v1/application_fees/{id}/refund")
def refund_fee_legacy(backend: Backend, action: Action, params: dict[str, Any], id: str) -> dict[str, Any]:
    """The older endpoint: refunds like the one above and answers the fee."""
    _refund_fee(backend, action, params, id)
    return respond(backend, _fee(backend, id), params)


@route("GET", "/v1/application_fees/{id}/refunds")
def list_fee_refunds(backend: Backend, action: Action, params: dict[str, Any], id: str) -> dict[str, Any]:
    _fee(backend, id)
    return list_page(backend, params, object_type="fee_refund", object_name="fee refund",
                     url=f"/v1/application_fees/{id}/refunds", equals={"$.fee": id})


def _fee_refund(backend: Backend, fee_id: str, refund_id: str) -> dict[str, Any]:
    _fee(backend, fee_id, param="fee")
    refund = backend.store.get(refund_id, "fee_refund")
    if refund is None or refund["fee"] != fee_id:
        raise ResourceMissing("fee refund", refund_id)
    return refund


@route("GET", "/v1/application_fees/{fee}/refunds/{id}")
def retrieve_fee_refund(backend: Backend, action: Action, params: dict[str, Any], fee: str, id: str) -> dict[str, Any]:
    return respond(backend, _fee_refund(backend, fee, id), params)


@route("POST", "/v1/application_fees/{fee}/refunds/{id}")
def update_fee_refund(backend: Backend, action: Action, params: dict[str, Any], fee: str, id: str) -> dict[str, Any]:
    refund = _fee_refund(backend, fee, id)
    if "metadata" in params:
        before = dict(refund)
        refund["metadata"] = apply_metadata(refund.get("metadata"), params["metadata"])
        if refund != before:
            backend.store.save(refund)
            emit(backend, action, "application_fee.refund.updated", refund, changed(before, refund))
    return respond(backend, refund, params)
