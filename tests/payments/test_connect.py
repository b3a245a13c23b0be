"""Connect (CONNECT_ENABLED) through the official SDK against the emulator: direct charges on the
merchant's connected account with the platform's fee, the Connect webhook (its own secret, the
account checked, events once per account), refunds with and without the fee, sales stopped for an
account that cannot charge, and the operator alerted when one is lost."""

import json

import pytest
from django.core import mail
from django.urls import reverse

from bookings.models import Booking, BookingStatus, Merchant, RefundReason
from bookings.services import booking_refund, merchant_stripe_account_sync, slot_cancel
from payments import stripe_api
from payments.models import StripeEvent
from payments.webhooks import stripe_event_receive
from tests.conftest import TEST_WEBHOOK_SECRET
from tests.connect_mode import onboarded_account
from tests.factories import make_listing, make_merchant, make_slot
from tests.payments.stripe_flow import open_checkout
from tests.payments.webhook_signing import stripe_signature

# Connect on in every test here, with the merchants' accounts the tests make (`--connect` adds none).
pytestmark = [pytest.mark.django_db, pytest.mark.own_connect_accounts]

CONNECT_SECRET = "whsec_slotbook_connect_test_secret"
PRICE = 2500  # €25.00 a seat
FEE_PERCENT, FEE_FIXED = "10", 30  # 10% + €0.30


@pytest.fixture
def connect(settings, stripe_emulator):
    settings.CONNECT_ENABLED = True
    settings.PLATFORM_FEE_PERCENT = FEE_PERCENT
    settings.PLATFORM_FEE_FIXED = FEE_FIXED
    settings.STRIPE_CONNECT_WEBHOOK_SECRETS = ["whsec_old_rotated_out", CONNECT_SECRET]
    settings.CONNECT_REFUND_FEE_REASONS = ["sold_out", "slot_cancelled"]
    settings.ADMINS = [("Operator", "ops@example.com")]
    return stripe_emulator


def connected_merchant(**fields) -> Merchant:
    merchant = make_merchant(timezone_name="Europe/Paris", **fields)
    account_id = onboarded_account()
    Merchant.objects.filter(pk=merchant.pk).update(stripe_account_id=account_id, stripe_account_type="custom")
    merchant_stripe_account_sync(facts=stripe_api.account_retrieve(account_id))
    merchant.refresh_from_db()
    assert merchant.can_take_payments
    return merchant


def signed_post(client, event: dict, *, connect: bool, secret: str | None = None):
    payload = json.dumps(event).encode()
    secret = secret or (CONNECT_SECRET if connect else TEST_WEBHOOK_SECRET)
    url = reverse("payments:stripe_connect_webhook" if connect else "payments:stripe_webhook")
    return client.post(url, data=payload, content_type="application/json",
                       HTTP_STRIPE_SIGNATURE=stripe_signature(payload, secret))


def deliver_as_stripe(client, control) -> list:
    """Each event to the endpoint Stripe sends it to: a connected account's to the Connect one."""
    return [signed_post(client, event, connect=bool(event.get("account"))) for event in reversed(control.events())]


def paid_on_account(client, control, slot, *, quantity=1, deliver=True) -> Booking:
    booking, _ = open_checkout(client, slot, quantity=quantity)
    control.pay_session(booking.checkout_session_id)
    if deliver:
        assert all(r.status_code == 200 for r in deliver_as_stripe(client, control))
    booking.refresh_from_db()
    return booking


def application_fee(booking: Booking) -> dict:
    client = stripe_api.stripe_client()
    intent = client.v1.payment_intents.retrieve(booking.payment_intent_id, options={"stripe_account": booking.stripe_account_id})
    fees = client.v1.application_fees.list(params={"charge": intent.latest_charge}).data
    assert len(fees) == 1
    return fees[0]


