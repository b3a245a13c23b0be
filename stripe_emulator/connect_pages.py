"""Connect's hosted pages: the onboarding form an Account Link opens, and the Express dashboard
a login link opens. Server-rendered, no JavaScript, like the hosted Checkout page.

Followed: Stripe's "Account Links" reference and the "Stripe-hosted onboarding" guide (a link is
single-use and expires after a few minutes; a visitor of a used or expired link is sent to
``refresh_url``; leaving or finishing returns to ``return_url``, which by itself says nothing
about the account's state, so the platform must read ``requirements`` or listen for
``account.updated``), and the "Login Links" reference (single-use, Express accounts only).
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs

from . import connect
from .backend import Backend
from .html import date, e, page
from .ids import new_secret
from .money import format_amount
from .web import Request, Response

_LINK = re.compile(r"^/setup/e/(?P<account>acct_[A-Za-z0-9]+)/(?P<token>[A-Za-z0-9]+)/?$")
_ONBOARDING = re.compile(r"^/setup/s/(?P<session>[A-Za-z0-9]+)/?$")
_LOGIN = re.compile(r"^/express/(?P<account>acct_[A-Za-z0-9]+)/(?P<token>[A-Za-z0-9]+)/?$")
_DASHBOARD = re.compile(r"^/express/s/(?P<session>[A-Za-z0-9]+)/?$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
ONBOARDING_LIFETIME = 3600
DASHBOARD_LIFETIME = 3600
INDUSTRIES = [
    ("7922", "Theatrical producers and ticket agencies"),
    ("7999", "Recreation services"),
    ("8299", "Schools and educational services"),
    ("7299", "Other personal services"),
    ("5734", "Computer software stores"),
]
CSS = """
.Onboarding{max-width:560px;margin:32px auto;padding:0 20px}
.Onboarding h1{font-size:22px;margin:12px 0 4px}.Onboarding .Lead{color:#4b5563;margin:0 0 20px}
.Row{display:flex;gap:12px}.Row .Field{flex:1}
.Actions{display:flex;flex-direction:column;gap:10px;margin-top:8px}
.Kpis{display:flex;gap:16px;flex-wrap:wrap;margin:16px 0}
.Kpi{flex:1 1 160px;border:1px solid #e6e6e6;border-radius:8px;padding:14px}
.Kpi-label{color:#6b7280;font-size:13px}.Kpi-value{font-size:22px;font-weight:600}
@media (max-width:600px){.Row{flex-direction:column;gap:0}.Table th:nth-child(3),.Table td:nth-child(3){display:none}}
"""


def route(backend: Backend, request: Request) -> Response | None:
    """The Connect page for this request, or None when the path is not one of them."""
    path = request.path
    for pattern, get, post in (
        (_LINK, _follow_account_link, None),
        (_ONBOARDING, _onboarding_page, _onboarding_submit),
        (_LOGIN, _follow_login_link, None),
        (_DASHBOARD, _dashboard_page, None),
    ):
        found = pattern.match(path)
        if not found:
            continue
        with backend.store.scoped(connect.PLATFORM):
            if request.method in ("GET", "HEAD"):
                return get(backend, **found.groupdict())
            if request.method == "POST" and post is not None:
                return post(backend, request, **found.groupdict())
            return Response.html(405, page("Method not allowed", '<div class="Center"><h1>Method not allowed</h1></div>'))
    return None


def _page(title: str, body: str, status: int = 200) -> Response:
    return Response.html(status, page(title, f"<style>{CSS}</style>{body}"))


def _gone(title: str, message: str, link: str | None = None, link_text: str = "") -> Response:
    back = f'<p><a href="{e(link)}" data-testid="back-link">{e(link_text)}</a></p>' if link else ""
    return _page(title, f'<div class="Center" data-testid="link-expired"><span class="TestModeBadge">Test mode</span>'
                        f'<h1>{e(title)}</h1><p>{e(message)}</p>{back}</div>', 410 if not link else 200)


# -- onboarding ------------------------------------------------------------------------------

def _follow_account_link(backend: Backend, account: str, token: str) -> Response:
    store = backend.store
    with store.transaction():
        link = connect.load_token(backend, "account_link", token)
        if link is None or link["account"] != account:
            return _gone("This link is not valid", "Ask the platform that sent you here for a new link.")
        if link["used"] or backend.now() >= link["expires_at"]:
            # Stripe sends the visitor of a used or expired Account Link to its refresh_url.
            return Response.redirect(link["refresh_url"], 302)
        link["used"] = True
        connect.save_token(backend, "account_link", token, link)
        session_id = new_secret(32)
        connect.save_token(backend, "onboarding", session_id, {
            "account": account, "return_url": link["return_url"], "refresh_url": link["refresh_url"],
            "expires_at": backend.now() + ONBOARDING_LIFETIME, "type": link["type"],
        })
    return Response.redirect(f"/setup/s/{session_id}", 303)


def _onboarding_state(backend: Backend, session_id: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    state = connect.load_token(backend, "onboarding", session_id)
    if state is None or backend.now() >= state["expires_at"] or state.get("finished"):
        return state, None
    account = backend.store.get(state["account"], "account")
    if account is None or backend.store.get_internal(state["account"]).get("deauthorized"):
        return state, None
    return state, account


def _onboarding_page(backend: Backend, session: str, *, form: dict[str, str] | None = None,
                     errors: dict[str, str] | None = None, status: int = 200) -> Response:
    with backend.store.transaction():
        state, account = _onboarding_state(backend, session)
        if account is None:
            if state is None:
                return _gone("This link is not valid", "Ask the platform that sent you here for a new link.")
            return _gone("This onboarding session has expired", "Start again from the platform's site.",
                         state["refresh_url"], "Get a new link")
        submitted = backend.store.get_internal(account["id"])["submitted"]
    return _page(f"Set up payments for {backend.tuning.account_name}",
                 _onboarding_form(backend, session, account, submitted, form or {}, errors or {}), status)


def _value(form: dict[str, str], submitted: dict[str, Any], name: str, key: str, default: str = "") -> str:
    if name in form:
        return form[name]
    value = submitted.get(key)
    return "" if value in (None, True) else str(value)


def _onboarding_form(backend: Backend, session: str, account: dict[str, Any], submitted: dict[str, Any],
                     form: dict[str, str], errors: dict[str, str]) -> str:
    def field(name: str, label: str, key: str, *, kind: str = "text", autocomplete: str = "", hint: str = "") -> str:
        error = errors.get(name)
        return (
            f'<div class="Field"><label for="{name}">{e(label)}</label>'
            f'<input class="Input{" Input--invalid" if error else ""}" id="{name}" name="{name}" type="{kind}" '
            f'value="{e(_value(form, submitted, name, key))}"{f" autocomplete={chr(34)}{autocomplete}{chr(34)}" if autocomplete else ""}'
            f'{" aria-invalid=" + chr(34) + "true" + chr(34) if error else ""}>'
            + (f'<div class="Muted">{e(hint)}</div>' if hint else "")
            + (f'<div class="FieldError" role="alert" data-testid="error-{name}">{e(error)}</div>' if error else "")
            + "</div>"
        )

    person = "representative" if submitted.get("business_type") == "company" else "individual"
    business_type = form.get("business_type") or submitted.get("business_type") or "individual"
    types = "".join(
        f'<option value="{value}"{" selected" if value == business_type else ""}>{label}</option>'
        for value, label in (("individual", "Individual or sole proprietor"), ("company", "Company"))
    )
    mcc = form.get("mcc") or submitted.get("business_profile.mcc") or ""
    industries = '<option value="">Choose an industry</option>' + "".join(
        f'<option value="{code}"{" selected" if code == mcc else ""}>{e(label)}</option>' for code, label in INDUSTRIES
    )
    dob = form.get("dob") or (
        f'{submitted.get(f"{person}.dob.year")}-{int(submitted[f"{person}.dob.month"]):02d}-{int(submitted[f"{person}.dob.day"]):02d}'
        if submitted.get(f"{person}.dob.year") else "")
    due = account["requirements"]["currently_due"]
    summary = (f'<div class="Notice Notice--info" data-testid="requirements-due">{len(due)} item(s) still needed '
               "before this account can accept payments and receive payouts.</div>") if due else (
               '<div class="Notice Notice--info" data-testid="requirements-complete">Everything needed has been '
               "provided. You can review and submit again.</div>")
    top_error = ('<div class="Notice Notice--error" role="alert" data-testid="form-error">'
                 "Some information is missing or invalid. Check the highlighted fields.</div>") if errors else ""
    tos_checked = " checked" if form.get("tos") or submitted.get("tos_acceptance.date") else ""
    tos_error = (f'<div class="FieldError" role="alert" data-testid="error-tos">{e(errors["tos"])}</div>'
                 if errors.get("tos") else "")
    return f"""
<div class="Onboarding" data-testid="connect-onboarding" data-account="{e(account["id"])}">
  <span class="TestModeBadge">Test mode</span>
  <h1>Get paid with {e(backend.tuning.account_name)}</h1>
  <p class="Lead">{e(backend.tuning.account_name)} partners with Stripe for secure payments and payouts.
    Account <span class="Mono">{e(account["id"])}</span> &middot; {e(account["country"])}</p>
  {summary}{top_error}
  <form method="post" action="/setup/s/{e(session)}" novalidate>
    <div class="Section"><h2 class="Section-title">Business</h2>
      <div class="Field"><label for="business_type">Type of business</label>
        <select class="Input" id="business_type" name="business_type">{types}</select></div>
      {field("business_name", "Business or trading name", "business_profile.name")}
      <div class="Field"><label for="mcc">Industry</label>
        <select class="Input{" Input--invalid" if errors.get("mcc") else ""}" id="mcc" name="mcc">{industries}</select>
        {f'<div class="FieldError" role="alert" data-testid="error-mcc">{e(errors["mcc"])}</div>' if errors.get("mcc") else ""}</div>
      {field("url", "Business website", "business_profile.url", kind="url", hint="Or describe what you sell below.")}
      {field("product_description", "What you sell", "business_profile.product_description")}
      {field("tax_id", "Company tax ID (companies only)", "company.tax_id")}
    </div>
    <div class="Section"><h2 class="Section-title">Personal details</h2>
      <div class="Row">{field("first_name", "First name", f"{person}.first_name", autocomplete="given-name")}
        {field("last_name", "Last name", f"{person}.last_name", autocomplete="family-name")}</div>
      {field("email", "Email", f"{person}.email", kind="email", autocomplete="email")}
      <div class="Field"><label for="dob">Date of birth</label>
        <input class="Input{" Input--invalid" if errors.get("dob") else ""}" id="dob" name="dob" type="date" value="{e(dob)}">
        <div class="Muted">Test mode: 1901-01-01 verifies successfully.</div>
        {f'<div class="FieldError" role="alert" data-testid="error-dob">{e(errors["dob"])}</div>' if errors.get("dob") else ""}</div>
      {field("address_line1", "Address", f"{person}.address.line1", autocomplete="address-line1", hint="Test mode: address_full_match")}
      <div class="Row">{field("city", "City", f"{person}.address.city", autocomplete="address-level2")}
        {field("postal_code", "Postal code", f"{person}.address.postal_code", autocomplete="postal-code")}</div>
    </div>
    <div class="Section"><h2 class="Section-title">Payouts</h2>
      {field("account_number", "Bank account number or IBAN", "external_account_number",
             hint="Test mode: 000123456789 or DE89370400440532013000")}
    </div>
    <div class="Field"><label><input type="checkbox" id="tos" name="tos" value="accepted"{tos_checked}>
      I agree to the Stripe Connected Account Agreement.</label>{tos_error}</div>
    <div class="Actions">
      <button class="SubmitButton" type="submit" name="action" value="submit" data-testid="submit-onboarding">Agree and submit</button>
      <button class="Button" type="submit" name="action" value="later" data-testid="save-for-later">Save and return to {e(backend.tuning.account_name)} later</button>
    </div>
  </form>
  <p class="Footer">Powered by Stripe (emulated)</p>
</div>"""


def _form_of(request: Request) -> dict[str, str]:
    fields = parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True)
    return {key: values[-1].strip() for key, values in fields.items()}


def _validated(backend: Backend, form: dict[str, str], *, complete: bool) -> tuple[dict[str, Any], dict[str, Any],
                                                                                       dict[str, str]]:
    """The account changes and requirement values the form gives, and what is wrong with it.
    Saving for later keeps every valid value; submitting needs them all."""
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    business_type = form.get("business_type") if form.get("business_type") in ("individual", "company") else "individual"
    person = "representative" if business_type == "company" else "individual"
    prefix = "company" if business_type == "company" else "individual"
    values["business_type"] = business_type
    changes: dict[str, Any] = {"business_type": business_type, "business_profile": {}}

    def required(name: str, message: str) -> str | None:
        value = form.get(name, "")
        if not value:
            if complete:
                errors[name] = message
            return None
        return value

    name = required("business_name", "Enter your business name.")
    if name:
        changes["business_profile"]["name"] = name
        values["business_profile.name"] = name
        if business_type == "company":
            values["company.name"] = name
    mcc = form.get("mcc", "")
    if mcc and mcc in dict(INDUSTRIES):
        changes["business_profile"]["mcc"] = mcc
        values["business_profile.mcc"] = mcc
    elif complete:
        errors["mcc"] = "Choose your industry."
    url, description = form.get("url", ""), form.get("product_description", "")
    if url and not re.match(r"^https?://[^\s/$.?#].[^\s]*$", url):
        errors["url"] = "Enter a website address starting with http:// or https://."
    elif url or description:
        if url:
            changes["business_profile"]["url"] = url
        if description:
            changes["business_profile"]["product_description"] = description
            values["business_profile.product_description"] = description
        values["business_profile.url"] = url or description
    elif complete:
        errors["url"] = "Enter your website, or describe what you sell."
    if business_type == "company":
        tax_id = required("tax_id", "Enter your company's tax ID.")
        if tax_id:
            values["company.tax_id"] = tax_id
    for field, message in (("first_name", "Enter your first name."), ("last_name", "Enter your last name.")):
        value = required(field, message)
        if value:
            values[f"{person}.{field}"] = value
    email = form.get("email", "")
    if email and not _EMAIL.match(email):
        errors["email"] = "Enter a valid email address."
    elif email:
        values[f"{person}.email"] = email
        changes["email"] = email
    elif complete:
        errors["email"] = "Enter your email address."
    if business_type == "individual":
        dob = form.get("dob", "")
        parts = re.match(r"^(\d{4})-(\d{1,2})-(\d{1,2})$", dob)
        today = datetime.fromtimestamp(backend.clock.now(), tz=timezone.utc).date()
        if dob and (not parts or not connect.valid_dob(parts.group(3), parts.group(2), parts.group(1), today)):
            errors["dob"] = "Enter a valid date of birth (you must be at least 13)."
        elif parts:
            values.update({"individual.dob.year": int(parts.group(1)), "individual.dob.month": int(parts.group(2)),
                           "individual.dob.day": int(parts.group(3))})
        elif complete:
            errors["dob"] = "Enter your date of birth."
    for field, key, message in (("address_line1", "line1", "Enter your address."), ("city", "city", "Enter your city."),
                                ("postal_code", "postal_code", "Enter your postal code.")):
        value = required(field, message)
        if value:
            values[f"{prefix}.address.{key}"] = value
    number = re.sub(r"\s", "", form.get("account_number", "")).upper()
    if number and not (re.match(r"^\d{4,17}$", number) or re.match(r"^[A-Z]{2}\d{2}[A-Z0-9]{10,30}$", number)):
        errors["account_number"] = "Enter a valid bank account number or IBAN."
    elif number:
        values["external_account"] = True
        values["external_account_number"] = f"•••• {number[-4:]}"
    elif complete:
        errors["account_number"] = "Enter the bank account that receives your payouts."
    if form.get("tos") == "accepted":
        values["tos_acceptance.date"] = backend.now()
        values["tos_acceptance.ip"] = "127.0.0.1"
        changes["tos_acceptance"] = {"date": backend.now(), "ip": "127.0.0.1", "user_agent": None}
    elif complete:
        errors["tos"] = "Accept the agreement to continue."
    if not changes["business_profile"]:
        del changes["business_profile"]
    return changes, values, errors


def _onboarding_submit(backend: Backend, request: Request, session: str) -> Response:
    form = _form_of(request)
    complete = form.get("action", "submit") != "later"
    with backend.store.transaction():
        state, account = _onboarding_state(backend, session)
        if account is None:
            return _onboarding_page(backend, session)
        changes, values, errors = _validated(backend, form, complete=complete)
        if complete and errors:
            return _onboarding_page(backend, session, form=form, errors=errors, status=200)
        for name in errors:  # saving for later keeps only the valid values
            form.pop(name, None)
        with backend.store.scoped(account["id"]):
            connect.update_account(backend, backend.system_action(backend.account_api_version), account, changes, values,
                                   details_submitted=complete)
        state["finished"] = True
        connect.save_token(backend, "onboarding", session, state)
    return Response.redirect(state["return_url"], 303)


# -- the Express dashboard ---------------------------------------------------------------------

def _follow_login_link(backend: Backend, account: str, token: str) -> Response:
    with backend.store.transaction():
        link = connect.load_token(backend, "login_link", token)
        if link is None or link["account"] != account or link["used"]:
            return _gone("This link has expired", "Login links work once. Open your dashboard again from the platform.")
        link["used"] = True
        connect.save_token(backend, "login_link", token, link)
        session_id = new_secret(32)
        connect.save_token(backend, "express_session", session_id,
                           {"account": account, "expires_at": backend.now() + DASHBOARD_LIFETIME})
    return Response.redirect(f"/express/s/{session_id}", 303)


def account_activity(backend: Backend, account_id: str) -> dict[str, Any]:
    """The account's payments with their fees and refunds, and its balance per currency
    (charges less refunds less the platform's fees net of fee refunds)."""
    rows = backend.store.query(
        "SELECT data FROM objects WHERE account = ? AND type = 'charge' ORDER BY seq DESC LIMIT 100", (account_id,)
    )
    charges = [json.loads(row["data"]) for row in rows]
    payments, balance = [], {}
    for charge in charges:
        if charge["status"] != "succeeded":
            continue
        fee = backend.store.get(charge["application_fee"], "application_fee") if charge.get("application_fee") else None
        fee_net = (fee["amount"] - fee["amount_refunded"]) if fee else 0
        net = charge["amount"] - charge["amount_refunded"] - fee_net
        balance[charge["currency"]] = balance.get(charge["currency"], 0) + net
        payments.append({"charge": charge, "fee": fee_net, "net": net})
    return {"payments": payments, "balance": balance}


def _dashboard_page(backend: Backend, session: str) -> Response:
    with backend.store.transaction():
        state = connect.load_token(backend, "express_session", session)
        if state is None or backend.now() >= state["expires_at"]:
            return _gone("Your session has ended", "Open your dashboard again from the platform.")
        account = backend.store.get(state["account"], "account")
        if account is None or backend.store.get_internal(state["account"]).get("deauthorized"):
            return _gone("This account is no longer connected", "The account was disconnected from the platform.")
        activity = account_activity(backend, account["id"])
    name = account["business_profile"].get("name") or account["id"]
    balance = "".join(
        f'<div class="Kpi" data-testid="balance" data-currency="{e(currency)}"><div class="Kpi-label">Balance ({e(currency.upper())})</div>'
        f'<div class="Kpi-value">{e(format_amount(amount, currency))}</div></div>'
        for currency, amount in sorted(activity["balance"].items())
    ) or '<div class="Kpi" data-testid="balance"><div class="Kpi-label">Balance</div><div class="Kpi-value">0.00</div></div>'
    rows = "".join(
        f'<tr data-testid="payment-row" data-charge="{e(p["charge"]["id"])}"><td>{e(date(p["charge"]["created"]))}</td>'
        f'<td>{e(format_amount(p["charge"]["amount"], p["charge"]["currency"]))}</td>'
        f'<td>{e(p["charge"].get("description") or "")}</td>'
        f'<td data-testid="fee">{e(format_amount(p["fee"], p["charge"]["currency"]))}</td>'
        f'<td data-testid="net">{e(format_amount(p["net"], p["charge"]["currency"]))}</td>'
        f'<td><span class="Status {"Status--warn" if p["charge"]["refunded"] else "Status--ok"}">'
        f'{"Refunded" if p["charge"]["refunded"] else ("Partially refunded" if p["charge"]["amount_refunded"] else "Succeeded")}</span></td></tr>'
        for p in activity["payments"]
    )
    table = (f'<table class="Table" data-testid="payments"><thead><tr><th>Date</th><th>Amount</th><th>Description</th>'
             f'<th>Fee</th><th>Net</th><th>Status</th></tr></thead><tbody>{rows}</tbody></table>'
             if rows else '<p class="Muted" data-testid="payments">No payments yet.</p>')
    payouts = "enabled" if account["payouts_enabled"] else "paused until the details Stripe needs are provided"
    body = f"""
<div class="Page" data-testid="express-dashboard" data-account="{e(account["id"])}">
  <span class="TestModeBadge">Test mode</span>
  <h1>{e(name)}</h1>
  <p class="Muted">Express dashboard &middot; <span class="Mono">{e(account["id"])}</span> &middot; payouts {e(payouts)}</p>
  <div class="Kpis">{balance}</div>
  <h2>Payments</h2>
  {table}
</div>"""
    return _page(f"{name} — Express dashboard", body)
