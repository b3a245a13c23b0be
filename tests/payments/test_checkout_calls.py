"""How many Stripe calls a checkout start makes: one per start (Checkout makes the Customer of a
visitor who has not proved their address), two once per person for a proven address without a
Customer yet, and none at all for a time that cannot be sold."""

import pytest
from django.test import Client
from django.urls import reverse

from bookings.models import Booking, BookingStatus, ProvenCustomer
from payments import stripe_api
from tests.factories import make_slot
from tests.payments.stripe_flow import open_checkout, poll
from tests.shop.customer_signin import prove_email
from tests.connect_mode import on_account

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _stripe(stripe_emulator, settings):
    settings.STRIPE_STATUS_CHECK_SECONDS = 0
    return stripe_emulator


def stripe_calls(control, before: set[str]) -> list[str]:
    """The API calls the emulator answered since `before` (a set of request ids), oldest first."""
    return [f"{r['method']} {r['path']}" for r in reversed(control.requests()) if r["id"] not in before]


def seen(control) -> set[str]:
    return {r["id"] for r in control.requests()}


def start(client, slot, **kwargs):
    return client.post(
        reverse("shop:checkout_create", args=[slot.listing.slug]),
        {"slot": slot.pk, "quantity": kwargs.get("quantity", 1), "customer_email": kwargs.get("email", "ada@example.com"),
         "customer_name": kwargs.get("name", "Ada Lovelace")},
    )


def test_an_unproven_visitor_opens_checkout_in_one_call_and_checkout_makes_their_customer(slot, stripe_emulator):
    open_checkout(Client(), slot, email="first@example.com")  # the listing's Stripe product is made once
    before = seen(stripe_emulator)
    booking, url = open_checkout(Client(), slot, email="Ada@Example.com", name="Ada Lovelace")
    assert stripe_calls(stripe_emulator, before) == ["POST /v1/checkout/sessions"]
    assert booking.stripe_customer_id == ""

    session = stripe_api.stripe_client().v1.checkout.sessions.retrieve(booking.checkout_session_id, options=on_account(booking))
    assert session.customer is None
    assert session.customer_email == "Ada@Example.com"
    assert session.customer_creation == "always"
    assert url == session.url

    stripe_emulator.pay_session(booking.checkout_session_id, name="Ada Lovelace")
    poll(Client(), booking)
    booking.refresh_from_db()
    assert booking.status == BookingStatus.CONFIRMED
    assert booking.stripe_customer_id.startswith("cus_")
    customer = stripe_api.stripe_client().v1.customers.retrieve(booking.stripe_customer_id, options=on_account(booking))
    assert customer.email == "Ada@Example.com"
    assert not ProvenCustomer.objects.exists()  # an unproven address shares nothing


def test_a_proven_address_pays_as_its_customer_made_once_then_in_one_call(slot, stripe_emulator):
    open_checkout(Client(), slot, email="first@example.com")
    client = Client()
    prove_email(client, "pat@example.com")

    before = seen(stripe_emulator)
    first, _ = open_checkout(client, slot, email="pat@example.com", name="Pat")
    # The address's one Customer is made the first time only: two calls, once per person.
    assert stripe_calls(stripe_emulator, before) == ["POST /v1/customers", "POST /v1/checkout/sessions"]
    proven = ProvenCustomer.objects.get(email="pat@example.com")
    assert first.stripe_customer_id == proven.stripe_customer_id

    before = seen(stripe_emulator)
    second, _ = open_checkout(client, slot, email="PAT@example.com", name="Pat")
    assert stripe_calls(stripe_emulator, before) == ["POST /v1/checkout/sessions"]
    assert second.stripe_customer_id == proven.stripe_customer_id
    session = stripe_api.stripe_client().v1.checkout.sessions.retrieve(second.checkout_session_id, options=on_account(second))
    assert session.customer == proven.stripe_customer_id


def test_no_stripe_call_for_a_time_sold_out_held_full_or_not_on_sale(listing, stripe_emulator):
    sold = make_slot(listing=listing, capacity=1)
    booking, _ = open_checkout(Client(), sold, email="buyer@example.com")
    stripe_emulator.pay_session(booking.checkout_session_id)
    poll(Client(), booking)
    booking.refresh_from_db()
    assert booking.status == BookingStatus.CONFIRMED

    held = make_slot(listing=listing, capacity=2)
    holder, _ = open_checkout(Client(), held, quantity=2, email="holder@example.com")
    assert holder.status == BookingStatus.PENDING

    off_sale = make_slot(listing=listing, capacity=5, is_on_sale=False)
    bookings_before = Booking.objects.count()
    before = seen(stripe_emulator)

    refused = start(Client(), sold, email="late@example.com")
    assert refused.status_code == 409
    refused = start(Client(), held, email="late@example.com")
    assert refused.status_code == 409
    refused = start(Client(), off_sale, email="late@example.com")
    assert refused.status_code == 400

    assert stripe_calls(stripe_emulator, before) == []
    assert Booking.objects.count() == bookings_before
