"""Small factories: each makes one valid object with sensible defaults and takes overrides."""

import datetime as dt
import itertools

from django.contrib.auth import get_user_model
from django.utils import timezone

from bookings.gateway import CheckoutFacts
from bookings.models import Booking, Listing, Merchant, Slot
from bookings.services import booking_reference

_sequence = itertools.count(1)


def make_merchant(*, username: str | None = None, timezone_name: str = "Europe/London", **fields) -> Merchant:
    n = next(_sequence)
    username = username or f"merchant{n}"
    user = get_user_model().objects.create_user(username=username, email=f"{username}@example.com", password="pw-123456789")
    fields.setdefault("display_name", f"Merchant {n}")
    fields.setdefault("support_email", f"{username}@example.com")
    return Merchant.objects.create(user=user, timezone=timezone_name, **fields)


def make_listing(*, merchant: Merchant | None = None, **fields) -> Listing:
    n = next(_sequence)
    fields.setdefault("title", f"Listing {n}")
    fields.setdefault("slug", f"listing-{n}")
    fields.setdefault("price_amount", 2500)
    fields.setdefault("currency", "eur")
    fields.setdefault("duration_minutes", 60)
    return Listing.objects.create(merchant=merchant or make_merchant(), **fields)


def make_slot(*, listing: Listing | None = None, capacity: int = 5, starts_in=dt.timedelta(days=3), **fields) -> Slot:
    fields.setdefault("seats_left", capacity)
    fields.setdefault("starts_at", timezone.now() + starts_in)
    return Slot.objects.create(listing=listing or make_listing(), capacity=capacity, **fields)


def make_booking(*, slot: Slot | None = None, quantity: int = 1, with_session: bool = True, **fields) -> Booking:
    slot = slot or make_slot()
    n = next(_sequence)
    fields.setdefault("customer_email", f"customer{n}@example.com")
    fields.setdefault("customer_name", f"Customer {n}")
    fields.setdefault("amount_total", slot.listing.price_amount * quantity)
    fields.setdefault("currency", slot.listing.currency)
    # As booking_start does: the booking keeps the policy its listing shows when it is made.
    from bookings.policies import booking_terms_fields, listing_terms

    for name, value in booking_terms_fields(listing_terms(slot.listing)).items():
        fields.setdefault(name, value)
    if with_session:
        fields.setdefault("checkout_session_id", f"cs_test_factory{n}")
    return Booking.objects.create(slot=slot, quantity=quantity, **fields)


def paid_facts(booking: Booking, **overrides) -> CheckoutFacts:
    """What Stripe says of a booking's session once paid in full by card."""
    values = dict(
        session_id=booking.checkout_session_id,
        client_reference_id=booking_reference(booking),
        metadata_booking_id=str(booking.pk),
        status="complete",
        payment_status="paid",
        amount_subtotal=booking.amount_total,
        amount_total=booking.amount_total,
        currency=booking.currency,
        payment_intent_id=f"pi_factory{booking.pk}",
        customer_id=f"cus_factory{booking.pk}",
    )
    values.update(overrides)
    return CheckoutFacts(**values)


def make_confirmed_booking(*, slot: Slot | None = None, quantity: int = 1, **fields) -> Booking:
    """A booking paid in full by card and confirmed through `booking_confirm`, seats taken."""
    from bookings.services import booking_confirm

    booking = make_booking(slot=slot, quantity=quantity, **fields)
    booking_confirm(facts=paid_facts(booking))
    booking.refresh_from_db()
    return booking


def make_staff_user(*, username: str = "staff"):
    return get_user_model().objects.create_user(
        username=username, email=f"{username}@example.com", password="pw-123456789", is_staff=True, is_superuser=True
    )
