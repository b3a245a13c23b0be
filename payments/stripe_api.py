"""The payments layer: the only code in the project that talks to Stripe.

It speaks to real Stripe or to the local emulator alike; only `STRIPE_SECRET_KEY`,
`STRIPE_WEBHOOK_SECRET` and `STRIPE_API_BASE` differ.
"""

import datetime as dt
import hashlib
import json
import logging
from dataclasses import dataclass
from functools import cache
from typing import Any

import stripe
from django.conf import settings
from django.utils import formats, timezone

from bookings.gateway import CheckoutFacts, PaymentGatewayError, RefundReceipt
from bookings.services.connect import AccountFacts
from common.logs import log_event
from bookings.models import Booking
from bookings.templatetags.policies import cancellation_policy
from bookings.services import booking_reference

log = logging.getLogger("shop.payments")

# Stripe answers within a second or two; a hung call must not hold a customer's page or a
# webhook delivery for the SDK's default 80 s.
STRIPE_TIMEOUT_SECONDS = 20


class PaymentsUnavailable(Exception):
    """Stripe could not be reached or refused; the message is safe to show to a customer."""


class StripeRateLimited(PaymentsUnavailable):
    """Stripe answered 429: too many requests for now. A checkout start waits in line instead."""


BUSY_MESSAGE = "Our payment provider is busy right now. Please try again in a moment."


def _unavailable(error: stripe.StripeError) -> PaymentsUnavailable:
    if isinstance(error, stripe.RateLimitError):
        return StripeRateLimited(BUSY_MESSAGE)
    return PaymentsUnavailable("We could not reach our payment provider. Please try again in a moment.")


@cache
def _client(api_key: str, api_base: str, max_retries: int) -> stripe.StripeClient:
    bases = {"api": api_base, "connect": api_base, "files": api_base, "meter_events": api_base} if api_base else None
    return stripe.StripeClient(
        api_key,
        base_addresses=bases,
        max_network_retries=max_retries,
        http_client=stripe.RequestsClient(timeout=STRIPE_TIMEOUT_SECONDS),
    )


@cache
def _async_client(api_key: str, api_base: str, max_retries: int) -> stripe.StripeClient:
    bases = {"api": api_base, "connect": api_base, "files": api_base, "meter_events": api_base} if api_base else None
    # httpx's async client: awaited calls leave the event loop free while Stripe thinks. One per
    # process (an ASGI worker runs one event loop).
    return stripe.StripeClient(
        api_key, base_addresses=bases, max_network_retries=max_retries,
        http_client=stripe.HTTPXClient(timeout=STRIPE_TIMEOUT_SECONDS),
    )


def stripe_client() -> stripe.StripeClient:
    if not settings.STRIPE_SECRET_KEY:
        raise PaymentsUnavailable("Payments are not set up on this site yet. Please try again later.")
    return _client(settings.STRIPE_SECRET_KEY, settings.STRIPE_API_BASE, settings.STRIPE_MAX_NETWORK_RETRIES)


def _on(stripe_account: str, idempotency_key: str | None = None) -> dict[str, str]:
    """The request options of a call made on `stripe_account` (a connected account: Stripe's
    `Stripe-Account` header) or on the platform ("" ). An idempotency key is made per account, so
    the same key on two accounts never collides in logs or replays."""
    options: dict[str, str] = {}
    if stripe_account:
        options["stripe_account"] = stripe_account
    if idempotency_key:
        options["idempotency_key"] = f"{stripe_account}-{idempotency_key}" if stripe_account else idempotency_key
    return options


def _as_dict(stripe_object: Any) -> dict:
    return stripe_object.to_dict() if hasattr(stripe_object, "to_dict") else dict(stripe_object)


def id_of(value: Any) -> str | None:
    """An expandable field is an id or, expanded, an object with one."""
    if value is None or isinstance(value, str):
        return value
    return value.get("id")


# Checkout


@dataclass(frozen=True)
class OpenedCheckout:
    session_id: str
    url: str
    expires_at: dt.datetime
    customer_id: str