def test_the_fee_is_percent_plus_fixed_rounded_half_up_and_never_more_than_the_price(settings):
    from bookings.money import platform_fee

    settings.PLATFORM_FEE_PERCENT, settings.PLATFORM_FEE_FIXED = "2.5", 30
    assert [platform_fee(a) for a in (0, 10, 20, 1000, 2500, 2520)] == [0, 10, 20, 55, 93, 93]
    settings.PLATFORM_FEE_PERCENT, settings.PLATFORM_FEE_FIXED = "0", 0
    assert platform_fee(2500) == 0


def test_a_direct_charge_is_made_on_the_merchants_account_with_the_fee(client, connect):
    merchant = connected_merchant()
    slot = make_slot(listing=make_listing(merchant=merchant, price_amount=PRICE, currency="eur"), capacity=5)
    booking, checkout_url = open_checkout(client, slot, quantity=2)
    assert booking.stripe_account_id == merchant.stripe_account_id
    assert booking.application_fee_amount == 5000 * 10 // 100 + 30 == 530
    # The session lives on the merchant's account only: the platform cannot read it.
    client_ = stripe_api.stripe_client()
    on_account = client_.v1.checkout.sessions.retrieve(booking.checkout_session_id, options={"stripe_account": merchant.stripe_account_id})
    # An unproven visitor's Customer is made by Checkout, on the merchant's account, when they pay.
    assert on_account.amount_total == 5000 and on_account.customer is None and booking.stripe_customer_id == ""
    assert on_account.customer_creation == "always" and on_account.customer_email == booking.customer_email
    with pytest.raises(Exception):
        client_.v1.checkout.sessions.retrieve(booking.checkout_session_id)
    idempotency_keys = {r.get("idempotency_key") for r in connect.requests() if r.get("method") == "POST"}
    assert f"{merchant.stripe_account_id}-booking-{booking.pk}-checkout" in idempotency_keys

    connect.pay_session(booking.checkout_session_id)
    assert all(r.status_code == 200 for r in deliver_as_stripe(client, connect))
    booking.refresh_from_db()
    assert booking.status == BookingStatus.CONFIRMED and booking.amount_paid == 5000
    fee = application_fee(booking)
    assert (fee.amount, fee.account, fee.amount_refunded) == (530, merchant.stripe_account_id, 0)
    assert booking.stripe_customer_id.startswith("cus_")
    made = client_.v1.customers.retrieve(booking.stripe_customer_id, options={"stripe_account": merchant.stripe_account_id})
    assert made.email == booking.customer_email
    with pytest.raises(Exception):
        client_.v1.customers.retrieve(booking.stripe_customer_id)


def test_the_platform_endpoint_alone_never_confirms_a_direct_charge_and_the_connect_endpoint_does(client, connect):
    merchant = connected_merchant()
    slot = make_slot(listing=make_listing(merchant=merchant, price_amount=PRICE), capacity=5)
    booking = paid_on_account(client, connect, slot, deliver=False)
    events = list(reversed(connect.events()))
    platform_events = [e for e in events if not e.get("account")]
    connect_events = [e for e in events if e.get("account")]
    assert "checkout.session.completed" not in {e["type"] for e in platform_events}
    for event in platform_events:
        assert signed_post(client, event, connect=False).status_code == 200
    booking.refresh_from_db()
    assert booking.status == BookingStatus.PENDING
    # An account's event posted to the platform endpoint is refused there.
    completed = next(e for e in connect_events if e["type"] == "checkout.session.completed")
    assert signed_post(client, completed, connect=False).status_code == 400
    booking.refresh_from_db()
    assert booking.status == BookingStatus.PENDING
    for event in connect_events:
        assert signed_post(client, event, connect=True).status_code == 200
    booking.refresh_from_db()
    assert booking.status == BookingStatus.CONFIRMED
    assert StripeEvent.objects.get(event_id=completed["id"]).account == merchant.stripe_account_id


