"""What customers read of a slot's time is the merchant's wall clock, with the zone named, for
merchants whose zone is not the server's TIME_ZONE (Europe/London): one with daylight saving,
on the day its clocks change (Paris), one with a half-hour offset (Kolkata). See tests/zoned.py."""

import urllib.request

import pytest
from django.core import mail
from django.urls import reverse

from tests.payments.stripe_flow import open_checkout, poll
from tests.zoned import CLOCKS, KOLKATA, PARIS, zoned_slot

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=sorted(CLOCKS))
def clock(request):
    return CLOCKS[request.param]


@pytest.fixture
def paid(client, clock, stripe_emulator, settings):
    """A booking of the clock's slot, paid on Stripe's page; nothing confirmed yet."""
    settings.STRIPE_STATUS_CHECK_SECONDS = 0
    slot = zoned_slot(clock)
    booking, _ = open_checkout(client, slot, quantity=2)
    stripe_emulator.pay_session(booking.checkout_session_id, "4242424242424242")
    return booking


def _text(response) -> str:
    return response.content.decode()


def test_the_success_page_shows_the_merchants_wall_clock_and_names_the_zone(client, clock, paid):
    html = _text(client.get(reverse("shop:checkout_success"), {"session_id": paid.checkout_session_id}))

    assert 'data-status="confirmed"' in html
    assert f"<dd>{clock.long} <small class=\"muted\">({clock.zone})</small></dd>" in html


def test_the_success_pages_polled_partial_shows_the_merchants_wall_clock(client, clock, paid):
    first = poll(client, paid)
    cached = poll(client, paid)  # a final panel is answered from the cache the second time

    for response in (first, cached):
        assert response.status_code == 286
        assert f"<dd>{clock.long} <small class=\"muted\">({clock.zone})</small></dd>" in _text(response)


def test_the_booking_page_shows_the_merchants_wall_clock_and_names_the_zone(client, clock, paid):
    poll(client, paid)
    paid.refresh_from_db()

    html = _text(client.get(reverse("shop:booking", args=[paid.public_token])))

    assert f"<dd>{clock.long} <small class=\"muted\">({clock.zone})</small></dd>" in html


def test_the_confirmation_email_shows_the_merchants_wall_clock_and_names_the_zone(client, clock, paid):
    poll(client, paid)

    (message,) = mail.outbox
    assert f"When:      {clock.long} ({clock.zone})" in message.body
    assert f"<td>{clock.long} ({clock.zone})</td>" in message.alternatives[0][0]


def test_stripes_checkout_page_names_the_merchants_wall_clock_and_zone(client, clock, stripe_emulator):
    slot = zoned_slot(clock, display_name="Atelier")
    _, url = open_checkout(client, slot)

    with urllib.request.urlopen(url, timeout=10) as page:
        html = page.read().decode()

    assert f"{clock.long} ({clock.zone}) · Atelier" in html


def test_the_catalog_shows_each_merchants_wall_clock_and_names_each_zone_side_by_side(client, settings):
    settings.STOREFRONT_CACHE_SECONDS = 0
    zoned_slot(PARIS)
    zoned_slot(KOLKATA)

    html = _text(client.get(reverse("shop:catalog")))

    cards = html.split('<article class="card listing-card">')[1:]
    assert len(cards) == 2
    for clock in (PARIS, KOLKATA):
        (card,) = [card for card in cards if f"Walk in {clock.zone}" in card]
        assert f">{clock.short_no_year}</a>" in card
        assert f"Times in {clock.zone}" in card


def test_the_listing_page_shows_the_merchants_wall_clock(client, clock, settings):
    """The slot picker, as it is rendered today (another change rebuilds it): the time and its day."""
    settings.STOREFRONT_CACHE_SECONDS = 0
    slot = zoned_slot(clock)

    html = _text(client.get(reverse("shop:listing", args=[slot.listing.slug])))

    assert clock.zone in html
    assert f">{clock.hhmm}<" in html
    assert f"{clock.wall:%A} {clock.wall.day} {clock.wall:%B}" in html
