"""Whatever arrives at any URL of the site, from anyone, the answer is never a server error,
and a request that is refused writes nothing: generated path parameters, query strings and
form bodies (unicode, NUL bytes, very long strings, HTML, huge and negative numbers, several
values for one key) at every URL pattern of the URLconf, anonymously and signed in as a
merchant, and generated webhook bodies, signed and not.

Each example runs in a savepoint that is rolled back afterwards, so every example starts from
the same world and a refused request can be told apart from an accepted one by the rows it
left behind."""

import datetime as dt
import json
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import pytest
from django.contrib.auth.tokens import default_token_generator
from django.core.cache import cache
from django.db import transaction
from django.db.models import Sum
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bookings.models import Booking, BookingStatus, Listing, Merchant, Refund, Slot
from payments.models import StripeEvent
from tests.connect_mode import connect_mode
from tests.conftest import TEST_WEBHOOK_SECRET
from tests.factories import make_confirmed_booking, make_listing, make_merchant, make_slot
from tests.payments.webhook_signing import session_object, stripe_signature

pytestmark = pytest.mark.django_db

SCRIPT = "<script>alert(1)</script>"

# Deterministic in CI, fast enough for two cores, and fine with the per-test fixtures: every
# example runs in its own rolled-back savepoint, so the fixtures' rows are the same for each.
FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Values people and robots really send.
CLASSIC = [
    "",
    " ",
    SCRIPT,
    "\"'><img src=x onerror=alert(1)>",
    "\x00",
    "a\x00b",
    "-1",
    "0",
    "-99999999999999999999",
    "99999999999999999999999999999",
    str(2**31),
    str(2**63),
    "1e309",
    "NaN",
    "Infinity",
    "1.5",
    "-0.01",
    "0x10",
    "０１２",
    "١٢٣",
    "😀" * 30,
    "\u202eevil",
    "Zoë 東京",
    "2026-02-30",
    "0001-01-01",
    "9999-12-31T23:59",
    "Robert'); DROP TABLE bookings_booking;--",
    "cs_test_",
    "cs_test_" + "a" * 300,
    "cs_live_abc\n",
    "cs_test_abc\x00",
    "cs_test_../../etc",
    "%00",
    "%zz",
    "x" * 5000,
]

texts = st.one_of(
    st.sampled_from(CLASSIC),
    st.text(max_size=30),
    st.text(min_size=1, max_size=4).map(lambda piece: piece * 400),
    st.integers(min_value=-(2**80), max_value=2**80).map(str),
    st.floats().map(repr),
    st.from_regex(r"cs_(test|live)_[A-Za-z0-9]{0,40}", fullmatch=True),
)
values = st.one_of(texts, st.lists(texts, min_size=2, max_size=3))


# The URLconf, walked: every named pattern with its converters.


@dataclass(frozen=True)
class Route:
    name: str  # "namespace:name"
    converters: dict


def _walk(patterns, namespace: str = "") -> list[Route]:
    found = []
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            found += _walk(pattern.url_patterns, inner)
        elif isinstance(pattern, URLPattern) and pattern.name:
            found.append(Route(f"{namespace}{pattern.name}", dict(pattern.pattern.converters)))
    return found


# Django's admin is its own, staff-only and well tested; everything else is fuzzed here.
ROUTES = [route for route in _walk(get_resolver().url_patterns) if not route.name.startswith("admin:")]

