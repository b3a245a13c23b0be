"""Driving a booking through the real checkout against the emulator, in-process."""

import json

from django.urls import reverse

from bookings.models import Booking
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
    return booking, response["Location"]


def deliver_events(client, control, *, types: set[str] | None = None) -> list:
    """Send the emulator's events, oldest first, to the site's webhook as Stripe would."""
    responses = []
    for event in reversed(control.events()):
        if types and event["type"] not in types:
            continue
        payload = json.dumps(event).encode()
        responses.append(
            client.post(
                reverse("payments:stripe_webhook"),
                data=payload,
                content_type="application/json",
                HTTP_STRIPE_SIGNATURE=stripe_signature(payload, TEST_WEBHOOK_SECRET),
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
