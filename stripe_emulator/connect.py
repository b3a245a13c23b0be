"""Connect: connected accounts, their onboarding requirements, Account Links, login links,
application fees and their refunds.

Followed: Stripe's API reference for Accounts, Account Links, Login Links, Application Fees
and Application Fee Refunds; the Connect guides "Make API calls for connected accounts"
(``Stripe-Account``), "Create direct charges" (``application_fee_amount``, the fee object on
the platform), "Using Connect with Express accounts" / "Account Links" (single-use links that
expire after a few minutes and send a visitor of a used or expired link to ``refresh_url``),
and "Connect webhooks" (a connected account's events name it in ``account`` and reach only
Connect endpoints).

Accounts, Account Links, login links and application fees live on the platform; what is made
with ``Stripe-Account`` lives on that connected account.
"""

from __future__ import annotations

import copy
import re
from datetime import date as calendar_date
from typing import Any

from .backend import Action, Backend
from .errors import InvalidRequestError, PermissionDenied
from .events import changed, emit
from .ids import new_id, new_secret
from .money import SUPPORTED

PLATFORM = ""
APPLICATION_META = "platform_application"

# What Stripe asks of a new account before it may charge and be paid out, by business type
# (an individual, as the Express onboarding asks first; a company asks for its representative).
_INDIVIDUAL_FIELDS = [
    "business_profile.mcc",
    "business_profile.url",
    "business_type",
    "external_account",
    "individual.address.city",
    "individual.address.line1",
    "individual.address.postal_code",
    "individual.dob.day",
    "individual.dob.month",
    "individual.dob.year",
    "individual.email",
    "individual.first_name",
    "individual.last_name",
    "tos_acceptance.date",
    "tos_acceptance.ip",
]
_COMPANY_FIELDS = [
    "business_profile.mcc",
    "business_profile.url",
    "business_type",
    "company.address.city",
    "company.address.line1",
    "company.address.postal_code",
    "company.name",
    "company.tax_id",
    "external_account",
    "representative.email",
    "representative.first_name",
    "representative.last_name",
    "tos_acceptance.date",
    "tos_acceptance.ip",
]
REJECT_REASONS = ("fraud", "terms_of_service", "other")
_COUNTRY_CURRENCY = {
    "US": "usd", "GB": "gbp", "CA": "cad", "AU": "aud", "JP": "jpy", "CH": "chf", "IN": "inr", "NZ": "nzd",
    "SG": "sgd", "HK": "hkd", "SE": "sek", "NO": "nok", "DK": "dkk", "PL": "pln", "CZ": "czk", "HU": "huf",
    "RO": "ron", "BG": "bgn", "MX": "mxn", "BR": "brl", "MY": "myr", "TH": "thb", "AE": "aed",
}
_EURO = {"AT", "BE", "CY", "DE", "EE", "ES", "FI", "FR", "GR", "HR", "IE", "IT", "LT", "LU", "LV", "MT", "NL", "PT",
         "SI", "SK"}
COUNTRIES = set(_COUNTRY_CURRENCY) | _EURO


def currency_of(country: str) -> str:
    return "eur" if country in _EURO else _COUNTRY_CURRENCY.get(country, "usd")


# -- the platform's application -------------------------------------------------------------

def application(backend: Backend) -> dict[str, Any]:
    """The platform as a Connect application (``ca_…``), named in fees and deauthorizations."""
    application_id = backend.store.meta_get(APPLICATION_META)
    if application_id is None:
        application_id = "ca_" + new_secret(32)
        backend.store.meta_set(APPLICATION_META, application_id)
    return {"id": application_id, "object": "application", "name": backend.tuning.account_name}


# -- accounts -------------------------------------------------------------------------------

