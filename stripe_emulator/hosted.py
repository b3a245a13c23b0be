"""The pages Stripe hosts, rendered on the server without JavaScript: Checkout
(``/c/pay/{session}``), its 3-D Secure challenge, payment receipts, invoices and the customer
portal (``/p/session/{portal_session}``).

Element ids follow Stripe's hosted Checkout (``email``, ``cardNumber``, ``cardExpiry``,
``cardCvc``, ``billingName``, ``promotionCode``, the ``hosted-payment-submit-button``), so a
browser test written against the emulator also reads naturally against Stripe.
"""

from __future__ import annotations

import json
import re
from typing import Any

from . import connect_pages, payments
from .backend import Backend
from .html import date, e, page
from .money import format_amount
from .web import Request, Response

_CHECKOUT = re.compile(r"^/c/pay/(?P<session>cs_[A-Za-z0-9_]+)(?P<rest>/authenticate)?/?$")
_RECEIPT = re.compile(r"^/receipts/payment/(?P<charge>ch_[A-Za-z0-9]+)/?$")
_INVOICE = re.compile(r"^/i/(?P<invoice>in_[A-Za-z0-9]+)/?$")
_OBJECT_IN_PATH = re.compile(r"(cs_test_[A-Za-z0-9_]+|ch_[A-Za-z0-9]+|in_[A-Za-z0-9]+|bps_[A-Za-z0-9]+)")
_PORTAL = re.compile(r"^/p/session/(?P<session>bps_[A-Za-z0-9]+)/?$")

NOTICES = {
    "authentication_failed": payments.AUTHENTICATION_FAILED_MESSAGE,
    "generic_decline": "Your card has been declined.",
    "insufficient_funds": "Your card has insufficient funds.",
}


def success_url_for(session: dict[str, Any]) -> str:
    return (session.get("success_url") or "").replace("{CHECKOUT_SESSION_ID}", session["id"])