# The fields each page's form reads, with a valid value for each (None: the form has none).
# A URL pattern missing here fails test_every_url_pattern_is_in_the_fuzz_table, so a new page
# cannot be forgotten.
FIELDS = {
    "shop:catalog": {"page": "1"},
    "shop:listing": {"slot": "{slot}", "checkout": "cancelled"},
    "shop:checkout_create": {
        "slot": "{slot}",
        "quantity": "1",
        "customer_name": "Ada Lovelace",
        "customer_email": "ada@example.com",
    },
    "shop:waitlist_join": {
        "slot": "{slot}",
        "quantity": "1",
        "customer_name": "Ada Lovelace",
        "customer_email": "ada@example.com",
    },
    "shop:waitlist_offer": {"customer_name": "Ada Lovelace"},
    "shop:waitlist_leave": None,
    "shop:checkout_success": {"session_id": "{session_id}"},
    "shop:checkout_status": {"poll": "2"},
    "shop:checkout_queue": None,
    "shop:booking": None,
    "shop:booking_portal": None,
    "shop:booking_cancel": {"expected_refund": "2500"},
    "shop:booking_reschedule": {"slot": "{slot}"},
    "shop:my_bookings": None,
    "shop:booking_calendar": None,
    "shop:receipts": None,
    "shop:receipts_link": {"email": "ada@example.com", "next": "/b/abc/"},
    "shop:receipts_signin": {"token": "1:1aBcDe:" + "A" * 43},
    "shop:receipts_signout": None,
    "shop:receipts_portal": None,
    "payments:stripe_webhook": None,  # its bodies: test_no_webhook_body_makes_a_server_error
    "payments:stripe_connect_webhook": None,
    "admin_platform_fees": {"days": "30"},
    "merchant:connect_start": None,
    "merchant:connect_refresh": None,
    "merchant:connect_return": None,
    "merchant:connect_dashboard": None,
    "shop:healthz": None,
    "merchant:dashboard": None,
    "merchant:listing_list": {"show": "archived"},
    "merchant:listing_create": {
        "title": "Sea kayak",
        "description": "Bring a towel.",
        "price": "45.00",
        "currency": "eur",
        "duration_minutes": "90",
        "cancel_policy": "customer",
        "cancel_free_hours": "24",
        "cancel_late_keep_percent": "20",
        "place_kind": "address",
        "place_text": "Quai des Belges, Marseille",
        "online_url": "",
        "reminder_hours": "24",
    },
    "merchant:listing_detail": {"when": "past", "page": "1"},
    "merchant:listing_edit": {
        "title": "Sea kayak",
        "description": "",
        "price": "45.00",
        "currency": "gbp",
        "duration_minutes": "60",
        "cancel_policy": "customer",
        "cancel_free_hours": "48",
        "cancel_late_keep_percent": "100",
        "place_kind": "online",
        "place_text": "",
        "online_url": "https://meet.example.com/kayak",
        "reminder_hours": "0",
    },
    "merchant:listing_archive": {"next": "/merchant/"},
    "merchant:listing_restore": {"next": "/merchant/"},
    "merchant:slot_create": {"starts_at": "{in_three_days}", "capacity": "8"},
    "merchant:slot_series": {
        "weekdays": ["1", "3"],
        "start_times": "10:00, 14:30",
        "first_day": "{tomorrow}",
        "last_day": "{in_two_weeks}",
        "capacity": "6",
        "action": "create",
    },
    "merchant:slot_detail": None,
    "merchant:slot_capacity": {"capacity": "7", "cancel": "1", "next": "/merchant/"},
    "merchant:slot_selling": {"on_sale": "0", "next": "/merchant/"},
    "merchant:slot_cancel": None,
    "merchant:booking_list": {
        "status": "confirmed",
        "listing": "{listing}",
        "date_from": "{tomorrow}",
        "date_to": "{in_two_weeks}",
        "q": "example.com",
        "slot": "{slot}",
        "page": "1",
    },
    "merchant:booking_export": {"status": "attention", "date_from": "{tomorrow}", "q": "@", "listing": "{listing}"},
    "merchant:booking_detail": None,
    "merchant:booking_refund": {"amount": "1.00"},
    "merchant:booking_refund_retry": None,
    "merchant:booking_refund_resubmit": None,
    "merchant:profile": {"display_name": "Harbour Kayaks", "timezone": "Pacific/Auckland", "support_email": ""},
    "merchant:promotion_list": {"code": "SPRING20", "kind": "percent", "percent_off": "20", "amount_off": "",
                                "currency": "eur", "max_redemptions": "5", "expires_on": "{in_two_weeks}"},
    "merchant:promotion_active": {"active": "0"},
    "merchant:slot_attendees": None,
    "merchant:slot_attendees_export": None,
    "merchant:slot_message": {"subject": "Bring an apron", "body": "See you soon.",
                              "submission_key": "6f1c1f7e-2b8e-4c55-9a55-0f1f2a3b4c5d"},
    "accounts:login": {"username": "{username}", "password": "wrong", "next": "/merchant/"},
    "accounts:logout": None,
    "accounts:password_reset": {"email": "{email}"},
    "accounts:password_reset_done": None,
    "accounts:password_reset_confirm": {"new_password1": "pw-zz-123456789", "new_password2": "pw-zz-123456789"},
    "accounts:password_reset_complete": None,
    "accounts:password_change": {
        "old_password": "pw-123456789",
        "new_password1": "pw-zz-123456789",
        "new_password2": "pw-zz-123456789",
    },
    "accounts:password_change_done": None,
}


