"""Merchants' promotion codes at Stripe: each a coupon that applies only to the merchant's own
listings' products, so a code typed on Checkout discounts no other merchant's listing. Codes and
products are made on the account the merchant's checkouts are paid on (`promotion_account`: with
Connect, their connected account)."""

import datetime as dt
import uuid

from django.conf import settings

from bookings.models import Listing, Merchant, PromotionCode
from bookings.services.promotions import (
    listing_stripe_product_record,
    promotion_account,
    promotion_code_record,
    promotion_code_use_record,
    promotion_fee_refusal,
)
from payments import stripe_api
from payments.stripe_api import PaymentsUnavailable, PromotionRefused

__all__ = ["STRANDED_CODE", "PaymentsUnavailable", "PromotionRefused", "listing_product", "merchant_connect_required",
           "promotion_create", "promotion_active_set", "promotions_use_refresh"]


def listing_product(listing: Listing, *, stripe_account: str = "") -> str:
    """The listing's Stripe Product id on `stripe_account` ("" the platform's), made or renamed
    first when needed: the one recorded is used only if it lives on that account (a merchant who
    connected Stripe later, or Connect switched on, gets a new one there). Raises
    PaymentsUnavailable."""
    same_account = listing.stripe_product_account == stripe_account
    known_id = listing.stripe_product_id if same_account else ""
    product_id = stripe_api.listing_product_ensure(
        listing_id=listing.pk,
        title=listing.title,
        product_id=known_id,
        synced_title=listing.stripe_product_title if same_account else "",
        stripe_account=stripe_account,
    )
    if (product_id, listing.title) != (known_id, listing.stripe_product_title) or not same_account:
        listing_stripe_product_record(
            listing=listing, product_id=product_id, title=listing.title, stripe_account=stripe_account
        )
    return product_id


STRANDED_CODE = (
    "Made before you connected Stripe (or on another Stripe account than the one your payment page "
    "uses now): customers cannot use it. Create it again to offer it."
)


def merchant_connect_required(merchant: Merchant) -> bool:
    """With Connect on, a merchant without a connected account has nowhere to make codes yet."""
    return settings.CONNECT_ENABLED and not merchant.stripe_account_id


def promotion_create(
    *,
    merchant: Merchant,
    code: str,
    percent_off: int | None,
    amount_off: int | None,
    currency: str,
    max_redemptions: int | None,
    expires_at: dt.datetime | None,
    request_key: uuid.UUID,
) -> PromotionCode:
    """Make the code at Stripe for all the merchant's listings (each listing's product made first
    if it has none on that account), on the account their checkouts are paid on, then record it as
    the merchant's with that account. `request_key` (the form's one-time key) makes a form sent
    twice make one code. With Connect a code may not leave a customer less to pay than the
    platform's fee (`promotion_fee_refusal`). Raises PromotionRefused or PaymentsUnavailable."""
    listings = list(merchant.listings.order_by("pk"))
    if not listings:
        raise PromotionRefused("Add a listing first: a code applies to your listings.")
    account = promotion_account(merchant)
    if merchant_connect_required(merchant):
        raise PromotionRefused(
            "Connect your Stripe account first (Get paid with Stripe on your dashboard): "
            "your codes are made on your own Stripe account."
        )
    if account:
        refusal = promotion_fee_refusal(
            listings=listings, percent_off=percent_off, amount_off=amount_off, currency=currency
        )
        if refusal:
            raise PromotionRefused(refusal)
    product_ids = [listing_product(listing, stripe_account=account) for listing in listings]
    made = stripe_api.promotion_code_create(
        code=code,
        percent_off=percent_off,
        amount_off=amount_off,
        currency=currency,
        max_redemptions=max_redemptions,
        expires_at=expires_at,
        product_ids=product_ids,
        name=f"{merchant.display_name}: {code}",
        metadata={"merchant_id": str(merchant.pk)},
        idempotency_key=f"merchant-{merchant.pk}-promotion-{request_key}",
        stripe_account=account,
    )
    return promotion_code_record(
        merchant=merchant,
        code=code,
        percent_off=percent_off,
        amount_off=amount_off,
        currency=currency,
        max_redemptions=max_redemptions,
        expires_at=expires_at,
        stripe_coupon_id=made.coupon_id,
        stripe_promotion_code_id=made.promotion_code_id,
        stripe_account=account,
        listings=listings,
    )


def promotion_active_set(*, promotion: PromotionCode, active: bool) -> PromotionCode:
    """Pause or resume a code at Stripe, on the account it was made on, and record what Stripe then
    says. A code left on an account its merchant's checkouts no longer use is only paused: resumed,
    it would still never be offered."""
    if active and promotion.stripe_account != promotion_account(promotion.merchant):
        raise PromotionRefused(STRANDED_CODE)
    use = stripe_api.promotion_code_active_set(
        promotion_code_id=promotion.stripe_promotion_code_id, active=active, stripe_account=promotion.stripe_account
    )
    promotion_code_use_record(promotion=promotion, active=use.active, times_redeemed=use.times_redeemed)
    return promotion


def promotions_use_refresh(promotions: list[PromotionCode]) -> bool:
    """Ask Stripe how often each code was used, on the account each was made on; False (the last
    known figures kept) when it cannot say."""
    uses: dict[str, stripe_api.PromotionCodeUse] = {}
    try:
        for account in sorted({p.stripe_account for p in promotions}):
            ids = [p.stripe_promotion_code_id for p in promotions if p.stripe_account == account]
            uses.update(stripe_api.promotion_codes_use(ids, stripe_account=account))
    except PaymentsUnavailable:
        return False
    for promotion in promotions:
        use = uses.get(promotion.stripe_promotion_code_id)
        if use is not None and (use.active, use.times_redeemed) != (promotion.active, promotion.times_redeemed):
            promotion_code_use_record(promotion=promotion, active=use.active, times_redeemed=use.times_redeemed)
    return True
