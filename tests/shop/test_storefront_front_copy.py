"""With the cache shared through Redis, each process keeps a copy of the storefront's fragments in
front of it (bookings.storefront_cache.FrontCopy): a page read again costs no round trip to Redis,
a change made in the process shows at once, and one made in another process within
STOREFRONT_VERSION_CHECK_SECONDS. The same for a final booking's kept status panel. Runs against
the local Redis (database 10)."""

import os

import pytest
from django.core.cache import caches
from django.urls import reverse

from bookings import storefront_cache
from bookings.services import booking_confirm, booking_refund, slot_capacity_change
from bookings.storefront_cache import FrontCopy
from tests.factories import make_booking, make_confirmed_booking, make_slot, paid_facts

pytestmark = pytest.mark.django_db

REDIS_URL = "redis://127.0.0.1:6379/10"


def redis_refusal() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        return f"Redis does not answer at {REDIS_URL} ({error})"
    return ""


class Clock:
    """time.monotonic as the storefront cache sees it, moved by the test (no sleeps)."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def shared_cache(settings, monkeypatch):
    refusal = redis_refusal()
    if refusal:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{refusal}. CI must run these: .ci/run starts Redis.")
        pytest.skip(refusal)
    settings.CACHES = {"default": {"BACKEND": "common.cache.SharedClientRedisCache", "LOCATION": REDIS_URL,
                                   "KEY_PREFIX": "front-copy-test"}}
    settings.STOREFRONT_CACHE_SECONDS = 5
    settings.STOREFRONT_VERSION_CHECK_SECONDS = 0.25
    caches["default"].clear()
    clock = Clock()
    monkeypatch.setattr(storefront_cache.time, "monotonic", clock)
    this_process = FrontCopy()
    monkeypatch.setattr(storefront_cache, "front_copy", this_process)
    yield clock
    caches["default"].clear()


def redis_reads(monkeypatch) -> list[str]:
    """Every key the default cache is asked for from now on."""
    asked: list[str] = []
    real_get = type(caches["default"]).get

    def get(self, key, default=None, version=None):
        asked.append(key)
        return real_get(self, key, default, version)

    monkeypatch.setattr(type(caches["default"]), "get", get)
    return asked


def seats_on_listing_page(client, slot) -> str:
    return client.get(reverse("shop:listing", args=[slot.listing.slug])).content.decode()


def test_a_page_read_again_asks_redis_nothing(client, shared_cache, monkeypatch):
    slot = make_slot(capacity=7)
    assert FrontCopy.wanted()
    first = client.get(reverse("shop:catalog"))
    asked = redis_reads(monkeypatch)
    again = client.get(reverse("shop:catalog"))
    assert again.status_code == 200 and slot.listing.title in again.content.decode()
    assert [key for key in asked if key.startswith("storefront")] == []
    assert again.content.decode().count(slot.listing.title) == first.content.decode().count(slot.listing.title)


def test_a_change_made_in_this_process_shows_at_once(client, shared_cache):
    slot = make_slot(capacity=7)
    assert "7 seats left" in seats_on_listing_page(client, slot)
    slot_capacity_change(slot=slot, capacity=9)
    assert "9 seats left" in seats_on_listing_page(client, slot)


def test_another_process_sees_a_change_within_the_version_check(client, shared_cache, monkeypatch):
    slot = make_slot(capacity=7)
    assert "7 seats left" in seats_on_listing_page(client, slot)
    known = storefront_cache.front_copy.version()
    # Another web process changes the time: it moves the shared version (and its own copy's).
    other_process = FrontCopy()
    monkeypatch.setattr(storefront_cache, "front_copy", other_process)
    slot_capacity_change(slot=slot, capacity=9)
    assert "9 seats left" in seats_on_listing_page(client, slot)
    this_process = FrontCopy()
    this_process.version_moved(known)  # what it read before the change
    monkeypatch.setattr(storefront_cache, "front_copy", this_process)
    shared_cache.now += 0.1  # within the check: the fragment of the version it knows, from Redis
    assert "7 seats left" in seats_on_listing_page(client, slot)
    shared_cache.now += 0.2  # past it: the shared version is read again
    assert "9 seats left" in seats_on_listing_page(client, slot)
    assert this_process.version() != known
    assert "9 seats left" in seats_on_listing_page(client, slot)


def test_the_copy_keeps_at_most_its_bound_and_expires_fragments(shared_cache):
    copy = FrontCopy(max_entries=3)
    for n in range(5):
        copy.set(f"storefront:test:{n}", f"fragment {n}", 5)
    assert len(copy._fragments) == 3 and list(copy._fragments) == [f"storefront:test:{n}" for n in (2, 3, 4)]
    caches["default"].delete("storefront:test:4")
    assert copy.get("storefront:test:4") == "fragment 4"  # from the copy, Redis not asked
    shared_cache.now += 5.1
    assert copy.get("storefront:test:4") is None  # expired here, and gone from Redis


def test_without_a_shared_cache_there_is_no_copy(settings):
    assert not FrontCopy.wanted()  # the tests' per-process cache
    settings.STOREFRONT_VERSION_CHECK_SECONDS = 0
    assert not FrontCopy.wanted()


def final_poll(client, booking):
    return client.get(reverse("shop:checkout_status", args=[booking.checkout_session_id]) + "?poll=3",
                      headers={"HX-Request": "true"})


@pytest.fixture
def panel_copies(shared_cache, settings, monkeypatch):
    """This process's copies of kept status panels and their versions, fresh for the test."""
    settings.FINAL_STATUS_CACHE_SECONDS = 60
    monkeypatch.setattr(storefront_cache, "status_versions", storefront_cache.StatusVersions())
    monkeypatch.setattr(storefront_cache, "status_panels", FrontCopy(max_entries=16))
    return shared_cache