def test_every_url_pattern_is_in_the_fuzz_table():
    names = {route.name for route in ROUTES}

    assert names - FIELDS.keys() == set(), "add the new URL's form fields to FIELDS so that it is fuzzed"
    assert FIELDS.keys() - names == set(), "a URL in FIELDS is gone from the URLconf"


# The world every example starts from.


@pytest.fixture
def world(client, stripe_emulator):
    merchant = make_merchant(display_name="Harbour")
    listing = make_listing(merchant=merchant)
    slot = make_slot(listing=listing, capacity=10)
    booking = make_confirmed_booking(slot=slot, quantity=2)
    other = make_confirmed_booking(slot=make_slot(capacity=3))
    zone = merchant.zone
    today = timezone.now().astimezone(zone).date()
    user = merchant.user
    url_values = {
        "slot": str(slot.pk),
        "listing": str(listing.pk),
        "session_id": booking.checkout_session_id,
        "username": user.username,
        "email": user.email,
        "tomorrow": (today + dt.timedelta(days=1)).isoformat(),
        "in_two_weeks": (today + dt.timedelta(days=14)).isoformat(),
        "in_three_days": (timezone.now() + dt.timedelta(days=3)).astimezone(zone).strftime("%Y-%m-%dT%H:%M"),
    }
    path_values = {
        "pk": [listing.pk, slot.pk, booking.pk, other.pk, other.slot.pk, other.slot.listing.pk],
        "slug": [listing.slug, other.slot.listing.slug],
        "token": [booking.public_token, other.public_token, default_token_generator.make_token(user)],
        "session_id": [booking.checkout_session_id, other.checkout_session_id],
        "uidb64": [urlsafe_base64_encode(force_bytes(user.pk))],
    }
    return {
        "merchant": merchant,
        "url_values": url_values,
        "path_values": path_values,
        "client": client,
        "stripe": stripe_emulator,
    }


def _valid_fields(route: Route, world) -> dict:
    def filled(value: str) -> str:
        return value.format(**world["url_values"])

    fields = FIELDS[route.name] or {}
    return {key: [filled(v) for v in value] if isinstance(value, list) else filled(value) for key, value in fields.items()}


def _path_arguments(route: Route, world) -> st.SearchStrategy:
    """Converter-shaped values (so that reverse() builds the URL): the world's own ids and
    tokens, and generated ones, huge ints and unicode tokens included."""
    known = world["path_values"]
    by_converter = {
        "IntConverter": st.integers(min_value=0, max_value=2**80),
        "SlugConverter": st.from_regex(r"[-a-zA-Z0-9_]{1,200}", fullmatch=True),
        "StringConverter": st.one_of(
            st.sampled_from([c for c in CLASSIC if c and "/" not in c]),
            st.text(min_size=1, max_size=80).filter(lambda t: "/" not in t),
        ),
    }
    arguments = {}
    for name, converter in route.converters.items():
        generated = by_converter[type(converter).__name__]
        arguments[name] = st.one_of(st.sampled_from(known[name]), generated) if name in known else generated
    return st.fixed_dictionaries(arguments)


@dataclass(frozen=True)
class Snapshot:
    counts: tuple
    seats: tuple
    listings: tuple
    slots: tuple
    bookings: tuple
    merchants: tuple

    @classmethod
    def take(cls) -> "Snapshot":
        seats = Slot.objects.aggregate(capacity=Sum("capacity"), left=Sum("seats_left"), held=Sum("seats_held"))
        return cls(
            counts=tuple(model.objects.count() for model in (Listing, Slot, Booking, Refund, StripeEvent, Merchant)),
            seats=(seats["capacity"], seats["left"], seats["held"]),
            listings=tuple(
                Listing.objects.order_by("pk").values_list("pk", "title", "price_amount", "currency", "is_active")
            ),
            slots=tuple(
                Slot.objects.order_by("pk").values_list("pk", "capacity", "seats_left", "is_on_sale", "cancelled_at")
            ),
            bookings=tuple(Booking.objects.order_by("pk").values_list("pk", "status", "amount_refunded")),
            merchants=tuple(Merchant.objects.order_by("pk").values_list("pk", "display_name", "timezone")),
        )


# Pages whose accepted POST (a redirect) must have created rows.
CREATING = {"shop:checkout_create", "merchant:listing_create", "merchant:slot_create", "merchant:booking_refund"}


