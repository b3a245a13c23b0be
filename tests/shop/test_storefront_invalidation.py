"""Every write of what the cached catalog and listing pages show reaches them at once, whether
it comes through a service or through the admin: invalidation hangs on the models, in one place
(bookings.storefront_cache.connect), not on calls each service must remember."""

import datetime as dt
import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from bookings import services
from tests.factories import make_booking, make_confirmed_booking, make_slot, paid_facts

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def caching(settings):
    settings.STOREFRONT_CACHE_SECONDS = 300


def catalog(client) -> str:
    return client.get(reverse("shop:catalog")).content.decode()


def listing_page(client, listing) -> str:
    return client.get(reverse("shop:listing", args=[listing.slug])).content.decode()


def seats_shown(client, slot) -> str | None:
    match = re.search(rf'data-slot-seats="{slot.pk}">([^<]+)<', listing_page(client, slot.listing))
    return match and match.group(1)


def warm(client, listing) -> None:
    catalog(client)
    listing_page(client, listing)


def test_merchant_update_renames_the_merchant_on_the_cached_catalog(client, slot):
    merchant = slot.listing.merchant
    warm(client, slot.listing)

    services.merchant_update(merchant=merchant, display_name="Atelier Nouveau", timezone_name=merchant.timezone, support_email="")

    assert "Atelier Nouveau" in catalog(client)


def test_listing_create_update_archive_and_restore_reach_the_cached_catalog(client, slot):
    merchant = slot.listing.merchant
    warm(client, slot.listing)

    created = services.listing_create(
        merchant=merchant, title="Pottery at dawn", description="", price_amount=1800, currency="eur", duration_minutes=90
    )
    assert "Pottery at dawn" in catalog(client)

    services.listing_update(
        listing=slot.listing, title="Renamed class", description="", price_amount=1250, currency="gbp", duration_minutes=60
    )
    assert "Renamed class" in catalog(client)
    assert "£12.50" in listing_page(client, slot.listing)

    services.listing_archive(listing=created)
    assert "Pottery at dawn" not in catalog(client)
    services.listing_restore(listing=created)
    assert "Pottery at dawn" in catalog(client)


def test_slot_create_and_series_create_reach_the_cached_listing(client, listing):
    first = make_slot(listing=listing)
    warm(client, listing)

    added = services.slot_create(listing=listing, starts_at=timezone.now() + dt.timedelta(days=5), capacity=7)
    assert seats_shown(client, added) == "7 seats left"

    tomorrow = timezone.localtime(timezone.now(), listing.merchant.zone).date() + dt.timedelta(days=1)
    series = services.slot_series_create(
        listing=listing, weekdays=frozenset(range(7)), start_times=(dt.time(6, 15),), first_day=tomorrow, last_day=tomorrow, capacity=3
    )
    assert seats_shown(client, series.created[0]) == "3 seats left"
    assert seats_shown(client, first) == "5 seats left"


def test_capacity_selling_and_cancelling_a_slot_reach_the_cached_listing(client, listing):
    slot, other = make_slot(listing=listing), make_slot(listing=listing, starts_in=dt.timedelta(days=4))
    warm(client, listing)

    services.slot_capacity_change(slot=slot, capacity=9)
    assert seats_shown(client, slot) == "9 seats left"

    services.slot_selling_set(slot=slot, on_sale=False)
    assert seats_shown(client, slot) is None
    services.slot_selling_set(slot=slot, on_sale=True)
    assert seats_shown(client, slot) == "9 seats left"

    services.slot_cancel(slot=other)
    assert seats_shown(client, other) is None


def test_confirming_and_refunding_a_booking_reach_the_cached_listing(client, slot, stripe_settings_unset):
    warm(client, slot.listing)

    services.booking_confirm(facts=paid_facts(make_booking(slot=slot, quantity=2)))
    assert seats_shown(client, slot) == "3 seats left"

    booking = make_confirmed_booking(slot=slot, quantity=1)
    assert seats_shown(client, slot) == "2 seats left"
    services.booking_refund(booking=booking)  # a full refund gives the seat back
    assert seats_shown(client, slot) == "3 seats left"


@pytest.fixture
def admin_client(db):
    user = get_user_model().objects.create_superuser("staff", "staff@example.com", "pw-123456789")
    browser = Client()
    browser.force_login(user)
    return browser


def admin_post(admin_client, obj, data) -> None:
    url = reverse(f"admin:bookings_{obj._meta.model_name}_change", args=[obj.pk])
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]


def test_an_admin_edit_of_a_merchant_reaches_the_cached_catalog(client, admin_client, slot):
    merchant = slot.listing.merchant
    warm(client, slot.listing)

    admin_post(
        admin_client,
        merchant,
        {"user": merchant.user_id, "display_name": "Renamed by staff", "timezone": merchant.timezone, "support_email": ""},
    )

    assert "Renamed by staff" in catalog(client)


def test_an_admin_edit_of_a_listing_reaches_the_cached_catalog_and_listing(client, admin_client, slot):
    listing = slot.listing
    warm(client, listing)

    admin_post(
        admin_client,
        listing,
        {
            "merchant": listing.merchant_id,
            "title": "Fixed by staff",
            "description": "",
            "price_amount": "3100",
            "currency": "eur",
            "duration_minutes": "60",
            "is_active": "on",
            "place_kind": "",
            "reminder_hours": "24",
        },
    )

    assert "Fixed by staff" in catalog(client)
    assert "€31.00" in listing_page(client, listing)


def test_an_admin_edit_of_a_slot_reaches_the_cached_listing(client, admin_client, slot):
    warm(client, slot.listing)
    assert seats_shown(client, slot) == "5 seats left"

    admin_post(admin_client, slot, {})  # is_on_sale unticked: the one field staff may change

    assert seats_shown(client, slot) is None
