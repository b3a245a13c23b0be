"""Differences an outside check found between the emulator and Stripe, now closed: minimum
charge amounts, the documented test cards, the "same endpoint" idempotency message, and no
``null`` where Stripe's current spec declares a non-nullable string."""

from __future__ import annotations

import pytest
import stripe

from stripe_emulator.control import PaymentDeclined

from .helpers import create_session, line_item, submit_card


@pytest.mark.parametrize("currency, amount, shown", [
    ("eur", 49, "€0.50 eur"), ("usd", 49, "$0.50 usd"), ("gbp", 29, "£0.30 gbp"), ("huf", 17499, "175.00 Ft huf"),
    ("jpy", 49, "¥50 jpy"),
])
def test_amounts_below_stripes_minimum_are_refused(client, currency, amount, shown):
    with pytest.raises(stripe.InvalidRequestError) as refused:
        create_session(client, line_items=[line_item(amount=amount, currency=currency)])
    assert refused.value.user_message == f"The Checkout Session's total amount due must add up to at least {shown}"
    assert client.v1.checkout.sessions.list().data == []
    # Two items of half the minimum each add up to it: allowed.
    half = (amount + 1) // 2
    session = create_session(client, line_items=[line_item(amount=half, currency=currency, quantity=2)])
    assert session.amount_total == 2 * half


def test_a_discount_below_the_minimum_is_refused_but_a_free_order_is_not(client):
    coupon = client.v1.coupons.create(params={"amount_off": 980, "currency": "eur", "duration": "once"})
    with pytest.raises(stripe.InvalidRequestError, match="at least €0.50 eur"):
        create_session(client, line_items=[line_item(amount=1000)], discounts=[{"coupon": coupon.id}])
    free = client.v1.coupons.create(params={"percent_off": 100, "duration": "once"})
    assert create_session(client, line_items=[line_item(amount=1000)], discounts=[{"coupon": free.id}]).amount_total == 0


def test_documented_test_cards_behave_as_stripes_testing_docs_say(client, control):
    # 4012 8888 8888 1881: a plain Visa that succeeds.
    paid = control.pay_session(create_session(client).id, "4012888888881881")
    intent = client.v1.payment_intents.retrieve(paid["payment_intent"], params={"expand": ["latest_charge"]})
    assert intent.status == "succeeded" and intent.latest_charge.payment_method_details.card.last4 == "1881"

    # 4000 0000 0000 9235: succeeds with an elevated risk level.
    paid = control.pay_session(create_session(client).id, "4000000000009235")
    charge = client.v1.charges.retrieve(client.v1.payment_intents.retrieve(paid["payment_intent"]).latest_charge)
    assert charge.status == "succeeded" and charge.outcome.risk_level == "elevated"

    # 4000 0000 0000 0101: the CVC check fails and the payment is declined.
    with pytest.raises(PaymentDeclined) as cvc:
        control.pay_session(create_session(client).id, "4000000000000101")
    assert cvc.value.body["error"]["code"] == "incorrect_cvc"
    assert cvc.value.body["error"]["payment_method"]["card"]["checks"]["cvc_check"] == "fail"

    # 4000 0000 0000 0341: attaching succeeds, the charge is declined.
    with pytest.raises(PaymentDeclined) as declined:
        control.pay_session(create_session(client).id, "4000000000000341")
    assert declined.value.body["error"]["decline_code"] == "generic_decline"

    # 4000 0084 0000 1629: 3-D Secure is completed, then the payment is declined.
    session = create_session(client)
    with pytest.raises(PaymentDeclined) as after_3ds:
        control.pay_session(session.id, "4000008400001629", three_d_secure="complete")
    assert after_3ds.value.body["error"]["code"] == "card_declined"
    assert control.events(type="payment_intent.requires_action")[0]["data"]["object"]["id"] == \
        after_3ds.value.body["error"]["payment_intent"]["id"]
    assert client.v1.checkout.sessions.retrieve(session.id).status == "open"

    # 4000 0000 0000 4954: blocked as highest risk.
    with pytest.raises(PaymentDeclined) as blocked:
        control.pay_session(create_session(client).id, "4000000000004954")
    assert blocked.value.body["error"]["decline_code"] == "fraudulent"

    # 4000 0000 0000 0010: succeeds, address checks fail.
    paid = control.pay_session(create_session(client).id, "4000000000000010")
    intent = client.v1.payment_intents.retrieve(paid["payment_intent"], params={"expand": ["payment_method"]})
    assert intent.payment_method.card.checks.address_line1_check == "fail"


def test_test_card_on_the_hosted_page_after_3ds_is_declined(client, visitor):
    session = create_session(client)
    first = submit_card(visitor, session, "4000 0084 0000 1629")
    assert first.status_code == 303 and first.headers["Location"].endswith("/authenticate")
    answer = visitor.post(session.url + "/authenticate", data={"outcome": "complete"}, allow_redirects=False)
    assert answer.status_code == 303 and answer.headers["Location"].endswith("?error=generic_decline")
    page = visitor.get(session.url + "?error=generic_decline")
    assert "Your card has been declined." in page.text
    assert client.v1.checkout.sessions.retrieve(session.id).status == "open"


def test_an_idempotency_key_reused_on_another_endpoint(client):
    client.v1.customers.create(params={"email": "a@example.com"}, options={"idempotency_key": "shared-key"})
    with pytest.raises(stripe.IdempotencyError) as other:
        client.v1.products.create(params={"name": "Tour"}, options={"idempotency_key": "shared-key"})
    assert other.value.user_message == (
        "Keys for idempotent requests can only be used for the same endpoint they were first used for "
        "('/v1/customers' vs '/v1/products'). Try using a key other than 'shared-key' if you meant to execute a "
        "different request."
    )
    with pytest.raises(stripe.IdempotencyError, match="same parameters"):
        client.v1.customers.create(params={"email": "b@example.com"}, options={"idempotency_key": "shared-key"})


def test_customers_have_no_null_business_or_individual_name(client):
    customer = client.v1.customers.create(params={"email": "a@example.com"})
    raw = customer.to_dict()
    assert "business_name" not in raw and "individual_name" not in raw
    named = client.v1.customers.update(customer.id, params={"business_name": "Harbour Tours", "individual_name": "Jenny"})
    assert (named.business_name, named.individual_name) == ("Harbour Tours", "Jenny")
    cleared = client.v1.customers.update(customer.id, params={"business_name": ""}).to_dict()
    assert "business_name" not in cleared and cleared["individual_name"] == "Jenny"
    created = client.v1.customers.create(params={"email": "b@example.com", "business_name": ""}).to_dict()
    assert "business_name" not in created
