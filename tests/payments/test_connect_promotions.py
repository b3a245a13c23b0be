"""Merchants' promotion codes with Stripe Connect on, through the official SDK against the
emulator: the coupon, its code and the listing's product are made on the merchant's connected
account (a 404 on the platform), Checkout on that account takes them, the customer pays the
discounted amount and the platform's fee (fixed on the price when the checkout opens) is never
more than what was charged; pausing and the use count go to the account; another merchant's
code, or one left on the platform's account from before Connect, is refused."""

import uuid

import pytest
import stripe
from django.urls import reverse

from bookings.models import BookingStatus, Listing, PromotionCode
from payments import stripe_api
from stripe_emulator.control import ControlError
from tests.factories import make_listing, make_slot
from tests.payments.stripe_flow import open_checkout
from tests.payments.test_connect import application_fee, connected_merchant, deliver_as_stripe

pytestmark = [pytest.mark.django_db, pytest.mark.own_connect_accounts]

PRICE = 2500  # €25.00 a seat; the platform's fee: 10% + €0.30 = €2.80 on one seat


@pytest.fixture
def connect(settings, stripe_emulator):
    settings.CONNECT_ENABLED = True
    settings.PLATFORM_FEE_PERCENT, settings.PLATFORM_FEE_FIXED = "10", 30
    settings.STRIPE_CONNECT_WEBHOOK_SECRETS = ["whsec_slotbook_connect_test_secret"]
    return stripe_emulator


def code_form(**overrides) -> dict:
    data = {"code": "ATELIER20", "kind": "percent", "percent_off": "20", "amount_off": "", "currency": "eur",
            "max_redemptions": "", "expires_on": "", "request_key": str(uuid.uuid4())}
    data.update(overrides)
    return data


def make_code(client, merchant, **overrides):
    client.force_login(merchant.user)
    response = client.post(reverse("merchant:promotion_list"), code_form(**overrides))
    client.logout()
    return response


def on(account: str) -> dict:
    return {"stripe_account": account} if account else {}


def test_a_merchants_code_coupon_and_product_are_made_on_their_account_and_are_404_on_the_platform(client, connect):
    merchant = connected_merchant()
    listing = make_listing(merchant=merchant, title="Pottery evening", price_amount=PRICE, currency="eur")
    assert make_code(client, merchant).status_code == 302

    promotion = PromotionCode.objects.get()
    listing.refresh_from_db()
    account = merchant.stripe_account_id
    assert promotion.stripe_account == listing.stripe_product_account == account
    api = stripe_api.stripe_client().v1
    coupon = api.coupons.retrieve(promotion.stripe_coupon_id, params={"expand": ["applies_to"]}, options=on(account))
    assert coupon.percent_off == 20 and coupon.applies_to.products == [listing.stripe_product_id]
    assert api.promotion_codes.retrieve(promotion.stripe_promotion_code_id, options=on(account)).code == "ATELIER20"
    assert api.products.retrieve(listing.stripe_product_id, options=on(account)).name == "Pottery evening"
    for read in (lambda: api.promotion_codes.retrieve(promotion.stripe_promotion_code_id),
                 lambda: api.coupons.retrieve(promotion.stripe_coupon_id),
                 lambda: api.products.retrieve(listing.stripe_product_id)):
        with pytest.raises(stripe.InvalidRequestError) as missing:
            read()
        assert missing.value.http_status == 404
    keys = {r.get("idempotency_key") for r in connect.requests() if r.get("method") == "POST"}
    assert f"{account}-listing-{listing.pk}-product" in keys
    assert any(key and key.startswith(f"{account}-merchant-{merchant.pk}-promotion-") for key in keys)