def assert_whole(route: Route, response, before: Snapshot, after: Snapshot) -> None:
    """An accepted write is the whole of what the page promises, and nothing else."""
    # Rows added to: listings, slots, bookings, refunds, events, merchants.
    added = [a - b for a, b in zip(after.counts, before.counts)]
    if route.name == "shop:checkout_create":
        assert added == [0, 0, 1, 0, 0, 0]
        booking = Booking.objects.order_by("-pk").first()
        assert booking.status == BookingStatus.PENDING
        assert booking.checkout_session_id and booking.checkout_session_id.startswith("cs_test_")
        assert response["Location"].startswith("http")
        # Its seats are held while the customer pays: taken from the free ones, none sold.
        capacity, left, held = before.seats
        assert after.seats == (capacity, left - booking.quantity, held + booking.quantity)
    elif route.name == "merchant:listing_create":
        assert added == [1, 0, 0, 0, 0, 0]
    elif route.name in ("merchant:slot_create", "merchant:slot_series"):
        assert added[0] == 0 and added[1] >= 1 and added[2:] == [0, 0, 0, 0]
        new = Slot.objects.order_by("-pk")[: added[1]]
        assert all(slot.seats_left == slot.capacity for slot in new)
    elif route.name == "merchant:booking_refund":
        assert added == [0, 0, 0, 1, 0, 0]
    elif route.name == "merchant:slot_cancel":
        # One refund for each booking it cancelled, and the slot no longer on sale.
        assert added[:3] == [0, 0, 0] and added[4:] == [0, 0]
        open_before = sum(1 for slot in before.slots if slot[4] is None)
        open_after = sum(1 for slot in after.slots if slot[4] is None)
        assert open_before - open_after == 1
        assert added[3] == Refund.objects.filter(reason="slot_cancelled").count()
    else:
        # Every other page writes within the rows it names (a capacity, a status, a profile).
        assert added == [0, 0, 0, 0, 0, 0], route.name


def _request(client, method: str, url: str, data: dict, htmx: bool):
    headers = {"HX-Request": "true"} if htmx else {}
    if method == "GET":
        return client.get(url, data, headers=headers)
    return client.post(url, data, headers=headers)


def _fuzz_route(world, route: Route, arguments: dict, overrides: dict, method: str, htmx: bool, signed_in: bool):
    client = world["client"]
    url = reverse(route.name, kwargs=arguments)
    data = {**_valid_fields(route, world), **overrides}
    with transaction.atomic():
        cache.clear()  # rate limits would otherwise answer 429 to most examples
        if route.name == "shop:checkout_create":
            # Rolled-back bookings reuse their ids on SQLite, and with them the idempotency keys.
            world["stripe"].reset()
        if signed_in:
            client.force_login(world["merchant"].user)
        else:
            client.logout()
        before = Snapshot.take()
        response = _request(client, method, url, data, htmx)
        if hasattr(response, "streaming_content"):
            content = b"".join(response.streaming_content)
        else:
            content = response.content
        after = Snapshot.take()
        to_sign_in = response.get("Location", "").startswith(reverse("accounts:login"))
        assert response.status_code < 500, (route.name, method, url, data, content[:500])
        if response.status_code >= 400 or method == "GET":
            assert after == before, (route.name, method, url, data, response.status_code)
        elif after != before or (response.status_code in (302, 303) and route.name in CREATING and not to_sign_in):
            # htmx partials answer a refused form with 200 too: those must have written nothing.
            assert_whole(route, response, before, after)
        transaction.set_rollback(True)
    if response.get("Content-Type", "").startswith("text/html"):
        assert SCRIPT.encode() not in content, (route.name, url, data)


def _overrides(route: Route) -> st.SearchStrategy:
    """Generated values for some of the page's fields (the others stay valid), and for strays."""
    names = sorted((FIELDS[route.name] or {}).keys()) + ["next", "extra"]
    return st.dictionaries(st.sampled_from(names), values, max_size=3)


def _fuzz_case(world):
    return st.sampled_from(ROUTES).flatmap(
        lambda route: st.tuples(
            st.just(route),
            _path_arguments(route, world),
            _overrides(route),
            st.sampled_from(["GET", "POST"]),
            st.booleans(),
        )
    )


def _signed_in(route: Route) -> bool:
    return route.name.startswith("merchant:") or route.name.startswith("accounts:password_change")


@pytest.mark.parametrize("route", ROUTES, ids=[route.name for route in ROUTES])
def test_no_request_to_any_url_makes_a_server_error_or_a_partial_write(world, route):
    """Generated path parameters, query strings and bodies, by GET and POST, plain and htmx;
    the merchant's pages signed in as their merchant."""

    @settings(FUZZ, max_examples=25)
    @given(
        arguments=_path_arguments(route, world),
        overrides=_overrides(route),
        method=st.sampled_from(["GET", "POST"]),
        htmx=st.booleans(),
    )
    def run(arguments, overrides, method, htmx):
        _fuzz_route(world, route, arguments, overrides, method, htmx, _signed_in(route))

    run()


