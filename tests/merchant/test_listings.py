"""Creating, editing, archiving and restoring listings from the dashboard."""

import pytest
from django.urls import reverse

from bookings.models import Listing
from tests.factories import make_confirmed_booking, make_listing, make_merchant, make_slot

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed_in(client, merchant):
    client.force_login(merchant.user)
    return client


def listing_data(**overrides) -> dict:
    return {"title": "Sunset paddle", "description": "Bring a towel.", "price": "45.00", "currency": "gbp", "duration_minutes": "90", "cancel_policy": "customer", "cancel_free_hours": "24", "cancel_late_keep_percent": "100", **overrides}


def test_a_new_listing_goes_to_the_catalog_priced_in_minor_units(signed_in, merchant, client):
    response = signed_in.post(reverse("merchant:listing_create"), listing_data())

    listing = Listing.objects.get(merchant=merchant)
    assert response.status_code == 302
    assert response["Location"] == reverse("merchant:listing_detail", args=[listing.pk])
    assert (listing.title, listing.price_amount, listing.currency, listing.duration_minutes) == ("Sunset paddle", 4500, "gbp", 90)
    assert listing.slug == "sunset-paddle"
    assert "Sunset paddle" in client.get(reverse("shop:catalog")).content.decode()


def test_two_listings_with_the_same_title_get_different_slugs(signed_in, merchant):
    signed_in.post(reverse("merchant:listing_create"), listing_data())
    signed_in.post(reverse("merchant:listing_create"), listing_data())

    assert sorted(Listing.objects.values_list("slug", flat=True)) == ["sunset-paddle", "sunset-paddle-2"]


def test_a_title_with_no_latin_letters_still_gets_a_slug(signed_in, merchant):
    signed_in.post(reverse("merchant:listing_create"), listing_data(title="陶芸教室"))

    assert Listing.objects.get().slug == "listing"


@pytest.mark.parametrize(
    "overrides,error",
    [
        ({"price": "0"}, "Enter a price above zero."),
        ({"price": "-5"}, "Enter a price above zero."),
        ({"price": "12.345"}, "GBP amounts have at most 2 decimals."),
        ({"price": "1500.5", "currency": "jpy"}, "JPY amounts have no decimals."),
        # Ten seats of it must fit in one Stripe payment (at most 99,999,999 minor units).
        ({"price": "100000.00"}, "Enter a price of at most £99,999.99."),
        ({"price": "1e999999999"}, "That amount is too large."),
        ({"price": "NaN"}, "Enter an amount such as 12.50."),
        ({"price": "twelve"}, "Enter an amount such as 12.50."),
        ({"price": ""}, "Enter the price of one seat"),
        ({"currency": "btc"}, "Choose one of the currencies in the list."),
        ({"title": "   "}, "Give the listing a title customers will recognise."),
        ({"title": "x" * 121}, "Keep the title to 120 characters or fewer (it has 121)."),
        ({"duration_minutes": "0"}, "A listing lasts at least 1 minute."),
        ({"duration_minutes": "100000"}, "A listing can last at most 1440 minutes"),
        ({"duration_minutes": "1.5"}, "Enter the duration in whole minutes"),
    ],
)
def test_a_listing_that_is_not_right_is_refused_with_a_sentence_beside_the_field(signed_in, overrides, error):
    response = signed_in.post(reverse("merchant:listing_create"), listing_data(**overrides))

    assert response.status_code == 400
    assert error in response.content.decode()
    assert not Listing.objects.exists()


def test_the_largest_price_is_accepted_in_a_currency_without_decimals(signed_in):
    signed_in.post(reverse("merchant:listing_create"), listing_data(price="1000000", currency="jpy"))

    assert Listing.objects.get().price_amount == 1_000_000


def test_html_in_a_title_is_shown_as_text(signed_in, merchant, client):
    signed_in.post(reverse("merchant:listing_create"), listing_data(title="<script>alert(1)</script> & co"))
    listing = Listing.objects.get()

    for url in (reverse("merchant:listing_detail", args=[listing.pk]), reverse("merchant:dashboard"), reverse("shop:catalog")):
        html = client.get(url).content.decode()
        assert "<script>alert(1)</script>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in html


def test_editing_keeps_the_slug_and_the_price_of_bookings_already_made(signed_in, merchant):
    listing = make_listing(merchant=merchant, title="Old", slug="old-name", price_amount=2500, currency="eur")
    booking = make_confirmed_booking(slot=make_slot(listing=listing), quantity=2)

    form = signed_in.get(reverse("merchant:listing_edit", args=[listing.pk])).content.decode()
    response = signed_in.post(reverse("merchant:listing_edit", args=[listing.pk]), listing_data(title="New name", price="30.00", currency="eur"))

    listing.refresh_from_db()
    booking.refresh_from_db()
    assert 'value="25.00"' in form
    assert response.status_code == 302
    assert (listing.title, listing.slug, listing.price_amount) == ("New name", "old-name", 3000)
    assert booking.amount_total == 5000


def test_archiving_takes_a_listing_out_of_the_catalog_and_keeps_its_bookings(signed_in, merchant, client):
    listing = make_listing(merchant=merchant, title="Winter swim")
    booking = make_confirmed_booking(slot=make_slot(listing=listing))

    response = signed_in.post(reverse("merchant:listing_archive", args=[listing.pk]), follow=True)

    listing.refresh_from_db()
    assert "is archived: it has left the catalog, and its bookings stand" in response.content.decode()
    assert not listing.is_active
    assert "Winter swim" not in client.get(reverse("shop:catalog")).content.decode()
    assert client.get(reverse("shop:listing", args=[listing.slug])).status_code == 404
    assert booking.customer_email in client.get(reverse("merchant:booking_list")).content.decode()
    archived_tab = client.get(reverse("merchant:listing_list"), {"show": "archived"}).content.decode()
    assert "Winter swim" in archived_tab


def test_restoring_puts_an_archived_listing_back_in_the_catalog(signed_in, merchant, client):
    listing = make_listing(merchant=merchant, title="Winter swim", is_active=False)

    signed_in.post(reverse("merchant:listing_restore", args=[listing.pk]), follow=True)

    listing.refresh_from_db()
    assert listing.is_active
    assert "Winter swim" in client.get(reverse("shop:catalog")).content.decode()


def test_the_listings_page_shows_upcoming_occupancy_per_listing(signed_in, merchant):
    listing = make_listing(merchant=merchant, title="Pottery")
    first, second = make_slot(listing=listing, capacity=4), make_slot(listing=listing, capacity=6)
    make_confirmed_booking(slot=first, quantity=3)
    make_confirmed_booking(slot=second, quantity=2)
    make_slot(listing=listing, capacity=50, cancelled_at=first.starts_at)  # cancelled: not counted

    html = signed_in.get(reverse("merchant:listing_list")).content.decode()

    assert "5/10" in html
    assert 'aria-label="5 of 10 seats sold"' in html


def test_another_merchant_s_listings_are_not_listed(signed_in, merchant):
    make_listing(merchant=make_merchant(), title="Not mine")

    assert "Not mine" not in signed_in.get(reverse("merchant:listing_list")).content.decode()