def test_a_customer_pays_the_discounted_amount_and_the_fee_on_the_price_and_the_use_is_read_from_the_account(
    client, connect
):
    merchant = connected_merchant()
    slot = make_slot(listing=make_listing(merchant=merchant, price_amount=PRICE, currency="eur"), capacity=5)
    make_code(client, merchant)
    booking, _ = open_checkout(client, slot)
    session = stripe_api.stripe_client().v1.checkout.sessions.retrieve(
        booking.checkout_session_id, options=on(merchant.stripe_account_id)
    )
    assert session.allow_promotion_codes is True

    paid = connect.pay_session(booking.checkout_session_id, promotion_code="atelier20")
    assert paid["amount_total"] == 2000
    assert all(r.status_code == 200 for r in deliver_as_stripe(client, connect))
    booking.refresh_from_db()
    assert (booking.status, booking.amount_paid, booking.application_fee_amount) == (BookingStatus.CONFIRMED, 2000, 280)
    assert application_fee(booking).amount == 280  # 10% of €25.00 + €0.30, asked when the checkout opened

    client.force_login(merchant.user)
    page = client.get(reverse("merchant:promotion_list")).content.decode()
    assert PromotionCode.objects.get().times_redeemed == 1 and "1 <small" in page
    assert "Your codes are made on your own Stripe account" in page
    code_path = f"/v1/promotion_codes/{PromotionCode.objects.get().stripe_promotion_code_id}"
    reads = [r for r in connect.requests() if r.get("method") == "GET" and r.get("path") == code_path]
    # Each read found the code, which exists on the merchant's account only (a 404 anywhere else).
    assert reads and all(r["status"] == 200 for r in reads)


def test_a_free_order_charges_nothing_and_takes_no_fee(client, connect):
    merchant = connected_merchant()
    slot = make_slot(listing=make_listing(merchant=merchant, price_amount=PRICE, currency="eur"), capacity=5)
    make_code(client, merchant, code="ONUS", percent_off="100")
    booking, _ = open_checkout(client, slot, quantity=2)
    assert booking.application_fee_amount == 530
    paid = connect.pay_session(booking.checkout_session_id, promotion_code="ONUS")
    assert (paid["amount_total"], paid["payment_status"]) == (0, "no_payment_required")
    assert all(r.status_code == 200 for r in deliver_as_stripe(client, connect))
    booking.refresh_from_db()
    assert (booking.status, booking.amount_paid, booking.application_fee_amount) == (BookingStatus.CONFIRMED, 0, 0)
    assert stripe_api.stripe_client().v1.application_fees.list().data == []


@pytest.mark.parametrize(
    ("overrides", "sentence"),
    [
        ({"percent_off": "95"}, "With this code, 1 seat of Pottery evening would cost €1.25, less than the platform's fee of €2.80."),
        ({"kind": "amount", "amount_off": "23.00"}, "With this code, 1 seat of Pottery evening would cost €2.00, less than the platform's fee of €2.80."),
    ],
)
def test_a_code_leaving_less_to_pay_than_the_platforms_fee_is_refused_before_stripe_is_asked(
    client, connect, overrides, sentence
):
    merchant = connected_merchant()
    make_listing(merchant=merchant, title="Pottery evening", price_amount=PRICE, currency="eur")
    response = make_code(client, merchant, **overrides)
    assert response.status_code == 400
    assert sentence in response.content.decode().replace("&#x27;", "'")
    assert not PromotionCode.objects.exists()
    assert stripe_api.stripe_client().v1.coupons.list(options=on(merchant.stripe_account_id)).data == []
    # An amount off larger than the price makes the booking free: allowed, no fee is taken.
    assert make_code(client, merchant, kind="amount", amount_off="30.00", percent_off="").status_code == 302


def test_a_fee_asked_above_what_a_code_left_to_pay_is_collected_only_up_to_the_amount_charged(client, connect):
    """The price went down after the code was made: Stripe collects at most what was charged."""
    merchant = connected_merchant()
    listing = make_listing(merchant=merchant, price_amount=PRICE, currency="eur")
    make_code(client, merchant, code="TWENTY", kind="amount", amount_off="20.00", percent_off="")
    Listing.objects.filter(pk=listing.pk).update(price_amount=2100)
    booking, _ = open_checkout(client, make_slot(listing=listing, capacity=5))
    assert booking.application_fee_amount == 240
    assert connect.pay_session(booking.checkout_session_id, promotion_code="TWENTY")["amount_total"] == 100
    assert all(r.status_code == 200 for r in deliver_as_stripe(client, connect))
    booking.refresh_from_db()
    assert (booking.status, booking.amount_paid, booking.application_fee_amount) == (BookingStatus.CONFIRMED, 100, 100)
    assert application_fee(booking).amount == 100


