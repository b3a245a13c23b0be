"""Driving a booking through the real checkout against the emulator, in-process."""

import json

from django.conf import settings
from django.urls import reverse

from bookings.models import Booking, Merchant
from tests.conftest import TEST_WEBHOOK_SECRET
from tests.payments.webhook_signing import stripe_signature


def open_checkout(client, slot, *, quantity: int = 1, email: str = "ada@example.com", name: str = "Ada Lovelace"):
    """Post the listing's booking form; returns the pending booking and the Checkout URL."""
    response = client.post(
        reverse("shop:checkout_create", args=[slot.listing.slug]),
        {"slot": slot.pk, "quantity": quantity, "customer_email": email, "customer_name": name},
    )
    assert response.status_code == 303, response.content.decode()[:2000]
    booking = Booking.objects.order_by("-pk").first()
    if settings.CONNECT_ENABLED:  # --connect: a direct charge on the merchant's account, with the fee
        from bookings.money import platform_fee

        assert booking.stripe_account_id == Merchant.objects.get(pk=slot.listing.merchant_id).stripe_account_id != ""
        assert booking.application_fee_amount == platform_fee(booking.amount_total)
    return booking, response["Location"]


def deliver_events(client, control, *, types: set[str] | None = None) -> list:
    """Send the emulator's events, oldest first, to the site's webhooks as Stripe would: the
    platform's own to its endpoint, a connected account's (`account` set, Connect) to the Connect
    endpoint, signed with that endpoint's secret."""
    responses = []
    connect_secret = ""
    for event in reversed(control.events()):
        if types and event["type"] not in types:
            continue
        payload = json.dumps(event).encode()
        if event.get("account"):
            connect_secret = connect_secret or control.connect_webhook_secret
            url, secret = reverse("payments:stripe_connect_webhook"), connect_secret
        else:
            url, secret = reverse("payments:stripe_webhook"), TEST_WEBHOOK_SECRET
        responses.append(
            client.post(
                url, data=payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=stripe_signature(payload, secret)
            )
        )
    return responses


def stripe_session_reads(control, session_id: str) -> int:
    """How many times the site has read this Checkout Session from the emulator."""
    return sum(
        1 for r in control.requests() if r.get("method") == "GET" and r.get("path", "").endswith(session_id)
    )


def poll(client, booking):
    """The success page's htmx poll of a booking's status."""
    return client.get(
        reverse("shop:checkout_status", args=[booking.checkout_session_id]), headers={"HX-Request": "true"}
    )


def lose_hold(booking) -> None:
    """End a booking's hold before its payment is heard of (as when the hold ended with the
    payment still on its way), so its seats can go to someone else: its payment then comes late."""
    from django.db import transaction

    from bookings.services.holds import hold_release

    with transaction.atomic():
        hold_release(booking=Booking.objects.select_for_update().get(pk=booking.pk))
