"""The storefront's cached fragments: what a final poll costs, and that a cached page never
shows one visitor's CSRF token to another nor seats older than the services' last change."""

import datetime as dt
import re
import time
import zoneinfo

import pytest
from django.core.cache.backends import locmem
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from bookings.models import Slot
from bookings.services import booking_confirm, booking_refund, booking_reschedule, listing_archive, slot_capacity_change
from payments import stripe_api
from shop.receipts import PROVEN_EMAIL_SESSION_KEY
from tests.factories import make_booking, make_confirmed_booking, make_slot, paid_facts

pytestmark = pytest.mark.django_db

CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


@pytest.fixture
def caching(settings):
    settings.STOREFRONT_CACHE_SECONDS = 5
    settings.FINAL_STATUS_CACHE_SECONDS = 60


@pytest.fixture
def stripe_forbidden(monkeypatch):
    """Any read of a Checkout Session from Stripe fails the test."""
    calls = []

    def refuse(session_id):
        calls.append(session_id)
        raise AssertionError("a final booking's status asked Stripe")

    monkeypatch.setattr(stripe_api, "checkout_facts", refuse)
    return calls


def poll(client, booking):
    return client.get(
        reverse("shop:checkout_status", args=[booking.checkout_session_id]) + "?poll=3",
        headers={"HX-Request": "true"},
    )


@pytest.mark.parametrize("cached", [False, True], ids=["cache off", "cache on"])
def test_a_final_poll_makes_no_stripe_call_and_at_most_two_queries(client, slot, settings, stripe_forbidden, cached):
    settings.FINAL_STATUS_CACHE_SECONDS = 60 if cached else 0
    booking = make_confirmed_booking(slot=slot, stripe_customer_id="cus_1")

    for _ in range(3):
        with CaptureQueriesContext(connection) as queries:
            response = poll(client, booking)
        assert response.status_code == 286
        assert "You're booked!" in response.content.decode()
        assert len(queries) <= 2

    assert stripe_forbidden == []


def test_a_repeated_final_poll_is_answered_from_the_cache_without_a_query(client, slot, caching, stripe_forbidden):
    booking = make_confirmed_booking(slot=slot)
    poll(client, booking)

    with CaptureQueriesContext(connection) as queries:
        response = poll(client, booking)

    assert response.status_code == 286
    assert len(queries) == 0


def test_a_final_status_is_the_same_for_every_visitor_and_links_to_the_booking_page_for_receipts(slot, caching):
    booking = make_confirmed_booking(slot=slot, stripe_customer_id="cus_1", customer_email="ada@example.com")
    stranger, owner = Client(enforce_csrf_checks=True), Client(enforce_csrf_checks=True)
    session = owner.session
    session[PROVEN_EMAIL_SESSION_KEY] = "ada@example.com"
    session.save()

    responses = [poll(browser, booking) for browser in (stranger, owner, stranger)]
    with CaptureQueriesContext(connection) as queries:
        again = poll(owner, booking)

    bodies = {response.content for response in responses + [again]}
    assert len(bodies) == 1  # no per-visitor part: one kept panel serves everyone, the proven owner too
    body = bodies.pop().decode()
    assert len(queries) == 0
    # No form, so no CSRF token masked per response and no CSRF cookie set by a poll.
    assert "<form" not in body and "csrfmiddlewaretoken" not in body and "CSRFTOKENMARKER" not in body
    assert all("csrftoken" not in response.cookies for response in responses + [again])
    booking_page = reverse("shop:booking", args=[booking.public_token])
    assert f'<a class="button button--secondary" href="{booking_page}#receipts">Receipts and payment methods</a>' in body
    assert reverse("shop:booking_portal", args=[booking.public_token]) not in body
    # The facts of the booking are still all there.
    for fact in ("You're booked!", "ada@example.com", slot.listing.title, f"#{booking.pk}", "<dt>Seats</dt><dd>1</dd>"):
        assert fact in body


def test_the_receipts_link_of_a_final_status_leads_to_the_form_that_fits_the_visitor(slot, caching):
    booking = make_confirmed_booking(slot=slot, stripe_customer_id="cus_1", customer_email="ada@example.com")
    stranger, owner = Client(enforce_csrf_checks=True), Client(enforce_csrf_checks=True)
    session = owner.session
    session[PROVEN_EMAIL_SESSION_KEY] = "ada@example.com"
    session.save()
    booking_page = reverse("shop:booking", args=[booking.public_token])

    strangers_page = stranger.get(booking_page).content.decode()
    owners_page = owner.get(booking_page).content.decode()

    receipts = re.compile(r'<div id="receipts">(.*?)</div>', re.S)
    strangers_part, owners_part = receipts.search(strangers_page).group(1), receipts.search(owners_page).group(1)
    assert "E-mail me a link to my receipts" in strangers_part
    assert reverse("shop:booking_portal", args=[booking.public_token]) not in strangers_part
    assert f'action="{reverse("shop:booking_portal", args=[booking.public_token])}"' in owners_part
    # The sign-in link asked for from the booking page brings the visitor back to it.
    token = CSRF_INPUT.search(strangers_part).group(1)
    form = {"email": booking.customer_email, "next": booking_page, "csrfmiddlewaretoken": token}
    asked = stranger.post(reverse("shop:receipts_link"), form)
    assert asked.status_code == 200
    assert "a sign-in link is on its way" in asked.content.decode()


def test_a_status_change_replaces_the_cached_final_status(client, slot, caching):
    booking = make_booking(slot=slot)
    free = paid_facts(booking, amount_total=0, payment_status="no_payment_required", payment_intent_id=None)
    booking_confirm(facts=free)
    booking.refresh_from_db()
    assert "You're booked!" in poll(client, booking).content.decode()

    booking_refund(booking=booking)  # nothing was paid: the booking is cancelled

    body = poll(client, booking).content.decode()
    assert 'data-status="cancelled"' in body
    assert "You're booked!" not in body