def _dashboard_type(params: dict[str, Any]) -> str:
    account_type = params.get("type")
    controller = params.get("controller") or {}
    if not account_type and not controller:
        raise InvalidRequestError("Missing required param: type.", param="type", code="parameter_missing")
    if account_type and controller:
        raise InvalidRequestError("You cannot specify both `type` and `controller`. Use `controller` only.",
                                  param="controller")
    if account_type:
        return account_type
    dashboard = (controller.get("stripe_dashboard") or {}).get("type")
    if dashboard == "express":
        return "express"
    if dashboard == "none":
        return "custom"
    if controller and (controller.get("requirement_collection") == "application"
                       or (controller.get("losses") or {}).get("payments") == "application"):
        if dashboard == "full":
            raise InvalidRequestError(
                "Accounts with `controller[stripe_dashboard][type]=full` must have "
                "`controller[requirement_collection]=stripe` and `controller[losses][payments]=stripe`.",
                param="controller",
            )
        return "custom"
    return "standard"


def _controller(account_type: str, params: dict[str, Any]) -> dict[str, Any]:
    given = params.get("controller") or {}
    platform_owns = account_type in ("express", "custom")
    return {
        "fees": {"payer": (given.get("fees") or {}).get("payer") or ("application" if platform_owns else "account")},
        "is_controller": True,
        "losses": {"payments": (given.get("losses") or {}).get("payments") or ("application" if platform_owns else "stripe")},
        "requirement_collection": given.get("requirement_collection") or ("application" if account_type == "custom" else "stripe"),
        "stripe_dashboard": {"type": {"express": "express", "custom": "none"}.get(account_type, "full")},
        "type": "application",
    }


def new_account(backend: Backend, action: Action, params: dict[str, Any]) -> dict[str, Any]:
    account_type = _dashboard_type(params)
    country = (params.get("country") or "US").upper()
    if country not in COUNTRIES:
        raise InvalidRequestError(f"Country '{country}' is unknown. Try using a 2-character alphanumeric country code "
                                  "instead, such as 'US', 'EG', or 'GB'.", param="country")
    default_currency = (params.get("default_currency") or currency_of(country)).lower()
    if default_currency not in SUPPORTED:
        raise InvalidRequestError(f"Invalid currency: {default_currency}.", param="default_currency")
    business_type = params.get("business_type") or None
    profile_in = params.get("business_profile") or {}
    account_id = new_id("acct")
    now = backend.now()
    name = profile_in.get("name") or None
    requested = params.get("capabilities") or {}
    capability_names = sorted(name for name, value in requested.items() if (value or {}).get("requested"))
    if account_type in ("express", "standard") and not capability_names:
        capability_names = ["card_payments", "transfers"]
    account = {
        "id": account_id,
        "object": "account",
        "business_profile": {
            "annual_revenue": None,
            "estimated_worker_count": None,
            "mcc": profile_in.get("mcc") or None,
            "monthly_estimated_revenue": {"amount": 0, "currency": default_currency},
            "name": name,
            "product_description": profile_in.get("product_description") or None,
            "support_address": None,
            "support_email": profile_in.get("support_email") or None,
            "support_phone": profile_in.get("support_phone") or None,
            "support_url": profile_in.get("support_url") or None,
            "url": profile_in.get("url") or None,
        },
        "business_type": business_type,
        "capabilities": {name: "inactive" for name in capability_names},
        "charges_enabled": False,
        "controller": _controller(account_type, params),
        "country": country,
        "created": now,
        "default_currency": default_currency,
        "details_submitted": False,
        "email": params.get("email") or None,
        "external_accounts": {
            "object": "list", "data": [], "has_more": False, "total_count": 0,
            "url": f"/v1/accounts/{account_id}/external_accounts",
        },
        "future_requirements": _requirements([], None),
        "metadata": {k: v for k, v in (params.get("metadata") or {}).items() if v != ""},
        "payouts_enabled": False,
        "requirements": None,
        "settings": {
            "branding": {"icon": None, "logo": None, "primary_color": None, "secondary_color": None},
            "card_payments": {
                "decline_on": {"avs_failure": False, "cvc_failure": False},
                "statement_descriptor_prefix": None,
                "statement_descriptor_prefix_kana": None,
                "statement_descriptor_prefix_kanji": None,
            },
            "dashboard": {"display_name": name, "timezone": "Etc/UTC"},
            "payments": {
                "statement_descriptor": _descriptor(name),
                "statement_descriptor_kana": None,
                "statement_descriptor_kanji": None,
            },
            "payouts": {
                "debit_negative_balances": account_type != "standard",
                "schedule": {"delay_days": 2, "interval": "daily"},
                "statement_descriptor": None,
            },
        },
        "tos_acceptance": {"date": None, "ip": None, "user_agent": None},
        "type": account_type,
    }
    internal = {"submitted": {}, "deauthorized": False, "rejected": None}
    submitted = internal["submitted"]
    if business_type:
        submitted["business_type"] = business_type
    for field in ("mcc", "url"):
        if profile_in.get(field):
            submitted[f"business_profile.{field}"] = profile_in[field]
    if params.get("email"):
        submitted["individual.email"] = params["email"]
    tos = params.get("tos_acceptance") or {}
    if tos.get("date") and tos.get("ip"):
        submitted["tos_acceptance.date"] = tos["date"]
        submitted["tos_acceptance.ip"] = tos["ip"]
        account["tos_acceptance"] = {"date": tos["date"], "ip": tos["ip"], "user_agent": tos.get("user_agent")}
    refresh(account, internal, now)
    backend.store.insert(account, internal, account=PLATFORM)
    return account