def customer_create(*, email: str, name: str, idempotency_key: str, stripe_account: str = "") -> str:
    """Create a Stripe Customer (on `stripe_account`, a merchant's connected account, when set).
    A Customer is never looked up by e-mail: an address typed into a form proves nothing, and
    attaching a booking to someone else's Customer would open their receipts and saved cards to
    whoever typed it. Raises PaymentsUnavailable."""
    try:
        created = stripe_client().v1.customers.create(
            params={"email": email, "name": name}, options=_on(stripe_account, idempotency_key)
        )
    except stripe.StripeError as error:
        log_event(log, "customer_create_failed", level=logging.WARNING, error=_describe(error))
        raise _unavailable(error) from error
    return created.id


async def customer_create_async(*, email: str, name: str, idempotency_key: str) -> str:
    """`customer_create` on the platform, awaited (the SDK's `_async` methods over httpx): only the
    ASGI comparison of benchmarks/stripe_wait.py calls it (README, "A web tier that does not idle
    while Stripe thinks"). Raises PaymentsUnavailable."""
    if not settings.STRIPE_SECRET_KEY:
        raise PaymentsUnavailable("Payments are not set up on this site yet. Please try again later.")
    client = _async_client(settings.STRIPE_SECRET_KEY, settings.STRIPE_API_BASE, settings.STRIPE_MAX_NETWORK_RETRIES)
    try:
        created = await client.v1.customers.create_async(
            params={"email": email, "name": name}, options=_on("", idempotency_key)
        )
    except stripe.StripeError as error:
        log_event(log, "customer_create_failed", level=logging.WARNING, error=_describe(error))
        raise _unavailable(error) from error
    return created.id


def checkout_open(
    *,
    booking: Booking,
    customer_id: str,
    success_url: str,
    cancel_url: str,
    hold_until: dt.datetime | None = None,
    product_id: str = "",
) -> OpenedCheckout:
    """Open a Stripe Checkout Session for a pending booking, paid as Customer `customer_id` or,
    when that is "", as a new Customer Checkout creates for the booking's e-mail on payment (one
    call: the session's `customer` is known once it completes; with Connect that Customer is made
    on the connected account), expiring when the booking's seats stop being held (`hold_until`, at
    least 30 minutes away). `success_url` must contain `{CHECKOUT_SESSION_ID}`. With Connect the
    session is made on the booking's connected account (`booking.stripe_account_id`, a direct
    charge) with the platform's fee as `payment_intent_data[application_fee_amount]`. With `product_id` (the listing's product
    on the session's account, `listing_product_ensure`) the line sells that product, so only codes made for it apply, and
    the time is told under the pay button; without, an ad-hoc product names listing and time.
    Raises PaymentsUnavailable when Stripe cannot be used."""
    listing = booking.slot.listing
    # The session ends when the booking's hold does, never sooner than Stripe's 30 minutes from now.
    expires_at = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30)
    if hold_until is not None:
        expires_at = max(expires_at, hold_until)
    try:
        session = stripe_client().v1.checkout.sessions.create(
            params={
                "mode": "payment",
                "line_items": [
                    {
                        "price_data": {
                            "currency": booking.currency,
                            # The price the booking was started at: the merchant may have changed the listing's since.
                            "unit_amount": booking.amount_total // booking.quantity,
                            **(
                                {"product": product_id}
                                if product_id
                                else {"product_data": {"name": listing.title, "description": _slot_description(booking)}}
                            ),
                        },
                        "quantity": booking.quantity,
                    }
                ],
                **(
                    {"customer": customer_id}
                    if customer_id
                    else {"customer_email": booking.customer_email, "customer_creation": "always"}
                ),
                "client_reference_id": booking_reference(booking),
                "metadata": {"booking_id": str(booking.pk), "slot_id": str(booking.slot_id)},
                "payment_intent_data": {
                    "metadata": {"booking_id": str(booking.pk)},
                    **(
                        {"application_fee_amount": booking.application_fee_amount}
                        if booking.stripe_account_id and booking.application_fee_amount > 0
                        else {}
                    ),
                },
                "success_url": success_url,
                "cancel_url": cancel_url,
                "expires_at": int(expires_at.timestamp()),
                # Codes typed on Checkout: a merchant's codes are made for their listings' products only,
                # on the account the session is made on (with Connect, the merchant's own), so a code
                # of any other account or merchant is refused there.
                "allow_promotion_codes": True,
                "invoice_creation": {"enabled": True},
                **({"custom_text": {"submit": {"message": _slot_description(booking)}}} if product_id else {}),
            },
            options=_on(booking.stripe_account_id, f"booking-{booking.pk}-checkout"),
        )
    except stripe.StripeError as error:
        log_event(log, "checkout_open_failed", level=logging.WARNING, booking=booking.pk, error=_describe(error))
        raise _unavailable(error) from error
    return OpenedCheckout(
        session_id=session.id,
        url=session.url,
        expires_at=dt.datetime.fromtimestamp(session.expires_at, dt.UTC),
        customer_id=customer_id,
    )


