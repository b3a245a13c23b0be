"""A merchant and a customer in two browsers: the merchant puts a listing and a weekly series
on sale, a customer books and pays, the merchant sees the booking and refunds it, and the seat
is on sale again."""

import datetime as dt
import re

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from bookings.models import Booking, BookingStatus, Listing
from tests.e2e.conftest import both_stripes
from tests.e2e.pages import CARD_OK, SUCCESS_URL, Customer, expect_status, listing_url, seats_shown, sign_in, start_booking
from tests.factories import make_merchant

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@both_stripes
def test_a_merchant_sells_a_series_a_customer_books_it_and_the_refund_frees_the_seat(page, new_context, shop, stripe):
    merchant = make_merchant(username="harbour", display_name="Harbour Kayaks", timezone_name="Europe/London")
    sign_in(page, shop.base_url, "harbour")

    page.get_by_role("link", name="New listing").click()
    page.fill("#id_title", "Evening paddle")
    page.fill("#id_description", "Two hours along the harbour wall as the lights come on.")
    page.fill("#id_price", "30.00")
    page.select_option("#id_currency", "eur")
    page.fill("#id_duration_minutes", "120")
    page.get_by_role("button", name="Create listing").click()
    expect(page.locator(".messages")).to_contain_text("“Evening paddle” is in the catalog")

    page.get_by_role("link", name="Add a recurring series").click()
    monday = timezone.now().astimezone(merchant.zone).date()
    monday += dt.timedelta(days=7 - monday.weekday())
    for weekday in ("1", "3"):  # Tuesdays and Thursdays
        page.check(f"input[name=weekdays][value='{weekday}']")
    page.fill("#id_start_times", "18:30")
    page.fill("#id_first_day", monday.isoformat())
    page.fill("#id_last_day", (monday + dt.timedelta(days=13)).isoformat())
    page.fill("#id_capacity", "4")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#series-preview")).to_contain_text("4 new times")
    page.get_by_role("button", name="Create these times").click()
    listing = Listing.objects.get(merchant=merchant, title="Evening paddle")
    page.wait_for_url(shop.url(reverse("merchant:listing_detail", args=[listing.pk])))
    slots = list(listing.slots.order_by("starts_at"))
    assert [timezone.localtime(s.starts_at, merchant.zone).strftime("%a %H:%M") for s in slots] == [
        "Tue 18:30", "Thu 18:30", "Tue 18:30", "Thu 18:30"
    ]

    customer = new_context().new_page()
    customer.goto(shop.url("/"))
    customer.get_by_role("link", name="Evening paddle").first.click()
    customer.wait_for_url(listing_url(shop, slots[0]))
    expect(seats_shown(customer, slots[0])).to_have_text("4 seats left")
    checkout = start_booking(customer, shop, slots[0], customer=Customer(name="Grace Hopper", email="grace@example.com"))
    checkout.pay(CARD_OK)
    customer.wait_for_url(SUCCESS_URL, timeout=stripe.timeout)
    expect_status(customer, "confirmed", timeout=stripe.timeout)
    booking = checkout.booking

    page.get_by_role("navigation", name="Merchant dashboard").get_by_role("link", name="Bookings").click()
    row = page.locator("#booking-results tr", has_text="grace@example.com")
    expect(row).to_contain_text("Confirmed")
    expect(row).to_contain_text("€30.00")
    row.get_by_role("link", name=f"#{booking.pk}").click()
    page.get_by_role("link", name="Refund…").click()  # the form opens in place
    expect(page.locator("#id_amount")).to_have_value("30.00")
    page.get_by_role("button", name="Refund", exact=True).click()

    expect(page.locator(".messages")).to_contain_text("€30.00")
    stripe.eventually(lambda: Booking.objects.get(pk=booking.pk).status == BookingStatus.REFUNDED, "refunded")
    page.reload()
    expect(page.locator("h1 .badge")).to_have_text("Refunded")
    refunds = stripe.refunds_of(booking.payment_intent_id, stripe_account=booking.stripe_account_id)
    assert [(refund["amount"], refund["status"]) for refund in refunds] == [(3000, "succeeded")]

    customer.goto(listing_url(shop, slots[0]))
    expect(seats_shown(customer, slots[0])).to_have_text("4 seats left")
    stripe.eventually(lambda: len(mail.outbox) == 2, "a confirmation, then a refund e-mail")
    assert [message.to for message in mail.outbox] == [["grace@example.com"]] * 2
    assert re.search("refund", mail.outbox[1].subject, re.I)