def test_no_request_to_any_url_makes_a_server_error_when_signed_out(world):
    @settings(FUZZ, max_examples=25)
    @given(case=_fuzz_case(world))
    def run(case):
        route, arguments, overrides, method, htmx = case
        _fuzz_route(world, route, arguments, overrides, method, htmx, False)

    run()


@pytest.mark.parametrize(
    "name",
    sorted(name for name, fields in FIELDS.items() if fields and name != "payments:stripe_webhook"),
)
def test_no_value_in_any_form_field_makes_a_server_error_or_a_partial_write(world, name, request):
    """Each page with a form, on its own: every field with generated values, the rest valid."""
    if name == "shop:checkout_create" and connect_mode(request.config):
        pytest.skip("resets the emulator between examples, which takes the merchants' connected accounts with it")
    route = next(route for route in ROUTES if route.name == name)
    signed_in = _signed_in(route)
    method = "GET" if name in GET_FORMS else "POST"
    # The world's own objects, so that the form itself is reached.
    arguments = {key: world["path_values"][key][0] for key in route.converters}

    @settings(FUZZ, max_examples=30)
    @given(
        overrides=st.dictionaries(st.sampled_from(sorted(FIELDS[name])), values, min_size=1, max_size=3),
        htmx=st.booleans(),
    )
    def run(overrides, htmx):
        _fuzz_route(world, route, arguments, overrides, method, htmx, signed_in)

    run()


GET_FORMS = {
    "shop:catalog",
    "shop:listing",
    "shop:checkout_success",
    "shop:checkout_status",
    "merchant:listing_list",
    "merchant:listing_detail",
    "merchant:booking_list",
    "merchant:booking_export",
}


# Paths the URLconf's converters would never build: NUL bytes, encoded slashes, unicode.


@FUZZ
@given(
    prefix=st.sampled_from(["/l/", "/b/", "/checkout/status/", "/merchant/listings/", "/accounts/password/reset/"]),
    raw=st.one_of(st.sampled_from(CLASSIC), st.text(min_size=1, max_size=60)),
    suffix=st.sampled_from(["", "/", "/book/", "/portal/", "/edit/", "/x/"]),
)
def test_no_raw_path_makes_a_server_error(client, prefix, raw, suffix):
    url = prefix + quote(raw, safe="") + suffix
    with transaction.atomic():
        cache.clear()
        assert client.get(url).status_code < 500, url
        assert client.post(url, {"x": raw}).status_code < 500, url
        transaction.set_rollback(True)


# Webhooks: bodies that are not JSON, JSON that is not an event, events of every shape.

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats(allow_nan=False) | texts,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=8,
)
EVENT_TYPES = [
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.expired",
    "checkout.session.async_payment_failed",
    "refund.created",
    "refund.updated",
    "refund.failed",
    "charge.refund.updated",
    "charge.refunded",
    "customer.created",
]
def _session_like(booking: Booking) -> st.SearchStrategy:
    """The paid Checkout Session of a real pending booking, as is or with a field or two of any
    other value or missing, and objects of any shape."""
    paid = session_object(booking, payment_intent="pi_fuzz", customer="cus_fuzz")
    missing = object()

    def changed(odd: dict) -> dict:
        return {key: value for key, value in {**paid, **odd}.items() if value is not missing}

    odd_fields = st.dictionaries(
        st.sampled_from(sorted(paid) + ["failure_reason"]),
        st.one_of(st.just(missing), st.just(None), st.just(0), st.just("no_payment_required"), texts, json_values),
        min_size=1,
        max_size=2,
    )
    return st.one_of(st.just(paid), odd_fields.map(changed), st.dictionaries(st.text(max_size=8), json_values, max_size=4))