def test_an_event_naming_another_account_is_refused_with_nothing_written(client, connect):
    merchant, other = connected_merchant(), connected_merchant()
    slot = make_slot(listing=make_listing(merchant=merchant, price_amount=PRICE), capacity=5)
    booking = paid_on_account(client, connect, slot, deliver=False)
    completed = next(e for e in connect.events() if e["type"] == "checkout.session.completed")
    forged = {**completed, "account": other.stripe_account_id}
    response = signed_post(client, forged, connect=True)
    assert response.status_code == 400 and "names booking" in response.content.decode()
    no_account = {k: v for k, v in completed.items() if k != "account"}
    assert signed_post(client, no_account, connect=True).status_code == 400
    assert signed_post(client, completed, connect=True, secret=TEST_WEBHOOK_SECRET).status_code == 400
    assert not StripeEvent.objects.exists()
    booking.refresh_from_db()
    assert booking.status == BookingStatus.PENDING and booking.amount_paid == 0
    # An account.updated of one account posing as another's is refused too.
    updated = {"id": "evt_forged", "object": "event", "type": "account.updated", "account": merchant.stripe_account_id,
               "created": 1, "data": {"object": {"id": other.stripe_account_id, "object": "account", "charges_enabled": False}}}
    assert signed_post(client, updated, connect=True).status_code == 400
    other.refresh_from_db()
    assert other.stripe_charges_enabled and not StripeEvent.objects.exists()


@pytest.mark.parametrize("event_type", ["checkout.session.expired", "checkout.session.async_payment_failed"])
def test_an_expiry_naming_another_accounts_booking_is_refused_with_its_seats_still_held(client, connect, event_type):
    """A checkout's expiry is checked on the booking it names too: one of another account, or of
    the platform, does not free the seats of a customer still paying."""
    merchant, other = connected_merchant(), connected_merchant()
    slot = make_slot(listing=make_listing(merchant=merchant, price_amount=PRICE), capacity=5)
    booking, _ = open_checkout(client, slot, quantity=2)
    session = {"id": booking.checkout_session_id, "object": "checkout.session", "status": "expired",
               "payment_status": "unpaid", "client_reference_id": f"booking-{booking.pk}",
               "metadata": {"booking_id": str(booking.pk)}, "amount_subtotal": 5000, "amount_total": 5000,
               "currency": "eur"}
    event = {"id": "evt_forged_expiry", "object": "event", "type": event_type, "created": 1,
             "data": {"object": session}}

    refused = [signed_post(client, {**event, "account": other.stripe_account_id}, connect=True),
               signed_post(client, event, connect=False)]

    assert [r.status_code for r in refused] == [400, 400]
    assert f"names booking {booking.pk}, paid on {merchant.stripe_account_id}" in refused[0].content.decode()
    assert not StripeEvent.objects.exists()
    booking.refresh_from_db()
    slot.refresh_from_db()
    assert booking.status == BookingStatus.PENDING and (slot.seats_left, slot.seats_held) == (3, 2)
    # Its own account's expiry is taken.
    assert signed_post(client, {**event, "account": merchant.stripe_account_id}, connect=True).status_code == 200
    booking.refresh_from_db()
    slot.refresh_from_db()
    assert booking.status == BookingStatus.EXPIRED and (slot.seats_left, slot.seats_held) == (5, 0)


def test_events_are_recorded_once_per_account_and_event(client, connect):
    merchant = connected_merchant()
    slot = make_slot(listing=make_listing(merchant=merchant, price_amount=PRICE), capacity=5)
    paid_on_account(client, connect, slot, deliver=False)
    completed = next(e for e in connect.events() if e["type"] == "checkout.session.completed")
    first, again = signed_post(client, completed, connect=True), signed_post(client, completed, connect=True)
    assert (first.content, again.content) == (b"processed", b"duplicate")
    assert StripeEvent.objects.filter(event_id=completed["id"]).count() == 1
    # The same id under another account is another event (Stripe's ids are per account's stream).
    stripe_event_receive({**completed, "type": "customer.created", "account": "acct_elsewhere"}, account="acct_elsewhere")
    assert sorted(StripeEvent.objects.filter(event_id=completed["id"]).values_list("account", flat=True)) == sorted(
        ["acct_elsewhere", merchant.stripe_account_id])


