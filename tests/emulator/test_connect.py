"""Connect on the emulator, through the official SDK: connected accounts, Account Links and the
hosted onboarding page, login links and the Express dashboard, ``Stripe-Account`` scoping,
application fees and their refunds, and the Connect webhook endpoint with its own secret."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
import requests
import stripe

from stripe_emulator import Emulator
from stripe_emulator.control import ControlError, EmulatorControl

from .helpers import FAST, WebhookReceiver, create_session, line_item, receiver_handler, submit_card
from .test_schema import Checker, spec_defs  # noqa: F401  (the fixture)

RETURN_URL = "https://platform.example/connect/return"
REFRESH_URL = "https://platform.example/connect/refresh"
COMPLETE_FORM = {
    "business_type": "individual", "business_name": "Harbour Tours", "mcc": "7999", "url": "https://harbour.example",
    "product_description": "Boat tours", "first_name": "Jenny", "last_name": "Rosen", "email": "jenny@harbour.example",
    "dob": "1901-01-01", "address_line1": "address_full_match", "city": "Paris", "postal_code": "75001",
    "account_number": "DE89370400440532013000", "tos": "accepted", "action": "submit",
}


def _serve(hook: WebhookReceiver):
    server = ThreadingHTTPServer(("127.0.0.1", 0), receiver_handler(hook))
    server.daemon_threads = True
    hook.server = server
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


@pytest.fixture
def connect_receiver():
    hook = WebhookReceiver()
    server = _serve(hook)
    yield hook
    server.shutdown()
    server.server_close()


@pytest.fixture
def emulator(receiver, connect_receiver):
    """Platform events to ``receiver``, connected accounts' events to ``connect_receiver``."""
    with Emulator(forward_to=receiver.url, connect_forward_to=connect_receiver.url, **FAST) as emu:
        receiver.secret = emu.webhook_secret
        connect_receiver.secret = emu.connect_webhook_secret
        yield emu


def on(account_id: str) -> dict[str, str]:
    return {"stripe_account": account_id}


def express(client: stripe.StripeClient, **params) -> stripe.Account:
    return client.v1.accounts.create(params={"type": "express", "country": "FR", "email": "owner@harbour.example", **params})


def onboard(client: stripe.StripeClient, visitor: requests.Session, account_id: str, form: dict | None = None) -> requests.Response:
    link = client.v1.account_links.create(params={
        "account": account_id, "type": "account_onboarding", "refresh_url": REFRESH_URL, "return_url": RETURN_URL,
    })
    opened = visitor.get(link.url, allow_redirects=False)
    assert opened.status_code == 303
    form_url = urlsplit(link.url)._replace(path=opened.headers["Location"]).geturl()
    assert visitor.get(form_url).status_code == 200
    return visitor.post(form_url, data=form or COMPLETE_FORM, allow_redirects=False)


def onboarded(client, visitor, **params) -> stripe.Account:
    account = express(client, **params)
    assert onboard(client, visitor, account.id).headers["Location"] == RETURN_URL
    return client.v1.accounts.retrieve(account.id)


# -- accounts -------------------------------------------------------------------------------