def _webhook_bodies(booking: Booking) -> st.SearchStrategy:
    # Mostly well-formed events whose object is odd, some with any field missing or of any type.
    well_formed = st.fixed_dictionaries(
        {
            "id": st.from_regex(r"evt_[A-Za-z0-9]{1,20}", fullmatch=True),
            "object": st.just("event"),
            # Half of them confirm: the path that takes seats.
            "type": st.one_of(st.just("checkout.session.completed"), st.sampled_from(EVENT_TYPES)),
            "data": st.fixed_dictionaries({"object": _session_like(booking)}),
        }
    )
    anything = st.fixed_dictionaries(
        {},
        optional={
            "id": st.one_of(texts, json_values),
            "type": st.one_of(st.sampled_from(EVENT_TYPES), texts, json_values),
            "data": st.one_of(st.fixed_dictionaries({"object": json_values}), json_values),
        },
    )
    events = st.one_of(well_formed, well_formed, well_formed, anything)
    as_json = events.map(lambda event: json.dumps(event).encode())
    return st.one_of(
        as_json,
        as_json,
        as_json,
        json_values.map(lambda value: json.dumps(value).encode()),
        st.binary(max_size=200),
        st.sampled_from([b"", b"\x00", b"{", b'{"id": "evt_1", "type": "x"', b'"\\u0000"', b"[]", b"null"]),
    )


def test_no_webhook_body_makes_a_server_error(client, stripe_emulator, booking):
    """A signed event Stripe could have sent, however odd, is recorded or refused, never a 500
    (a 500 asks Stripe to send it again, which would not help); a booking it confirms is whole."""

    @settings(FUZZ, max_examples=120)
    @given(
        body=_webhook_bodies(booking),
        signed=st.sampled_from([True, True, True, False]),
        header=st.one_of(st.none(), texts),
    )
    def run(body, signed, header):
        signature = stripe_signature(body, TEST_WEBHOOK_SECRET) if signed else header
        extra = {"HTTP_STRIPE_SIGNATURE": signature} if signature is not None else {}
        with transaction.atomic():
            before = Snapshot.take()
            response = client.post(reverse("payments:stripe_webhook"), data=body, content_type="application/json", **extra)
            after = Snapshot.take()
            fresh = Booking.objects.select_related("slot").get(pk=booking.pk)
            transaction.set_rollback(True)

        event(f"answered {response.status_code} {response.content[:20]!r}, booking {fresh.status}")
        assert response.status_code < 500, (body, response.content)
        added = [a - b for a, b in zip(after.counts, before.counts)]
        assert added[:4] == [0, 0, 0, 0] and added[5] == 0
        assert added[4] == (0 if response.status_code >= 400 else 1) or response.content == b"duplicate"
        # Confirmed: its seats are taken, all of them, once. Otherwise no seat moved.
        seats_taken = before.seats[1] - after.seats[1]
        assert seats_taken == (booking.quantity if fresh.status == BookingStatus.CONFIRMED else 0), fresh.status

    run()




# Headers: whatever a client sends in them, on every URL (the admin's sign-in and index too).
# A WSGI server hands Django header bytes decoded as latin-1, so non-ASCII arrives as such;
# CR and LF cannot be inside a header on the wire.

def _as_a_server_decodes(raw: bytes) -> str:
    return raw.decode("latin-1")


HEADER_SAMPLES = [
    "t=1,v1=" + "a" * 63 + "é",
    "t=1,v1=é,v0=x",
    "t=é",
    "[::1",
    "http://[::1/",
    "http://evil.example.com/merchant/",
    "https://testserver/merchant/listings/",
    "evil.example.com",
    "localhost:99999",
    "testserver:0",
    "1.2.3.4, not-an-ip, ::1, [::1]:80, 2001:db8::1",
    "multipart/form-data",
    "multipart/form-data; boundary=",
    "multipart/form-data; boundary=" + "x" * 5000,
    "application/x-www-form-urlencoded; charset=nope",
    "application/json; charset=utf-16",
    "text/plain",
    "-1",
    "0",
    "1e3",
    "²",
    str(2**70),
    "csrftoken=é; sessionid=" + "x" * 300 + "; sessionid=é; =;;",
    "sessionid=" + "a" * 32,
    "true",
    "false",
    "x" * 70_000,
    "é" * 10_000,
]
header_values = st.one_of(
    st.sampled_from(HEADER_SAMPLES),
    st.sampled_from(CLASSIC).map(lambda text: _as_a_server_decodes(text.encode("utf-8"))),
    st.binary(max_size=60).map(_as_a_server_decodes),
    st.text(alphabet=st.characters(max_codepoint=255), max_size=40),
).map(lambda value: value.replace("\r", "").replace("\n", ""))

