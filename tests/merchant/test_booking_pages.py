"""The bookings list (filters, htmx, CSV export) and a booking's page (payment, refunds)."""

import csv
import datetime as dt
import io

import pytest
from django.urls import reverse
from django.utils import timezone

from bookings.models import Booking, BookingStatus, Refund
from bookings.services import booking_refund, refund_record_created, refund_record_failure
from tests.factories import make_booking, make_confirmed_booking, make_listing, make_merchant, make_slot

pytestmark = pytest.mark.django_db

LIST = reverse("merchant:booking_list")
EXPORT = reverse("merchant:booking_export")


@pytest.fixture
def signed_in(client, merchant):
    client.force_login(merchant.user)
    return client


def at(merchant, days: int, hour: int) -> dt.datetime:
    day = timezone.now().astimezone(merchant.zone).date() + dt.timedelta(days=days)
    return dt.datetime.combine(day, dt.time(hour, 0), tzinfo=merchant.zone)


@pytest.fixture
def bookings(merchant, stripe_settings_unset):
    kayak = make_listing(merchant=merchant, title="Kayak")
    pottery = make_listing(merchant=merchant, title="Pottery")
    soon = make_slot(listing=kayak, starts_at=at(merchant, 2, 10))
    later = make_slot(listing=pottery, starts_at=at(merchant, 9, 18))
    return {
        "ann": make_confirmed_booking(slot=soon, customer_email="ann@example.com", customer_name="Ann"),
        "bob": make_confirmed_booking(slot=later, customer_email="bob@example.org", customer_name="Bob", quantity=2),
        "cy": make_booking(slot=later, customer_email="cy@example.com", customer_name="Cy"),
        "kayak": kayak,
        "soon": soon,
        "later": later,
    }


def emails(html: str) -> set[str]:
    return {email for email in ("ann@example.com", "bob@example.org", "cy@example.com") if email in html}


@pytest.mark.parametrize(
    "query,expected",
    [
        ({}, {"ann@example.com", "bob@example.org", "cy@example.com"}),
        ({"status": "confirmed"}, {"ann@example.com", "bob@example.org"}),
        ({"status": "pending"}, {"cy@example.com"}),
        ({"q": "EXAMPLE.ORG"}, {"bob@example.org"}),
        ({"q": "ann"}, {"ann@example.com"}),
    ],
)
def test_the_list_filters_by_status_and_searches_by_email(signed_in, bookings, query, expected):
    assert emails(signed_in.get(LIST, query).content.decode()) == expected


def test_the_list_filters_by_the_slot_s_day_in_the_merchant_s_timezone(signed_in, bookings, merchant):
    day = bookings["soon"].starts_at.astimezone(merchant.zone).date().isoformat()

    html = signed_in.get(LIST, {"date_from": day, "date_to": day}).content.decode()

    assert emails(html) == {"ann@example.com"}


def test_the_list_filters_by_listing_and_by_slot(signed_in, bookings):
    by_listing = signed_in.get(LIST, {"listing": bookings["kayak"].pk}).content.decode()
    by_slot = signed_in.get(LIST, {"slot": bookings["later"].pk}).content.decode()

    assert emails(by_listing) == {"ann@example.com"}
    assert emails(by_slot) == {"bob@example.org", "cy@example.com"}


@pytest.mark.parametrize(
    "query,error",
    [
        ({"status": "<b>nope</b>"}, "Choose a status from the list."),
        ({"date_from": "31/31/2026"}, "Enter a date such as"),
        ({"date_from": "0001-01-01"}, "Enter a date between 1970 and 2100."),
        ({"date_from": "2020-01-10", "date_to": "2020-01-01"}, "Choose an end date on or after the start date."),
        ({"slot": "999999999999999999999999"}, "That time is not one of yours."),
        ({"page": "9999"}, None),
        ({"page": "x"}, None),
    ],
)
def test_a_filter_that_does_not_parse_is_reported_and_left_out(signed_in, bookings, query, error):
    response = signed_in.get(LIST, query)

    html = response.content.decode()
    assert response.status_code == 200
    if error:
        assert error in html
    assert "<b>nope</b>" not in html
    assert emails(html)  # the other filters, or none, still apply