def test_a_final_poll_read_again_asks_redis_only_for_the_guessing_limit(client, panel_copies, monkeypatch):
    booking = make_confirmed_booking(slot=make_slot(capacity=3))
    assert final_poll(client, booking).status_code == 286
    asked = redis_reads(monkeypatch)

    again = final_poll(client, booking)

    assert again.status_code == 286 and "You're booked!" in again.content.decode()
    assert [key for key in asked if "storefront" in key] == []  # neither the panel nor its version


def test_a_final_poll_past_the_check_asks_redis_only_for_the_generation_while_no_booking_changed(
    client, panel_copies, monkeypatch
):
    booking = make_confirmed_booking(slot=make_slot(capacity=3))
    other = make_booking(slot=make_slot(capacity=3))
    assert final_poll(client, booking).status_code == 286
    panel_copies.now += 10  # long past the check, nothing changed meanwhile
    asked = redis_reads(monkeypatch)

    assert "You're booked!" in final_poll(client, booking).content.decode()
    assert [key for key in asked if "storefront" in key] == ["storefront:status-generation"]

    # Another process changes some other booking: the generation moves, and past the check this
    # booking's own version is read again (and found unchanged).
    this_process = storefront_cache.status_versions
    monkeypatch.setattr(storefront_cache, "status_versions", storefront_cache.StatusVersions())
    booking_confirm(facts=paid_facts(other, amount_total=0, payment_status="no_payment_required",
                                     payment_intent_id=None))
    monkeypatch.setattr(storefront_cache, "status_versions", this_process)
    asked.clear()
    panel_copies.now += 0.3
    assert "You're booked!" in final_poll(client, booking).content.decode()
    storefront_keys = [key for key in asked if "storefront" in key]
    assert storefront_keys[0] == "storefront:status-generation" and len(storefront_keys) == 2
    assert "status-version" in storefront_keys[1]


def test_another_process_shows_a_changed_booking_within_the_version_check(client, panel_copies, monkeypatch):
    booking = make_booking(slot=make_slot(capacity=3))
    booking_confirm(facts=paid_facts(booking, amount_total=0, payment_status="no_payment_required",
                                     payment_intent_id=None))
    booking.refresh_from_db()
    assert "You're booked!" in final_poll(client, booking).content.decode()
    # Another process cancels it: the shared version moves (and that process's own copy).
    this_process = storefront_cache.status_versions
    monkeypatch.setattr(storefront_cache, "status_versions", storefront_cache.StatusVersions())
    booking_refund(booking=booking)
    monkeypatch.setattr(storefront_cache, "status_versions", this_process)

    panel_copies.now += 0.1  # within the check: this process still shows the panel it keeps
    assert "You're booked!" in final_poll(client, booking).content.decode()
    panel_copies.now += 0.2  # past it: the version is read again, and the new panel rendered
    body = final_poll(client, booking).content.decode()
    assert 'data-status="cancelled"' in body and "You're booked!" not in body


def test_a_booking_changed_in_this_process_shows_at_once(client, panel_copies):
    booking = make_booking(slot=make_slot(capacity=3))
    booking_confirm(facts=paid_facts(booking, amount_total=0, payment_status="no_payment_required",
                                     payment_intent_id=None))
    booking.refresh_from_db()
    assert "You're booked!" in final_poll(client, booking).content.decode()

    booking_refund(booking=booking)

    assert 'data-status="cancelled"' in final_poll(client, booking).content.decode()