def _slot_description(booking: Booking) -> str:
    slot = booking.slot
    merchant = slot.listing.merchant
    with timezone.override(merchant.zone):
        when = formats.date_format(timezone.localtime(slot.starts_at), "l j F Y, H:i")
        policy = cancellation_policy(booking=booking)
    return f"{when} ({merchant.timezone}) · {merchant.display_name} · {policy}"


def checkout_facts_from_session(session: dict, *, account: str | None = None) -> CheckoutFacts:
    """The facts of a Checkout Session object, from the API or from a webhook event, read on
    `account` ("" the platform's) when the caller knows it."""
    metadata = session.get("metadata") or {}
    return CheckoutFacts(
        session_id=session["id"],
        client_reference_id=session.get("client_reference_id"),
        metadata_booking_id=metadata.get("booking_id"),
        status=session.get("status") or "",
        payment_status=session.get("payment_status") or "",
        amount_subtotal=session.get("amount_subtotal"),
        amount_total=session.get("amount_total"),
        currency=session.get("currency"),
        payment_intent_id=id_of(session.get("payment_intent")),
        customer_id=id_of(session.get("customer")),
        account=account,
    )


def checkout_facts(session_id: str, *, stripe_account: str = "") -> CheckoutFacts:
    """Read a Checkout Session from Stripe (on the connected account it was made on). Raises
    PaymentsUnavailable when Stripe cannot say."""
    try:
        session = stripe_client().v1.checkout.sessions.retrieve(session_id, options=_on(stripe_account))
    except stripe.StripeError as error:
        log_event(log, "checkout_read_failed", level=logging.WARNING, session=session_id, error=_describe(error))
        raise PaymentsUnavailable("We could not check your payment with our payment provider just now.") from error
    return checkout_facts_from_session(_as_dict(session), account=stripe_account)


def checkout_expire(session_id: str, *, stripe_account: str = "") -> CheckoutFacts:
    """Expire an open session so that it can no longer be paid, and return what Stripe then says
    of it. Stripe refuses (400) to expire a session that is no longer open, paid or expired
    already: the session is then read, so the caller learns which. Raises PaymentsUnavailable
    when Stripe cannot be reached."""
    try:
        session = stripe_client().v1.checkout.sessions.expire(session_id, options=_on(stripe_account))
    except stripe.InvalidRequestError as error:
        log_event(log, "checkout_expire_refused", session=session_id, error=_describe(error))
        return checkout_facts(session_id, stripe_account=stripe_account)
    except stripe.StripeError as error:
        log_event(log, "checkout_expire_failed", level=logging.WARNING, session=session_id, error=_describe(error))
        raise PaymentsUnavailable("We could not reach our payment provider.") from error
    return checkout_facts_from_session(_as_dict(session))


# Refunds


def _refund_receipt(refund: Any) -> RefundReceipt:
    return RefundReceipt(
        refund_id=refund.id,
        status=refund.status,
        amount=refund.amount,
        failure_reason=getattr(refund, "failure_reason", None) or "",
    )


def _refunds_listed(client: stripe.StripeClient, payment_intent_id: str, stripe_account: str = "") -> list[Any]:
    listed = client.v1.refunds.list(params={"payment_intent": payment_intent_id, "limit": 100}, options=_on(stripe_account))
    return list(listed.auto_paging_iter())


