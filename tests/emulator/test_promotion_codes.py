"""Coupons and promotion codes as a merchant's back office uses them: codes restricted to some
products, paused and resumed, limited in number and time, and what Stripe refuses."""

from __future__ import annotations

import pytest
import stripe

from stripe_emulator.control import ControlError

from .helpers import create_session, line_item


def product_line(product_id: str, amount: int = 2500, quantity: int = 1) -> dict:
    return {"price_data": {"currency": "eur", "unit_amount": amount, "product": product_id}, "quantity": quantity}


def test_a_coupon_for_some_products_discounts_only_their_lines_and_shows_them_when_expanded(client, control):
    mine = client.v1.products.create(params={"name": "Kayak tour"})
    theirs = client.v1.products.create(params={"name": "Pottery evening"})
    coupon = client.v1.coupons.create(params={"percent_off": 50, "applies_to": {"products": [mine.id]}})
    assert "applies_to" not in coupon.to_dict()
    expanded = client.v1.coupons.retrieve(coupon.id, params={"expand": ["applies_to"]})
    assert expanded.applies_to.products == [mine.id]
    client.v1.promotion_codes.create(params={"promotion": {"type": "coupon", "coupon": coupon.id}, "code": "HARBOUR50"})

    other_merchants = create_session(client, allow_promotion_codes=True, line_items=[product_line(theirs.id)])
    with pytest.raises(ControlError) as refused:
        control.pay_session(other_merchants.id, promotion_code="HARBOUR50")
    assert refused.value.error["message"] == "This code is not valid for the items in this order."

    mixed = create_session(client, allow_promotion_codes=True,
                           line_items=[product_line(mine.id, 2000, 2), product_line(theirs.id, 3000)])
    paid = control.pay_session(mixed.id, promotion_code="harbour50")
    assert paid["amount_total"] == 4000 + 3000 - 2000


def test_a_coupon_for_unknown_products_is_refused(client):
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.coupons.create(params={"percent_off": 10, "applies_to": {"products": ["prod_missing"]}})
    assert refused.value.param == "applies_to[products][0]"


def test_discounts_with_a_code_for_other_products_are_refused_when_the_session_is_created(client):
    mine = client.v1.products.create(params={"name": "Kayak tour"})
    coupon = client.v1.coupons.create(params={"amount_off": 500, "currency": "eur", "applies_to": {"products": [mine.id]}})
    code = client.v1.promotion_codes.create(params={"coupon": coupon.id, "code": "FIVEOFF"})
    with pytest.raises(stripe.InvalidRequestError) as refused:
        create_session(client, discounts=[{"promotion_code": code.id}], line_items=[line_item()])
    assert refused.value.param == "discounts[0][promotion_code]"
    with pytest.raises(stripe.InvalidRequestError) as refused_coupon:
        create_session(client, discounts=[{"coupon": coupon.id}], line_items=[line_item()])
    assert refused_coupon.value.param == "discounts[0][coupon]"
    session = create_session(client, discounts=[{"promotion_code": code.id}], line_items=[product_line(mine.id)])
    assert session.amount_total == 2000


def test_a_paused_code_is_refused_and_a_resumed_one_works_again(client, control):
    coupon = client.v1.coupons.create(params={"percent_off": 100})
    code = client.v1.promotion_codes.create(params={"coupon": coupon.id, "code": "PAUSEME"})
    paused = client.v1.promotion_codes.update(code.id, params={"active": False, "metadata": {"merchant": "7"}})
    assert paused.active is False and paused.metadata["merchant"] == "7"
    assert [e["data"]["object"]["active"] for e in control.events(type="promotion_code.updated")] == [False]
    session = create_session(client, allow_promotion_codes=True)
    with pytest.raises(ControlError):
        control.pay_session(session.id, promotion_code="PAUSEME")
    assert client.v1.promotion_codes.update(code.id, params={"active": True}).active is True
    assert control.pay_session(session.id, promotion_code="PAUSEME")["amount_total"] == 0
    assert client.v1.promotion_codes.retrieve(code.id).times_redeemed == 1


def test_a_code_is_not_resumed_while_another_active_code_has_its_text(client):
    coupon = client.v1.coupons.create(params={"percent_off": 10})
    first = client.v1.promotion_codes.create(params={"coupon": coupon.id, "code": "SPRING"})
    client.v1.promotion_codes.update(first.id, params={"active": False})
    client.v1.promotion_codes.create(params={"coupon": coupon.id, "code": "spring"})
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.promotion_codes.update(first.id, params={"active": True})
    assert refused.value.code == "resource_already_exists"
    assert client.v1.promotion_codes.retrieve(first.id).active is False


def test_a_used_up_or_expired_code_cannot_be_resumed(client, control):
    coupon = client.v1.coupons.create(params={"percent_off": 100})
    once = client.v1.promotion_codes.create(params={"coupon": coupon.id, "code": "ONCEONLY", "max_redemptions": 1})
    control.pay_session(create_session(client, allow_promotion_codes=True).id, promotion_code="ONCEONLY")
    client.v1.promotion_codes.update(once.id, params={"active": False})
    with pytest.raises(stripe.InvalidRequestError) as used_up:
        client.v1.promotion_codes.update(once.id, params={"active": True})
    assert "maximum number of redemptions" in used_up.value.user_message

    now = control.clock()["now"]
    soon = client.v1.promotion_codes.create(params={"coupon": coupon.id, "code": "SOON", "expires_at": now + 3600})
    client.v1.promotion_codes.update(soon.id, params={"active": False})
    control.advance_clock(3601)
    with pytest.raises(stripe.InvalidRequestError) as expired:
        client.v1.promotion_codes.update(soon.id, params={"active": True})
    assert "expired" in expired.value.user_message
    late = create_session(client, allow_promotion_codes=True)
    with pytest.raises(ControlError):
        control.pay_session(late.id, promotion_code="SOON")


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"max_redemptions": 0}, "max_redemptions"),
        ({"expires_at": 1_000_000_000}, "expires_at"),
    ],
)
def test_a_code_with_an_impossible_limit_or_expiry_is_refused(client, params, param):
    coupon = client.v1.coupons.create(params={"percent_off": 10})
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.promotion_codes.create(params={"coupon": coupon.id, "code": "NOPE", **params})
    assert refused.value.param == param
    assert client.v1.promotion_codes.list(params={"code": "NOPE"}).data == []


def test_a_coupon_renamed_keeps_its_discount_and_products_are_renamed(client, control):
    coupon = client.v1.coupons.create(params={"percent_off": 15, "name": "Spring"})
    renamed = client.v1.coupons.update(coupon.id, params={"name": "Spring sale", "metadata": {"merchant": "3"}})
    assert (renamed.name, renamed.percent_off, renamed.metadata["merchant"]) == ("Spring sale", 15, "3")
    product = client.v1.products.create(params={"name": "Tour", "description": "Old"})
    updated = client.v1.products.update(product.id, params={"name": "Sunset tour", "description": ""})
    assert (updated.name, updated.description) == ("Sunset tour", None)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.products.update(product.id, params={"name": ""})
    assert {"coupon.updated", "product.updated"} <= {e["type"] for e in control.events()}