def test_accounts_are_created_read_updated_listed_and_deleted(client):
    first = express(client, business_profile={"name": "Harbour Tours"}, metadata={"merchant": "7"})
    assert first.id.startswith("acct_") and first.type == "express" and first.country == "FR"
    assert first.default_currency == "eur" and first.controller.stripe_dashboard.type == "express"
    assert (first.charges_enabled, first.payouts_enabled, first.details_submitted) == (False, False, False)
    assert first.requirements.disabled_reason == "requirements.past_due"
    assert {"external_account", "individual.first_name", "tos_acceptance.date"} <= set(first.requirements.currently_due)
    assert first.capabilities.card_payments == "inactive"

    standard = client.v1.accounts.create(params={"type": "standard", "country": "US"})
    assert standard.type == "standard" and standard.controller.stripe_dashboard.type == "full"
    custom = client.v1.accounts.create(params={"controller": {"stripe_dashboard": {"type": "none"},
                                                              "requirement_collection": "application",
                                                              "losses": {"payments": "application"},
                                                              "fees": {"payer": "application"}},
                                               "country": "US", "capabilities": {"card_payments": {"requested": True},
                                                                                 "transfers": {"requested": True}}})
    assert custom.type == "custom" and custom.controller.requirement_collection == "application"

    assert client.v1.accounts.retrieve(first.id).metadata.to_dict() == {"merchant": "7"}
    updated = client.v1.accounts.update(first.id, params={"metadata": {"merchant": "8"},
                                                          "business_profile": {"support_email": "help@harbour.example"}})
    assert updated.metadata.to_dict() == {"merchant": "8"} and updated.business_profile.support_email == "help@harbour.example"
    assert updated.business_profile.name == "Harbour Tours"

    listed = client.v1.accounts.list(params={"limit": 2})
    assert [a.id for a in listed.data] == [custom.id, standard.id] and listed.has_more
    assert [a.id for a in client.v1.accounts.list().auto_paging_iter()] == [custom.id, standard.id, first.id]

    deleted = client.v1.accounts.delete(standard.id)
    assert deleted.deleted is True and deleted.id == standard.id
    with pytest.raises(stripe.PermissionError) as gone:
        client.v1.accounts.retrieve(standard.id)
    assert gone.value.json_body["error"]["code"] == "account_invalid" and gone.value.http_status == 403
    assert standard.id in gone.value.user_message and "does not have access to account" in gone.value.user_message
    with pytest.raises(stripe.InvalidRequestError) as no_type:
        client.v1.accounts.create(params={"country": "US"})
    assert no_type.value.param == "type"


def test_an_account_filled_in_through_the_api_can_charge(client):
    custom = client.v1.accounts.create(params={
        "type": "custom", "country": "US", "business_type": "individual",
        "capabilities": {"card_payments": {"requested": True}, "transfers": {"requested": True}},
        "business_profile": {"mcc": "7999", "url": "https://tours.example"},
        "individual": {"first_name": "Jenny", "last_name": "Rosen", "email": "jenny@example.com",
                       "dob": {"day": 1, "month": 1, "year": 1901},
                       "address": {"line1": "address_full_match", "city": "Austin", "postal_code": "78701"}},
        "tos_acceptance": {"date": 1700000000, "ip": "203.0.113.7"},
    })
    assert custom.requirements.currently_due == ["external_account"] and not custom.charges_enabled
    done = client.v1.accounts.update(custom.id, params={"external_account": "btok_us_verified"})
    assert (done.charges_enabled, done.payouts_enabled, done.details_submitted) == (True, True, True)
    assert done.requirements.disabled_reason is None and done.capabilities.card_payments == "active"


def test_rejecting_an_account_disables_it(client, connect_receiver, control):
    account = express(client)
    rejected = client.v1.accounts.reject(account.id, params={"reason": "fraud"})
    assert rejected.requirements.disabled_reason == "rejected.fraud" and not rejected.charges_enabled
    with pytest.raises(stripe.InvalidRequestError, match="already been rejected"):
        client.v1.accounts.reject(account.id, params={"reason": "other"})
    standard = client.v1.accounts.create(params={"type": "standard"})
    with pytest.raises(stripe.InvalidRequestError, match="Custom and Express accounts"):
        client.v1.accounts.reject(standard.id, params={"reason": "fraud"})
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.accounts.reject(account.id, params={"reason": "boredom"})
    assert control.wait_for_webhooks(timeout=10)["idle"]
    update = connect_receiver.events("account.updated")[-1]
    assert update.account == account.id and update.data.object.requirements.disabled_reason == "rejected.fraud"
    assert update.data.previous_attributes.requirements.disabled_reason == "requirements.past_due"


# -- onboarding ------------------------------------------------------------------------------

