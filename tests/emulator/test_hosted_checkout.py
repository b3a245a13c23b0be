"""Paying on the hosted Checkout page over plain HTTP, with every test card."""

from __future__ import annotations

import re

import pytest
import stripe

from .helpers import create_session, error_text, hosted_form, submit_card


def test_page_has_stripes_element_ids_and_the_order(client, visitor):
    session = create_session(client, allow_promotion_codes=True, customer_email="jenny@example.com")
    html = hosted_form(visitor, session.url)
    for element_id in ("email", "cardNumber", "cardExpiry", "cardCvc", "billingName", "promotionCode"):
        assert f'id="{element_id}"' in html
    assert '<button type="submit" data-testid="hosted-payment-submit-button" class="SubmitButton"' in html
    assert 'href="https://shop.example/cancel"' in html
    assert "Harbour tour, 10:00" in html
    assert "€25.00" in html
    assert 'value="jenny@example.com"' in html
    assert "<script" not in html and "http://" not in html.split("<body", 1)[1].replace(session.url, "")


def test_the_order_shows_each_products_description_under_its_name(client, visitor):
    item = {
        "price_data": {
            "currency": "eur",
            "unit_amount": 2500,
            "product_data": {"name": "Sunrise kayak tour", "description": "Friday 27 November, 06:30 · Harbour Kayaks"},
        },
        "quantity": 2,
    }
    html = hosted_form(visitor, create_session(client, line_items=[item]).url)
    assert re.search(
        r'class="OrderLine-name">Sunrise kayak tour</div>'
        r'<div class="OrderLine-description">Friday 27 November, 06:30 · Harbour Kayaks</div>'
        r'<div class="OrderLine-detail">Qty 2, €25.00 each</div>',
        html,
    )


def test_successful_card_redirects_to_success_url_and_completes_the_session(client, visitor):
    session = create_session(client, customer_creation="always")
    response = submit_card(visitor, session)
    assert response.status_code == 303
    assert response.headers["Location"] == f"https://shop.example/success?session_id={session.id}"
    paid = client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["payment_intent.latest_charge", "customer"]})
    assert paid.status == "complete"
    assert paid.payment_status == "paid"
    assert paid.customer_details.email == "jenny@example.com"
    assert paid.customer_details.name == "Jenny Rosen"
    assert paid.customer.email == "jenny@example.com"
    charge = paid.payment_intent.latest_charge
    assert paid.payment_intent.status == "succeeded"
    assert charge.status == "succeeded" and charge.paid and charge.amount == 2500
    card = charge.payment_method_details.card
    assert (card.brand, card.last4, card.exp_month, card.exp_year) == ("visa", "4242", 12, 2034)
    receipt = visitor.get(charge.receipt_url)
    assert receipt.status_code == 200 and "€25.00" in receipt.text and "4242" in receipt.text


@pytest.mark.parametrize(
    "card, cvc, brand",
    [
        ("5555 5555 5555 4444", "123", "mastercard"),
        ("3782 822463 10005", "1234", "amex"),
        ("4000 0000 0000 5126", "123", "visa"),
        ("4000 0000 0000 7726", "123", "visa"),
    ],
)
def test_other_succeeding_cards_pay_through_the_form(client, visitor, card, cvc, brand):
    session = create_session(client)
    assert submit_card(visitor, session, card, cvc=cvc).status_code == 303
    paid = client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["payment_intent.latest_charge"]})
    details = paid.payment_intent.latest_charge.payment_method_details.card
    assert (paid.payment_status, details.brand, details.last4) == ("paid", brand, card.replace(" ", "")[-4:])


@pytest.mark.parametrize(
    "card, message, code, decline_code",
    [
        ("4000 0000 0000 0002", "Your card has been declined.", "card_declined", "generic_decline"),
        ("4000 0000 0000 9995", "Your card has insufficient funds.", "card_declined", "insufficient_funds"),
        ("4000 0000 0000 0069", "Your card has expired.", "expired_card", "expired_card"),
        ("4000 0000 0000 0127", "Your card's security code is incorrect.", "incorrect_cvc", "incorrect_cvc"),
    ],
)
def test_declined_cards_show_stripes_message_and_let_the_customer_retry(client, visitor, control, card, message, code, decline_code):
    session = create_session(client)
    declined = submit_card(visitor, session, card)
    assert declined.status_code == 200
    assert message in error_text(declined.text)
    current = client.v1.checkout.sessions.retrieve(session.id)
    assert current.status == "open" and current.payment_status == "unpaid"
    intent = client.v1.payment_intents.retrieve(
        control.events(type="payment_intent.payment_failed")[0]["data"]["object"]["id"]
    )
    assert intent.status == "requires_payment_method"
    assert intent.last_payment_error.code == code
    assert intent.last_payment_error.decline_code == decline_code
    assert intent.last_payment_error.message == message
    retried = submit_card(visitor, session, "4242424242424242")
    assert retried.status_code == 303
    done = client.v1.checkout.sessions.retrieve(session.id)
    assert done.status == "complete" and done.payment_intent == intent.id
    assert client.v1.payment_intents.retrieve(intent.id).status == "succeeded"


