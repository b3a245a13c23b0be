"""Merchants' promotion codes at Stripe: each a coupon that applies only to the merchant's own
listings' products, so a code typed on Checkout discounts no other merchant's listing."""

import datetime as dt
import uuid

from bookings.models import Listing, Merchant, PromotionCode
from bookings.services.promotions import (
    listing_stripe_product_record,
    promotion_code_record,
    promotion_code_use_record,
)
from payments import stripe_api
from payments.stripe_api import PaymentsUnavailable, PromotionRefused

__all__ = ["PaymentsUnavailable", "PromotionRefused", "listing_product", "promotion_create", "promotion_active_set",
           "promotions_use_refresh"]


def listing_product(listing: Listing) -> str:
    """The listing's Stripe Product id, made or renamed first when needed. Raises PaymentsUnavailable."""
    product_id = stripe_api.listing_product_ensure(
        listing_id=listing.pk,
        title=listing.title,
        product_id=listing.stripe_product_id,
        synced_title=listing.stripe_product_title,
    )
    if (product_id, listing.title) != (listing.stripe_product_id, listing.stripe_product_title):
        listing_stripe_product_record(listing=listing, product_id=product_id, title=listing.title)
    return product_id


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
    if it has none), then record it as the merchant's. `request_key` (the form's one-time key)
    makes a form sent twice make one code. Raises PromotionRefused or PaymentsUnavailable."""
    listings = list(merchant.listings.order_by("pk"))
    if not listings:
        raise PromotionRefused("Add a listing first: a code applies to your listings.")
    product_ids = [listing_product(listing) for listing in listings]
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
        listings=listings,
    )


def promotion_active_set(*, promotion: PromotionCode, active: bool) -> PromotionCode:
    """Pause or resume a code at Stripe, and record what Stripe then says."""
    use = stripe_api.promotion_code_active_set(promotion_code_id=promotion.stripe_promotion_code_id, active=active)
    promotion_code_use_record(promotion=promotion, active=use.active, times_redeemed=use.times_redeemed)
    return promotion


def promotions_use_refresh(promotions: list[PromotionCode]) -> bool:
    """Ask Stripe how often each code was used; False (the last known figures kept) when it cannot say."""
    try:
        uses = stripe_api.promotion_codes_use([p.stripe_promotion_code_id for p in promotions])
    except PaymentsUnavailable:
        return False
    for promotion in promotions:
        use = uses.get(promotion.stripe_promotion_code_id)
        if use is not None and (use.active, use.times_redeemed) != (promotion.active, promotion.times_redeemed):
            promotion_code_use_record(promotion=promotion, active=use.active, times_redeemed=use.times_redeemed)
    return True