@pytest.mark.parametrize("fee_back", [True, False], ids=["fee-refunded", "fee-kept"])
def test_a_cancelled_times_refund_is_made_on_the_account_with_the_fee_by_the_setting(
    client, connect, settings, fee_back, django_capture_on_commit_callbacks
):
    settings.CONNECT_REFUND_FEE_REASONS = ["sold_out", "slot_cancelled"] if fee_back else []
    merchant = connected_merchant()
    slot = make_slot(listing=make_listing(merchant=merchant, price_amount=PRICE), capacity=5)
    booking = paid_on_account(client, connect, slot)
    with django_capture_on_commit_callbacks(execute=True):
        slot_cancel(slot=slot)
    booking.refresh_from_db()
    refund = booking.refunds.get()
    assert booking.status == BookingStatus.REFUNDED and refund.reason == RefundReason.SLOT_CANCELLED
    assert refund.refund_application_fee is fee_back
    refunds = stripe_api.refunds_of_payment(booking.payment_intent_id, stripe_account=merchant.stripe_account_id)
    assert [(r["id"], r["amount"]) for r in refunds] == [(refund.stripe_refund_id, PRICE)]
    fee = application_fee(booking)
    assert fee.amount_refunded == (280 if fee_back else 0)
    assert refund.application_fee_refunded == fee.amount_refunded


def test_a_sold_out_payment_is_refunded_on_the_account_with_its_fee(client, connect, django_capture_on_commit_callbacks):
    from tests.payments.stripe_flow import lose_hold

    merchant = connected_merchant()
    slot = make_slot(listing=make_listing(merchant=merchant, price_amount=PRICE), capacity=1)
    late, _ = open_checkout(client, slot, email="late@example.com")
    lose_hold(late)
    paid_on_account(client, connect, slot)  # takes the last seat
    connect.pay_session(late.checkout_session_id)
    with django_capture_on_commit_callbacks(execute=True):
        assert all(r.status_code == 200 for r in deliver_as_stripe(client, connect))
    late.refresh_from_db()
    refund = late.refunds.get()
    assert (late.status, refund.reason, refund.refund_application_fee) == (BookingStatus.REFUNDED, RefundReason.SOLD_OUT, True)
    assert application_fee(late).amount_refunded == 280 == refund.application_fee_refunded


def test_a_merchants_refund_keeps_the_fee_and_the_revenue_shows_gross_fee_net(client, connect, django_capture_on_commit_callbacks):
    from bookings.selectors import merchant_revenue, revenue_totals

    merchant = connected_merchant()
    slot = make_slot(listing=make_listing(merchant=merchant, price_amount=PRICE, currency="eur"), capacity=5)
    kept = paid_on_account(client, connect, slot)
    refunded = paid_on_account(client, connect, slot)
    with django_capture_on_commit_callbacks(execute=True):
        booking_refund(booking=refunded)
    refunded.refresh_from_db()
    assert refunded.status == BookingStatus.REFUNDED and not refunded.refunds.get().refund_application_fee
    assert application_fee(refunded).amount_refunded == 0 and application_fee(kept).amount_refunded == 0
    [total] = revenue_totals(merchant_revenue(merchant))
    assert (total.currency, total.paid, total.refunded, total.fee, total.net) == ("eur", 5000, 2500, 560, 1940)
    client.force_login(merchant.user)
    page = client.get(reverse("merchant:dashboard")).content.decode()
    assert "Platform fee" in page and "−€5.60" in page and "€19.40" in page