def test_onboarding_on_the_hosted_page_enables_the_account(client, visitor, control, receiver, connect_receiver):
    account = express(client)
    link = client.v1.account_links.create(params={
        "account": account.id, "type": "account_onboarding", "refresh_url": REFRESH_URL, "return_url": RETURN_URL,
    })
    assert link.object == "account_link" and link.expires_at - link.created == 300
    opened = visitor.get(link.url, allow_redirects=False)
    assert opened.status_code == 303
    form_url = urlsplit(link.url)._replace(path=opened.headers["Location"]).geturl()
    page = visitor.get(form_url)
    assert page.status_code == 200 and 'data-testid="connect-onboarding"' in page.text and account.id in page.text
    # The link is single-use: opened again it sends the visitor to refresh_url.
    again = visitor.get(link.url, allow_redirects=False)
    assert again.status_code == 302 and again.headers["Location"] == REFRESH_URL

    incomplete = visitor.post(form_url, data={**COMPLETE_FORM, "dob": "2020-01-01", "email": "nope", "tos": ""},
                              allow_redirects=False)
    assert incomplete.status_code == 200
    for field in ("dob", "email", "tos"):
        assert f'data-testid="error-{field}"' in incomplete.text
    assert not client.v1.accounts.retrieve(account.id).charges_enabled

    done = visitor.post(form_url, data=COMPLETE_FORM, allow_redirects=False)
    assert done.status_code == 303 and done.headers["Location"] == RETURN_URL
    account = client.v1.accounts.retrieve(account.id)
    assert (account.charges_enabled, account.payouts_enabled, account.details_submitted) == (True, True, True)
    assert account.requirements.currently_due == [] and account.requirements.disabled_reason is None
    assert account.business_profile.name == "Harbour Tours" and account.business_profile.mcc == "7999"
    # The finished onboarding session cannot be submitted twice.
    assert "expired" in visitor.get(form_url).text

    assert control.wait_for_webhooks(timeout=10)["idle"]
    update = connect_receiver.events("account.updated")[-1]
    assert update.account == account.id and update.data.object.charges_enabled is True
    assert update.data.previous_attributes.charges_enabled is False
    assert receiver.events("account.updated") == []


def test_an_expired_link_goes_to_refresh_url(client, visitor, control):
    account = express(client)
    link = client.v1.account_links.create(params={
        "account": account.id, "type": "account_onboarding", "refresh_url": REFRESH_URL, "return_url": RETURN_URL,
    })
    control.advance_clock(301)
    expired = visitor.get(link.url, allow_redirects=False)
    assert expired.status_code == 302 and expired.headers["Location"] == REFRESH_URL
    with pytest.raises(stripe.InvalidRequestError) as wrong_type:
        client.v1.account_links.create(params={"account": account.id, "type": "account_update",
                                               "refresh_url": REFRESH_URL, "return_url": RETURN_URL})
    assert wrong_type.value.param == "type"
    with pytest.raises(stripe.InvalidRequestError) as no_return:
        client.v1.account_links.create(params={"account": account.id, "type": "account_onboarding",
                                               "refresh_url": REFRESH_URL})
    assert no_return.value.param == "return_url"


def test_leaving_onboarding_early_keeps_requirements_due(client, visitor, control, connect_receiver):
    account = express(client)
    partial = {"business_type": "individual", "first_name": "Jenny", "last_name": "Rosen", "email": "jenny@x.example",
               "dob": "", "action": "later"}
    left = onboard(client, visitor, account.id, partial)
    assert left.status_code == 303 and left.headers["Location"] == RETURN_URL
    account = client.v1.accounts.retrieve(account.id)
    assert not account.charges_enabled and not account.details_submitted
    assert "individual.first_name" not in account.requirements.currently_due
    assert {"individual.dob.day", "external_account", "tos_acceptance.date"} <= set(account.requirements.currently_due)
    assert account.requirements.disabled_reason == "requirements.past_due"
    assert control.wait_for_webhooks(timeout=10)["idle"]
    assert connect_receiver.events("account.updated")[-1].data.object.requirements.currently_due == \
        account.requirements.currently_due


# -- login links and the Express dashboard -----------------------------------------------------

