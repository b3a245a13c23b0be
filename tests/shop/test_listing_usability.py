"""The listing page on a phone: a week of times at a time, dated names, an error summary tied
to its fields, and a cancelled Checkout that gives the customer their form back."""

import datetime as dt
import re
import zoneinfo
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from bookings.models import BookingStatus, Slot
from payments import stripe_api
from tests.factories import make_booking, make_listing, make_merchant, make_slot

pytestmark = pytest.mark.django_db

PARIS = zoneinfo.ZoneInfo("Europe/Paris")


class Page(HTMLParser):
    """The ids, the elements' attributes and the text of a page."""

    def __init__(self, html: str):
        super().__init__()
        self.ids: set[str] = set()
        self.elements: list[tuple[str, dict]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.elements.append((tag, attrs))
        if attrs.get("id"):
            self.ids.add(attrs["id"])

    def described(self) -> list[tuple[str, str]]:
        return [(attrs.get("name") or attrs.get("id"), attrs["aria-describedby"]) for _, attrs in self.elements if "aria-describedby" in attrs]


def visible_text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def radio_names(html: str) -> dict[str, str]:
    """Each radio's accessible name (its aria-label, which wins over the label's text)."""
    return dict(re.findall(r'name="slot" value="(\d+)"[^>]*aria-label="([^"]+)"', html))


@pytest.fixture
def paris_listing(db):
    return make_listing(merchant=make_merchant(timezone_name="Europe/Paris"), price_amount=2000, currency="eur")


def weekly_series(listing, *, first: dt.date, weeks: int, days=(1, 3, 5), times=((10, 0), (14, 30), (18, 0))) -> list[Slot]:
    """A weekly series on the merchant's wall clock: `weeks` weeks × days × times."""
    slots = []
    monday = first - dt.timedelta(days=first.weekday())
    for week in range(weeks):
        for weekday in days:
            day = monday + dt.timedelta(weeks=week, days=weekday)
            for hour, minute in times:
                starts_at = dt.datetime.combine(day, dt.time(hour, minute), tzinfo=listing.merchant.zone)
                slots.append(Slot(listing=listing, starts_at=starts_at, capacity=6, seats_left=6))
    return Slot.objects.bulk_create(slots)


def next_monday() -> dt.date:
    today = timezone.localdate(timezone=PARIS)
    return today + dt.timedelta(days=7 - today.weekday())


def listing_url(listing, **query) -> str:
    url = reverse("shop:listing", args=[listing.slug])
    return url + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


# Weeks


def test_a_72_time_weekly_series_shows_one_week_at_a_time(client, paris_listing):
    first = next_monday()
    slots = weekly_series(paris_listing, first=first, weeks=8)
    assert len(slots) == 72

    html = client.get(listing_url(paris_listing)).content.decode()

    assert html.count('name="slot"') == 9
    shown = {int(pk) for pk in re.findall(r'name="slot" value="(\d+)"', html)}
    assert shown == {slot.pk for slot in slots[:9]}
    assert f'href="?week={(first + dt.timedelta(weeks=1)).isoformat()}"' in html
    assert 'rel="prev"' not in html

    second = client.get(listing_url(paris_listing, week=(first + dt.timedelta(weeks=1)).isoformat())).content.decode()
    assert {int(pk) for pk in re.findall(r'name="slot" value="(\d+)"', second)} == {slot.pk for slot in slots[9:18]}
    assert f'href="?week={first.isoformat()}"' in second and 'rel="prev"' in second

    last = client.get(listing_url(paris_listing, week=(first + dt.timedelta(weeks=7)).isoformat())).content.decode()
    assert 'rel="next"' not in last and last.count('name="slot"') == 9


def test_a_few_times_stay_on_one_page_without_week_links(client, paris_listing):
    first = next_monday()
    weekly_series(paris_listing, first=first, weeks=2, days=(1,), times=((10, 0),))

    html = client.get(listing_url(paris_listing)).content.decode()

    assert html.count('name="slot"') == 2
    assert "week-nav" not in html


def test_week_navigation_with_htmx_answers_only_the_picker(client, paris_listing):
    first = next_monday()
    slots = weekly_series(paris_listing, first=first, weeks=3)
    url = listing_url(paris_listing, week=(first + dt.timedelta(weeks=2)).isoformat())

    partial = client.get(url, headers={"HX-Request": "true"})
    full = client.get(url)

    body = partial.content.decode()
    assert partial.status_code == 200 and partial["Vary"] == "HX-Request"
    assert body.startswith('<div class="slot-picker" id="slot-picker">') and "<html" not in body
    assert {int(pk) for pk in re.findall(r'name="slot" value="(\d+)"', body)} == {slot.pk for slot in slots[18:27]}
    assert 'data-week-label autofocus' in body
    assert f'hx-get="?week={(first + dt.timedelta(weeks=1)).isoformat()}"' in body and 'hx-target="#slot-picker"' in body
    page = full.content.decode()
    assert "<html" in page and "Continue to payment" in page and "autofocus" not in page
    assert body.replace(" autofocus", "") in page


@pytest.mark.parametrize("week", ["2026-02-30", "nonsense", "9999-12-31", "0001-01-01", "²", "2026-1-1", "x" * 500])
def test_a_bad_week_opens_a_week_with_times_never_a_500(client, paris_listing, week):
    first = next_monday()
    slots = weekly_series(paris_listing, first=first, weeks=3)

    response = client.get(reverse("shop:listing", args=[paris_listing.slug]), {"week": week})

    assert response.status_code == 200
    shown = {int(pk) for pk in re.findall(r'name="slot" value="(\d+)"', response.content.decode())}
    assert shown in ({slot.pk for slot in slots[:9]}, {slot.pk for slot in slots[18:27]})


def test_the_time_chosen_in_the_catalog_opens_its_week_and_is_checked(client, paris_listing, settings):
    settings.STOREFRONT_CACHE_SECONDS = 5
    first = next_monday()
    slots = weekly_series(paris_listing, first=first, weeks=4)
    wanted = slots[30]

    for _ in range(2):  # made, then from the cache
        html = client.get(listing_url(paris_listing, slot=wanted.pk)).content.decode()
        assert f'name="slot" value="{wanted.pk}" checked' in html
        assert html.count(" checked") == 1


def test_days_of_next_year_carry_the_year_and_this_year_s_do_not(client, paris_listing, monkeypatch):
    now = dt.datetime(2026, 12, 20, 12, 0, tzinfo=PARIS)
    monkeypatch.setattr(timezone, "now", lambda: now)
    this_year = make_slot(listing=paris_listing, starts_at=dt.datetime(2026, 12, 29, 10, 0, tzinfo=PARIS))
    next_year = make_slot(listing=paris_listing, starts_at=dt.datetime(2027, 1, 1, 10, 0, tzinfo=PARIS))

    html = client.get(listing_url(paris_listing)).content.decode()

    headings = re.findall(r"<h3>([^<]+)</h3>", html)
    assert headings == ["Tuesday 29 December", "Friday 1 January 2027"]
    names = radio_names(html)
    assert names[str(this_year.pk)] == "Tuesday 29 December 2026, 10:00, 5 seats left"
    assert names[str(next_year.pk)] == "Friday 1 January 2027, 10:00, 5 seats left"


def test_days_and_times_are_the_merchant_s_even_when_utc_says_another_day(client):
    kolkata = make_listing(merchant=make_merchant(timezone_name="Asia/Kolkata"))
    # 20:00 UTC is 01:30 the next day in Kolkata.
    day = timezone.localdate() + dt.timedelta(days=5)
    slot = make_slot(listing=kolkata, starts_at=dt.datetime.combine(day, dt.time(20, 0), tzinfo=dt.UTC), capacity=6)

    names = radio_names(client.get(listing_url(kolkata)).content.decode())

    local_day = day + dt.timedelta(days=1)
    assert names[str(slot.pk)] == f"{local_day:%A} {local_day.day} {local_day:%B %Y}, 01:30, 6 seats left"


# Error summary


def test_a_failed_booking_shows_a_focused_summary_tied_to_its_fields(client, paris_listing):
    first = next_monday()
    slots = weekly_series(paris_listing, first=first, weeks=3)
    chosen = slots[20]  # in the third week

    response = client.post(
        reverse("shop:checkout_create", args=[paris_listing.slug]),
        {"slot": chosen.pk, "quantity": "0", "customer_name": " ", "customer_email": "nope", "week": first.isoformat()},
    )

    html = response.content.decode()
    page = Page(html)
    assert response.status_code == 400 and response["Cache-Control"] == "private, no-store"
    summary = re.search(r'<div class="error-summary"[^>]*>(.*?)</div>', html, re.S)
    assert summary and 'role="alert"' in summary.group(0) and 'tabindex="-1" autofocus' in summary.group(0)
    assert html.index('class="error-summary"') < html.index('name="slot"')  # at the top of the form
    links = dict(re.findall(r'<a href="#([^"]+)">([^<]+)</a>', summary.group(1)))
    assert links == {
        "id_quantity": "Book at least one seat.",
        "id_customer_name": "Tell us the name to put on the booking.",
        "id_customer_email": "Enter a valid e-mail address.",
    }
    assert set(links) <= page.ids
    described = dict(page.described())
    assert described["quantity"] == "id_quantity_error"
    for ids in described.values():
        assert set(ids.split()) <= page.ids
    # The week of the chosen time, with that time still chosen.
    assert f'name="slot" value="{chosen.pk}" checked' in html


def test_a_missing_time_is_linked_to_the_picker_of_the_week_being_looked_at(client, paris_listing):
    first = next_monday()
    slots = weekly_series(paris_listing, first=first, weeks=3)
    week = (first + dt.timedelta(weeks=1)).isoformat()

    response = client.post(
        reverse("shop:checkout_create", args=[paris_listing.slug]),
        {"quantity": "1", "customer_name": "Ada", "customer_email": "ada@example.com", "week": week},
    )

    html = response.content.decode()
    page = Page(html)
    assert '<a href="#id_slot">Pick a time.</a>' in html
    assert "id_slot" in page.ids and ("id_slot", "id_slot_error") in page.described()
    assert {int(pk) for pk in re.findall(r'name="slot" value="(\d+)"', html)} == {slot.pk for slot in slots[9:18]}
    assert 'value="Ada"' in html and 'value="ada@example.com"' in html


def test_a_merchant_form_shows_the_same_summary_with_valid_descriptions(client, merchant):
    client.force_login(merchant.user)

    response = client.post(
        reverse("merchant:listing_create"),
        {"title": "", "description": "", "price": "abc", "currency": "eur", "duration_minutes": "0"},
    )

    html = response.content.decode()
    page = Page(html)
    assert response.status_code == 400
    summary = re.search(r'<div class="error-summary"[^>]*>(.*?)</div>', html, re.S)
    assert 'role="alert"' in summary.group(0) and "autofocus" in summary.group(0)
    links = re.findall(r'<a href="#([^"]+)">', summary.group(1))
    assert links == ["id_title", "id_price", "id_duration_minutes"] and set(links) <= page.ids
    described = dict(page.described())
    assert described["title"] == "id_title_error"
    assert set(described["price"].split()) == {"id_price_helptext", "id_price_error"}
    for ids in described.values():
        assert set(ids.split()) <= page.ids


# A cancelled Checkout


@pytest.fixture
def checkout_opened(monkeypatch):
    """Stripe's side of checkout_open, remembering the cancel address it was given."""
    opened = {}

    def checkout_open(*, booking, customer_id, success_url, cancel_url, hold_until=None, product_id=""):
        opened["cancel_url"] = cancel_url
        return stripe_api.OpenedCheckout(
            session_id=f"cs_test_{booking.pk:08d}", url="https://checkout.example/pay",
            expires_at=timezone.now() + dt.timedelta(minutes=30), customer_id="",
        )

    monkeypatch.setattr(stripe_api, "checkout_open", checkout_open)
    monkeypatch.setattr(stripe_api, "customer_create", lambda **kwargs: "cus_test_own")
    monkeypatch.setattr(stripe_api, "listing_product_ensure", lambda **kwargs: "prod_test_listing")
    return opened


def test_a_cancelled_checkout_brings_the_customer_s_form_back_filled_in(client, paris_listing, checkout_opened, settings):
    settings.STOREFRONT_CACHE_SECONDS = 5
    first = next_monday()
    slots = weekly_series(paris_listing, first=first, weeks=3)
    chosen = slots[22]
    cache.clear()
    public_before = Client().get(listing_url(paris_listing)).content.decode()

    response = client.post(
        reverse("shop:checkout_create", args=[paris_listing.slug]),
        {"slot": chosen.pk, "quantity": "3", "customer_name": "Ada Lovelace", "customer_email": "ada@example.com"},
    )
    assert response.status_code == 303
    cancel = urlsplit(checkout_opened["cancel_url"])
    query = parse_qs(cancel.query)
    assert cancel.path == reverse("shop:listing", args=[paris_listing.slug]) and query["checkout"] == ["cancelled"]
    assert "ada" not in checkout_opened["cancel_url"].lower() and str(chosen.pk) not in query["draft"][0].split(":")[0]

    back = client.get(cancel.path + "?" + cancel.query)

    html = back.content.decode()
    assert back.status_code == 200 and back["Cache-Control"] == "private, no-store"
    assert "Checkout cancelled. Nothing was charged" in html
    assert f'name="slot" value="{chosen.pk}" checked' in html
    assert 'value="3"' in re.search(r'<input[^>]*name="quantity"[^>]*>', html).group(0)
    assert 'value="Ada Lovelace"' in html and 'value="ada@example.com"' in html

    # Another browser, the public cached page, and a forged reference show nothing of Ada.
    stranger = Client()
    for url in (listing_url(paris_listing), listing_url(paris_listing, checkout="cancelled", draft=query["draft"][0][:-2] + "xx")):
        page = stranger.get(url, follow=True).content.decode()
        assert "Ada Lovelace" not in page and "ada@example.com" not in page
    cached = Client().get(listing_url(paris_listing)).content.decode()
    assert "Ada Lovelace" not in cached and "ada@example.com" not in cached
    assert re.sub(r"[A-Za-z0-9]{64}", "", cached) == re.sub(r"[A-Za-z0-9]{64}", "", public_before)


def test_a_paid_booking_or_another_listing_s_reference_fills_nothing_in(client, paris_listing):
    from payments.checkout import checkout_draft_reference

    slot = make_slot(listing=paris_listing)
    paid = make_booking(slot=slot, customer_name="Bea Paidfor", customer_email="bea@example.com", status=BookingStatus.CONFIRMED)
    other = make_booking(slot=make_slot(), customer_name="Cy Otherlisting", customer_email="cy@example.com")

    for booking in (paid, other):
        url = listing_url(paris_listing, checkout="cancelled", draft=checkout_draft_reference(booking))
        html = client.get(url, follow=True).content.decode()
        assert "Checkout cancelled" in html
        assert booking.customer_email not in html and booking.customer_name not in html