@pytest.mark.parametrize("fee_back", [False, True])
def test_a_customers_late_cancellation_keeps_the_fee_unless_the_setting_lists_it(
    client, connect, settings, fee_back, django_capture_on_commit_callbacks
):
    """Late under a policy keeping 40%: the customer gets 60% back on the merchant's account; the
    platform's fee stays by default, and goes back in proportion (Stripe's rule, rounded down)
    when `customer_cancel` is listed."""
    import datetime as dt

    from django.utils import timezone

    from bookings.services import booking_customer_cancel

    settings.CONNECT_REFUND_FEE_REASONS = ["sold_out", "slot_cancelled"] + (["customer_cancel"] if fee_back else [])
    merchant = connected_merchant()
    listing = make_listing(merchant=merchant, price_amount=PRICE, cancel_free_hours=48, cancel_late_keep_percent=40)
    slot = make_slot(listing=listing, capacity=5, starts_at=timezone.now() + dt.timedelta(hours=30))
    booking = paid_on_account(client, connect, slot)
    assert (booking.policy_free_hours, booking.policy_keep_percent) == (48, 40)
    with django_capture_on_commit_callbacks(execute=True):
        quote = booking_customer_cancel(booking=booking, expected_refund=1500)
    booking.refresh_from_db()
    refund = booking.refunds.get()
    assert (quote.refund, booking.status, refund.reason) == (1500, BookingStatus.REFUNDED, RefundReason.CUSTOMER_CANCELLED)
    assert refund.refund_application_fee is fee_back
    refunds = stripe_api.refunds_of_payment(booking.payment_intent_id, stripe_account=merchant.stripe_account_id)
    assert [(r["id"], r["amount"]) for r in refunds] == [(refund.stripe_refund_id, 1500)]
    # The fee of €2.80 (10% of €25.00 + €0.30); 60% of it is €1.68.
    assert application_fee(booking).amount_refunded == (168 if fee_back else 0) == refund.application_fee_refunded


def test_a_merchant_who_cannot_charge_is_not_taking_bookings_and_stripe_is_not_asked(client, connect):
    merchant = make_merchant()
    slot = make_slot(listing=make_listing(merchant=merchant, price_amount=PRICE), capacity=5)
    seen = {r["id"] for r in connect.requests()}
    response = client.post(reverse("shop:checkout_create", args=[slot.listing.slug]),
                           {"slot": slot.pk, "quantity": 1, "customer_email": "a@example.com", "customer_name": "A"})
    assert response.status_code in (400, 409)
    assert f"{merchant.display_name} is not taking bookings yet" in response.content.decode()
    assert not Booking.objects.exists() and [r for r in connect.requests() if r["id"] not in seen] == []


def test_account_updates_keep_the_state_and_a_deauthorized_account_stops_sales_and_alerts(
    client, connect, django_capture_on_commit_callbacks
):
    merchant = connected_merchant()
    account = merchant.stripe_account_id
    stale = {"id": "evt_acct_1", "object": "event", "type": "account.updated", "account": account, "created": 1,
             "data": {"object": {"id": account, "object": "account", "charges_enabled": False, "payouts_enabled": False,
                                 "requirements": {"currently_due": ["external_account"], "disabled_reason": "requirements.past_due"}}}}
    # Older than what the merchant's state was read at: it changes nothing.
    assert signed_post(client, stale, connect=True).status_code == 200
    merchant.refresh_from_db()
    assert merchant.stripe_charges_enabled
    newer = {**stale, "id": "evt_acct_2", "created": 4_000_000_000}
    assert signed_post(client, newer, connect=True).status_code == 200
    merchant.refresh_from_db()
    assert (merchant.stripe_charges_enabled, merchant.stripe_requirements_due, merchant.stripe_disabled_reason) == (
        False, ["external_account"], "requirements.past_due")
    assert not merchant.can_take_payments and not mail.outbox

    connect.deauthorize_account(account)
    deauthorized = next(e for e in connect.events() if e["type"] == "account.application.deauthorized")
    with django_capture_on_commit_callbacks(execute=True):
        assert signed_post(client, deauthorized, connect=True).status_code == 200
    merchant.refresh_from_db()
    assert merchant.stripe_account_deauthorized_at is not None and not merchant.can_take_payments
    assert [m.to for m in mail.outbox] == [["ops@example.com"]] and merchant.display_name in mail.outbox[0].subject
    with django_capture_on_commit_callbacks(execute=True):
        assert signed_post(client, deauthorized, connect=True).content == b"duplicate"
    assert len(mail.outbox) == 1