@pytest.mark.parametrize(
    "card, expiry, cvc, message",
    [
        ("4242 4242 4242 4241", "12 / 34", "123", "Your card number is invalid."),
        ("4242 4242 4242", "12 / 34", "123", "Your card number is incomplete."),
        ("4242 4242 4242 4242", "01 / 20", "123", "Your card's expiration date is in the past."),
        ("4242 4242 4242 4242", "", "123", "Your card's expiration date is incomplete."),
        ("4242 4242 4242 4242", "12 / 34", "1", "Your card's security code is incomplete."),
    ],
)
def test_form_refuses_bad_card_details_before_charging(client, visitor, control, card, expiry, cvc, message):
    session = create_session(client)
    response = submit_card(visitor, session, card, expiry=expiry, cvc=cvc)
    assert response.status_code == 200
    assert message in error_text(response.text)
    assert control.events(type="payment_intent.created") == []
    assert client.v1.checkout.sessions.retrieve(session.id).status == "open"


@pytest.mark.parametrize("expiry", ["12 / 34", "12/34", "1234", "12 / 2034"])
def test_expiry_formats_are_accepted(client, visitor, expiry):
    session = create_session(client)
    assert submit_card(visitor, session, "4242424242424242", expiry=expiry).status_code == 303


def test_missing_email_and_name_are_refused(client, visitor):
    session = create_session(client)
    no_name = submit_card(visitor, session, name="")
    assert "Your name on the card is incomplete." in error_text(no_name.text)
    no_email = submit_card(visitor, session, email="")
    assert "Your email address is incomplete." in error_text(no_email.text)


@pytest.mark.parametrize("card", ["4000 0025 0000 3155", "4000 0027 6000 3184", "4000 0000 0000 3220"])
def test_three_d_secure_completed_pays(client, visitor, card):
    session = create_session(client)
    response = submit_card(visitor, session, card)
    assert response.status_code == 303
    challenge_url = response.headers["Location"]
    assert challenge_url.endswith(f"/c/pay/{session.id}/authenticate")
    challenge = visitor.get(session.url.split("/c/pay/")[0] + challenge_url)
    assert 'id="test-source-authorize-3ds"' in challenge.text and 'id="test-source-fail-3ds"' in challenge.text
    pending = client.v1.checkout.sessions.retrieve(session.id)
    assert pending.status == "open"
    done = visitor.post(session.url + "/authenticate", data={"outcome": "complete"}, allow_redirects=False)
    assert done.status_code == 303 and done.headers["Location"].startswith("https://shop.example/success")
    paid = client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["payment_intent.latest_charge"]})
    assert paid.payment_status == "paid"
    assert paid.payment_intent.latest_charge.payment_method_details.card.three_d_secure.result == "authenticated"


def test_three_d_secure_failed_keeps_session_open_with_nothing_charged(client, visitor, control):
    session = create_session(client)
    submit_card(visitor, session, "4000 0027 6000 3184")
    failed = visitor.post(session.url + "/authenticate", data={"outcome": "fail"}, allow_redirects=True)
    assert ("We are unable to authenticate your payment method. Please choose a different payment method and try again."
            in error_text(failed.text))
    current = client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["payment_intent"]})
    assert current.status == "open"
    intent_id = control.events(type="payment_intent.payment_failed")[0]["data"]["object"]["id"]
    intent = client.v1.payment_intents.retrieve(intent_id)
    assert intent.status == "requires_payment_method"
    assert intent.last_payment_error.code == "payment_intent_authentication_failure"
    assert intent.latest_charge is None
    assert control.events(type="charge.succeeded") == [] and control.events(type="charge.failed") == []
    assert submit_card(visitor, session, "4242424242424242").status_code == 303


def test_unknown_card_is_declined_as_a_live_card_in_test_mode(client, visitor):
    session = create_session(client)
    response = submit_card(visitor, session, "4532 0151 1283 0366")
    assert any("Your request was in test mode, but used a non test (live) card" in text for text in error_text(response.text))