def _descriptor(name: str | None) -> str | None:
    if not name:
        return None
    letters = re.sub(r"[^A-Za-z0-9 .-]", "", name.upper()).strip()
    return letters[:22] or None


def _requirements(due: list[str], disabled_reason: str | None, *, past_due: list[str] | None = None) -> dict[str, Any]:
    return {
        "alternatives": [],
        "current_deadline": None,
        "currently_due": list(due),
        "disabled_reason": disabled_reason,
        "errors": [],
        "eventually_due": list(due),
        "past_due": list(past_due if past_due is not None else due),
        "pending_verification": [],
    }


def fields_needed(account: dict[str, Any], internal: dict[str, Any]) -> list[str]:
    company = internal["submitted"].get("business_type") in ("company", "non_profit", "government_entity")
    wanted = _COMPANY_FIELDS if company else _INDIVIDUAL_FIELDS
    return [field for field in wanted if not internal["submitted"].get(field)]


def refresh(account: dict[str, Any], internal: dict[str, Any], now: int) -> None:
    """Recompute what follows from what the account has given: requirements, the
    ``disabled_reason``, ``charges_enabled``, ``payouts_enabled``, ``details_submitted`` and the
    capabilities' status (Stripe's "Handle verification" and "Account capabilities" guides)."""
    due = fields_needed(account, internal)
    rejected = internal.get("rejected")
    if rejected:
        account["requirements"] = _requirements([], f"rejected.{rejected}", past_due=[])
        enabled = False
    elif due:
        account["requirements"] = _requirements(due, "requirements.past_due")
        enabled = False
    else:
        account["requirements"] = _requirements([], None)
        enabled = True
    account["charges_enabled"] = enabled
    account["payouts_enabled"] = enabled and bool(internal["submitted"].get("external_account"))
    account["details_submitted"] = bool(internal.get("details_submitted")) or not due
    account["capabilities"] = {name: ("active" if enabled else "inactive") for name in account["capabilities"]}


def update_account(backend: Backend, action: Action, account: dict[str, Any], changes: dict[str, Any],
                   submitted: dict[str, Any], *, details_submitted: bool | None = None) -> dict[str, Any]:
    """Apply changes (fields of the object) and submitted requirement values, recompute the
    account's state and send ``account.updated`` (a Connect event of that account) when anything
    changed."""
    before = copy.deepcopy(account)
    internal = backend.store.get_internal(account["id"])
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(account.get(key), dict):
            account[key].update(value)
        else:
            account[key] = value
    internal["submitted"].update({key: value for key, value in submitted.items() if value not in (None, "")})
    if details_submitted is not None:
        internal["details_submitted"] = internal.get("details_submitted") or details_submitted
    refresh(account, internal, backend.now())
    backend.store.save(account)
    backend.store.set_internal(account["id"], internal)
    if account != before:
        emit(backend, action, "account.updated", account, changed(before, account), account=account["id"])
    return account


