"""Reads that pages depend on: each returns a queryset with its joins already chosen."""

from django.db.models import Prefetch, QuerySet
from django.utils import timezone

from bookings.models import Listing, Slot


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
