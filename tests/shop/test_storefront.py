import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from bookings.models import Booking, Slot
from tests.factories import make_booking, make_listing, make_slot

pytestmark = pytest.mark.django_db


def add_slots(listing, count: int) -> None:
    start = timezone.now() + dt.timedelta(days=1)
    Slot.objects.bulk_create(
        Slot(listing=listing, starts_at=start + dt.timedelta(hours=i), capacity=4, seats_left=4) for i in range(count)
    )


def queries_for(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


@pytest.mark.parametrize("url_name", ["catalog", "listing"])
def test_pages_issue_the_same_number_of_queries_with_10_and_1000_slots(client, url_name):
    small, large = make_listing(), make_listing()
    for extra in range(3):
        make_listing()
    add_slots(small, 10)
    add_slots(large, 1000)

    if url_name == "catalog":
        url = reverse("shop:catalog")
        few = queries_for(client, url)
        add_slots(small, 990)
        many = queries_for(client, url)
    else:
        few = queries_for(client, reverse("shop:listing", args=[small.slug]))
        many = queries_for(client, reverse("shop:listing", args=[large.slug]))
    assert few == many


def test_catalog_shows_active_listings_with_prices_and_hides_archived_ones(client):
    shown = make_listing(title="Evening kayak", price_amount=4500, currency="gbp")
    make_listing(title="Old workshop", is_active=False)

    html = client.get(reverse("shop:catalog")).content.decode()

    assert "Evening kayak" in html
    assert "£45.00" in html
    assert "Old workshop" not in html
    assert reverse("shop:listing", args=[shown.slug]) in html


def test_listing_page_shows_seats_left_and_sold_out_slots(client, listing):
    open_slot = make_slot(listing=listing, capacity=5, seats_left=3)
    sold_out = make_slot(listing=listing, capacity=5, seats_left=0, starts_in=dt.timedelta(days=4))

    html = client.get(reverse("shop:listing", args=[listing.slug])).content.decode()

    assert f'data-slot-seats="{open_slot.pk}">3 seats left' in html
    assert f'data-slot-seats="{sold_out.pk}">Sold out' in html


def test_archived_and_unknown_listings_are_404(client):
    archived = make_listing(is_active=False)

    assert client.get(reverse("shop:listing", args=[archived.slug])).status_code == 404
    assert client.get(reverse("shop:listing", args=["no-such-thing"])).status_code == 404


def booking_form(chosen_slot, **overrides):
    data = {"slot": chosen_slot.pk, "quantity": 1, "customer_name": "Ada Lovelace", "customer_email": "ada@example.com"}
    data.update(overrides)
    return data


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"quantity": 0}, "Book at least one seat."),
        ({"quantity": 11}, "One booking can take up to 10 seats."),
        ({"quantity": "lots"}, "Enter a number of seats."),
        ({"quantity": "9" * 40}, "One booking can take up to 10 seats."),
        ({"customer_email": "not-an-email"}, "Enter a valid e-mail address."),
        ({"customer_name": "   "}, "Tell us the name to put on the booking."),
        ({"slot": "999999"}, "That time is no longer available."),
        ({"slot": "abc"}, "That time is no longer available."),
    ],
)
def test_invalid_booking_forms_are_refused_with_a_sentence_and_write_nothing(client, slot, overrides, message):
    response = client.post(reverse("shop:checkout_create", args=[slot.listing.slug]), booking_form(slot, **overrides))

    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Booking.objects.exists()


def test_a_booking_dearer_than_one_stripe_payment_is_refused_with_a_sentence(client, stripe_settings_unset):
    # A price set before the form's cap, or a raised BOOKING_MAX_QUANTITY, must not reach Stripe.
    slot = make_slot(listing=make_listing(price_amount=40_000_000, currency="eur"), capacity=10, seats_left=10)

    response = client.post(reverse("shop:checkout_create", args=[slot.listing.slug]), booking_form(slot, quantity=3))

    assert response.status_code == 400
    assert "One payment can be at most €999,999.99: book fewer seats at a time." in response.content.decode()
    assert not Booking.objects.exists()