class HostedApp:
    def __init__(self, backend: Backend):
        self.backend = backend

    def handle(self, request: Request) -> Response:
        """Each page acts on the account that owns the object it shows (a session created
        with ``Stripe-Account`` is paid on that connected account)."""
        found = _OBJECT_IN_PATH.search(request.path)
        with self.backend.store.scoped_to_object(found.group(0) if found else None):
            return self._handle(request)

    def _handle(self, request: Request) -> Response:
        path = request.path
        connect_page = connect_pages.route(self.backend, request)
        if connect_page is not None:
            return connect_page
        if path == "/":
            return Response.redirect("/_emulator/", 302)
        if path == "/favicon.ico":
            return Response(204)
        found = _CHECKOUT.match(path)
        if found:
            session_id = found.group("session")
            if found.group("rest"):
                if request.method == "POST":
                    return self._authenticate(session_id, request)
                return self._challenge_page(session_id) if request.method in ("GET", "HEAD") else _not_allowed()
            if request.method == "POST":
                return self._submit(session_id, request)
            if request.method in ("GET", "HEAD"):
                notice = NOTICES.get(request.query_args().get("error", ""))
                return self._checkout_page(session_id, notice=notice)
            return _not_allowed()
        if request.method not in ("GET", "HEAD"):
            return _not_allowed()
        for pattern, render in ((_RECEIPT, self._receipt_page), (_INVOICE, self._invoice_page), (_PORTAL, self._portal_page)):
            found = pattern.match(path)
            if found:
                return render(next(iter(found.groupdict().values())))
        return _not_found()

    # -- Checkout -------------------------------------------------------------------------

    def _checkout_page(self, session_id: str, *, notice: str | None = None, form: dict[str, str] | None = None,
                       errors: dict[str, str] | None = None, status: int = 200) -> Response:
        store = self.backend.store
        with store.transaction():
            session = store.get(session_id, "checkout.session")
            if session is None:
                return _not_found("This Checkout Session does not exist.")
            open_session = payments.load_open_session(self.backend, session_id)
            session = store.get(session_id, "checkout.session")
            items = payments.line_items_of(self.backend, session_id)
            product_descriptions = _product_descriptions(self.backend, items)
            customer = store.get(session["customer"], "customer") if session.get("customer") else None
            discount = store.get_internal(session_id).get("discount")
            promotion_code = store.get(discount["promotion_code"], "promotion_code") if discount and discount.get("promotion_code") else None
            coupon = store.get(discount["coupon"], "coupon") if discount else None
        if open_session is None:
            if session["status"] == "complete":
                return Response.html(200, self._done_page(session))
            return Response.html(200, self._expired_page(session))
        summary = _order_summary(self.backend, session, items, coupon, promotion_code, product_descriptions)
        form = form or {}
        errors = errors or {}
        email = form.get("email") or (customer or {}).get("email") or session.get("customer_email") or ""
        email_locked = bool((customer or {}).get("email") or session.get("customer_email"))
        free = session["amount_total"] == 0
        button = "Complete order" if free else {"book": "Book", "donate": "Donate"}.get(session.get("submit_type") or "", "Pay")
        if session.get("custom_text", {}).get("submit"):
            submit_note = f'<p class="Muted">{e(session["custom_text"]["submit"]["message"])}</p>'
        else:
            submit_note = ""
        notice_html = f'<div class="Notice Notice--error" role="alert" data-testid="payment-error" id="payment-error">{e(notice)}</div>' if notice else ""
        card_fields = "" if free else f"""
      <div class="Section">
        <h2 class="Section-title">Payment method</h2>
        <div class="Field">
          <label for="cardNumber">Card information <span class="CardBrands">VISA · MASTERCARD · AMEX</span></label>
          <div class="CardGroup">
            {_input("cardNumber", "cardNumber", form.get("cardNumber", ""), errors, placeholder="1234 1234 1234 1234",
                    autocomplete="cc-number", inputmode="numeric")}
            <div class="CardGroup-row">
              {_input("cardExpiry", "cardExpiry", form.get("cardExpiry", ""), errors, placeholder="MM / YY", autocomplete="cc-exp", inputmode="numeric")}
              {_input("cardCvc", "cardCvc", form.get("cardCvc", ""), errors, placeholder="CVC", autocomplete="cc-csc", inputmode="numeric")}
            </div>
          </div>
          {_field_error(errors, "cardNumber", "cardExpiry", "cardCvc")}
        </div>
        <div class="Field">
          <label for="billingName">Cardholder name</label>
          {_input("billingName", "billingName", form.get("billingName", ""), errors, placeholder="Full name on card", autocomplete="cc-name")}
          {_field_error(errors, "billingName")}
        </div>
      </div>"""
        promotion_html = ""
        if session.get("allow_promotion_codes"):
            if promotion_code is not None:
                promotion_html = f"""
      <div class="Field" data-testid="applied-promotion-code">
        <span class="Chip">{e(promotion_code["code"])}
          <button type="submit" class="LinkButton" name="action" value="remove_promotion_code" formnovalidate>Remove</button></span>
      </div>"""
            else:
                promotion_html = f"""
      <div class="Field">
        <label for="promotionCode">Promotion code</label>
        <div class="PromotionCode">
          {_input("promotionCode", "promotionCode", form.get("promotionCode", ""), errors, placeholder="Add promotion code")}
          <button type="submit" class="Button" name="action" value="apply_promotion_code" id="applyPromotionCode" formnovalidate>Apply</button>
        </div>
        {_field_error(errors, "promotionCode")}
      </div>"""
        back = ""
        if session.get("cancel_url"):
            back = (f'<a class="Header-backLink" href="{e(session["cancel_url"])}" id="cancelLink" data-testid="business-link">'
                    f'<span class="Header-backArrow">&larr;</span><span class="Header-business">{e(self.backend.business_name())}</span></a>')
        else:
            back = f'<span class="Header-business">{e(self.backend.business_name())}</span>'
        body = f"""
<div class="App" data-session-id="{e(session_id)}">
  <div class="App-Overview">
    <div class="App-Column">
      <header class="Header">{back}<span class="TestModeBadge">Test mode</span></header>
      {summary}
    </div>
  </div>
  <main class="App-Payment">
    <div class="App-Column">
      <form method="post" action="/c/pay/{e(session_id)}" novalidate id="payment-form">
      {notice_html}
      <div class="Section">
        <h2 class="Section-title">Contact information</h2>
        <div class="Field">
          <label for="email">Email</label>
          {_input("email", "email", email, errors, input_type="email", placeholder="email@example.com", autocomplete="email", readonly=email_locked)}
          {_field_error(errors, "email")}
        </div>
      </div>
      {card_fields}
      {promotion_html}
      {submit_note}
      <button type="submit" data-testid="hosted-payment-submit-button" class="SubmitButton" name="action" value="pay">
        <span class="SubmitButton-Text">{e(button)}</span>
      </button>
      </form>
      <div class="Footer">Powered by the Stripe emulator &middot; test mode, no real payments</div>
    </div>
  </main>
</div>"""
        return Response.html(status, page(f"{self.backend.business_name()} · Checkout", body))

    def _submit(self, session_id: str, request: Request) -> Response:
        form = request.form()
        action = form.get("action", "pay")
        if action == "apply_promotion_code":
            session, refusal = payments.apply_promotion_code(self.backend, session_id, form.get("promotionCode", ""))
            if refusal:
                return self._checkout_page(session_id, form=form, errors={"promotionCode": refusal})
            return self._checkout_page(session_id, form={k: v for k, v in form.items() if k != "promotionCode"})
        if action == "remove_promotion_code":
            payments.remove_promotion_code(self.backend, session_id)
            return self._checkout_page(session_id, form=form)
        if action != "pay":
            return self._checkout_page(session_id, form=form, notice="Unknown action.")
        if self.backend.store.get(session_id, "checkout.session") is None:
            return _not_found("This Checkout Session does not exist.")
        session = self.backend.store.get(session_id, "checkout.session") or {}
        if session.get("status") == "open" and session.get("amount_total") and not (form.get("billingName") or "").strip():
            return self._checkout_page(session_id, form=form, errors={"billingName": "Your name on the card is incomplete."})
        outcome = payments.pay(
            self.backend,
            session_id,
            email=form.get("email"),
            name=form.get("billingName"),
            card_number=form.get("cardNumber"),
            expiry=form.get("cardExpiry"),
            cvc=form.get("cardCvc"),
        )
        if outcome.kind == "completed":
            return Response.redirect(success_url_for(outcome.session))
        if outcome.kind == "requires_action":
            return Response.redirect(f"/c/pay/{session_id}/authenticate")
        if outcome.kind == "form_error":
            return self._checkout_page(session_id, form=form, errors={outcome.field or "cardNumber": outcome.message or ""})
        if outcome.kind == "declined":
            return self._checkout_page(session_id, form={k: v for k, v in form.items() if k not in ("cardCvc",)},
                                       notice=outcome.message, errors={"cardNumber": outcome.message or ""})
        return self._checkout_page(session_id)

    def _challenge_page(self, session_id: str) -> Response:
        session = self.backend.store.get(session_id, "checkout.session")
        if session is None:
            return _not_found("This Checkout Session does not exist.")
        intent_id = self.backend.store.get_internal(session_id).get("payment_intent")
        intent = self.backend.store.get(intent_id, "payment_intent") if intent_id else None
        if session["status"] != "open" or intent is None or intent["status"] != "requires_action":
            return Response.redirect(f"/c/pay/{session_id}")
        amount = format_amount(intent["amount"], intent["currency"])
        body = f"""
<div class="Challenge">
  <p class="TestModeBadge" style="display:inline-block">Test mode</p>
  <h1 style="font-size:20px">3D Secure 2 Test Page</h1>
  <p>{e(self.backend.business_name())} asks your bank to confirm a payment of <strong>{e(amount)}</strong>.</p>
  <p class="Muted">This is a test page: choose how the authentication ends.</p>
  <form method="post" action="/c/pay/{e(session_id)}/authenticate" class="Challenge-buttons">
    <button type="submit" class="Button Button--primary" id="test-source-authorize-3ds" name="outcome" value="complete">Complete</button>
    <button type="submit" class="Button" id="test-source-fail-3ds" name="outcome" value="fail">Fail</button>
  </form>
</div>"""
        return Response.html(200, page("3D Secure 2 Test Page", body))

    def _authenticate(self, session_id: str, request: Request) -> Response:
        if self.backend.store.get(session_id, "checkout.session") is None:
            return _not_found("This Checkout Session does not exist.")
        result = "complete" if request.form().get("outcome") == "complete" else "fail"
        outcome = payments.authenticate(self.backend, session_id, result)
        if outcome.kind == "completed":
            return Response.redirect(success_url_for(outcome.session))
        if outcome.kind == "authentication_failed":
            return Response.redirect(f"/c/pay/{session_id}?error=authentication_failed")
        if outcome.kind == "declined" and outcome.decline is not None:
            # Authenticated, then declined by the issuer (4000 0084 0000 1629): the decline shows on the form.
            code = outcome.decline.decline_code if outcome.decline.decline_code in NOTICES else "generic_decline"
            return Response.redirect(f"/c/pay/{session_id}?error={code}")
        return Response.redirect(f"/c/pay/{session_id}")

    def _done_page(self, session: dict[str, Any]) -> str:
        amount = format_amount(session["amount_total"], session["currency"])
        link = success_url_for(session)
        body = f"""
<div class="Center" data-testid="already-paid">
  <span class="TestModeBadge">Test mode</span>
  <h1>This order is already paid</h1>
  <p>{e(self.backend.business_name())} has received your payment of {e(amount)}. There is nothing more to do here.</p>
  {f'<p><a href="{e(link)}" id="continueLink">Continue to {e(self.backend.business_name())}</a></p>' if link else ''}
</div>"""
        return page("Already paid", body)

    def _expired_page(self, session: dict[str, Any]) -> str:
        back = session.get("cancel_url")
        body = f"""
<div class="Center" data-testid="session-expired">
  <span class="TestModeBadge">Test mode</span>
  <h1>This checkout session has expired</h1>
  <p>The time to pay for this order has run out, and nothing was charged.</p>
  {f'<p><a href="{e(back)}" id="cancelLink">Return to {e(self.backend.business_name())}</a></p>' if back else ''}
</div>"""
        return page("Session expired", body)

    # -- receipts and invoices ------------------------------------------------------------------

    def _receipt_page(self, charge_id: str) -> Response:
        store = self.backend.store
        with store.lock:
            charge = store.get(charge_id, "charge")
            if charge is None or charge["status"] != "succeeded":
                return _not_found("There is no receipt here.")
            refunds = _refunds_of(self.backend, charge_id)
            items = _items_for_intent(self.backend, charge["payment_intent"])
        card = charge["payment_method_details"]["card"]
        rows = "".join(
            f'<tr><td>{e(item["description"])} &times; {item["quantity"]}</td>'
            f'<td style="text-align:right">{e(format_amount(item["amount_total"], item["currency"]))}</td></tr>'
            for item in items
        )
        refund_rows = "".join(
            f'<tr><td>Refund {e(date(refund["created"]))} <span class="Status {_status_class(refund["status"])}">{e(refund["status"])}</span></td>'
            f'<td style="text-align:right">-{e(format_amount(refund["amount"], refund["currency"]))}</td></tr>'
            for refund in refunds
        )
        body = f"""
<div class="Page" style="max-width:560px" data-testid="receipt">
  <span class="TestModeBadge">Test mode</span>
  <h1>Receipt from {e(self.backend.business_name())}</h1>
  <p class="Muted">Receipt for {e(charge_id)}</p>
  <div class="Card">
    <p><strong>Amount paid</strong><br>{e(format_amount(charge["amount"], charge["currency"]))}</p>
    <p><strong>Date paid</strong><br>{e(date(charge["created"]))}</p>
    <p><strong>Payment method</strong><br>{e(card["brand"].title())} &bull;&bull;&bull;&bull; {e(card["last4"])}</p>
  </div>
  <h2>Summary</h2>
  <table class="Table"><tbody>{rows}{refund_rows}
    <tr><td><strong>Amount paid</strong></td><td style="text-align:right"><strong>{e(format_amount(charge["amount"], charge["currency"]))}</strong></td></tr>
  </tbody></table>
  <p class="Muted">Refunded so far: {e(format_amount(charge["amount_refunded"], charge["currency"]))}</p>
</div>"""
        return Response.html(200, page(f"Receipt from {self.backend.business_name()}", body))

    def _invoice_page(self, invoice_id: str) -> Response:
        invoice = self.backend.store.get(invoice_id, "invoice")
        if invoice is None:
            return _not_found("There is no invoice here.")
        rows = "".join(
            f'<tr><td>{e(line["description"])} &times; {line["quantity"]}</td>'
            f'<td style="text-align:right">{e(format_amount(line["amount"], line["currency"]))}</td></tr>'
            for line in invoice["lines"]["data"]
        )
        discount = invoice["subtotal"] - invoice["total"]
        discount_row = (f'<tr><td>Discount</td><td style="text-align:right">-{e(format_amount(discount, invoice["currency"]))}</td></tr>'
                        if discount else "")
        body = f"""
<div class="Page" style="max-width:640px" data-testid="invoice">
  <span class="TestModeBadge">Test mode</span>
  <h1>Invoice {e(invoice["number"])}</h1>
  <p class="Muted">{e(self.backend.business_name())} &middot; <span class="Status Status--ok">{e(invoice["status"])}</span></p>
  <div class="Card">
    <p><strong>Billed to</strong><br>{e(invoice["customer_name"] or "")} {e(invoice["customer_email"] or "")}</p>
    <p><strong>Date</strong><br>{e(date(invoice["created"]))}</p>
  </div>
  <table class="Table"><tbody>{rows}{discount_row}
    <tr><td><strong>Amount paid</strong></td><td style="text-align:right"><strong>{e(format_amount(invoice["amount_paid"], invoice["currency"]))}</strong></td></tr>
  </tbody></table>
  {f'<p>{e(invoice["description"])}</p>' if invoice.get("description") else ''}
  {f'<p class="Muted">{e(invoice["footer"])}</p>' if invoice.get("footer") else ''}
</div>"""
        return Response.html(200, page(f"Invoice {invoice['number']}", body))

    # -- customer portal ------------------------------------------------------------------------

    def _portal_page(self, portal_session_id: str) -> Response:
        store = self.backend.store
        tuning = self.backend.tuning
        with store.transaction():
            portal = store.get(portal_session_id, "billing_portal.session")
            if portal is None:
                return _not_found("This portal session does not exist.")
            internal = store.get_internal(portal_session_id)
            now = self.backend.now()
            first_visit = internal.get("first_visit")
            if first_visit is None:
                expired = now >= portal["created"] + tuning.portal_session_unused_lifetime
                if not expired:
                    internal["first_visit"] = now
                    store.set_internal(portal_session_id, internal)
            else:
                expired = now >= first_visit + tuning.portal_session_lifetime
            customer = store.get(portal["customer"], "customer")
            charges = [] if expired else _charges_of_customer(self.backend, portal["customer"])
            payment_method = None if expired else _latest_payment_method(self.backend, portal["customer"])
        return_link = ""
        if portal.get("return_url"):
            return_link = (f'<a class="Header-backLink" href="{e(portal["return_url"])}" id="returnLink" data-testid="return-link">'
                           f'<span class="Header-backArrow">&larr;</span> Return to {e(self.backend.business_name())}</a>')
        if expired:
            body = f"""
<div class="Center" data-testid="portal-expired">
  <span class="TestModeBadge">Test mode</span>
  <h1>This session has expired</h1>
  <p>Portal links work for a short time only. Go back and open the billing page again.</p>
  <p>{return_link}</p>
</div>"""
            return Response.html(200, page("Session expired", body))
        rows = []
        for charge in charges:
            refunds = _refunds_of(self.backend, charge["id"])
            status, status_class = _charge_status(charge)
            refund_lines = "".join(
                f'<div class="Muted" data-testid="refund">Refund of {e(format_amount(r["amount"], r["currency"]))} on {e(date(r["created"]))}'
                f' &middot; <span class="Status {_status_class(r["status"])}">{e(r["status"])}</span></div>'
                for r in refunds
            )
            receipt = f'<a href="{e(charge["receipt_url"])}" data-testid="receipt-link">Receipt</a>' if charge.get("receipt_url") else ""
            rows.append(
                f'<tr data-testid="payment-row" data-charge="{e(charge["id"])}"><td>{e(date(charge["created"]))}</td>'
                f'<td>{e(format_amount(charge["amount"], charge["currency"]))}</td>'
                f'<td>{e(_description(self.backend, charge))}{refund_lines}</td>'
                f'<td><span class="Status {status_class}">{e(status)}</span></td><td>{receipt}</td></tr>'
            )
        history = (
            '<table class="Table" data-testid="payment-history"><thead><tr><th>Date</th><th>Amount</th><th>Description</th>'
            f'<th>Status</th><th></th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
            if rows else '<p class="Muted" data-testid="payment-history">No payments yet.</p>'
        )
        card_html = '<p class="Muted">No saved payment method.</p>'
        if payment_method is not None:
            card = payment_method["card"]
            card_html = (f'<p data-testid="saved-card">{e(card["brand"].title())} &bull;&bull;&bull;&bull; {e(card["last4"])}'
                         f' <span class="Muted">Expires {card["exp_month"]:02d}/{card["exp_year"] % 100:02d}</span></p>')
        body = f"""
<div class="Page" data-testid="customer-portal">
  <header class="Header">{return_link}<span class="TestModeBadge">Test mode</span></header>
  <h1>{e(self.backend.business_name())}</h1>
  <p class="Muted">{e((customer or {}).get("name") or "")} {e((customer or {}).get("email") or "")}</p>
  <h2>Payment method</h2>
  {card_html}
  <h2>Payment history</h2>
  {history}
</div>"""
        return Response.html(200, page(f"{self.backend.business_name()} · Billing", body))


