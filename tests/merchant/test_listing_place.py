"""A listing's place and reminder lead time, set in the merchant's listing form: each kind of
place with what it needs, an online link only over https, and a refused form writes nothing."""

import pytest
from django.db import IntegrityError, transaction
from django.urls import reverse

from bookings.models import Listing, PlaceKind
from bookings.services import BookingError, listing_update
from tests.factories import make_listing

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed_in(client, merchant):
    client.force_login(merchant.user)
    return client


def listing_data(**overrides) -> dict:
    return {
        "title": "Harbour walk",
        "description": "",
        "price": "20.00",
        "currency": "eur",
        "duration_minutes": "90",
        "cancel_policy": "customer",
        "cancel_free_hours": "24",
        "cancel_late_keep_percent": "100",
        "place_kind": "",
        "place_text": "",
        "online_url": "",
        "reminder_hours": "24",
        **overrides,
    }


def test_a_listing_is_created_with_an_address_and_a_reminder_two_days_before(signed_in, merchant):
    response = signed_in.post(
        reverse("merchant:listing_create"),
        listing_data(place_kind="address", place_text="  12 Quai des Belges,\n 13001 Marseille ", reminder_hours="48"),
    )

    assert response.status_code == 302
    listing = Listing.objects.get(merchant=merchant)
    assert (listing.place_kind, listing.place_text, listing.online_url) == ("address", "12 Quai des Belges, 13001 Marseille", "")
    assert listing.reminder_hours == 48
    assert listing.map_url == "https://www.openstreetmap.org/search?query=12+Quai+des+Belges%2C+13001+Marseille"


def test_an_online_listing_keeps_its_https_link_and_drops_text_of_other_kinds(signed_in, merchant):
    response = signed_in.post(
        reverse("merchant:listing_create"),
        listing_data(place_kind="online", place_text="left over", online_url="HTTPS://meet.example.com/harbour?pwd=1", reminder_hours="0"),
    )

    assert response.status_code == 302
    listing = Listing.objects.get(merchant=merchant)
    assert (listing.place_kind, listing.place_text) == ("online", "")
    assert listing.online_url == "https://meet.example.com/harbour?pwd=1"
    assert listing.reminder_hours == 0
    assert listing.map_url == ""


@pytest.mark.parametrize(
    "overrides,field,error",
    [
        ({"place_kind": "online", "online_url": "http://meet.example.com/x"}, "online_url", "starts with https://"),
        ({"place_kind": "online", "online_url": "meet.example.com/x"}, "online_url", "starts with https://"),
        ({"place_kind": "online", "online_url": "javascript:alert(1)"}, "online_url", "starts with https://"),
        ({"place_kind": "online", "online_url": "https://"}, "online_url", "starts with https://"),
        ({"place_kind": "online", "online_url": ""}, "online_url", "Enter the link customers join with"),
        ({"place_kind": "address", "place_text": "   "}, "place_text", "Enter the address customers go to."),
        ({"place_kind": "meeting_point", "place_text": ""}, "place_text", "Enter the meeting point customers go to."),
        ({"place_kind": "address", "place_text": "x" * 301}, "place_text", "Keep the place to 300 characters or fewer"),
        ({"place_kind": "moon"}, "place_kind", "Choose where it happens from the list."),
        ({"reminder_hours": "5"}, "reminder_hours", "Choose when to remind customers from the list."),
        ({"reminder_hours": "-1"}, "reminder_hours", "Choose when to remind customers from the list."),
        ({"reminder_hours": "twelve"}, "reminder_hours", "Choose when to remind customers from the list."),
    ],
)
def test_a_place_or_reminder_that_cannot_be_used_is_refused_with_a_sentence_and_nothing_is_written(
    signed_in, merchant, overrides, field, error
):
    response = signed_in.post(reverse("merchant:listing_create"), listing_data(**overrides))

    assert response.status_code == 400
    assert error in " ".join(response.context["form"].errors[field])
    assert not Listing.objects.filter(merchant=merchant).exists()


def test_editing_a_listing_changes_its_place_and_shows_it_in_the_form(signed_in, merchant):
    listing = make_listing(merchant=merchant, place_kind="address", place_text="Old pier")

    form_page = signed_in.get(reverse("merchant:listing_edit", args=[listing.pk])).content.decode()
    assert 'value="Old pier"' in form_page
    response = signed_in.post(
        reverse("merchant:listing_edit", args=[listing.pk]),
        listing_data(place_kind="meeting_point", place_text="Under the clock, Gare Saint-Charles", reminder_hours="3"),
    )

    assert response.status_code == 302
    listing.refresh_from_db()
    assert (listing.place_kind, listing.place_text, listing.reminder_hours) == (
        "meeting_point",
        "Under the clock, Gare Saint-Charles",
        3,
    )
    assert listing.map_url == ""  # a meeting point is described, not searched


def test_an_edit_refused_for_its_link_leaves_the_listing_as_it_was(signed_in, merchant):
    listing = make_listing(merchant=merchant, title="Harbour walk", place_kind="address", place_text="Old pier")

    response = signed_in.post(
        reverse("merchant:listing_edit", args=[listing.pk]),
        listing_data(title="Renamed", place_kind="online", online_url="http://insecure.example.com"),
    )

    assert response.status_code == 400
    listing.refresh_from_db()
    assert (listing.title, listing.place_kind, listing.place_text) == ("Harbour walk", "address", "Old pier")


def test_the_service_refuses_a_plain_http_link_whichever_door_calls_it(merchant):
    listing = make_listing(merchant=merchant)

    with pytest.raises(BookingError, match="starts with https://") as refused:
        listing_update(
            listing=listing, title="x", description="", price_amount=100, currency="eur", duration_minutes=30,
            place_kind=PlaceKind.ONLINE, online_url="http://meet.example.com",
        )
    assert refused.value.field == "online_url"


def test_the_database_refuses_an_online_place_without_an_https_link(merchant):
    with pytest.raises(IntegrityError), transaction.atomic():
        make_listing(merchant=merchant, place_kind="online", online_url="http://meet.example.com")