def test_more_seats_than_are_left_is_refused_before_any_payment(client, listing, stripe_settings_unset):
    slot = make_slot(listing=listing, capacity=5, seats_left=2)

    response = client.post(reverse("shop:checkout_create", args=[listing.slug]), booking_form(slot, quantity=3))

    assert response.status_code == 409
    assert "Only 2 seats are left at this time" in response.content.decode()
    assert not Booking.objects.exists()


def test_a_sold_out_slot_gets_a_clear_message_and_no_session(client, listing, stripe_settings_unset):
    slot = make_slot(listing=listing, capacity=5, seats_left=0)

    response = client.post(reverse("shop:checkout_create", args=[listing.slug]), booking_form(slot))

    assert response.status_code == 409
    assert "This time is sold out" in response.content.decode()
    assert not Booking.objects.exists()


def test_without_stripe_configured_checkout_fails_politely_and_leaves_no_pending_booking(
    client, slot, stripe_settings_unset
):
    response = client.post(reverse("shop:checkout_create", args=[slot.listing.slug]), booking_form(slot))

    assert response.status_code == 503
    assert "Please try again" in response.content.decode()
    assert not Booking.objects.exclude(status="expired").exists()


@pytest.mark.parametrize("session_id", ["", "nonsense", "cs_test_" + "a" * 300, "cs_test_<script>", "cs_test_unknown1"])
def test_success_page_and_status_partial_are_404_for_unknown_or_malformed_sessions(client, session_id):
    assert client.get(reverse("shop:checkout_success"), {"session_id": session_id}).status_code == 404
    if session_id:
        assert client.get(reverse("shop:checkout_status", args=[session_id])).status_code == 404


def test_booking_page_needs_the_exact_token(client, booking):
    assert client.get(reverse("shop:booking", args=[booking.public_token])).status_code == 200
    last = booking.public_token[-1]
    one_off = booking.public_token[:-1] + ("y" if last == "x" else "x")
    assert client.get(reverse("shop:booking", args=[one_off])).status_code == 404


def test_final_booking_status_is_answered_from_the_database_with_286(client, booking, settings):
    settings.STRIPE_SECRET_KEY = ""  # any call to Stripe would fail loudly
    booking.status = "confirmed"
    booking.amount_paid = booking.amount_total
    booking.save()

    response = client.get(
        reverse("shop:checkout_status", args=[booking.checkout_session_id]), headers={"HX-Request": "true"}
    )

    assert response.status_code == 286
    body = response.content.decode()
    assert "You're booked!" in body
    assert "hx-trigger" not in body


def test_cancelled_checkout_returns_to_the_listing_with_a_message(client, listing):
    response = client.get(reverse("shop:listing", args=[listing.slug]), {"checkout": "cancelled"}, follow=True)

    assert "Checkout cancelled. Nothing was charged" in response.content.decode()


def test_names_with_html_are_escaped_on_the_booking_page(client, slot):
    booking = make_booking(slot=slot, customer_name="<script>alert(1)</script>")

    html = client.get(reverse("shop:booking", args=[booking.public_token])).content.decode()

    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_a_booking_token_with_a_nul_byte_is_a_404_not_a_database_error(client, booking):
    # PostgreSQL refuses a NUL in a query's text with an error, which was a 500.
    assert client.get(reverse("shop:booking", args=["a\x00b"])).status_code == 404
    assert client.post(reverse("shop:booking_portal", args=[booking.public_token + "\x00"])).status_code == 404
    assert client.get(reverse("shop:booking", args=[booking.public_token])).status_code == 200


def test_a_session_id_with_a_trailing_newline_is_not_a_checkout_session_id():
    from payments.checkout import is_checkout_session_id

    assert is_checkout_session_id("cs_test_abc")
    assert not is_checkout_session_id("cs_test_abc\n")


def test_catalog_counts_every_upcoming_time_and_shows_the_next_three(client):
    listing = make_listing(title="Harbour tour")
    for day in range(1, 6):
        make_slot(listing=listing, starts_in=dt.timedelta(days=day))

    html = client.get(reverse("shop:catalog")).content.decode()

    assert "5 upcoming times" in html
    assert html.count(f'href="/l/{listing.slug}/?slot=') == 3