# -- helpers --------------------------------------------------------------------------------

def _input(name: str, element_id: str, value: str, errors: dict[str, str], *, input_type: str = "text",
           placeholder: str = "", autocomplete: str = "", inputmode: str = "", readonly: bool = False) -> str:
    classes = "Input Input--invalid" if element_id in errors else "Input"
    attributes = [
        f'type="{input_type}"', f'name="{name}"', f'id="{element_id}"', f'value="{e(value)}"', f'class="{classes}"',
    ]
    if placeholder:
        attributes.append(f'placeholder="{e(placeholder)}"')
    if autocomplete:
        attributes.append(f'autocomplete="{autocomplete}"')
    if inputmode:
        attributes.append(f'inputmode="{inputmode}"')
    if readonly:
        attributes.append("readonly")
    if element_id in errors:
        attributes.append(f'aria-invalid="true" aria-describedby="{element_id}-error"')
    return f"<input {' '.join(attributes)}>"


def _field_error(errors: dict[str, str], *fields: str) -> str:
    for field in fields:
        if field in errors:
            return f'<div class="FieldError" id="{field}-error" role="alert">{e(errors[field])}</div>'
    return ""


def _product_descriptions(backend: Backend, items: list[dict[str, Any]]) -> dict[str, str]:
    """The description of each line item's product, which Checkout shows under its name."""
    descriptions = {}
    for item in items:
        product_id = item["price"]["product"]
        product_id = product_id if isinstance(product_id, str) else product_id["id"]
        product = backend.store.get(product_id, "product")
        if product and product.get("description"):
            descriptions[item["id"]] = product["description"]
    return descriptions


