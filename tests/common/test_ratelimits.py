import pytest
from django.urls import reverse

from bookings.models import Booking
from common.ratelimits import client_ip, client_network
from tests.factories import make_slot

pytestmark = pytest.mark.django_db


def test_guessing_booking_tokens_is_stopped_with_a_clear_429(client, booking, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "token_misses_per_ip": "5/10m"}
    for attempt in range(5):
        assert client.get(reverse("shop:booking", args=[f"guess{attempt}"])).status_code == 404

    blocked = client.get(reverse("shop:booking", args=[booking.public_token]))

    assert blocked.status_code == 429
    assert "Please slow down" in blocked.content.decode()
    assert int(blocked["Retry-After"]) > 0
    other_address = client.get(reverse("shop:booking", args=[booking.public_token]), REMOTE_ADDR="10.9.8.7")
    assert other_address.status_code == 200


def test_guessing_checkout_session_ids_counts_towards_the_same_limit(client, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "token_misses_per_ip": "3/10m"}
    for attempt in range(3):
        url = reverse("shop:checkout_status", args=[f"cs_test_guess{attempt}"])
        assert client.get(url).status_code == 404

    assert client.get(reverse("shop:checkout_success"), {"session_id": "cs_test_x"}).status_code == 429


def test_valid_booking_lookups_do_not_count_as_guesses(client, booking, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "token_misses_per_ip": "2/10m"}
    for _ in range(10):
        assert client.get(reverse("shop:booking", args=[booking.public_token])).status_code == 200


def checkout_post(client, slot, email="ada@example.com", address="127.0.0.1"):
    data = {"slot": slot.pk, "quantity": 1, "customer_name": "Ada", "customer_email": email}
    return client.post(reverse("shop:checkout_create", args=[slot.listing.slug]), data, REMOTE_ADDR=address)


def test_checkouts_are_limited_per_address(client, settings, stripe_settings_unset):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "checkout_per_ip": "3/10m"}
    slot = make_slot()
    statuses = [checkout_post(client, slot, email=f"p{i}@example.com").status_code for i in range(4)]

    assert statuses == [503, 503, 503, 429]
    assert checkout_post(client, slot, email="p9@example.com", address="10.1.1.1").status_code == 503


def test_checkouts_are_limited_per_customer_email_from_one_address(client, settings, stripe_settings_unset):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "checkout_per_email": "2/h"}
    slot = make_slot()
    statuses = [checkout_post(client, slot, email="Same@Example.com", address="10.0.0.1").status_code for i in range(3)]

    assert statuses == [503, 503, 429]
    assert Booking.objects.exclude(status="expired").count() == 0


def test_a_stranger_using_someone_s_email_cannot_stop_them_from_booking(client, settings, stripe_settings_unset):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "checkout_per_email": "10/h"}
    slot = make_slot()
    for _ in range(12):
        checkout_post(client, slot, email="victim@example.com", address="203.0.113.5")
    assert checkout_post(client, slot, email="victim@example.com", address="203.0.113.5").status_code == 429

    # 503: past the limits, refused only because this test has no Stripe configured.
    assert checkout_post(client, slot, email="victim@example.com", address="198.51.100.7").status_code == 503


def test_ipv6_clients_are_counted_by_their_64_network_for_checkouts(client, settings, stripe_settings_unset):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "checkout_per_ip": "3/10m"}
    slot = make_slot()
    statuses = [
        checkout_post(client, slot, email=f"p{i}@example.com", address=f"2001:db8:5:6::{i + 1:x}").status_code
        for i in range(4)
    ]

    assert statuses == [503, 503, 503, 429]
    assert checkout_post(client, slot, email="p9@example.com", address="2001:db8:5:7::1").status_code == 503


def test_ipv6_clients_are_counted_by_their_64_network_for_token_guesses(client, booking, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "token_misses_per_ip": "3/10m"}
    for host in range(3):
        url = reverse("shop:booking", args=[f"guess{host}"])
        assert client.get(url, REMOTE_ADDR=f"2001:db8:9:9:{host}::1").status_code == 404

    url = reverse("shop:booking", args=[booking.public_token])
    assert client.get(url, REMOTE_ADDR="2001:db8:9:9:abcd::7").status_code == 429
    assert client.get(url, REMOTE_ADDR="2001:db8:9:a::1").status_code == 200


def test_the_limited_client_is_an_ipv4_address_or_an_ipv6_64_network(rf):
    assert client_network(rf.get("/", REMOTE_ADDR="203.0.113.9")) == "203.0.113.9"
    assert client_network(rf.get("/", REMOTE_ADDR="2001:db8:1:2:3:4:5:6")) == "2001:db8:1:2::/64"
    assert client_network(rf.get("/", REMOTE_ADDR="::ffff:203.0.113.9")) == "203.0.113.9"


def test_the_client_address_comes_from_x_forwarded_for_only_behind_trusted_proxies(rf, settings):
    request = rf.get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.9")
    settings.TRUSTED_PROXY_COUNT = 0
    assert client_ip(request) == "10.0.0.1"
    settings.TRUSTED_PROXY_COUNT = 1
    assert client_ip(request) == "203.0.113.9"
    settings.TRUSTED_PROXY_COUNT = 2
    assert client_ip(request) == "1.2.3.4"
    assert client_ip(rf.get("/", REMOTE_ADDR="not an ip")) == "0.0.0.0"


def test_checking_the_guessing_limit_reads_the_count_once_and_writes_nothing(rf, settings, monkeypatch):
    from django.core.cache import caches

    from common.ratelimits import token_guessing_blocked, token_miss_record

    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "token_misses_per_ip": "3/10m"}
    request = rf.get("/", REMOTE_ADDR="10.77.0.1")
    cache, calls = caches["default"], []
    for name in ("get", "add", "set", "incr"):
        real = getattr(cache, name)
        monkeypatch.setattr(cache, name, lambda *a, _real=real, _name=name, **k: calls.append(_name) or _real(*a, **k))

    assert not token_guessing_blocked(request)
    assert calls == ["get"]
    for _ in range(2):
        token_miss_record(request)
    assert not token_guessing_blocked(request)  # two misses of three
    token_miss_record(request)
    assert token_guessing_blocked(request)  # the third: used up
    assert not token_guessing_blocked(rf.get("/", REMOTE_ADDR="10.77.0.2"))
