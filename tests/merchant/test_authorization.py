"""Every merchant URL × {anonymous, merchant A, merchant B, staff} × {GET, POST}.

Merchant A owns every object in the URLs. Wherever access is refused, nothing in the database
changes: a snapshot of every table the dashboard can write is compared before and after.
"""

import datetime as dt
from dataclasses import dataclass, field

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from bookings.models import AttendeeMessage, Booking, Listing, Merchant, PromotionCode, Refund, Slot
from bookings.services import booking_refund, refund_record_failure
from tests.factories import make_confirmed_booking, make_listing, make_merchant, make_slot, make_staff_user

pytestmark = pytest.mark.django_db

TABLES = (get_user_model(), Merchant, Listing, Slot, Booking, Refund, PromotionCode, AttendeeMessage)


def snapshot() -> dict[str, list[dict]]:
    return {model.__name__: list(model.objects.order_by("pk").values()) for model in TABLES}


@dataclass
class World:
    a: Merchant
    b: Merchant
    staff: object
    listing: Listing
    archived: Listing
    slot: Slot
    booking: Booking
    failed: Booking
    ids: dict = field(default_factory=dict)
    promotion: PromotionCode | None = None


@pytest.fixture
def world(stripe_settings_unset) -> World:
    a = make_merchant(username="alice", timezone_name="Europe/London")
    b = make_merchant(username="bob", timezone_name="Europe/Paris")
    listing = make_listing(merchant=a, price_amount=2500, currency="eur")
    archived = make_listing(merchant=a, is_active=False)
    slot = make_slot(listing=listing, capacity=6)
    booking = make_confirmed_booking(slot=slot, quantity=2)
    failed = make_confirmed_booking(slot=slot, quantity=1)
    refund = booking_refund(booking=failed)
    refund_record_failure(refund_id=refund.pk, failure_reason="expired_or_canceled_card")
    failed.refresh_from_db()
    assert failed.status == Booking.Status.REFUND_FAILED
    # Merchant B has objects of their own, so that "B sees only B's" is not vacuous.
    make_slot(listing=make_listing(merchant=b))
    promotion = PromotionCode.objects.create(merchant=a, code="ALICE10", percent_off=10, stripe_coupon_id="c_alice",
                                             stripe_promotion_code_id="promo_alice")
    return World(a, b, make_staff_user(), listing, archived, slot, booking, failed, promotion=promotion)


def _local(world: World, delta: dt.timedelta) -> dt.datetime:
    return (timezone.now() + delta).astimezone(world.a.zone)


def post_data(world: World, name: str) -> dict:
    tomorrow = _local(world, dt.timedelta(days=1)).date()
    return {
        "listing_create": {"title": "Night paddle", "description": "", "price": "12.50", "currency": "eur", "duration_minutes": "60", "cancel_policy": "customer", "cancel_free_hours": "24", "cancel_late_keep_percent": "100"},
        "listing_edit": {"title": "Edited", "description": "x", "price": "30.00", "currency": "gbp", "duration_minutes": "90", "cancel_policy": "customer", "cancel_free_hours": "24", "cancel_late_keep_percent": "100"},
        "slot_create": {"starts_at": _local(world, dt.timedelta(days=10)).strftime("%Y-%m-%dT%H:%M"), "capacity": "4"},
        "slot_series": {
            "weekdays": ["0", "1", "2", "3", "4", "5", "6"],
            "start_times": "09:00",
            "first_day": tomorrow.isoformat(),
            "last_day": (tomorrow + dt.timedelta(days=6)).isoformat(),
            "capacity": "3",
            "action": "create",
        },
        "slot_capacity": {"capacity": "9"},
        "slot_selling": {"on_sale": "0"},
        "booking_refund": {"amount": "10.00"},
        "profile": {"display_name": "Renamed", "timezone": "Europe/Paris", "support_email": "help@example.com"},
    }.get(name, {})


# name, the object its URL names (None: the merchant's own pages), methods it answers,
# and merchant A's status for GET and POST.
URLS = [
    ("dashboard", None, "GET", 200, None),
    ("listing_list", None, "GET", 200, None),
    ("listing_create", None, "GET POST", 200, 302),
    ("listing_detail", "listing", "GET", 200, None),
    ("listing_edit", "listing", "GET POST", 200, 302),
    ("listing_archive", "listing", "POST", None, 302),
    ("listing_restore", "archived", "POST", None, 302),
    ("slot_create", "listing", "GET POST", 200, 302),
    ("slot_series", "listing", "GET POST", 200, 302),
    ("slot_detail", "slot", "GET", 200, None),
    ("slot_capacity", "slot", "GET POST", 200, 302),
    ("slot_selling", "slot", "POST", None, 302),
    ("slot_cancel", "slot", "GET POST", 200, 302),
    ("booking_list", None, "GET", 200, None),
    ("booking_export", None, "GET", 200, None),
    ("booking_detail", "booking", "GET", 200, None),
    ("booking_refund", "booking", "GET POST", 200, 302),
    ("booking_refund_retry", "failed", "POST", None, 302),
    ("booking_refund_resubmit", "failed", "POST", None, 302),
    ("profile", None, "GET POST", 200, 302),
    ("promotion_list", None, "GET POST", 200, 400),
    ("promotion_active", "promotion", "POST", None, 302),
    ("slot_attendees", "slot", "GET", 200, None),
    ("slot_attendees_export", "slot", "GET", 200, None),
    ("slot_message", "slot", "GET POST", 200, 400),
    # Connect's pages: with CONNECT_ENABLED off (here) a merchant's are 404 (payments go to the
    # platform's account); test_connect covers them with Connect on.
    ("connect_start", None, "POST", None, 404),
    ("connect_refresh", None, "GET", 404, None),
    ("connect_return", None, "GET", 404, None),
    ("connect_dashboard", None, "POST", None, 404),
]

