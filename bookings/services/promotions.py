"""Promotion codes of merchants: the rules of a code, and its local record (the owner of a code
is this record, never what the payment provider's metadata says)."""

import datetime as dt
import re

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from bookings.models import Listing, Merchant, PromotionCode

PROMOTION_CODE_PATTERN = re.compile(r"^[A-Za-z0-9]{3,40}$")
# Stripe's largest Checkout total, in minor units; and how far ahead a code may expire.
PROMOTION_AMOUNT_MAX = 99_999_999
PROMOTION_EXPIRY_MAX = dt.timedelta(days=5 * 366)


def validate_promotion_code_text(code: str) -> str:
    code = (code or "").strip()
    if not PROMOTION_CODE_PATTERN.match(code):
        raise ValidationError("A code is 3 to 40 letters and digits, such as SPRING20.")
    return code.upper()


def validate_promotion_discount(*, percent_off: int | None, amount_off: int | None) -> None:
    if (percent_off is None) == (amount_off is None):
        raise ValidationError("Give either a percentage off or an amount off.")
    if percent_off is not None and not 1 <= percent_off <= 100:
        raise ValidationError("A percentage off is a whole number from 1 to 100.")
    if amount_off is not None and amount_off < 1:
        raise ValidationError("An amount off must be more than zero.")
    if amount_off is not None and amount_off > PROMOTION_AMOUNT_MAX:
        raise ValidationError("That amount off is too large.")


def validate_promotion_expiry(*, expires_at: dt.datetime | None) -> None:
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError("The expiry must be in the future.")
    if expires_at is not None and expires_at > timezone.now() + PROMOTION_EXPIRY_MAX:
        raise ValidationError("Choose an expiry within the next five years, or none.")


def validate_promotion_limit(*, max_redemptions: int | None) -> None:
    if max_redemptions is not None and max_redemptions < 1:
        raise ValidationError("A limit is at least 1 use; leave it empty for no limit.")


def promotion_code_taken(*, code: str) -> bool:
    """Whether an active code has this text already (the provider matches codes without regard to case)."""
    return PromotionCode.objects.filter(code__iexact=code, active=True).exists()


@transaction.atomic
def promotion_code_record(
    *,
    merchant: Merchant,
    code: str,
    percent_off: int | None,
    amount_off: int | None,
    currency: str,
    max_redemptions: int | None,
    expires_at: dt.datetime | None,
    stripe_coupon_id: str,
    stripe_promotion_code_id: str,
    listings: list[Listing],
) -> PromotionCode:
    """Record a code made at the provider for `merchant`; recording it twice keeps one row."""
    validate_promotion_discount(percent_off=percent_off, amount_off=amount_off)
    promotion, created = PromotionCode.objects.get_or_create(
        stripe_promotion_code_id=stripe_promotion_code_id,
        defaults={
            "merchant": merchant,
            "code": code,
            "percent_off": percent_off,
            "amount_off": amount_off,
            "currency": currency if amount_off is not None else "",
            "max_redemptions": max_redemptions,
            "expires_at": expires_at,
            "stripe_coupon_id": stripe_coupon_id,
        },
    )
    if created:
        promotion.listings.set(listings)
    return promotion


def promotion_code_use_record(*, promotion: PromotionCode, active: bool, times_redeemed: int) -> None:
    """What the provider last said of a code: whether it is active and how often it was used."""
    PromotionCode.objects.filter(pk=promotion.pk).update(active=active, times_redeemed=times_redeemed)
    promotion.active, promotion.times_redeemed = active, times_redeemed


def listing_stripe_product_record(*, listing: Listing, product_id: str, title: str) -> None:
    """The provider's product of a listing, and the title it was last given."""
    Listing.objects.filter(pk=listing.pk).update(stripe_product_id=product_id, stripe_product_title=title)
    listing.stripe_product_id, listing.stripe_product_title = product_id, title
