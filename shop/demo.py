"""Demo bookings paid for real, by card, through the local Stripe emulator: the dashboard has
something to show, and refunding one works exactly as it does for a customer's booking. With
Connect on (CONNECT_ENABLED), the demo merchants are connected accounts on the emulator, made as
"Get paid with Stripe" makes them: two onboarded (their bookings are direct charges with the
platform's fee) and one who has not finished onboarding (their listing is not taking bookings)."""

import uuid

from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from bookings.demo import DEMO_MERCHANT_NOT_ONBOARDED, demo_merchants
from bookings.models import Booking, Listing, Merchant, PromotionCode
from bookings.notifications import absolute_url
from bookings.services import booking_confirm, merchant_stripe_account_attach, merchant_stripe_account_sync
from bookings.services.promotions import promotion_account
from payments import stripe_api
from payments.checkout import checkout_start
from payments.promotions import merchant_connect_required, promotion_create

DEMO_CUSTOMER_DOMAIN = "customers.example.com"
DEMO_CUSTOMERS = (
    "Ada Lovelace",
    "Grace Hopper",
    "Alan Turing",
    "Katherine Johnson",
    "Tim Berners-Lee",
    "Mary Somerville",
)
# Seats booked on a listing's first upcoming slots: a full one, a busy one, a quiet one.
DEMO_SEATS = ((3, 2, 2, 1), (2, 1), (1,))
# The 100%-off codes the README advertises: on the emulator's payment page they book with no card.
# Each is an ordinary promotion code of one demo merchant, so it works on that merchant's listings only.
DEMO_FREE_PROMOTION_CODE = "DEMO100"
DEMO_FREE_PROMOTION_CODES = {"harbour": DEMO_FREE_PROMOTION_CODE, "atelier": "NORD100"}


def emulator_control():
    """The control API of the Stripe emulator the site is pointed at, or None (real Stripe, or none)."""
    if not (settings.STRIPE_API_BASE and settings.STRIPE_SECRET_KEY):
        return None
    from stripe_emulator.control import ControlError, EmulatorControl

    control = EmulatorControl(settings.STRIPE_API_BASE, timeout=10)
    try:
        control.config()
    except (ControlError, OSError):
        return None
    return control


def demo_bookings_load() -> int | None:
    """Book and pay a few seats on each demo listing that has none yet. None without an emulator:
    paying needs its test cards, and real Stripe takes no payment without a browser."""
    control = emulator_control()
    if control is None:
        return None
    slugs = [spec.slug for _, _, listings in demo_merchants().values() for spec in listings]
    listings = Listing.objects.filter(slug__in=slugs).select_related("merchant").order_by("pk")
    # A merchant who cannot take payments (Connect, not onboarded) has no bookings to show.
    return sum(_listing_bookings(listing, control) for listing in listings if listing.merchant.can_take_payments)


# What Stripe's onboarding asks of an individual, as a merchant types it on the emulator's hosted
# page (its test values: the 1901-01-01 birth date, "address_full_match", a verified bank token).
DEMO_ONBOARDING = {
    "harbour": {"country": "GB", "first_name": "Morwenna", "last_name": "Trelawny", "city": "Falmouth",
                "postal_code": "TR11 3AA", "url": "https://harbour-kayaks.example"},
    "atelier": {"country": "FR", "first_name": "Camille", "last_name": "Nordin", "city": "Paris",
                "postal_code": "75011", "url": "https://atelier-nord.example"},
    DEMO_MERCHANT_NOT_ONBOARDED: {"country": "US"},
}


