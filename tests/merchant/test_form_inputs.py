"""Whatever is typed into a dashboard form, the answer is a page or a redirect, never a server
error, and what was typed comes back escaped."""

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.factories import make_confirmed_booking, make_listing, make_slot

pytestmark = pytest.mark.django_db

SCRIPT = "<script>alert(1)</script>"
NASTY = [
    "",
    SCRIPT,
    "\"'><img src=x onerror=alert(1)>",
    "\x00",
    "9" * 400,
    "-1",
    "1e309",
    "1e-999999999",
    "NaN",
    "０１２",
    "١٢٣",
    "😀" * 60,
    "\u202eevil",
    "2026-02-30",
    "0001-01-01T00:00",
    "9999-12-31T23:59",
    "2031-03-30T01:30",
    "Robert'); DROP TABLE bookings_booking;--",
    "x" * 10_000,
]


@pytest.fixture
def world(client, merchant, stripe_settings_unset):
    client.force_login(merchant.user)
    listing = make_listing(merchant=merchant)
    slot = make_slot(listing=listing, capacity=10)
    booking = make_confirmed_booking(slot=slot, quantity=2)
    return {"listing": listing, "slot": slot, "booking": booking, "merchant": merchant}


def valid(world, name: str) -> dict:
    zone = world["merchant"].zone
    tomorrow = (timezone.now() + dt.timedelta(days=1)).astimezone(zone).date()
    return {
        "listing_create": {"title": "T", "description": "", "price": "10", "currency": "eur", "duration_minutes": "60", "cancel_policy": "customer", "cancel_free_hours": "24", "cancel_late_keep_percent": "100"},
        "listing_edit": {"title": "T", "description": "", "price": "10", "currency": "eur", "duration_minutes": "60", "cancel_policy": "customer", "cancel_free_hours": "24", "cancel_late_keep_percent": "100"},
        "slot_create": {"starts_at": (timezone.now() + dt.timedelta(days=3)).astimezone(zone).strftime("%Y-%m-%dT%H:%M"), "capacity": "5"},
        "slot_series": {
            "weekdays": ["1", "3"],
            "start_times": "10:00",
            "first_day": tomorrow.isoformat(),
            "last_day": (tomorrow + dt.timedelta(days=14)).isoformat(),
            "capacity": "5",
            "action": "preview",
        },
        "slot_capacity": {"capacity": "5"},
        "booking_refund": {"amount": "1.00"},
        "profile": {"display_name": "Shop", "timezone": "Europe/London", "support_email": ""},
    }[name]


FORMS = [
    ("listing_create", None, ["title", "description", "price", "currency", "duration_minutes"]),
    ("listing_edit", "listing", ["title", "price", "currency", "duration_minutes"]),
    ("slot_create", "listing", ["starts_at", "capacity"]),
    ("slot_series", "listing", ["weekdays", "start_times", "first_day", "last_day", "capacity", "action"]),
    ("slot_capacity", "slot", ["capacity"]),
    ("booking_refund", "booking", ["amount"]),
    ("profile", None, ["display_name", "timezone", "support_email"]),
]


HTMX_FORMS = {"slot_series", "slot_capacity"}


def assert_safe(response) -> None:
    assert response.status_code < 500
    if response.get("Content-Type", "").startswith("text/html"):
        assert SCRIPT not in response.content.decode()


@pytest.mark.parametrize("name,target,fields", FORMS, ids=[name for name, _, _ in FORMS])
def test_no_typed_value_makes_a_form_fail(client, world, name, target, fields):
    url = reverse(f"merchant:{name}", args=[world[target].pk] if target else [])
    for field in fields:
        for value in NASTY:
            assert_safe(client.post(url, {**valid(world, name), field: value}))
            if name in HTMX_FORMS:
                assert_safe(client.post(url, {**valid(world, name), field: value}, headers={"HX-Request": "true"}))


def test_no_typed_value_makes_the_booking_filters_fail(client, world):
    for field in ("status", "listing", "date_from", "date_to", "q", "slot", "page"):
        for value in NASTY:
            assert_safe(client.get(reverse("merchant:booking_list"), {field: value}))
            export = client.get(reverse("merchant:booking_export"), {field: value})
            assert export.status_code == 200
            b"".join(export.streaming_content)


def test_no_typed_value_makes_sign_in_or_password_reset_fail(client):
    client.logout()
    for value in NASTY:
        assert_safe(client.post(reverse("accounts:login"), {"username": value, "password": value}))
        assert_safe(client.post(reverse("accounts:password_reset"), {"email": value}))


def test_a_huge_series_preview_is_refused_rather_than_computed(client, world):
    data = {**valid(world, "slot_series"), "weekdays": [str(d) for d in range(7)], "start_times": ", ".join(f"{h:02}:00" for h in range(24))}
    data["last_day"] = "2099-12-31"

    response = client.post(reverse("merchant:slot_series", args=[world["listing"].pk]), data)

    assert response.status_code == 400
    assert "A series can cover at most 366 days." in response.content.decode()