def test_login_links_open_the_express_dashboard_once(client, visitor, control, emulator):
    account = onboarded(client, visitor)
    session = client.v1.checkout.sessions.create(
        params={"mode": "payment", "success_url": "https://shop.example/ok", "line_items": [line_item(amount=2500)],
                "payment_intent_data": {"application_fee_amount": 300, "description": "Harbour tour"}},
        options=on(account.id))
    control.pay_session(session.id)
    login = client.v1.accounts.login_links.create(account.id)
    assert login.object == "login_link" and login.url.startswith(emulator.public_url + "/express/")
    dashboard = visitor.get(login.url)
    assert dashboard.status_code == 200 and 'data-testid="express-dashboard"' in dashboard.text
    assert "Harbour Tours" in dashboard.text and "€22.00" in dashboard.text  # 25.00 less the 3.00 fee
    assert "€3.00" in dashboard.text and "Harbour tour" in dashboard.text
    assert 'data-testid="link-expired"' in visitor.get(login.url).text
    standard = client.v1.accounts.create(params={"type": "standard"})
    with pytest.raises(stripe.InvalidRequestError, match="not an Express account"):
        client.v1.accounts.login_links.create(standard.id)
    with pytest.raises(stripe.InvalidRequestError, match="not completed onboarding"):
        client.v1.accounts.login_links.create(express(client).id)


# -- Stripe-Account scoping ------------------------------------------------------------------------

def test_objects_live_on_their_account(client, visitor, control):
    a = onboarded(client, visitor)
    b = onboarded(client, visitor)
    session = client.v1.checkout.sessions.create(
        params={"mode": "payment", "success_url": "https://shop.example/ok", "line_items": [line_item()],
                "customer_creation": "always"}, options=on(a.id))
    assert client.v1.checkout.sessions.retrieve(session.id, options=on(a.id)).id == session.id
    for options in (on(b.id), {}):
        with pytest.raises(stripe.InvalidRequestError) as missing:
            client.v1.checkout.sessions.retrieve(session.id, options=options)
        assert missing.value.http_status == 404 and missing.value.code == "resource_missing"
    assert [s.id for s in client.v1.checkout.sessions.list(options=on(a.id)).data] == [session.id]
    assert client.v1.checkout.sessions.list(options=on(b.id)).data == []
    assert client.v1.checkout.sessions.list().data == []

    paid = control.pay_session(session.id, email="payer@example.com")
    intent_id, customer_id = paid["payment_intent"], paid["customer"]
    assert client.v1.payment_intents.retrieve(intent_id, options=on(a.id)).status == "succeeded"
    assert client.v1.customers.retrieve(customer_id, options=on(a.id)).email == "payer@example.com"
    refund = client.v1.refunds.create(params={"payment_intent": intent_id, "amount": 500}, options=on(a.id))
    for options in (on(b.id), {}):
        for call in (lambda: client.v1.payment_intents.retrieve(intent_id, options=options),
                     lambda: client.v1.customers.retrieve(customer_id, options=options),
                     lambda: client.v1.refunds.retrieve(refund.id, options=options),
                     lambda: client.v1.refunds.create(params={"payment_intent": intent_id}, options=options)):
            with pytest.raises(stripe.InvalidRequestError) as missing:
                call()
            assert missing.value.http_status == 404 and missing.value.code == "resource_missing"
    assert [r.id for r in client.v1.refunds.list(options=on(a.id)).data] == [refund.id]
    portal = client.v1.billing_portal.sessions.create(params={"customer": customer_id, "return_url": "https://x.example"},
                                                       options=on(a.id))
    assert "Harbour Tours" in visitor.get(portal.url).text
    with pytest.raises(stripe.InvalidRequestError) as no_customer:
        client.v1.billing_portal.sessions.create(params={"customer": customer_id}, options=on(b.id))
    assert no_customer.value.http_status == 404
    assert client.v1.accounts.retrieve(a.id, options=on(a.id)).id == a.id  # an account may read itself
    with pytest.raises(stripe.PermissionError):
        client.v1.accounts.retrieve(b.id, options=on(a.id))
    assert client.v1.refunds.list().data == [] and client.v1.customers.list(options=on(b.id)).data == []
    assert {e.type for e in client.v1.events.list(options=on(a.id)).auto_paging_iter()} >= {
        "checkout.session.completed", "refund.created"}
    assert "checkout.session.completed" not in {e.type for e in client.v1.events.list().auto_paging_iter()}

    # The same Idempotency-Key on two accounts is two requests.
    first = client.v1.customers.create(params={"email": "x@example.com"}, options={**on(a.id), "idempotency_key": "k1"})
    second = client.v1.customers.create(params={"email": "x@example.com"}, options={**on(b.id), "idempotency_key": "k1"})
    assert first.id != second.id

    with pytest.raises(stripe.PermissionError) as unknown:
        client.v1.customers.list(options=on("acct_1DoesNotExist00"))
    assert unknown.value.json_body["error"]["code"] == "account_invalid" and "acct_1DoesNotExist00" in unknown.value.user_message
    with pytest.raises(stripe.PermissionError):
        client.v1.accounts.list(options=on(a.id))