def _refund_made_earlier(
    client: stripe.StripeClient, payment_intent_id: str, metadata: dict[str, str], stripe_account: str
) -> Any:
    for refund in _refunds_listed(client, payment_intent_id, stripe_account):
        made_for = refund.metadata.to_dict() if refund.metadata else {}
        if made_for.get("refund_id") == metadata["refund_id"]:
            return refund
    return None


def refunds_of_payment(payment_intent_id: str, *, stripe_account: str = "") -> list[dict]:
    """Every refund of a payment (on the account it was made on), as plain dicts."""
    try:
        return [_as_dict(refund) for refund in _refunds_listed(stripe_client(), payment_intent_id, stripe_account)]
    except stripe.StripeError as error:
        raise PaymentsUnavailable("We could not reach our payment provider.") from error


class StripeRefundGateway:
    """The booking domain's PaymentGateway, with Stripe."""

    def checkout_expire(self, *, session_id: str, stripe_account: str = "") -> CheckoutFacts:
        try:
            return checkout_expire(session_id, stripe_account=stripe_account)
        except PaymentsUnavailable as error:
            raise PaymentGatewayError(str(error), retryable=True) from error

    def refund_create(
        self,
        *,
        payment_intent_id: str,
        amount: int,
        idempotency_key: str,
        metadata: dict[str, str],
        look_first: bool,
        stripe_account: str = "",
        refund_application_fee: bool = False,
    ) -> RefundReceipt:
        try:
            client = stripe_client()
            if look_first:
                earlier = _refund_made_earlier(client, payment_intent_id, metadata, stripe_account)
                if earlier is not None:
                    return _refund_receipt(earlier)
            refund = client.v1.refunds.create(
                params={
                    "payment_intent": payment_intent_id,
                    "amount": amount,
                    "reason": "requested_by_customer",
                    "metadata": metadata,
                    # A direct charge's fee goes back to the connected account only when asked.
                    **({"refund_application_fee": refund_application_fee} if stripe_account else {}),
                },
                options=_on(stripe_account, idempotency_key),
            )
        except PaymentsUnavailable as error:
            raise PaymentGatewayError(str(error), retryable=True) from error
        except (stripe.InvalidRequestError, stripe.AuthenticationError, stripe.PermissionError) as error:
            raise PaymentGatewayError(_describe(error), retryable=False) from error
        except stripe.StripeError as error:
            raise PaymentGatewayError(_describe(error), retryable=True) from error
        return _refund_receipt(refund)


def refund_retrieve(refund_id: str, *, stripe_account: str = "") -> RefundReceipt:
    try:
        return _refund_receipt(stripe_client().v1.refunds.retrieve(refund_id, options=_on(stripe_account)))
    except stripe.StripeError as error:
        raise PaymentsUnavailable("We could not reach our payment provider.") from error


REFUND_FAILURE_EVENTS = ("refund.failed", "refund.updated")


def refund_failure_events(*, since: dt.datetime, stripe_account: str = "") -> list[dict]:
    """The events since `since` that say a refund failed, oldest first, as plain dicts: what
    `reconcile` learns from when the webhook telling of the failure never came. With
    `stripe_account`, the events of that connected account."""
    params = {"types": list(REFUND_FAILURE_EVENTS), "created": {"gte": int(since.timestamp())}, "limit": 100}
    try:
        listed = stripe_client().v1.events.list(params=params, options=_on(stripe_account)).auto_paging_iter()
        events = [event.to_dict(for_json=True) for event in listed]
    except stripe.StripeError as error:
        raise PaymentsUnavailable("We could not reach our payment provider.") from error
    failed = [e for e in events if ((e.get("data") or {}).get("object") or {}).get("status") in ("failed", "canceled")]
    return sorted(failed, key=lambda event: event.get("created") or 0)


# Connect: merchants' connected accounts


