"""Promotion codes of merchants: the rules of a code, and its local record (the owner of a code
is this record, never what the payment provider's metadata says)."""

import datetime as dt
import re
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from bookings.models import Listing, Merchant, PromotionCode
from bookings.money import format_money, platform_fee

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


def promotion_account(merchant: Merchant) -> str:
    """The payment account a merchant's codes (and their listings' products) are made on, which is
    the account their checkouts are paid on: with Connect their connected account, else the
    platform's ("")."""
    return merchant.stripe_account_id if settings.CONNECT_ENABLED else ""


def promotion_code_taken(*, code: str, merchant: Merchant, stripe_account: str) -> bool:
    """Whether an active code has this text already (the provider matches codes without regard to
    case). Unique across merchants, although the provider only requires it per account: a code a
    customer hears of names one merchant's offer whoever's page they type it on, and codes of
    merchants paid on the platform's own account (Connect off) share one account anyway. The
    merchant's own code left on another account (made before they connected Stripe) is never
    offered again, so it does not keep them from making that code anew."""
    return (
        PromotionCode.objects.filter(code__iexact=code, active=True)
        .exclude(Q(merchant=merchant) & ~Q(stripe_account=stripe_account))
        .exists()
    )


def _discount(subtotal: int, *, percent_off: int | None, amount_off: int | None) -> int:
    # As the provider computes a percentage off: rounded half up to a whole minor unit.
    if percent_off is not None:
        return int((Decimal(subtotal) * percent_off / 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    return min(amount_off or 0, subtotal)


def promotion_fee_refusal(
    *, listings: list[Listing], percent_off: int | None, amount_off: int | None, currency: str
) -> str:
    """Why a code may not be made with Connect on, or "". The platform's fee on a direct charge is
    fixed when the checkout opens, on the price, before any code is typed; a code must therefore
    leave, for every listing and number of seats, either nothing to pay (no payment, no fee) or at
    least that fee, so the fee is never more than what the customer pays."""
    for listing in listings:
        if amount_off is not None and listing.currency != currency:
            continue
        for seats in range(1, settings.BOOKING_MAX_QUANTITY + 1):
            subtotal = listing.price_amount * seats
            left = subtotal - _discount(subtotal, percent_off=percent_off, amount_off=amount_off)
            fee = platform_fee(subtotal)
            if 0 < left < fee:
                seats_text = "1 seat" if seats == 1 else f"{seats} seats"
                return (
                    f"With this code, {seats_text} of {listing.title} would cost "
                    f"{format_money(left, listing.currency)}, less than the platform's fee of "
                    f"{format_money(fee, listing.currency)}. Choose a smaller discount, or 100% off "
                    "(a free booking pays no fee)."
                )
    return ""


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
    stripe_account: str,
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
            "stripe_account": stripe_account,
        },
    )
    if created:
        promotion.listings.set(listings)
    return promotion


def promotion_code_use_record(*, promotion: PromotionCode, active: bool, times_redeemed: int) -> None:
    """What the provider last said of a code: whether it is active and how often it was used."""
    PromotionCode.objects.filter(pk=promotion.pk).update(active=active, times_redeemed=times_redeemed)
    promotion.active, promotion.times_redeemed = active, times_redeemed


def listing_stripe_product_record(*, listing: Listing, product_id: str, title: str, stripe_account: str) -> None:
    """The provider's product of a listing, the title it was last given and the account it is on."""
    Listing.objects.filter(pk=listing.pk).update(
        stripe_product_id=product_id, stripe_product_title=title, stripe_product_account=stripe_account
    )
    listing.stripe_product_id, listing.stripe_product_title = product_id, title
    listing.stripe_product_account = stripe_account