def test_promotion_codes_live_on_their_account_and_their_text_is_unique_per_account(client, visitor, control):
    a = onboarded(client, visitor)
    b = onboarded(client, visitor)
    codes = {}
    for account, percent in ((a, 10), (b, 50)):
        product = client.v1.products.create(params={"name": "Tour"}, options=on(account.id))
        coupon = client.v1.coupons.create(params={"percent_off": percent, "applies_to": {"products": [product.id]}},
                                          options=on(account.id))
        # The same text on two accounts: Stripe's codes are unique per account only.
        code = client.v1.promotion_codes.create(params={"promotion": {"type": "coupon", "coupon": coupon.id},
                                                        "code": "SPRING"}, options=on(account.id))
        codes[account.id] = (product, coupon, code)
    with pytest.raises(stripe.InvalidRequestError) as taken:
        client.v1.promotion_codes.create(params={"coupon": codes[a.id][1].id, "code": "spring"}, options=on(a.id))
    assert taken.value.code == "resource_already_exists"
    product, coupon, code = codes[a.id]
    for options in (on(b.id), {}):
        for call in (lambda: client.v1.promotion_codes.retrieve(code.id, options=options),
                     lambda: client.v1.coupons.retrieve(coupon.id, options=options),
                     lambda: client.v1.products.retrieve(product.id, options=options)):
            with pytest.raises(stripe.InvalidRequestError) as missing:
                call()
            assert missing.value.http_status == 404
    assert [c.id for c in client.v1.promotion_codes.list(options=on(a.id)).data] == [code.id]
    assert client.v1.promotion_codes.list().data == []

    # Each account's Checkout takes its own SPRING; a code of the platform's is not found there.
    platform_coupon = client.v1.coupons.create(params={"percent_off": 100})
    client.v1.promotion_codes.create(params={"coupon": platform_coupon.id, "code": "PLATFORMFREE"})
    for account, paid_total in ((a, 2250), (b, 1250)):
        product = codes[account.id][0]
        session = client.v1.checkout.sessions.create(params={
            "mode": "payment", "success_url": "https://shop.example/ok", "allow_promotion_codes": True,
            "line_items": [{"price_data": {"currency": "eur", "unit_amount": 2500, "product": product.id}, "quantity": 1}],
        }, options=on(account.id))
        with pytest.raises(ControlError) as unknown:
            control.pay_session(session.id, promotion_code="PLATFORMFREE")
        assert unknown.value.error["message"] == "This code is invalid."
        assert control.pay_session(session.id, promotion_code="spring")["amount_total"] == paid_total
    assert client.v1.promotion_codes.retrieve(code.id, options=on(a.id)).times_redeemed == 1
    client.v1.promotion_codes.update(code.id, params={"active": False}, options=on(a.id))
    client.v1.promotion_codes.update(code.id, params={"active": True}, options=on(a.id))  # b's SPRING is no clash