def test_a_move_replaces_the_cached_final_status_with_the_new_time(client, slot, caching):
    """Found by the simulation: a customer who moved their booking saw the old time on the
    success page's kept panel for up to FINAL_STATUS_CACHE_SECONDS."""
    slot.listing.merchant.timezone = "Asia/Kolkata"
    slot.listing.merchant.save()
    booking = make_confirmed_booking(slot=slot)
    later = make_slot(listing=slot.listing, starts_at=slot.starts_at + dt.timedelta(days=1, minutes=45))
    assert re.search(r"\d\d:\d\d", poll(client, booking).content.decode())

    booking_reschedule(booking=booking, to_slot_id=later.pk)

    body = " ".join(re.sub(r"<[^>]+>", " ", poll(client, booking).content.decode()).split())
    local = later.starts_at.astimezone(zoneinfo.ZoneInfo("Asia/Kolkata"))
    assert f"{local:%H:%M} (Asia/Kolkata)" in body
    old = slot.starts_at.astimezone(zoneinfo.ZoneInfo("Asia/Kolkata"))
    assert f"{old:%H:%M}" not in body


def seats_shown(client, slot) -> str:
    html = client.get(reverse("shop:listing", args=[slot.listing.slug])).content.decode()
    return re.search(rf'data-slot-seats="{slot.pk}">([^<]+)<', html).group(1)


def test_a_confirmed_payment_shows_on_the_cached_listing_at_once(client, slot, caching):
    assert seats_shown(client, slot) == "5 seats left"

    booking_confirm(facts=paid_facts(make_booking(slot=slot, quantity=2)))

    assert seats_shown(client, slot) == "3 seats left"


def test_a_capacity_change_shows_on_the_cached_listing_and_catalog_at_once(client, slot, caching):
    assert seats_shown(client, slot) == "5 seats left"
    client.get(reverse("shop:catalog"))

    slot_capacity_change(slot=slot, capacity=8)

    assert seats_shown(client, slot) == "8 seats left"


def test_a_change_made_around_the_orm_shows_once_the_fragment_expires(client, slot, caching, monkeypatch):
    assert seats_shown(client, slot) == "5 seats left"
    with connection.cursor() as cursor:  # raw SQL: no model signal hears it
        cursor.execute(f"UPDATE {Slot._meta.db_table} SET seats_left = 1 WHERE id = %s", [slot.pk])
    assert seats_shown(client, slot) == "5 seats left"

    later = time.time() + 5.1
    monkeypatch.setattr(locmem.time, "time", lambda: later)

    assert seats_shown(client, slot) == "1 seat left"


def test_the_time_a_customer_came_for_is_chosen_on_the_cached_listing(client, listing, caching):
    make_slot(listing=listing)
    second = make_slot(listing=listing, starts_in=dt.timedelta(days=4))
    url = reverse("shop:listing", args=[listing.slug])

    plain = client.get(url).content.decode()
    chosen = client.get(url, {"slot": second.pk}).content.decode()
    unknown = client.get(url, {"slot": "999999"}).content.decode()

    assert " checked" not in plain
    assert f'name="slot" value="{second.pk}" checked' in chosen
    assert chosen.count(" checked") == 1
    assert " checked" not in unknown


def test_each_visitor_gets_its_own_csrf_token_on_a_cached_listing(slot, caching):
    url = reverse("shop:listing", args=[slot.listing.slug])
    first, second = Client(enforce_csrf_checks=True), Client(enforce_csrf_checks=True)

    bodies = [browser.get(url).content.decode() for browser in (first, second)]

    tokens = [CSRF_INPUT.search(body).group(1) for body in bodies]
    assert tokens[0] != tokens[1]
    assert all("CSRFTOKENMARKER" not in body for body in bodies)
    response = first.post(
        reverse("shop:checkout_create", args=[slot.listing.slug]),
        {
            "slot": slot.pk,
            "quantity": "0",
            "customer_name": "Ada",
            "customer_email": "ada@example.com",
            "csrfmiddlewaretoken": tokens[0],
        },
    )
    assert response.status_code == 400  # past the CSRF check, refused by the form


def test_an_archived_listing_leaves_the_cached_catalog_and_its_page_at_once(client, slot, caching):
    listing = slot.listing
    assert listing.title in client.get(reverse("shop:catalog")).content.decode()
    assert client.get(reverse("shop:listing", args=[listing.slug])).status_code == 200

    listing_archive(listing=listing)

    assert listing.title not in client.get(reverse("shop:catalog")).content.decode()
    assert client.get(reverse("shop:listing", args=[listing.slug])).status_code == 404


def test_a_signed_in_merchant_never_gets_the_page_cached_for_visitors(client, slot, caching):
    visitor = Client()
    assert "Merchant sign-in" in visitor.get(reverse("shop:catalog")).content.decode()
    client.force_login(slot.listing.merchant.user)

    for url in (reverse("shop:catalog"), reverse("shop:listing", args=[slot.listing.slug])):
        assert "Sign out" in client.get(url).content.decode()
        body = visitor.get(url).content.decode()
        assert "Merchant sign-in" in body
        assert "Sign out" not in body


def test_a_waiting_message_is_shown_on_a_cached_listing(client, slot, caching):
    url = reverse("shop:listing", args=[slot.listing.slug])
    client.get(url)

    body = client.get(url, {"checkout": "cancelled"}, follow=True).content.decode()

    assert "Checkout cancelled. Nothing was charged" in body
    assert "Checkout cancelled" not in client.get(url).content.decode()