HEADERS = {
    "Stripe-Signature": "HTTP_STRIPE_SIGNATURE",
    "Host": "HTTP_HOST",
    "X-Forwarded-For": "HTTP_X_FORWARDED_FOR",
    "X-Forwarded-Proto": "HTTP_X_FORWARDED_PROTO",
    "Cookie": "HTTP_COOKIE",
    "Referer": "HTTP_REFERER",
    "Origin": "HTTP_ORIGIN",
    "HX-Request": "HTTP_HX_REQUEST",
    "HX-Current-URL": "HTTP_HX_CURRENT_URL",
    "HX-Current-URL-URI-AutoEncoded": "HTTP_HX_CURRENT_URL_URI_AUTOENCODED",
    "HX-History-Restore-Request": "HTTP_HX_HISTORY_RESTORE_REQUEST",
    "HX-Boosted": "HTTP_HX_BOOSTED",
    "HX-Target": "HTTP_HX_TARGET",
    "HX-Trigger": "HTTP_HX_TRIGGER",
    "HX-Trigger-Name": "HTTP_HX_TRIGGER_NAME",
    "HX-Prompt": "HTTP_HX_PROMPT",
    "Content-Type": "CONTENT_TYPE",
    "Content-Length": "CONTENT_LENGTH",
}
HEADER_ROUTES = ROUTES + [Route("admin:login", {}), Route("admin:index", {})]
ADMIN_FIELDS = {"admin:login": {"username": "staff", "password": "wrong"}, "admin:index": {"q": "x"}}


@pytest.mark.parametrize("route", HEADER_ROUTES, ids=[route.name for route in HEADER_ROUTES])
def test_no_header_value_on_any_url_makes_a_server_error_or_a_write(world, route, settings):
    """Arbitrary values (non-ASCII, latin-1 bytes, huge) for the headers the site or Django
    read, by GET and POST, signed out and in; a refused request writes nothing."""
    import io

    settings.TRUSTED_PROXY_COUNT = 1  # so that X-Forwarded-For is read
    client = world["client"]
    arguments = {key: world["path_values"][key][0] for key in route.converters}
    url = reverse(route.name, kwargs=arguments)

    webhook = route.name == "payments:stripe_webhook"
    # The webhook always gets a signature: shaped like Stripe's, with any value in it, or any value.
    signatures = st.one_of(header_values, header_values.map(lambda value: f"t=1,v1={value}"))
    own = st.fixed_dictionaries({"Stripe-Signature": signatures}) if webhook else st.just({})

    @settings_for_headers
    @given(
        headers=st.dictionaries(st.sampled_from(sorted(HEADERS)), header_values, min_size=1, max_size=4),
        own=own,
        method=st.sampled_from(["POST"] if webhook else ["GET", "POST"]),
        signed_in=st.booleans(),
    )
    def run(headers, own, method, signed_in):
        headers = {**headers, **own}
        meta = {HEADERS[name]: value for name, value in headers.items()}
        fields = ADMIN_FIELDS.get(route.name) or _valid_fields(route, world)
        with transaction.atomic():
            cache.clear()
            if signed_in:
                client.force_login(world["merchant"].user)
            else:
                client.logout()
            before = Snapshot.take()
            if method == "GET":
                response = client.get(url, fields, **meta)
            else:
                if route.name == "payments:stripe_webhook":
                    body, content_type = session_event_body(world), "application/json"
                else:
                    body, content_type = urlencode(fields, doseq=True).encode(), "application/x-www-form-urlencoded"
                # A stream that ends where the body does, as a socket does, whatever Content-Length says.
                response = client.generic(
                    "POST", url, body, content_type, **{"wsgi.input": io.BytesIO(body), **meta}
                )
            if hasattr(response, "streaming_content"):
                content = b"".join(response.streaming_content)
            else:
                content = response.content
            after = Snapshot.take()
            transaction.set_rollback(True)
        assert response.status_code < 500, (route.name, method, headers, content[:300])
        if response.status_code >= 400:
            assert after == before, (route.name, method, headers, response.status_code)

    run()


settings_for_headers = settings(FUZZ, max_examples=25)


def session_event_body(world) -> bytes:
    return json.dumps(
        {"id": "evt_headers", "object": "event", "type": "customer.created", "data": {"object": {"id": "cus_x"}}}
    ).encode()


# Names with HTML and unicode: escaped on every page and in every HTML e-mail, as typed in the
# plain-text ones and in the CSV export.

HOSTILE = SCRIPT + " Zoë 東京 \"'&"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt; Zoë 東京 &quot;&#x27;&amp;"


