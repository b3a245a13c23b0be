"""Reads that pages depend on: each returns a queryset with its joins already chosen."""

from django.db.models import Prefetch, QuerySet
from django.utils import timezone

from bookings.models import Booking, Listing, Slot


def upcoming_slots() -> QuerySet[Slot]:
    return Slot.objects.filter(starts_at__gt=timezone.now(), cancelled_at__isnull=True).order_by("starts_at", "pk")


def catalog_listings() -> QuerySet[Listing]:
    """Active listings with their upcoming slots prefetched, in two queries whatever their number."""
    return (
        Listing.objects.filter(is_active=True)
        .select_related("merchant")
        .prefetch_related(Prefetch("slots", queryset=upcoming_slots(), to_attr="upcoming"))
        .order_by("title")
    )


def listing_for_sale(slug: str) -> Listing:
    """An active listing by slug, or Listing.DoesNotExist."""
    return Listing.objects.select_related("merchant").get(slug=slug, is_active=True)


def slots_on_sale(listing: Listing) -> QuerySet[Slot]:
    """Upcoming slots a customer may pick, sold-out ones included so the page can say so."""
    return upcoming_slots().filter(listing=listing, is_on_sale=True)


def booking_by_session(session_id: str) -> Booking:
    return Booking.objects.select_related("slot__listing__merchant").get(checkout_session_id=session_id)


def booking_by_token(token: str) -> Booking:
    return Booking.objects.select_related("slot__listing__merchant").prefetch_related("refunds").get(public_token=token)
