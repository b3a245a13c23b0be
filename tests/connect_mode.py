"""Running the checkout and payment tests with Stripe Connect on (`pytest --connect`, or
SLOTBOOK_TEST_CONNECT=1): the site sells through merchants' connected accounts, every merchant a
test makes gets an account already onboarded on the emulator (made through the official SDK, as a
platform does for its merchants), and Stripe's events of those accounts go to the Connect
endpoint with its own secret, as Stripe sends them. A test written for the platform's own
account then proves the same behaviour on a connected account.

Tests that are about the platform's own account only (events forged without an account, the
single-account mode itself) are marked `platform_account` and skipped in this mode."""

import os

# The platform's fee in Connect runs: 10% + 0.30, so that every amount a test checks carries one.
CONNECT_FEE_PERCENT, CONNECT_FEE_FIXED = "10", 30
ENV_SWITCH = "SLOTBOOK_TEST_CONNECT"


def connect_mode(config) -> bool:
    return bool(config.getoption("--connect", default=False)) or os.environ.get(ENV_SWITCH, "").strip() in {"1", "true", "yes"}


def onboarded_account(country: str = "FR") -> str:
    """A connected account given everything Stripe asks (through the API), able to charge."""
    from payments import stripe_api

    client = stripe_api.stripe_client()
    account = client.v1.accounts.create(params={
        "type": "custom", "country": country, "business_type": "individual",
        "capabilities": {"card_payments": {"requested": True}, "transfers": {"requested": True}},
        "business_profile": {"mcc": "7999", "url": "https://tours.example"},
        "individual": {"first_name": "Jenny", "last_name": "Rosen", "email": "jenny@example.com",
                       "dob": {"day": 1, "month": 1, "year": 1901},
                       "address": {"line1": "address_full_match", "city": "Paris", "postal_code": "75001"}},
        "tos_acceptance": {"date": 1700000000, "ip": "203.0.113.7"},
    })
    return client.v1.accounts.update(account.id, params={"external_account": "btok_us_verified"}).id


def merchant_connect(merchant) -> None:
    """Give a merchant (and the instance passed) an onboarded connected account, its state read
    back from Stripe as the onboarding return page does."""
    from bookings.models import Merchant
    from bookings.services import merchant_stripe_account_sync
    from payments import stripe_api

    account_id = onboarded_account()
    Merchant.objects.filter(pk=merchant.pk).update(stripe_account_id=account_id, stripe_account_type="custom")
    synced = merchant_stripe_account_sync(facts=stripe_api.account_retrieve(account_id))
    for field in ("stripe_account_id", "stripe_account_type", "stripe_charges_enabled", "stripe_payouts_enabled",
                  "stripe_details_submitted", "stripe_requirements_due", "stripe_disabled_reason",
                  "stripe_account_synced_at"):
        setattr(merchant, field, getattr(synced, field))


def _connect_new_merchant(sender, instance, created, raw=False, **kwargs):
    if created and not raw and not instance.stripe_account_id:
        merchant_connect(instance)


def connect_mode_on(request, settings, control):
    """Connect on for one test, against the emulator (`control`) the site already talks to: its
    merchants, those already made and those the test makes, get onboarded accounts. Returns the
    undo, for the fixture's teardown."""
    from django.db.models.signals import post_save

    from bookings.models import Merchant

    settings.CONNECT_ENABLED = True
    settings.PLATFORM_FEE_PERCENT = CONNECT_FEE_PERCENT
    settings.PLATFORM_FEE_FIXED = CONNECT_FEE_FIXED
    settings.STRIPE_CONNECT_WEBHOOK_SECRETS = [control.connect_webhook_secret]
    uses_db = request.node.get_closest_marker("django_db") or {"db", "transactional_db", "live_server"} & set(
        request.fixturenames
    )
    if uses_db:
        for merchant in Merchant.objects.filter(stripe_account_id=""):
            merchant_connect(merchant)
    post_save.connect(_connect_new_merchant, sender=Merchant, dispatch_uid="tests-connect-mode")
    return lambda: post_save.disconnect(sender=Merchant, dispatch_uid="tests-connect-mode")


def on_account(booking) -> dict:
    """The SDK's request options that read a booking's objects where they live: on its merchant's
    connected account with Connect, on the platform's own account (no header) without."""
    return {"stripe_account": booking.stripe_account_id} if booking.stripe_account_id else {}


def checkout_sessions_everywhere() -> int:
    """Checkout Sessions the (freshly reset) emulator holds on the platform's account and on every
    merchant's connected account (with Connect they are made on the merchant's)."""
    from bookings.models import Merchant
    from payments import stripe_api

    client = stripe_api.stripe_client()
    accounts = [""] + sorted(set(Merchant.objects.exclude(stripe_account_id="").values_list("stripe_account_id", flat=True)))
    return sum(
        1
        for account in accounts
        for _ in client.v1.checkout.sessions.list(
            params={"limit": 100}, options={"stripe_account": account} if account else {}
        ).auto_paging_iter()
    )