@pytest.fixture
def hostile(client):
    from tests.factories import make_booking

    merchant = make_merchant(display_name="Merchant " + HOSTILE)
    listing = make_listing(merchant=merchant, title="Listing " + HOSTILE)
    slot = make_slot(listing=listing, capacity=10)
    booking = make_confirmed_booking(slot=slot, customer_name="Customer " + HOSTILE)
    pending = make_booking(slot=slot, customer_name="Pending " + HOSTILE)
    return {"merchant": merchant, "listing": listing, "slot": slot, "booking": booking, "pending": pending}


def _assert_escaped(html: str, *names: str, where: str) -> None:
    assert SCRIPT not in html, where
    assert "<script>" not in html.replace('<script src="', "").replace("<script defer src=", ""), where
    for name in names:
        assert name + ESCAPED in html, (where, name)


def test_names_with_html_are_escaped_on_every_storefront_page(client, hostile):
    booking, listing = hostile["booking"], hostile["listing"]
    pages = {
        reverse("shop:catalog"): ["Listing ", "Merchant "],
        reverse("shop:listing", args=[listing.slug]): ["Listing ", "Merchant "],
        reverse("shop:checkout_success") + f"?session_id={booking.checkout_session_id}": ["Listing "],
        reverse("shop:checkout_status", args=[booking.checkout_session_id]): ["Listing "],
        reverse("shop:booking", args=[booking.public_token]): ["Listing ", "Merchant ", "Customer "],
    }
    for url, names in pages.items():
        response = client.get(url)
        assert response.status_code in (200, 286), url
        _assert_escaped(response.content.decode(), *names, where=url)


def test_names_with_html_are_escaped_on_every_dashboard_page(client, hostile):
    client.force_login(hostile["merchant"].user)
    booking, listing, slot = hostile["booking"], hostile["listing"], hostile["slot"]
    pages = {
        reverse("merchant:dashboard"): ["Listing ", "Merchant "],
        reverse("merchant:listing_list"): ["Listing "],
        reverse("merchant:listing_detail", args=[listing.pk]): ["Listing "],
        reverse("merchant:listing_edit", args=[listing.pk]): ["Listing "],
        reverse("merchant:slot_detail", args=[slot.pk]): ["Listing ", "Customer ", "Pending "],
        reverse("merchant:slot_cancel", args=[slot.pk]): ["Listing "],
        reverse("merchant:booking_list"): ["Listing ", "Customer ", "Pending "],
        reverse("merchant:booking_list") + f"?listing={listing.pk}&q=%3Cscript%3E": [],
        reverse("merchant:booking_detail", args=[booking.pk]): ["Listing ", "Customer "],
        reverse("merchant:booking_refund", args=[booking.pk]): ["Listing ", "Customer "],
        reverse("merchant:profile"): ["Merchant "],
    }
    for url, names in pages.items():
        response = client.get(url)
        assert response.status_code == 200, url
        _assert_escaped(response.content.decode(), *names, where=url)


def test_the_csv_export_is_plain_text_with_names_as_typed(client, hostile):
    client.force_login(hostile["merchant"].user)

    response = client.get(reverse("merchant:booking_export"))

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    text = b"".join(response.streaming_content).decode()
    assert "Customer " + HOSTILE.replace('"', '""') in text
    assert "Listing " + HOSTILE.replace('"', '""') in text
    assert "&lt;" not in text


def test_names_with_html_are_escaped_in_html_e_mails_and_as_typed_in_plain_text(hostile, mailoutbox):
    from bookings import notifications
    from bookings.models import RefundReason, RefundStatus

    booking = hostile["booking"]
    refund = Refund.objects.create(
        booking=booking, amount=100, reason=RefundReason.MERCHANT, status=RefundStatus.FAILED, failure_reason=HOSTILE
    )
    notifications.booking_confirmation_send(booking=booking)
    notifications.refund_notice_send(refund=refund, booking=booking)
    notifications.refund_failed_alert_send(refund=refund, booking=booking)
    booking.status, booking.ended_reason = "cancelled", RefundReason.MERCHANT  # as booking_refund leaves it
    notifications.booking_cancelled_send(booking=booking)

    assert len(mailoutbox) == 4
    for message in mailoutbox:
        html = message.alternatives[0][0]
        _assert_escaped(html, "Customer ", where=message.subject)
        assert "Customer " + HOSTILE in message.body, message.subject
        assert "\n" not in message.subject
    assert "Listing " + ESCAPED in mailoutbox[0].alternatives[0][0]
    assert "Merchant " + ESCAPED in mailoutbox[0].alternatives[0][0]
    assert ESCAPED in mailoutbox[2].alternatives[0][0]  # the failure reason, from Stripe