def demo_connect_load() -> list[tuple[str, str]] | None:
    """With Connect on and the emulator: give each demo merchant without one a connected account
    (`CONNECT_ACCOUNT_TYPE`, Express by default, made as "Get paid with Stripe" makes it), filled
    in with what Stripe's onboarding asks — but for the merchant kept not onboarded, who has only
    started — and record what Stripe then says of it. Returns (merchant name, state) pairs for
    every demo merchant, or None (Connect off, or no emulator: real accounts onboard themselves)."""
    if not settings.CONNECT_ENABLED or emulator_control() is None:
        return None
    client = stripe_api.stripe_client()
    states = []
    for username in demo_merchants():
        merchant = Merchant.objects.filter(user__username=username).first()
        if merchant is None:
            continue
        if not merchant.stripe_account_id:
            details = DEMO_ONBOARDING[username]
            account_id = stripe_api.account_create(
                merchant_id=merchant.pk, email=merchant.support_email, name=merchant.display_name,
                account_type=settings.CONNECT_ACCOUNT_TYPE, country=details["country"],
            )
            merchant = merchant_stripe_account_attach(
                merchant=merchant, account_id=account_id, account_type=settings.CONNECT_ACCOUNT_TYPE
            )
            if username != DEMO_MERCHANT_NOT_ONBOARDED:
                client.v1.accounts.update(account_id, params={
                    "business_type": "individual",
                    "business_profile": {"mcc": "7999", "url": details["url"]},
                    "individual": {
                        "first_name": details["first_name"], "last_name": details["last_name"],
                        "email": merchant.support_email, "dob": {"day": 1, "month": 1, "year": 1901},
                        "address": {"line1": "address_full_match", "city": details["city"],
                                    "postal_code": details["postal_code"]},
                    },
                    "tos_acceptance": {"date": int(timezone.now().timestamp()), "ip": "127.0.0.1"},
                    "external_account": "btok_us_verified",
                })
            merchant = merchant_stripe_account_sync(facts=stripe_api.account_retrieve(account_id)) or merchant
        states.append((merchant.display_name, "can take payments" if merchant.can_take_payments else
                       "has not finished Stripe's onboarding: not taking bookings yet"))
    return states


def demo_promotion_code_load() -> list[tuple[str, str]] | None:
    """Give each demo merchant their 100%-off promotion code, made as any merchant makes one
    (`payments.promotions.promotion_create`), unless they have it; returns (code, merchant name)
    pairs, or None without an emulator (a real Stripe account's promotion codes are its owner's to
    make). With Connect each code is made on its merchant's connected account."""
    if emulator_control() is None:
        return None
    made = []
    for username, code in DEMO_FREE_PROMOTION_CODES.items():
        merchant = Merchant.objects.filter(user__username=username).first()
        if merchant is None or merchant_connect_required(merchant):
            continue
        mine = PromotionCode.objects.filter(merchant=merchant, code=code, active=True,
                                            stripe_account=promotion_account(merchant))
        if not mine.exists():
            promotion_create(
                merchant=merchant, code=code, percent_off=100, amount_off=None, currency="",
                max_redemptions=None, expires_at=None, request_key=uuid.uuid5(uuid.NAMESPACE_URL, f"demo-{code}"),
            )
        made.append((code, merchant.display_name))
    return made


def _listing_bookings(listing: Listing, control) -> int:
    if Booking.objects.filter(slot__listing=listing, customer_email__endswith=f"@{DEMO_CUSTOMER_DOMAIN}").exists():
        return 0
    slots = list(listing.slots.filter(starts_at__gt=timezone.now(), cancelled_at__isnull=True, is_on_sale=True)[:3])
    success_url = absolute_url(reverse("shop:checkout_success")) + "?session_id={CHECKOUT_SESSION_ID}"
    cancel_url = absolute_url(reverse("shop:listing", args=[listing.slug]))
    made = 0
    for slot, seats_per_booking in zip(slots, DEMO_SEATS):
        for quantity in seats_per_booking:
            slot.refresh_from_db()
            quantity = min(quantity, slot.seats_left)
            if not quantity:
                break
            name = DEMO_CUSTOMERS[(listing.pk + made) % len(DEMO_CUSTOMERS)]
            email = f"{name.split()[0].lower()}.{listing.pk}.{made}@{DEMO_CUSTOMER_DOMAIN}"
            started = checkout_start(
                slot=slot,
                quantity=quantity,
                customer_email=email,
                customer_name=name,
                success_url=success_url,
                cancel_url=cancel_url,
            )
            # Made-up customers: their confirmation counts as sent, so none is printed.
            Booking.objects.filter(pk=started.booking.pk).update(confirmation_email_sent_at=timezone.now())
            control.pay_session(started.booking.checkout_session_id, "4242424242424242", email=email, name=name)
            booking_confirm(facts=stripe_api.checkout_facts(
                started.booking.checkout_session_id, stripe_account=started.booking.stripe_account_id
            ))
            made += 1
    return made