def test_htmx_filters_answer_with_the_table_alone_and_history_restores_get_the_page(signed_in, bookings):
    partial = signed_in.get(LIST, {"status": "pending"}, headers={"HX-Request": "true"})
    restore = signed_in.get(
        LIST, {"status": "pending"}, headers={"HX-Request": "true", "HX-History-Restore-Request": "true"}
    )

    assert "<html" not in partial.content.decode()
    assert emails(partial.content.decode()) == {"cy@example.com"}
    assert f'href="{EXPORT}?status=pending"' in partial.content.decode()
    assert "HX-Request" in partial["Vary"]
    assert "<html" in restore.content.decode()


def test_htmx_filters_push_an_address_with_only_the_filters_in_use(signed_in, bookings):
    query = {"status": "pending", "listing": "", "date_from": "", "date_to": "", "q": "cy", "slot": ""}

    response = signed_in.get(LIST, query, headers={"HX-Request": "true"})

    assert response["HX-Push-Url"] == f"{LIST}?status=pending&q=cy"


def test_the_filter_form_works_without_javascript_and_pushes_its_url_with_it(signed_in, bookings):
    html = signed_in.get(LIST).content.decode()

    assert f'<form method="get" action="{LIST}"' in html
    assert 'hx-push-url="true"' in html
    assert 'hx-target="#booking-results"' in html


def test_the_list_is_paginated(signed_in, bookings):
    slot = bookings["soon"]
    Booking.objects.bulk_create(
        Booking(slot=slot, quantity=1, customer_email=f"p{i}@example.net", customer_name="P", amount_total=100, currency="eur")
        for i in range(60)
    )

    first = signed_in.get(LIST, {"q": "example.net"}).content.decode()
    second = signed_in.get(LIST, {"q": "example.net", "page": "2"}).content.decode()

    assert "60 bookings" in first and "Page 1 of 2" in first
    assert first.count("@example.net") == 50 and second.count("@example.net") == 10


def read_csv(response) -> list[dict]:
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_the_csv_export_has_the_filtered_bookings_in_the_merchant_s_timezone(signed_in, bookings, merchant):
    rows = read_csv(signed_in.get(EXPORT, {"status": "confirmed"}))

    assert [row["customer_email"] for row in rows] == ["bob@example.org", "ann@example.com"]
    bob = rows[0]
    assert bob["listing"] == "Pottery"
    assert bob["starts_at"] == bookings["later"].starts_at.astimezone(merchant.zone).strftime("%Y-%m-%d %H:%M")
    assert bob["timezone"] == merchant.timezone
    assert (bob["seats"], bob["currency"], bob["amount_paid"], bob["amount_refunded"]) == ("2", "EUR", "50.00", "0.00")


@pytest.mark.parametrize("evil", ["=HYPERLINK(\"http://x\")", "+1+1", "-2+3", "@SUM(A1)", "\tleading tab", "\r=cmd"])
def test_the_csv_export_defuses_spreadsheet_formulas_in_names_and_emails(signed_in, bookings, evil):
    Booking.objects.filter(pk=bookings["ann"].pk).update(customer_name=evil, customer_email=f"{evil[:1]}x@example.com")

    rows = read_csv(signed_in.get(EXPORT, {"q": "x@example.com"}))

    assert rows[0]["customer_name"] == "'" + evil
    assert rows[0]["customer_email"].startswith("'")


def test_an_ordinary_name_is_exported_unchanged(signed_in, bookings):
    rows = read_csv(signed_in.get(EXPORT, {"q": "ann@"}))

    assert rows[0]["customer_name"] == "Ann"
    assert rows[0]["customer_email"] == "ann@example.com"


# A booking's page


