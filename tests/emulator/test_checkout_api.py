"""Checkout Sessions through the API: creation rules, expiry, lists, line items, invoices."""

from __future__ import annotations

import pytest
import stripe

from stripe_emulator.control import ControlError

from .helpers import create_session, line_item


def test_created_session_looks_like_stripes(client, emulator):
    session = create_session(
        client,
        client_reference_id="booking-42",
        customer_email="jenny@example.com",
        metadata={"booking": "42"},
        payment_intent_data={"metadata": {"booking": "42"}, "description": "Booking 42"},
        line_items=[line_item("Morning slot", 1200, 2), line_item("Audio guide", 300)],
    )
    assert session.id.startswith("cs_test_a1") and session.object == "checkout.session"
    assert session.url == f"{emulator.url}/c/pay/{session.id}"
    assert (session.status, session.payment_status, session.mode) == ("open", "unpaid", "payment")
    assert (session.amount_subtotal, session.amount_total, session.currency) == (2700, 2700, "eur")
    assert session.client_reference_id == "booking-42"
    assert session.customer_details.email == "jenny@example.com"
    assert session.expires_at == session.created + 24 * 3600
    assert session.payment_intent is None and session.livemode is False
    items = client.v1.checkout.sessions.line_items.list(session.id)
    assert [(i.description, i.quantity, i.amount_total) for i in items.data] == [("Morning slot", 2, 2400), ("Audio guide", 1, 300)]
    assert items.data[0].id.startswith("li_") and items.data[0].price.unit_amount == 1200


def test_payment_intent_gets_the_payment_intent_data(client, control):
    session = create_session(client, payment_intent_data={"metadata": {"booking": "9"}, "description": "Booking 9"})
    control.pay_session(session.id)
    intent = client.v1.payment_intents.retrieve(client.v1.checkout.sessions.retrieve(session.id).payment_intent,
                                                params={"expand": ["latest_charge"]})
    assert intent.metadata.to_dict() == {"booking": "9"} and intent.description == "Booking 9"
    assert intent.latest_charge.metadata.to_dict() == {"booking": "9"}


def test_sessions_with_existing_prices_and_customers(client, control):
    product = client.v1.products.create(params={"name": "Sunset cruise"})
    price = client.v1.prices.create(params={"product": product.id, "currency": "usd", "unit_amount": 4200})
    customer = client.v1.customers.create(params={"email": "known@example.com"})
    session = create_session(client, customer=customer.id, line_items=[{"price": price.id, "quantity": 3}])
    assert session.amount_total == 12600 and session.currency == "usd" and session.customer == customer.id
    paid = control.pay_session(session.id)
    assert paid["customer"] == customer.id and paid["customer_details"]["email"] == "known@example.com"


@pytest.mark.parametrize(
    "overrides, message, param",
    [
        ({"mode": None}, "Missing required param: mode.", "mode"),
        ({"success_url": None}, "Missing required param: success_url.", "success_url"),
        ({"success_url": "not a url"}, "Not a valid URL", "success_url"),
        ({"line_items": None}, "Missing required param: line_items.", "line_items"),
        ({"line_items": [{"price_data": {"currency": "eur", "unit_amount": 100, "product_data": {"name": "x"}}}]},
         "Missing required param: line_items[0][quantity].", "line_items[0][quantity]"),
        ({"line_items": [{"price": "price_missing", "quantity": 1}]}, "No such price: 'price_missing'", "line_items[0][price]"),
        ({"line_items": [line_item(amount=50_000_000, quantity=2)]},
         "The Checkout Session's total amount due must be no more than €999,999.99.", "line_items"),
        ({"customer": "cus_missing"}, "No such customer: 'cus_missing'", "customer"),
        ({"customer_email": "nope"}, "Invalid email address: nope", "customer_email"),
        ({"expires_at": "SOON"}, "The `expires_at` timestamp must be at least 30 minutes from Checkout Session creation.", "expires_at"),
        ({"expires_at": "LATER"}, "The `expires_at` timestamp must be less than 24 hours from Checkout Session creation.", "expires_at"),
        ({"allow_promotion_codes": True, "discounts": [{"coupon": "X"}]},
         "You may only specify one of these parameters: allow_promotion_codes, discounts.", "discounts"),
        ({"mode": "subscription"}, None, "mode"),
        ({"shipping_address_collection": {"allowed_countries": ["US"]}}, None, "shipping_address_collection"),
    ],
)
def test_creation_refusals(client, control, overrides, message, param):
    now = control.clock()["now"]
    overrides = {k: (now + 600 if v == "SOON" else now + 25 * 3600 if v == "LATER" else v) for k, v in overrides.items()}
    params = {
        "mode": "payment",
        "success_url": "https://shop.example/success",
        "line_items": [line_item()],
        **overrides,
    }
    params = {k: v for k, v in params.items() if v is not None}
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.checkout.sessions.create(params=params)
    assert refused.value.param == param
    if message:
        assert refused.value.user_message == message
    else:
        assert "does not emulate" in refused.value.user_message


def test_thirty_minutes_computed_a_moment_earlier_are_accepted(client, control):
    now = control.clock()["now"]
    session = create_session(client, expires_at=now - 2 + 1800)
    assert session.expires_at == now - 2 + 1800