ACTORS = ["anonymous", "merchant_a", "merchant_b", "staff"]


def test_the_matrix_covers_every_merchant_url():
    from merchant import urls

    assert {pattern.name for pattern in urls.urlpatterns} == {row[0] for row in URLS}


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize("name,target,methods,a_get,a_post", URLS, ids=[row[0] for row in URLS])
def test_access(client, world, name, target, methods, a_get, a_post, actor, method):
    url = reverse(f"merchant:{name}", args=[getattr(world, target).pk] if target else [])
    if actor == "merchant_a":
        client.force_login(world.a.user)
    elif actor == "merchant_b":
        client.force_login(world.b.user)
    elif actor == "staff":
        client.force_login(world.staff)
    before = snapshot()

    if method == "GET":
        response = client.get(url)
    else:
        response = client.post(url, post_data(world, name))

    allowed = method in methods.split()
    if not allowed:
        expected = 405
    elif actor == "anonymous":
        expected = 302
    elif actor == "staff":
        expected = 403
    elif actor == "merchant_b" and target:
        expected = 404
    else:
        expected = a_get if method == "GET" else a_post
    assert response.status_code == expected, response.content[:500]

    refused = expected in (302, 403, 404, 405) and not (actor in ("merchant_a", "merchant_b") and expected == 302)
    if refused:
        assert snapshot() == before
    if actor == "anonymous" and allowed:
        assert response["Location"].startswith(reverse("accounts:login") + "?next=")
    if actor == "staff" and allowed:
        assert "has no merchant dashboard" in response.content.decode()
    if actor == "merchant_b" and not target and allowed:
        # B acted on B's own account: none of A's rows moved.
        after = snapshot()
        for table in ("Listing", "Slot", "Booking", "Refund"):
            mine = [row for row in before[table] if row not in after[table]]
            assert not any(_belongs_to(world.a, table, row) for row in mine), table


def _belongs_to(merchant: Merchant, table: str, row: dict) -> bool:
    if table == "Listing":
        return row["merchant_id"] == merchant.pk
    if table == "Slot":
        return Listing.objects.get(pk=row["listing_id"]).merchant_id == merchant.pk
    if table == "Booking":
        return Slot.objects.get(pk=row["slot_id"]).listing.merchant_id == merchant.pk
    return Booking.objects.get(pk=row["booking_id"]).slot.listing.merchant_id == merchant.pk


def test_merchant_b_sees_none_of_a_s_bookings_in_lists_or_exports(client, world):
    client.force_login(world.b.user)

    listing_page = client.get(reverse("merchant:booking_list")).content.decode()
    export = b"".join(client.get(reverse("merchant:booking_export")).streaming_content).decode()
    dashboard = client.get(reverse("merchant:dashboard")).content.decode()

    assert world.booking.customer_email not in listing_page
    assert world.booking.customer_email not in export
    assert export.count("\n") == 1  # the header only
    assert world.listing.title not in dashboard


def test_filtering_by_another_merchant_s_slot_or_listing_shows_nothing(client, world):
    client.force_login(world.b.user)

    by_slot = client.get(reverse("merchant:booking_list"), {"slot": world.slot.pk}).content.decode()
    by_listing = client.get(reverse("merchant:booking_list"), {"listing": world.listing.pk}).content.decode()

    assert world.booking.customer_email not in by_slot
    assert world.booking.customer_email not in by_listing
    assert "Choose one of your listings." in by_listing


def test_an_htmx_request_from_a_signed_out_visitor_redirects_the_whole_page_to_sign_in(client, world):
    page = "http://testserver" + reverse("merchant:listing_detail", args=[world.listing.pk])
    headers = {"HX-Request": "true", "HX-Current-URL": page}

    response = client.get(reverse("merchant:slot_capacity", args=[world.slot.pk]), headers=headers)

    assert response.status_code == 200
    assert response["HX-Redirect"] == reverse("accounts:login") + "?next=%2Fmerchant%2Flistings%2F" + f"{world.listing.pk}%2F"


@pytest.mark.parametrize("actor", ["anonymous", "merchant_a", "merchant_b"])
def test_only_staff_reach_the_admin(client, world, actor):
    if actor != "anonymous":
        client.force_login(getattr(world, actor[-1]).user)

    response = client.get(reverse("admin:index"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_staff_reach_the_admin(client, world):
    client.force_login(world.staff)

    assert client.get(reverse("admin:index")).status_code == 200


def test_state_changing_requests_need_a_csrf_token(world):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(world.a.user)
    before = snapshot()

    response = client.post(reverse("merchant:slot_cancel", args=[world.slot.pk]))

    assert response.status_code == 403
    assert snapshot() == before