def test_pausing_goes_to_the_account_and_a_paused_code_is_refused_on_checkout(client, connect):
    merchant = connected_merchant()
    slot = make_slot(listing=make_listing(merchant=merchant, price_amount=PRICE, currency="eur"), capacity=5)
    make_code(client, merchant)
    promotion = PromotionCode.objects.get()
    client.force_login(merchant.user)
    assert client.post(reverse("merchant:promotion_active", args=[promotion.pk]), {"active": "0"}).status_code == 302
    made = stripe_api.stripe_client().v1.promotion_codes.retrieve(
        promotion.stripe_promotion_code_id, options=on(merchant.stripe_account_id)
    )
    assert made.active is False
    client.logout()
    booking, _ = open_checkout(client, slot)
    with pytest.raises(ControlError) as refused:
        connect.pay_session(booking.checkout_session_id, promotion_code="ATELIER20")
    assert refused.value.error["message"] == "This code is invalid."


def test_another_merchants_code_is_not_accepted_on_this_merchants_checkout(client, connect):
    atelier, harbour = connected_merchant(), connected_merchant()
    make_listing(merchant=harbour, price_amount=4000, currency="eur")
    assert make_code(client, harbour, code="HARBOUR10", percent_off="10").status_code == 302
    slot = make_slot(listing=make_listing(merchant=atelier, price_amount=PRICE, currency="eur"), capacity=5)
    booking, _ = open_checkout(client, slot)
    with pytest.raises(ControlError) as refused:
        connect.pay_session(booking.checkout_session_id, promotion_code="HARBOUR10")
    assert refused.value.error["message"] == "This code is invalid."
    assert connect.pay_session(booking.checkout_session_id)["amount_total"] == PRICE


def test_a_code_made_before_connect_is_not_offered_and_can_be_made_again_on_the_account(client, connect, settings):
    settings.CONNECT_ENABLED = False
    merchant = connected_merchant()
    listing = make_listing(merchant=merchant, price_amount=PRICE, currency="eur")
    assert make_code(client, merchant).status_code == 302
    old = PromotionCode.objects.get()
    listing.refresh_from_db()
    platform_product = listing.stripe_product_id
    assert (old.stripe_account, listing.stripe_product_account) == ("", "")

    settings.CONNECT_ENABLED = True
    client.force_login(merchant.user)
    page = client.get(reverse("merchant:promotion_list")).content.decode()
    assert "Not offered" in page and "Made before you connected Stripe" in page and "Create it again to offer it." in page
    refused = client.post(reverse("merchant:promotion_active", args=[old.pk]), {"active": "1"}, follow=True)
    assert "Create it again to offer it." in refused.content.decode()
    client.logout()
    booking, _ = open_checkout(client, make_slot(listing=listing, capacity=5))
    with pytest.raises(ControlError) as not_here:
        connect.pay_session(booking.checkout_session_id, promotion_code="ATELIER20")
    assert not_here.value.error["message"] == "This code is invalid."
    listing.refresh_from_db()
    assert listing.stripe_product_account == merchant.stripe_account_id and listing.stripe_product_id != platform_product

    assert make_code(client, merchant).status_code == 302  # the same text, now on the merchant's account
    again = PromotionCode.objects.exclude(pk=old.pk).get()
    assert again.stripe_account == merchant.stripe_account_id and again.code == "ATELIER20"
    booking, _ = open_checkout(client, make_slot(listing=listing, capacity=5))
    assert connect.pay_session(booking.checkout_session_id, promotion_code="ATELIER20")["amount_total"] == 2000


def test_with_connect_on_a_merchant_without_an_account_is_asked_to_connect_first(client, connect):
    from tests.factories import make_merchant

    merchant = make_merchant(username="unconnected")
    make_listing(merchant=merchant, price_amount=PRICE, currency="eur")
    client.force_login(merchant.user)
    assert "Connect your Stripe account first" in client.get(reverse("merchant:promotion_list")).content.decode()
    response = make_code(client, merchant)
    assert response.status_code == 400 and "Connect your Stripe account first" in response.content.decode()
    assert not PromotionCode.objects.exists()