def test_expire_only_while_open(client, control, receiver):
    session = create_session(client)
    expired = client.v1.checkout.sessions.expire(session.id)
    assert (expired.status, expired.url) == ("expired", None)
    with pytest.raises(stripe.InvalidRequestError) as again:
        client.v1.checkout.sessions.expire(session.id)
    assert again.value.user_message == (
        'Only Checkout Sessions with a status in ["open"] can be expired. This Checkout Session has a status of `expired`.'
    )
    paid = create_session(client)
    control.pay_session(paid.id)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.checkout.sessions.expire(paid.id)
    with pytest.raises(ControlError) as via_control:
        control.expire_session(paid.id)
    assert via_control.value.status == 400
    assert control.expire_session(create_session(client).id)["status"] == "expired"
    assert control.wait_for_webhooks(timeout=10)["idle"]
    assert len(receiver.events("checkout.session.expired")) == 2


def test_sessions_expire_on_the_emulator_clock(client, control, receiver):
    session = create_session(client, expires_at=control.clock()["now"] + 1800)
    other = create_session(client)
    control.advance_clock(1801)
    # Expired before advance_clock answered (by it, or by the timer thread that woke first).
    assert control.events(type="checkout.session.expired")[0]["data"]["object"]["id"] == session.id
    assert client.v1.checkout.sessions.retrieve(session.id).status == "expired"
    assert client.v1.checkout.sessions.retrieve(other.id).status == "open"
    assert control.wait_for_webhooks(timeout=10)["idle"]
    assert [e.data.object.id for e in receiver.events("checkout.session.expired")] == [session.id]
    with pytest.raises(ControlError) as closed:
        control.pay_session(session.id)
    assert closed.value.status == 400


def test_expiry_cancels_a_failed_attempts_payment_intent(client, control):
    session = create_session(client)
    with pytest.raises(ControlError):
        control.pay_session(session.id, "4000000000000002")
    intent_id = control.events(type="payment_intent.created")[0]["data"]["object"]["id"]
    client.v1.checkout.sessions.expire(session.id)
    intent = client.v1.payment_intents.retrieve(intent_id)
    assert (intent.status, intent.cancellation_reason) == ("canceled", "automatic")


def test_list_filters(client, control):
    customer = client.v1.customers.create(params={"email": "lists@example.com"})
    mine = create_session(client, customer=customer.id)
    other = create_session(client)
    control.pay_session(mine.id)
    intent = client.v1.checkout.sessions.retrieve(mine.id).payment_intent
    assert [s.id for s in client.v1.checkout.sessions.list(params={"customer": customer.id}).data] == [mine.id]
    assert [s.id for s in client.v1.checkout.sessions.list(params={"payment_intent": intent}).data] == [mine.id]
    assert [s.id for s in client.v1.checkout.sessions.list(params={"status": "open"}).data] == [other.id]
    assert [s.id for s in client.v1.checkout.sessions.list().data] == [other.id, mine.id]


def test_discount_and_invoice_creation(client, control):
    coupon = client.v1.coupons.create(params={"amount_off": 1000, "currency": "eur"})
    session = create_session(
        client,
        discounts=[{"coupon": coupon.id}],
        invoice_creation={"enabled": True, "invoice_data": {"description": "Booking 5", "metadata": {"booking": "5"}}},
        line_items=[line_item(amount=1500, quantity=2)],
    )
    assert (session.amount_subtotal, session.amount_total, session.total_details.amount_discount) == (3000, 2000, 1000)
    assert session.discounts[0].coupon == coupon.id
    paid = control.pay_session(session.id, email="invoice@example.com", name="Ivy Voice")
    invoice = client.v1.invoices.retrieve(paid["invoice"])
    assert (invoice.status, invoice.amount_paid, invoice.total, invoice.subtotal) == ("paid", 2000, 2000, 3000)
    assert invoice.customer == paid["customer"] and invoice.customer_email == "invoice@example.com"
    assert invoice.description == "Booking 5" and invoice.metadata.to_dict() == {"booking": "5"}
    assert invoice.number.endswith("-0001")
    assert {"invoice.created", "invoice.finalized", "invoice.paid", "invoice.payment_succeeded"} <= {
        e["type"] for e in control.events()
    }
    line = client.v1.checkout.sessions.line_items.list(session.id, params={"expand": ["data.discounts"]}).data[0]
    assert line.amount_discount == 1000 and line.discounts[0].amount == 1000


def test_promotion_code_restrictions(client, control):
    coupon = client.v1.coupons.create(params={"percent_off": 10})
    client.v1.promotion_codes.create(params={"coupon": coupon.id, "code": "BIGORDER",
                                             "restrictions": {"minimum_amount": 5000, "minimum_amount_currency": "eur"}})
    client.v1.promotion_codes.create(params={"coupon": coupon.id, "code": "ONCE", "max_redemptions": 1})
    small = create_session(client, allow_promotion_codes=True)
    with pytest.raises(ControlError) as refused:
        control.pay_session(small.id, promotion_code="BIGORDER")
    assert refused.value.error["message"] == "This code is invalid."
    first = create_session(client, allow_promotion_codes=True)
    assert control.pay_session(first.id, promotion_code="ONCE")["amount_total"] == 2250
    second = create_session(client, allow_promotion_codes=True)
    with pytest.raises(ControlError):
        control.pay_session(second.id, promotion_code="ONCE")
    not_allowed = create_session(client)
    with pytest.raises(ControlError):
        control.pay_session(not_allowed.id, promotion_code="BIGORDER")


def test_no_cost_order_through_the_api_discount(client, control):
    coupon = client.v1.coupons.create(params={"percent_off": 100})
    session = create_session(client, discounts=[{"coupon": coupon.id}])
    assert session.amount_total == 0
    done = control.pay_session(session.id, email="free@example.com")
    assert (done["status"], done["payment_status"], done["payment_intent"]) == ("complete", "no_payment_required", None)
    assert done["customer"].startswith("cus_")