def account_facts_from_object(account: dict) -> AccountFacts:
    """The facts of an `account` object, from the API or an `account.updated` event."""
    requirements = account.get("requirements") or {}
    due = set(requirements.get("currently_due") or []) | set(requirements.get("past_due") or [])
    return AccountFacts(
        account_id=str(account.get("id") or ""),
        charges_enabled=account.get("charges_enabled") is True,
        payouts_enabled=account.get("payouts_enabled") is True,
        details_submitted=account.get("details_submitted") is True,
        requirements_due=sorted(str(item) for item in due),
        disabled_reason=str(requirements.get("disabled_reason") or ""),
    )


def account_create(*, merchant_id: int, email: str, name: str, account_type: str, country: str) -> str:
    """Create a merchant's connected account (Express or Standard) with the capabilities a direct
    card charge needs. The idempotency key names the merchant and attempt, so a double click makes
    one account. Raises PaymentsUnavailable."""
    params: dict[str, Any] = {
        "type": account_type,
        "metadata": {"merchant_id": str(merchant_id)},
        "business_profile": {"name": name[:100]},
    }
    if email:
        params["email"] = email
    if country:
        params["country"] = country
    if account_type == "express":
        params["capabilities"] = {"card_payments": {"requested": True}, "transfers": {"requested": True}}
    try:
        created = stripe_client().v1.accounts.create(params=params)
    except stripe.StripeError as error:
        log_event(log, "account_create_failed", level=logging.WARNING, merchant=merchant_id, error=_describe(error))
        raise PaymentsUnavailable("We could not reach Stripe to set up your payouts. Please try again in a moment.") from error
    return created.id


def account_retrieve(account_id: str) -> AccountFacts:
    try:
        account = stripe_client().v1.accounts.retrieve(account_id)
    except stripe.StripeError as error:
        log_event(log, "account_read_failed", level=logging.WARNING, account=account_id, error=_describe(error))
        raise PaymentsUnavailable("We could not read your Stripe account just now.") from error
    return account_facts_from_object(_as_dict(account))


def account_onboarding_url(*, account_id: str, refresh_url: str, return_url: str) -> str:
    """A fresh single-use Account Link (`account_onboarding`): Stripe's hosted onboarding. A link
    lasts a few minutes and works once; an expired one sends the merchant to `refresh_url`,
    which makes a new one."""
    try:
        link = stripe_client().v1.account_links.create(
            params={"account": account_id, "type": "account_onboarding", "refresh_url": refresh_url, "return_url": return_url}
        )
    except stripe.StripeError as error:
        log_event(log, "account_link_failed", level=logging.WARNING, account=account_id, error=_describe(error))
        raise PaymentsUnavailable("We could not open Stripe's onboarding just now. Please try again.") from error
    return link.url


def account_dashboard_url(account_id: str) -> str:
    """A single-use login link to the merchant's Express dashboard."""
    try:
        return stripe_client().v1.accounts.login_links.create(account_id).url
    except stripe.StripeError as error:
        log_event(log, "login_link_failed", level=logging.WARNING, account=account_id, error=_describe(error))
        raise PaymentsUnavailable("We could not open your Stripe dashboard just now. Please try again.") from error


# Customer portal


def portal_url(*, customer_id: str, return_url: str, stripe_account: str = "") -> str:
    try:
        portal = stripe_client().v1.billing_portal.sessions.create(
            params={"customer": customer_id, "return_url": return_url}, options=_on(stripe_account)
        )
    except stripe.StripeError as error:
        log_event(log, "portal_open_failed", level=logging.WARNING, customer=customer_id, error=_describe(error))
        raise PaymentsUnavailable("We could not open your payment details just now. Please try again.") from error
    return portal.url


# Products and promotion codes


class PromotionRefused(Exception):
    """Stripe refused the promotion code as asked (its text taken, ...); the message says why."""