def reject(backend: Backend, action: Action, account: dict[str, Any], reason: str) -> dict[str, Any]:
    before = copy.deepcopy(account)
    internal = backend.store.get_internal(account["id"])
    internal["rejected"] = reason
    refresh(account, internal, backend.now())
    backend.store.save(account)
    backend.store.set_internal(account["id"], internal)
    emit(backend, action, "account.updated", account, changed(before, account), account=account["id"])
    return account


def deauthorize(backend: Backend, action: Action, account: dict[str, Any]) -> dict[str, Any]:
    """The account disconnects from the platform: ``account.application.deauthorized`` (an event
    of that account whose object is the platform's application); from then on every request
    with its ``Stripe-Account`` is refused."""
    internal = backend.store.get_internal(account["id"])
    internal["deauthorized"] = True
    backend.store.set_internal(account["id"], internal)
    return emit(backend, action, "account.application.deauthorized", application(backend), account=account["id"])


def is_connected(backend: Backend, account_id: str) -> bool:
    with backend.store.scoped(PLATFORM):
        account = backend.store.get(account_id, "account")
    return account is not None and not backend.store.get_internal(account_id).get("deauthorized")


def no_access(action: Action, account_id: str) -> PermissionDenied:
    """Stripe's answer about an account that is not (or no longer) connected to the platform."""
    return PermissionDenied(
        f"The provided key '{action.key_hint or 'sk_test_****'}' does not have access to account '{account_id}' "
        "(or that account does not exist). Application access may have been revoked.",
        code="account_invalid",
    )


def load_account(backend: Backend, action: Action, account_id: str) -> dict[str, Any]:
    """A connected account of the platform, as the platform (or that account itself) sees it."""
    current = backend.store.current_account()
    with backend.store.scoped(PLATFORM):
        account = backend.store.get(account_id, "account")
    if account is None or backend.store.get_internal(account_id).get("deauthorized") or (current and current != account_id):
        raise no_access(action, account_id)
    return account


def valid_dob(day: str, month: str, year: str, today: calendar_date) -> bool:
    try:
        born = calendar_date(int(year), int(month), int(day))
    except (TypeError, ValueError):
        return False
    age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    return 13 <= age and born.year >= 1900


# -- Account Links and login links --------------------------------------------------------------