def test_a_fee_above_what_a_code_left_to_pay_is_collected_up_to_the_amount_charged(client, visitor, control):
    account = onboarded(client, visitor)
    coupon = client.v1.coupons.create(params={"amount_off": 2400, "currency": "eur"}, options=on(account.id))
    client.v1.promotion_codes.create(params={"coupon": coupon.id, "code": "BIGDEAL"}, options=on(account.id))
    session = client.v1.checkout.sessions.create(
        params={"mode": "payment", "success_url": "https://shop.example/ok", "line_items": [line_item(amount=2500)],
                "allow_promotion_codes": True, "payment_intent_data": {"application_fee_amount": 300}},
        options=on(account.id))
    assert control.pay_session(session.id, promotion_code="BIGDEAL")["amount_total"] == 100
    intent = client.v1.payment_intents.retrieve(
        client.v1.checkout.sessions.retrieve(session.id, options=on(account.id)).payment_intent,
        params={"expand": ["latest_charge"]}, options=on(account.id))
    assert intent.latest_charge.amount == 100 and intent.latest_charge.application_fee_amount == 100
    assert client.v1.application_fees.retrieve(intent.latest_charge.application_fee).amount == 100


def test_a_merchant_who_cannot_charge_gets_stripes_refusal(client):
    pending = express(client)
    with pytest.raises(stripe.InvalidRequestError, match="Your account cannot currently make charges"):
        client.v1.checkout.sessions.create(
            params={"mode": "payment", "success_url": "https://shop.example/ok", "line_items": [line_item()]},
            options=on(pending.id))


# -- application fees --------------------------------------------------------------------------

def test_application_fees_are_recorded_and_refunded(client, visitor, control, receiver, connect_receiver):
    account = onboarded(client, visitor)
    session = client.v1.checkout.sessions.create(
        params={"mode": "payment", "success_url": "https://shop.example/ok", "line_items": [line_item(amount=2500)],
                "payment_intent_data": {"application_fee_amount": 300}}, options=on(account.id))
    submit_card(visitor, session)
    intent = client.v1.payment_intents.retrieve(
        client.v1.checkout.sessions.retrieve(session.id, options=on(account.id)).payment_intent,
        params={"expand": ["latest_charge"]}, options=on(account.id))
    assert intent.application_fee_amount == 300
    charge = intent.latest_charge
    assert charge.application_fee_amount == 300 and charge.application_fee.startswith("fee_")

    fees = client.v1.application_fees.list()
    assert [f.id for f in fees.data] == [charge.application_fee]
    fee = client.v1.application_fees.retrieve(charge.application_fee)
    assert (fee.account, fee.amount, fee.amount_refunded, fee.refunded, fee.charge, fee.currency) == \
        (account.id, 300, 0, False, charge.id, "eur")
    assert client.v1.application_fees.list(params={"charge": charge.id}).data[0].id == fee.id
    with pytest.raises(stripe.InvalidRequestError) as not_theirs:
        client.v1.application_fees.retrieve(fee.id, options=on(account.id))
    assert not_theirs.value.http_status == 404

    client.v1.refunds.create(params={"charge": charge.id, "amount": 1250, "refund_application_fee": True},
                             options=on(account.id))
    fee = client.v1.application_fees.retrieve(fee.id)
    assert (fee.amount_refunded, fee.refunded, fee.refunds.total_count) == (150, False, 1)
    client.v1.refunds.create(params={"charge": charge.id, "amount": 250}, options=on(account.id))
    assert client.v1.application_fees.retrieve(fee.id).amount_refunded == 150  # kept: not asked for
    client.v1.refunds.create(params={"charge": charge.id, "refund_application_fee": True}, options=on(account.id))
    fee = client.v1.application_fees.retrieve(fee.id)
    assert (fee.amount_refunded, fee.refunded) == (300, True)
    refunds = client.v1.application_fees.refunds.list(fee.id)
    assert [r.amount for r in refunds.data] == [150, 150] and all(r.fee == fee.id for r in refunds.data)
    updated = client.v1.application_fees.refunds.update(fee.id, refunds.data[0].id, params={"metadata": {"why": "sold out"}})
    assert client.v1.application_fees.refunds.retrieve(fee.id, updated.id).metadata.to_dict() == {"why": "sold out"}
    with pytest.raises(stripe.InvalidRequestError, match="already been refunded"):
        client.v1.application_fees.refunds.create(fee.id)

    assert control.wait_for_webhooks(timeout=10)["idle"]
    assert receiver.types().count("application_fee.created") == 1
    assert receiver.types().count("application_fee.refunded") == 2
    assert all(not getattr(event, "account", None) for event in receiver.events())
    assert "application_fee.created" not in connect_receiver.types()
    assert {"charge.succeeded", "checkout.session.completed", "refund.created"} <= set(connect_receiver.types())


