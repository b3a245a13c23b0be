"""With Connect on, the storefront says a merchant whose connected account cannot take charges is
"not taking bookings yet" — on the listing (kept in the cache) and its catalog card — and offers
checkout again as soon as `account.updated` says the account can charge, and stops when it says
it cannot, without waiting for the cached page to expire."""

import pytest
from django.db import connection
from django.urls import reverse

from bookings.models import Merchant
from tests.factories import make_listing, make_merchant, make_slot
from tests.payments.test_connect import connect, signed_post  # noqa: F401 (the fixture)

pytestmark = [pytest.mark.django_db, pytest.mark.own_connect_accounts]


def account_updated(account: str, *, event_id: str, created: int, can_charge: bool) -> dict:
    return {
        "id": event_id, "object": "event", "type": "account.updated", "account": account, "created": created,
        "data": {"object": {
            "id": account, "object": "account", "charges_enabled": can_charge, "payouts_enabled": can_charge,
            "details_submitted": can_charge,
            "requirements": {"currently_due": [] if can_charge else ["external_account"],
                             "disabled_reason": None if can_charge else "requirements.past_due"},
        }},
    }


def listing_page(client, slug: str) -> str:
    response = client.get(reverse("shop:listing", args=[slug]))
    assert response.status_code == 200
    return response.content.decode()


def test_a_merchant_whose_account_cannot_charge_is_not_taking_bookings_until_account_updated_says_it_can(
    client, connect, settings  # noqa: F811
):
    settings.STOREFRONT_CACHE_SECONDS = 300
    merchant = make_merchant(display_name="Atelier Lumière", timezone_name="Europe/Paris")
    Merchant.objects.filter(pk=merchant.pk).update(stripe_account_id="acct_1NotOnboarded00", stripe_account_type="express")
    listing = make_listing(merchant=merchant, title="Night photo walk", price_amount=2500, currency="eur")
    make_slot(listing=listing, capacity=5)
    sentence = "Atelier Lumière is not taking bookings yet. Please check back soon."

    page = listing_page(client, listing.slug)
    assert sentence in page and "Continue to payment" not in page
    catalog = client.get(reverse("shop:catalog")).content.decode()
    assert "Not taking bookings yet" in catalog and "Choose a time" not in catalog

    # The page is kept: a write no signal hears (raw SQL) does not show...
    with connection.cursor() as cursor:
        cursor.execute("UPDATE bookings_merchant SET display_name = %s WHERE id = %s", ["Renamed quietly", merchant.pk])
    assert sentence in listing_page(client, listing.slug)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE bookings_merchant SET display_name = %s WHERE id = %s", ["Atelier Lumière", merchant.pk])

    # ...but Stripe saying the account can charge does, at once.
    enabled = account_updated("acct_1NotOnboarded00", event_id="evt_enabled", created=2_000_000_000, can_charge=True)
    assert signed_post(client, enabled, connect=True).status_code == 200
    page = listing_page(client, listing.slug)
    assert "not taking bookings" not in page and "Continue to payment" in page
    assert "Choose a time" in client.get(reverse("shop:catalog")).content.decode()

    # And the account losing its charges stops sales on the page again.
    disabled = account_updated("acct_1NotOnboarded00", event_id="evt_disabled", created=2_000_000_100, can_charge=False)
    assert signed_post(client, disabled, connect=True).status_code == 200
    page = listing_page(client, listing.slug)
    assert sentence in page and "Continue to payment" not in page


def test_without_connect_every_merchant_sells_and_the_page_kept_with_connect_is_not_served(client, connect, settings):  # noqa: F811
    settings.STOREFRONT_CACHE_SECONDS = 300
    merchant = make_merchant(display_name="Own Tours")
    listing = make_listing(merchant=merchant, price_amount=2500)
    make_slot(listing=listing, capacity=5)
    assert "Own Tours is not taking bookings yet" in listing_page(client, listing.slug)
    settings.CONNECT_ENABLED = False
    page = listing_page(client, listing.slug)
    assert "not taking bookings" not in page and "Continue to payment" in page