def test_a_booking_page_shows_its_payment_and_refund_history_with_stripe_ids(signed_in, bookings):
    booking = bookings["bob"]
    partial = booking_refund(booking=booking, amount=1000)
    refund_record_created(refund_id=partial.pk, receipt_id="re_partial123", status="succeeded")
    failed = booking_refund(booking=booking, amount=500)
    refund_record_failure(refund_id=failed.pk, failure_reason="charge_for_pending_refund_disputed")

    html = signed_in.get(reverse("merchant:booking_detail", args=[booking.pk])).content.decode()

    assert booking.payment_intent_id in html and booking.checkout_session_id in html
    assert "re_partial123" in html and "€10.00" in html and "Succeeded" in html
    assert "charge_for_pending_refund_disputed" in html and "€5.00" in html
    assert "Refunded by the merchant" in html


def test_a_partial_refund_leaves_the_booking_confirmed(signed_in, bookings):
    booking = bookings["bob"]

    response = signed_in.post(reverse("merchant:booking_refund", args=[booking.pk]), {"amount": "12.50"}, follow=True)

    booking.refresh_from_db()
    assert booking.status == BookingStatus.CONFIRMED
    assert booking.refunds.get().amount == 1250
    assert "Refunded €12.50; the booking stands." in response.content.decode()


def test_a_full_refund_cancels_the_booking_and_returns_its_seats(signed_in, bookings):
    booking = bookings["bob"]
    slot = booking.slot

    signed_in.post(reverse("merchant:booking_refund", args=[booking.pk]), {"amount": "50.00"})

    booking.refresh_from_db()
    slot.refresh_from_db()
    assert booking.status == BookingStatus.REFUND_DUE
    assert slot.seats_left == slot.capacity


@pytest.mark.parametrize(
    "amount,error",
    [
        ("50.01", "You can refund at most €50.00"),
        ("0", "Enter an amount above zero."),
        ("-3", "Enter an amount above zero."),
        ("1.005", "EUR amounts have at most 2 decimals."),
        ("lots", "Enter an amount such as 12.50."),
        ("", "Enter the amount to refund"),
    ],
)
def test_a_refund_amount_that_is_not_right_is_refused_beside_the_field(signed_in, bookings, amount, error):
    booking = bookings["bob"]

    response = signed_in.post(reverse("merchant:booking_refund", args=[booking.pk]), {"amount": amount})

    assert response.status_code == 400
    assert error in response.content.decode()
    assert not Refund.objects.exists()


def test_the_refund_confirmation_comes_inline_with_htmx(signed_in, bookings):
    html = signed_in.get(
        reverse("merchant:booking_refund", args=[bookings["bob"].pk]), headers={"HX-Request": "true"}
    ).content.decode()

    assert "<html" not in html
    assert 'name="amount"' in html and 'value="50.00"' in html
    assert 'hx-select="#booking-refund"' in html


def test_a_booking_that_is_not_confirmed_cannot_be_refunded(signed_in, bookings):
    pending = bookings["cy"]

    response = signed_in.post(reverse("merchant:booking_refund", args=[pending.pk]), {"amount": "1.00"}, follow=True)

    assert "Only a confirmed booking can be refunded." in response.content.decode()
    assert not Refund.objects.exists()


def test_retrying_a_failed_refund_asks_again_for_what_is_owed(signed_in, bookings):
    booking = bookings["bob"]
    refund = booking_refund(booking=booking)
    refund_record_failure(refund_id=refund.pk, failure_reason="expired_or_canceled_card")

    response = signed_in.post(reverse("merchant:booking_refund_retry", args=[booking.pk]), follow=True)

    booking.refresh_from_db()
    assert booking.status == BookingStatus.REFUND_DUE
    assert list(booking.refunds.values_list("status", "amount")) == [("failed", 5000), ("requested", 5000)]
    assert "Stripe could not be reached just now" in response.content.decode()


def test_retrying_a_booking_whose_refund_did_not_fail_is_refused_with_a_sentence(signed_in, bookings):
    response = signed_in.post(reverse("merchant:booking_refund_retry", args=[bookings["ann"].pk]), follow=True)

    assert "Only a booking whose refund failed can be refunded again." in response.content.decode()


def test_another_merchant_s_booking_is_not_found(signed_in, bookings):
    other = make_confirmed_booking(slot=make_slot(listing=make_listing(merchant=make_merchant())))

    assert signed_in.get(reverse("merchant:booking_detail", args=[other.pk])).status_code == 404