def test_application_fee_refunds_by_the_platform(client, visitor, control):
    account = onboarded(client, visitor)
    session = client.v1.checkout.sessions.create(
        params={"mode": "payment", "success_url": "https://shop.example/ok", "line_items": [line_item(amount=1000)],
                "payment_intent_data": {"application_fee_amount": 200}}, options=on(account.id))
    control.pay_session(session.id)
    fee = client.v1.application_fees.list().data[0]
    part = client.v1.application_fees.refunds.create(fee.id, params={"amount": 50})
    assert part.object == "fee_refund" and part.amount == 50
    with pytest.raises(stripe.InvalidRequestError, match="greater than unrefunded amount"):
        client.v1.application_fees.refunds.create(fee.id, params={"amount": 151})
    assert client.v1.application_fees.retrieve(fee.id).amount_refunded == 50


def test_application_fee_refusals(client, visitor):
    account = onboarded(client, visitor)
    with pytest.raises(stripe.InvalidRequestError) as too_big:
        client.v1.checkout.sessions.create(
            params={"mode": "payment", "success_url": "https://shop.example/ok", "line_items": [line_item(amount=1000)],
                    "payment_intent_data": {"application_fee_amount": 1001}}, options=on(account.id))
    assert too_big.value.param == "payment_intent_data[application_fee_amount]"
    with pytest.raises(stripe.InvalidRequestError) as platform:
        create_session(client, payment_intent_data={"application_fee_amount": 100})
    assert "Can only apply an application_fee_amount when the PaymentIntent is attempting a direct payment" in \
        platform.value.user_message
    assert client.v1.checkout.sessions.list().data == []


# -- the Connect endpoint ------------------------------------------------------------------------

def test_connect_events_go_to_the_connect_endpoint_only(client, visitor, control, receiver, connect_receiver, emulator):
    account = onboarded(client, visitor)
    control.wait_for_webhooks(timeout=10)
    def flaky(event, attempt):
        return 500 if event.type == "checkout.session.completed" and attempt == 1 else 200

    connect_receiver.decide = flaky
    session = client.v1.checkout.sessions.create(
        params={"mode": "payment", "success_url": "https://shop.example/ok", "line_items": [line_item()]},
        options=on(account.id))
    client.v1.customers.create(params={"email": "platform@example.com"})
    control.pay_session(session.id)
    assert control.wait_for_webhooks(timeout=10)["idle"]
    completed = connect_receiver.events("checkout.session.completed")
    assert len(completed) == 2 and completed[0].id == completed[1].id  # retried after the 500
    assert completed[0].account == account.id and completed[0].data.object.id == session.id
    assert receiver.events("checkout.session.completed") == []
    assert receiver.types() == ["customer.created"] and not getattr(receiver.events()[0], "account", None)
    assert connect_receiver.rejected == [] and receiver.rejected == []
    assert emulator.connect_webhook_secret != emulator.webhook_secret
    # Signed with the Connect secret: the platform secret does not verify it.
    with pytest.raises(stripe.SignatureVerificationError):
        delivered = next(d for d in connect_receiver.deliveries if d.event.type == "checkout.session.completed")
        stripe.Webhook.construct_event(delivered.payload, delivered.signature, emulator.webhook_secret)

    control.drop_webhooks(1)
    client.v1.customers.create(params={"email": "dropped@example.com"}, options=on(account.id))
    assert control.wait_for_webhooks(timeout=10)["idle"]
    assert "dropped@example.com" not in [e.data.object.email for e in connect_receiver.events("customer.created")]
    assert control.config()["connect_forward_to"] == connect_receiver.url
    attempts = control.deliveries(type="checkout.session.completed", target="connect")
    assert [a["status"] for a in reversed(attempts)] == [500, 200]
    assert all(a["target"] == "connect" and a["endpoint"] == connect_receiver.url for a in attempts)
    assert control.deliveries(type="checkout.session.completed", target="platform") == []


