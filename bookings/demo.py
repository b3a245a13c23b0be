"""Demo data: two merchants, each with listings and upcoming slots, so the demo shows that each
merchant sees only their own. Safe to load again: it tops up, never duplicates. (Paid demo
bookings are made by `shop.demo` through the Stripe emulator.)"""

import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from bookings.models import Listing, Merchant, Slot

DEMO_PASSWORD = "slotbook-demo"


@dataclass(frozen=True)
class DemoListing:
    slug: str
    title: str
    description: str
    price_amount: int
    currency: str
    duration_minutes: int
    start_times: tuple[dt.time, ...]
    capacity: int
    place_kind: str = ""
    place_text: str = ""


DEMO_MERCHANTS = {
    "harbour": (
        "Harbour Kayaks",
        "Europe/London",
        (
            DemoListing(
                "sunrise-kayak-tour",
                "Sunrise kayak tour",
                "Paddle out of the old harbour as the town wakes up. Boats, buoyancy aids and a hot drink on return "
                "are included. No experience needed; we keep groups small so everyone gets a guide's attention.",
                4500,
                "gbp",
                120,
                (dt.time(6, 30),),
                8,
                "meeting_point",
                "The slipway at the end of Harbour Road, by the blue kayak racks",
            ),
            DemoListing(
                "sea-cave-explorer",
                "Sea cave explorer",
                "A sheltered route along the cliffs to three sea caves you can only reach from the water.",
                6500,
                "gbp",
                180,
                (dt.time(10, 0), dt.time(14, 0)),
                6,
                "meeting_point",
                "The slipway at the end of Harbour Road, by the blue kayak racks",
            ),
        ),
    ),
    "atelier": (
        "Atelier Nord",
        "Europe/Paris",
        (
            DemoListing(
                "wheel-throwing-evening",
                "Wheel-throwing evening",
                "Two hours on the potter's wheel with a ceramicist. Your two best pieces are glazed, fired and ready "
                "to collect a fortnight later.",
                5500,
                "eur",
                120,
                (dt.time(18, 30),),
                4,
                "address",
                "14 Rue Oberkampf, 75011 Paris",
            ),
            DemoListing(
                "sourdough-masterclass",
                "Sourdough masterclass",
                "From starter to crust: mix, shape and bake your own loaf, and take a jar of our starter home.",
                3900,
                "eur",
                150,
                (dt.time(9, 30),),
                10,
                "address",
                "14 Rue Oberkampf, 75011 Paris",
            ),
        ),
    ),
}


# With Connect on (CONNECT_ENABLED), a third merchant who has started Stripe's onboarding but not
# finished it: their listing shows what a customer sees of a merchant who cannot take payments yet.
DEMO_MERCHANT_NOT_ONBOARDED = "studio"
DEMO_CONNECT_MERCHANTS = {
    DEMO_MERCHANT_NOT_ONBOARDED: (
        "Studio Lumen",
        "America/New_York",
        (
            DemoListing(
                "darkroom-printing-workshop",
                "Darkroom printing workshop",
                "Develop a roll of black-and-white film and make your first silver gelatin prints in our Brooklyn "
                "darkroom. Film, paper and chemistry included.",
                8500,
                "usd",
                180,
                (dt.time(11, 0),),
                6,
                "address",
                "210 Kent Avenue, Brooklyn, NY 11249",
            ),
        ),
    ),
}


def demo_merchants() -> dict:
    """The demo's merchants: the two of every demo, and with Connect the one not onboarded yet."""
    if settings.CONNECT_ENABLED:
        return {**DEMO_MERCHANTS, **DEMO_CONNECT_MERCHANTS}
    return DEMO_MERCHANTS


@transaction.atomic
def demo_data_load(*, days: int = 14) -> dict[str, int]:
    """Create the demo merchants, listings and the next `days` of slots that do not exist yet."""
    user_model = get_user_model()
    created = {"merchants": 0, "listings": 0, "slots": 0}
    today = timezone.localdate()
    for username, (display_name, tz_name, listings) in demo_merchants().items():
        user, user_created = user_model.objects.get_or_create(
            username=username, defaults={"email": f"{username}@example.com"}
        )
        if user_created:
            user.set_password(DEMO_PASSWORD)
            user.save(update_fields=["password"])
        merchant, merchant_created = Merchant.objects.get_or_create(
            user=user,
            defaults={"display_name": display_name, "timezone": tz_name, "support_email": f"{username}@example.com"},
        )
        created["merchants"] += merchant_created
        for spec in listings:
            listing, listing_created = Listing.objects.get_or_create(
                slug=spec.slug,
                defaults={
                    "merchant": merchant,
                    "title": spec.title,
                    "description": spec.description,
                    "price_amount": spec.price_amount,
                    "currency": spec.currency,
                    "duration_minutes": spec.duration_minutes,
                    "place_kind": spec.place_kind,
                    "place_text": spec.place_text,
                },
            )
            created["listings"] += listing_created
            existing = set(listing.slots.values_list("starts_at", flat=True))
            for offset in range(1, days + 1):
                day = today + dt.timedelta(days=offset)
                for start in spec.start_times:
                    starts_at = dt.datetime.combine(day, start, tzinfo=merchant.zone)
                    if starts_at in existing:
                        continue
                    Slot.objects.create(
                        listing=listing, starts_at=starts_at, capacity=spec.capacity, seats_left=spec.capacity
                    )
                    created["slots"] += 1
    return created