def listing_product_ensure(
    *, listing_id: int, title: str, product_id: str, synced_title: str, stripe_account: str = ""
) -> str:
    """The listing's Stripe Product on `stripe_account` ("" the platform's): created (once, by an
    idempotency key of the listing and account) when `product_id` is "" (none yet, or the one
    known lives on another account), renamed when the listing's title changed since. Raises
    PaymentsUnavailable."""
    try:
        client = stripe_client()
        if not product_id:
            product = client.v1.products.create(
                params={"name": title, "metadata": {"listing_id": str(listing_id)}},
                options=_on(stripe_account, f"listing-{listing_id}-product"),
            )
            product_id = product.id
            synced_title = product.name
        if synced_title != title:
            client.v1.products.update(product_id, params={"name": title}, options=_on(stripe_account))
    except stripe.StripeError as error:
        log_event(log, "product_ensure_failed", level=logging.WARNING, listing=listing_id, error=_describe(error))
        raise PaymentsUnavailable("We could not reach our payment provider. Please try again in a moment.") from error
    return product_id


@dataclass(frozen=True)
class MadePromotionCode:
    coupon_id: str
    promotion_code_id: str


def promotion_code_create(
    *,
    code: str,
    percent_off: int | None,
    amount_off: int | None,
    currency: str,
    max_redemptions: int | None,
    expires_at: dt.datetime | None,
    product_ids: list[str],
    name: str,
    metadata: dict[str, str],
    idempotency_key: str,
    stripe_account: str = "",
) -> MadePromotionCode:
    """A coupon for `product_ids` only, and its customer-facing `code`, on `stripe_account` (a
    merchant's connected account; "" the platform's), where the products must live too. Raises
    PromotionRefused when Stripe refuses the code (an active code with this text exists on that
    account), PaymentsUnavailable otherwise."""
    coupon_params: dict[str, Any] = {
        "duration": "once",
        "name": name[:40],
        "applies_to": {"products": product_ids},
        "metadata": metadata,
    }
    if percent_off is not None:
        coupon_params["percent_off"] = percent_off
    else:
        coupon_params.update(amount_off=amount_off, currency=currency)
    code_params: dict[str, Any] = {"code": code, "metadata": metadata}
    if max_redemptions is not None:
        code_params["max_redemptions"] = max_redemptions
    if expires_at is not None:
        code_params["expires_at"] = int(expires_at.timestamp())
    try:
        client = stripe_client()
        coupon = client.v1.coupons.create(params=coupon_params, options=_on(stripe_account, f"{idempotency_key}-coupon"))
        made = client.v1.promotion_codes.create(
            params={"promotion": {"type": "coupon", "coupon": coupon.id}, **code_params},
            options=_on(stripe_account, f"{idempotency_key}-code"),
        )
    except stripe.InvalidRequestError as error:
        log_event(log, "promotion_code_refused", level=logging.INFO, error=_describe(error))
        if getattr(error, "code", None) == "resource_already_exists":
            raise PromotionRefused(f"The code {code} is already in use. Please choose another.") from error
        raise PromotionRefused("Our payment provider refused this code: " + (error.user_message or "")) from error
    except stripe.StripeError as error:
        log_event(log, "promotion_code_create_failed", level=logging.WARNING, error=_describe(error))
        raise PaymentsUnavailable("We could not reach our payment provider. Please try again in a moment.") from error
    return MadePromotionCode(coupon_id=coupon.id, promotion_code_id=made.id)


@dataclass(frozen=True)
class PromotionCodeUse:
    active: bool
    times_redeemed: int


def promotion_code_active_set(*, promotion_code_id: str, active: bool, stripe_account: str = "") -> PromotionCodeUse:
    """Pause or resume a code on the account it lives on. Raises PromotionRefused when Stripe will
    not resume it (used up, expired, its text taken by another active code), PaymentsUnavailable
    otherwise."""
    try:
        updated = stripe_client().v1.promotion_codes.update(
            promotion_code_id, params={"active": active}, options=_on(stripe_account)
        )
    except stripe.InvalidRequestError as error:
        raise PromotionRefused(error.user_message or "Our payment provider refused the change.") from error
    except stripe.StripeError as error:
        raise PaymentsUnavailable("We could not reach our payment provider. Please try again in a moment.") from error
    return PromotionCodeUse(active=updated.active, times_redeemed=updated.times_redeemed)