def test_a_merchant_disconnecting_is_a_connect_event(client, visitor, control, receiver, connect_receiver):
    account = onboarded(client, visitor)
    event = control.deauthorize_account(account.id)
    assert event["type"] == "account.application.deauthorized" and event["account"] == account.id
    assert event["data"]["object"]["object"] == "application"
    assert control.wait_for_webhooks(timeout=10)["idle"]
    delivered = connect_receiver.events("account.application.deauthorized")
    assert [e.id for e in delivered] == [event["id"]]
    assert receiver.events("account.application.deauthorized") == []
    with pytest.raises(stripe.PermissionError) as revoked:
        client.v1.customers.list(options=on(account.id))
    assert "Application access may have been revoked" in revoked.value.user_message
    with pytest.raises(ControlError) as twice:
        control.deauthorize_account(account.id)
    assert twice.value.status == 400
    with pytest.raises(ControlError) as unknown:
        control.deauthorize_account("acct_1Nobody000000000")
    assert unknown.value.status == 404


def test_schema_of_connect_objects(spec_defs, client, visitor, control):  # noqa: F811
    check = Checker(spec_defs)
    account = express(client)
    check(account)
    check(client.v1.account_links.create(params={"account": account.id, "type": "account_onboarding",
                                                 "refresh_url": REFRESH_URL, "return_url": RETURN_URL}))
    ready = onboarded(client, visitor)
    check(ready)
    check(client.v1.accounts.login_links.create(ready.id))
    session = client.v1.checkout.sessions.create(
        params={"mode": "payment", "success_url": "https://shop.example/ok", "line_items": [line_item()],
                "payment_intent_data": {"application_fee_amount": 100}}, options=on(ready.id))
    control.pay_session(session.id)
    fee = client.v1.application_fees.list().data[0]
    check(fee)
    check(client.v1.application_fees.refunds.create(fee.id, params={"amount": 10}))
    check(client.v1.application_fees.retrieve(fee.id))
    charge = client.v1.charges.retrieve(fee.charge, options=on(ready.id))
    check(charge)
    check(client.v1.accounts.delete(account.id), "deleted_account")
    check(client.v1.accounts.reject(ready.id, params={"reason": "other"}))
    check(client.v1.customers.create(params={"email": "c@example.com"}))
    event = control.deauthorize_account(ready.id)
    check(event, "event")
    assert set(check.checked) >= {"account", "account_link", "login_link", "application_fee", "fee_refund", "charge"}


def test_control_client_sets_the_connect_endpoint(emulator):
    control = EmulatorControl(emulator.url)
    assert control.set_connect_forward_to(None)["connect_forward_to"] is None
    with pytest.raises(ControlError):
        control.set_connect_forward_to("ftp://nowhere")
    with pytest.raises(ControlError):
        control.set_account_api_version("yesterday")
    assert control.connect_webhook_secret == emulator.connect_webhook_secret


def test_hosted_pages_of_a_connected_account_show_its_name(client, visitor, control):
    account = onboarded(client, visitor)
    session = client.v1.checkout.sessions.create(
        params={"mode": "payment", "success_url": "https://shop.example/ok", "cancel_url": "https://shop.example/no",
                "line_items": [line_item()]}, options=on(account.id))
    page = visitor.get(session.url)
    assert page.status_code == 200 and "Pay Harbour Tours" in page.text
    paid = submit_card(visitor, session)
    assert paid.status_code == 303 and paid.headers["Location"] == "https://shop.example/ok"
    intent = client.v1.payment_intents.retrieve(
        client.v1.checkout.sessions.retrieve(session.id, options=on(account.id)).payment_intent, options=on(account.id))
    charge = client.v1.charges.retrieve(intent.latest_charge, options=on(account.id))
    assert charge.calculated_statement_descriptor == "HARBOUR TOURS"
    assert "Receipt from Harbour Tours" in visitor.get(charge.receipt_url).text