def test_completed_and_expired_sessions_show_their_pages(client, visitor, control):
    paid = create_session(client)
    submit_card(visitor, paid)
    page = visitor.get(paid.url)
    assert page.status_code == 200 and 'data-testid="already-paid"' in page.text and "already paid" in page.text
    # Paying again changes nothing.
    again = submit_card(visitor, paid)
    assert 'data-testid="already-paid"' in again.text
    assert len(control.events(type="checkout.session.completed")) == 1

    expired = create_session(client)
    client.v1.checkout.sessions.expire(expired.id)
    page = visitor.get(expired.url)
    assert 'data-testid="session-expired"' in page.text
    assert 'href="https://shop.example/cancel"' in page.text
    assert client.v1.checkout.sessions.retrieve(expired.id).url is None


def test_promotion_code_applies_on_the_page_and_reduces_the_total(client, visitor):
    coupon = client.v1.coupons.create(params={"percent_off": 20, "duration": "once"})
    client.v1.promotion_codes.create(params={"coupon": coupon.id, "code": "SPRING20"})
    session = create_session(client, allow_promotion_codes=True)
    refused = visitor.post(session.url, data={"action": "apply_promotion_code", "promotionCode": "NOPE"})
    assert "This code is invalid." in error_text(refused.text)
    applied = visitor.post(session.url, data={"action": "apply_promotion_code", "promotionCode": "spring20"})
    assert "SPRING20" in applied.text and "€20.00" in applied.text
    current = client.v1.checkout.sessions.retrieve(session.id)
    assert (current.amount_subtotal, current.amount_total, current.total_details.amount_discount) == (2500, 2000, 500)
    assert submit_card(visitor, session).status_code == 303
    paid = client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["payment_intent", "total_details.breakdown"]})
    assert paid.payment_intent.amount == 2000
    assert paid.total_details.breakdown.discounts[0].amount == 500
    assert paid.total_details.breakdown.discounts[0].discount.coupon.id == coupon.id
    assert client.v1.coupons.retrieve(coupon.id).times_redeemed == 1


def test_full_discount_completes_without_a_card(client, visitor, control):
    coupon = client.v1.coupons.create(params={"percent_off": 100, "duration": "once"})
    client.v1.promotion_codes.create(params={"coupon": coupon.id, "code": "FREEBIE"})
    session = create_session(client, allow_promotion_codes=True)
    applied = visitor.post(session.url, data={"action": "apply_promotion_code", "promotionCode": "FREEBIE"})
    assert 'id="cardNumber"' not in applied.text
    response = visitor.post(session.url, data={"action": "pay", "email": "free@example.com"}, allow_redirects=False)
    assert response.status_code == 303
    done = client.v1.checkout.sessions.retrieve(session.id)
    assert done.status == "complete"
    assert done.amount_total == 0 and done.amount_subtotal == 2500
    assert done.payment_status == "no_payment_required"
    assert done.payment_intent is None
    assert done.customer is not None
    assert client.v1.customers.retrieve(done.customer).email == "free@example.com"
    assert control.events(type="payment_intent.created") == []


def test_remove_promotion_code_restores_the_total(client, visitor):
    coupon = client.v1.coupons.create(params={"amount_off": 700, "currency": "eur", "duration": "once"})
    client.v1.promotion_codes.create(params={"coupon": coupon.id, "code": "SEVEN"})
    session = create_session(client, allow_promotion_codes=True)
    visitor.post(session.url, data={"action": "apply_promotion_code", "promotionCode": "SEVEN"})
    assert client.v1.checkout.sessions.retrieve(session.id).amount_total == 1800
    visitor.post(session.url, data={"action": "remove_promotion_code"})
    assert client.v1.checkout.sessions.retrieve(session.id).amount_total == 2500


def test_page_is_responsive_and_self_contained(client, visitor):
    html = hosted_form(visitor, create_session(client).url)
    assert "@media (max-width: 991px)" in html
    assert not re.search(r'<(link|script|img)[^>]+(src|href)="https?://', html)


def test_unknown_session_page_is_404(emulator, visitor):
    assert visitor.get(f"{emulator.url}/c/pay/cs_test_nothing").status_code == 404


def test_sdk_error_class_for_402_on_control_pay(client, control):
    session = create_session(client)
    from stripe_emulator.control import PaymentDeclined

    with pytest.raises(PaymentDeclined) as declined:
        control.pay_session(session.id, "4000000000009995")
    assert declined.value.status == 402
    assert declined.value.error["type"] == "card_error"
    assert declined.value.error["decline_code"] == "insufficient_funds"
    assert isinstance(stripe.error.CardError, type)