def promotion_codes_use(promotion_code_ids: list[str], *, stripe_account: str = "") -> dict[str, PromotionCodeUse]:
    """What Stripe says of each code's use now, read on the account the codes live on. Raises
    PaymentsUnavailable."""
    client = stripe_client()
    found: dict[str, PromotionCodeUse] = {}
    try:
        for promotion_code_id in promotion_code_ids:
            code = client.v1.promotion_codes.retrieve(promotion_code_id, options=_on(stripe_account))
            found[promotion_code_id] = PromotionCodeUse(active=code.active, times_redeemed=code.times_redeemed)
    except stripe.StripeError as error:
        raise PaymentsUnavailable("We could not read your codes' use from our payment provider just now.") from error
    return found


# Webhooks


class WebhookRejected(Exception):
    """The request is not a genuine, readable Stripe event."""


# Stripe's ids are a few dozen characters; StripeEvent stores at most these.
EVENT_ID_MAX_LENGTH = 255
EVENT_TYPE_MAX_LENGTH = 100


def webhook_event(*, payload: bytes, signature_header: str | None, connect: bool = False) -> dict:
    """Verify a webhook against every configured secret (several while rotating) of its endpoint
    (the platform's, or with `connect` the Connect endpoint's own) and return the event: a JSON
    object with a string id and type, whose `data.object` is an object; a Connect event must name
    its connected account (`account`), a platform event must not. NUL characters in its strings,
    which PostgreSQL cannot store, are replaced by U+FFFD."""
    if not signature_header:
        raise WebhookRejected("missing Stripe-Signature header")
    if not signature_header.isascii():
        # Stripe's signatures are ASCII; the SDK's hmac.compare_digest refuses anything else.
        raise WebhookRejected("the Stripe-Signature header is not ASCII")
    secrets = settings.STRIPE_CONNECT_WEBHOOK_SECRETS if connect else settings.STRIPE_WEBHOOK_SECRETS
    if not secrets:
        raise WebhookRejected("no webhook secret is configured")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as error:
        raise WebhookRejected("body is not UTF-8 JSON") from error
    for secret in secrets:
        try:
            # The signature alone: the SDK's construct_event would also build an Event object,
            # which fails with other errors than ValueError on JSON that is not an object.
            stripe.WebhookSignature.verify_header(text, signature_header, secret, stripe.Webhook.DEFAULT_TOLERANCE)
        except stripe.SignatureVerificationError:
            continue
        event = _event_from_json(text)
        account = event.get("account")
        if connect and not (isinstance(account, str) and account.startswith("acct_") and len(account) <= 255):
            raise WebhookRejected("a Connect event must name its connected account")
        if not connect and account is not None:
            raise WebhookRejected("an event of a connected account belongs on the Connect endpoint")
        return event
    raise WebhookRejected("signature does not match")


def _event_from_json(text: str) -> dict:
    try:
        # Plain JSON, not the SDK's object, which turns some numbers into Decimals.
        event = json.loads(text)
    except ValueError as error:
        raise WebhookRejected("body is not JSON") from error
    if not isinstance(event, dict):
        raise WebhookRejected("body is not a Stripe event")
    event = _without_nul(event)
    event_id, event_type, data = event.get("id"), event.get("type"), event.get("data")
    if not isinstance(event_id, str) or not 0 < len(event_id) <= EVENT_ID_MAX_LENGTH:
        raise WebhookRejected("body is not a Stripe event: its id is missing or malformed")
    if not isinstance(event_type, str) or not 0 < len(event_type) <= EVENT_TYPE_MAX_LENGTH:
        raise WebhookRejected("body is not a Stripe event: its type is missing or malformed")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise WebhookRejected("body is not a Stripe event: it has no data.object")
    return event


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    if isinstance(value, dict):
        return {_without_nul(key): _without_nul(item) for key, item in value.items()}
    return value


def signature_fingerprint(signature_header: str | None) -> str:
    """Enough of a signature to tell deliveries apart in logs, never the signature itself."""
    if not signature_header:
        return "-"
    return hashlib.sha256(signature_header.encode()).hexdigest()[:12]


def _describe(error: stripe.StripeError) -> str:
    code = getattr(error, "code", None) or type(error).__name__
    status = getattr(error, "http_status", None)
    return f"{code} (HTTP {status}): {getattr(error, 'user_message', None) or str(error)[:200]}"