def _order_summary(backend: Backend, session: dict[str, Any], items: list[dict[str, Any]],
                   coupon: dict[str, Any] | None, promotion_code: dict[str, Any] | None,
                   product_descriptions: dict[str, str]) -> str:
    currency = session["currency"]
    lines = []
    for item in items:
        unit = item["price"]["unit_amount"]
        detail = f"Qty {item['quantity']}, {format_amount(unit, currency)} each" if item["quantity"] > 1 else ""
        about = product_descriptions.get(item["id"], "")
        lines.append(
            f'<li class="OrderLine" data-testid="line-item"><div><div class="OrderLine-name">{e(item["description"])}</div>'
            + (f'<div class="OrderLine-description">{e(about)}</div>' if about else "")
            + f'<div class="OrderLine-detail">{e(detail)}</div></div>'
            f'<div class="OrderLine-amount">{e(format_amount(item["amount_subtotal"], currency))}</div></li>'
        )
    discount_row = ""
    if session["total_details"]["amount_discount"]:
        label = promotion_code["code"] if promotion_code else (coupon or {}).get("name") or (coupon or {}).get("id", "Discount")
        discount_row = (f'<div class="Totals-row Totals-row--discount" data-testid="discount"><span>{e(label)}</span>'
                        f'<span>-{e(format_amount(session["total_details"]["amount_discount"], currency))}</span></div>')
    return f"""
      <p class="ProductSummary-label">Pay {e(backend.business_name())}</p>
      <p class="ProductSummary-total" id="ProductSummary-totalAmount" data-testid="product-summary-total-amount">{e(format_amount(session["amount_total"], currency))}</p>
      <ul class="OrderLines">{''.join(lines)}</ul>
      <div class="Totals">
        <div class="Totals-row"><span>Subtotal</span><span>{e(format_amount(session["amount_subtotal"], currency))}</span></div>
        {discount_row}
        <div class="Totals-row Totals-row--total"><span>Total due</span><span id="OrderDetails-totalAmount">{e(format_amount(session["amount_total"], currency))}</span></div>
      </div>"""