def new_account_link(backend: Backend, account: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    now = backend.now()
    token = new_secret(40)
    link = {
        "object": "account_link",
        "created": now,
        "expires_at": now + backend.tuning.account_link_lifetime,
        "url": f"{backend.public_url}/setup/e/{account['id']}/{token}",
    }
    backend.store.meta_set(f"account_link:{token}", _dump({
        "account": account["id"],
        "type": params["type"],
        "refresh_url": params.get("refresh_url"),
        "return_url": params["return_url"],
        "expires_at": link["expires_at"],
        "used": False,
    }))
    return link


def new_login_link(backend: Backend, account: dict[str, Any]) -> dict[str, Any]:
    token = new_secret(40)
    backend.store.meta_set(f"login_link:{token}", _dump({"account": account["id"], "used": False}))
    return {"object": "login_link", "created": backend.now(), "url": f"{backend.public_url}/express/{account['id']}/{token}"}


def _dump(value: dict[str, Any]) -> str:
    import json

    return json.dumps(value)


def load_token(backend: Backend, kind: str, token: str) -> dict[str, Any] | None:
    import json

    raw = backend.store.meta_get(f"{kind}:{token}")
    return json.loads(raw) if raw else None


def save_token(backend: Backend, kind: str, token: str, value: dict[str, Any]) -> None:
    backend.store.meta_set(f"{kind}:{token}", _dump(value))


# -- application fees ----------------------------------------------------------------------------

def check_application_fee(backend: Backend, fee: int | None, amount_total: int, currency: str) -> None:
    """What Stripe checks of ``payment_intent_data[application_fee_amount]`` at session creation."""
    if fee is None:
        return
    if not backend.store.current_account():
        raise InvalidRequestError(
            "Can only apply an application_fee_amount when the PaymentIntent is attempting a direct payment "
            "(using an OAuth key or Stripe-Account header) or destination payment (using `transfer_data[destination]`).",
            param="payment_intent_data[application_fee_amount]",
        )
    if fee < 0:
        raise InvalidRequestError("This value must be greater than or equal to 0.",
                                  param="payment_intent_data[application_fee_amount]", code="parameter_invalid_integer")
    if fee > amount_total:
        raise InvalidRequestError(
            "The application fee amount cannot be greater than the total amount of the Checkout Session.",
            param="payment_intent_data[application_fee_amount]",
        )


def charge_application_fee(backend: Backend, action: Action, intent: dict[str, Any], charge: dict[str, Any]) -> None:
    """A direct charge with ``application_fee_amount`` on a connected account: the fee goes to the
    platform as an ``application_fee`` (a platform object, ``application_fee.created`` a platform
    event) and the charge names it."""
    account_id = backend.store.current_account()
    amount = intent.get("application_fee_amount")
    if not account_id or amount is None:
        return
    # "The amount of the application fee collected will be capped at the total payment amount"
    # (PaymentIntent's application_fee_amount): a promotion code applied on the page may leave
    # less to pay than the fee asked when the session was made.
    amount = min(amount, charge["amount"])
    fee_id = new_id("fee")
    app = application(backend)
    fee = {
        "id": fee_id,
        "object": "application_fee",
        "account": account_id,
        "amount": amount,
        "amount_refunded": 0,
        "application": app["id"],
        "balance_transaction": None,
        "charge": charge["id"],
        "created": backend.now(),
        "currency": charge["currency"],
        "fee_source": {"charge": charge["id"], "type": "charge"},
        "livemode": False,
        "originating_transaction": None,
        "refunded": False,
        "refunds": {"object": "list", "data": [], "has_more": False, "total_count": 0,
                    "url": f"/v1/application_fees/{fee_id}/refunds"},
    }
    backend.store.insert(fee, {"api_version": action.api_version}, account=PLATFORM)
    charge.update({"application": app["id"], "application_fee": fee_id, "application_fee_amount": amount})
    intent["application"] = app["id"]
    emit(backend, action, "application_fee.created", fee, account=PLATFORM)


def refund_application_fee(backend: Backend, action: Action, fee: dict[str, Any], amount: int,
                           metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return ``amount`` of the fee to the connected account: a ``fee_refund``, the fee's
    ``amount_refunded``/``refunded``/``refunds`` brought up to date, ``application_fee.refunded``."""
    refund = {
        "id": new_id("fr"),
        "object": "fee_refund",
        "amount": amount,
        "balance_transaction": None,
        "created": backend.now(),
        "currency": fee["currency"],
        "fee": fee["id"],
        "metadata": metadata or {},
    }
    backend.store.insert(refund, account=PLATFORM)
    fee["amount_refunded"] += amount
    fee["refunded"] = fee["amount_refunded"] >= fee["amount"]
    fee["refunds"]["total_count"] += 1
    fee["refunds"]["data"] = [refund, *fee["refunds"]["data"]][:10]
    fee["refunds"]["has_more"] = fee["refunds"]["total_count"] > 10
    backend.store.save(fee)
    emit(backend, action, "application_fee.refunded", fee, account=PLATFORM)
    return refund


def refund_fee_with_charge(backend: Backend, action: Action, charge: dict[str, Any], refund_amount: int) -> None:
    """``refund_application_fee=true`` on a refund: the fee is refunded in proportion to the part
    of the charge refunded (all of what is left of it when the charge is now fully refunded)."""
    fee_id = charge.get("application_fee")
    if not fee_id:
        return
    with backend.store.scoped(PLATFORM):
        fee = backend.store.get(fee_id, "application_fee")
    if fee is None:
        return
    left = fee["amount"] - fee["amount_refunded"]
    if charge["amount_refunded"] >= charge["amount"]:
        share = left
    else:
        share = min(left, fee["amount"] * refund_amount // charge["amount"])
    if share > 0:
        refund_application_fee(backend, action, fee, share)