def _refunds_of(backend: Backend, charge_id: str) -> list[dict[str, Any]]:
    rows = backend.store.query(
        "SELECT data FROM objects WHERE type = 'refund' AND json_extract(data, '$.charge') = ? ORDER BY seq ASC", (charge_id,)
    )
    return [json.loads(row["data"]) for row in rows]


def _charges_of_customer(backend: Backend, customer_id: str) -> list[dict[str, Any]]:
    rows = backend.store.query(
        "SELECT data FROM objects WHERE type = 'charge' AND json_extract(data, '$.customer') = ? "
        "AND json_extract(data, '$.status') = 'succeeded' ORDER BY seq DESC LIMIT 100",
        (customer_id,),
    )
    return [json.loads(row["data"]) for row in rows]


def _latest_payment_method(backend: Backend, customer_id: str) -> dict[str, Any] | None:
    row = backend.store.query_one(
        "SELECT data FROM objects WHERE type = 'payment_method' AND json_extract(data, '$.customer') = ? ORDER BY seq DESC LIMIT 1",
        (customer_id,),
    )
    return json.loads(row["data"]) if row else None


def _items_for_intent(backend: Backend, intent_id: str | None) -> list[dict[str, Any]]:
    if not intent_id:
        return []
    session_id = backend.store.get_internal(intent_id).get("session")
    return payments.line_items_of(backend, session_id) if session_id else []


def _description(backend: Backend, charge: dict[str, Any]) -> str:
    if charge.get("description"):
        return charge["description"]
    items = _items_for_intent(backend, charge.get("payment_intent"))
    if items:
        return ", ".join(f"{item['description']} × {item['quantity']}" if item["quantity"] > 1 else item["description"] for item in items)
    return "Payment"


def _charge_status(charge: dict[str, Any]) -> tuple[str, str]:
    if charge["refunded"]:
        return "Refunded", "Status--warn"
    if charge["amount_refunded"]:
        return "Partially refunded", "Status--warn"
    return "Paid", "Status--ok"


def _status_class(status: str) -> str:
    return {"succeeded": "Status--ok", "failed": "Status--bad", "pending": "Status--warn", "canceled": "Status--bad"}.get(status, "")


def _not_found(message: str = "There is nothing here.") -> Response:
    body = f'<div class="Center"><h1>Not found</h1><p>{e(message)}</p></div>'
    return Response.html(404, page("Not found", body))


def _not_allowed() -> Response:
    return Response(405, b"Method not allowed.\n", {"Content-Type": "text/plain", "Allow": "GET, POST"})

