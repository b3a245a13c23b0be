"""The reason money came back, as a customer of a Europe/Paris merchant sees it in a browser, at a
desktop and a phone width: a time the merchant cancelled, and a partial refund."""

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from bookings.models import Booking
from bookings.services import booking_refund, slot_cancel
from payments.checkout import checkout_start
from tests.e2e.test_pages import SCREENSHOTS, WIDTHS, fits_the_width
from tests.factories import make_listing, make_merchant, make_slot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _paid_booking(shop, stripe, slot, email: str) -> Booking:
    started = checkout_start(
        slot=slot,
        quantity=2,
        customer_email=email,
        customer_name="Ada Lovelace",
        success_url=shop.url(reverse("shop:checkout_success")) + "?session_id={CHECKOUT_SESSION_ID}",
        cancel_url=shop.url("/"),
    )
    stripe.control.pay_session(started.booking.checkout_session_id)
    stripe.control.wait_for_webhooks()
    return Booking.objects.get(pk=started.booking.pk)


@pytest.mark.parametrize("width", WIDTHS)
def test_a_cancelled_time_and_a_partial_refund_say_why_money_came_back(width, new_context, shop, stripe):
    merchant = make_merchant(timezone_name="Europe/Paris", display_name="Atelier Lumière")
    listing = make_listing(merchant=merchant, title="Pottery evening", price_amount=2500, currency="eur")
    cancelled_slot, kept_slot = make_slot(listing=listing, capacity=4), make_slot(listing=listing, capacity=4)
    cancelled = _paid_booking(shop, stripe, cancelled_slot, "ada@example.com")
    partly = _paid_booking(shop, stripe, kept_slot, "grace@example.com")
    slot_cancel(slot=cancelled_slot)
    booking_refund(booking=partly, amount=1000)
    stripe.control.wait_for_webhooks()
    page = new_context(**WIDTHS[width]).new_page()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def shoot(name: str) -> None:
        page.screenshot(path=SCREENSHOTS / f"{name}-{width}.png", full_page=True)
        assert fits_the_width(page), f"the {name} page scrolls sideways at the {width} width"

    page.goto(shop.url(reverse("shop:checkout_success")) + f"?session_id={cancelled.checkout_session_id}")
    expect(page.get_by_role("heading", name="This time was cancelled — refunded")).to_be_visible()
    expect(page.get_by_test_id("money-back")).to_contain_text("Atelier Lumière cancelled this time.")
    expect(page.get_by_test_id("money-back")).to_contain_text("Your payment of €50.00 has been refunded in full")
    expect(page.locator("body")).not_to_contain_text("Sold out")
    shoot("success-slot-cancelled")

    page.goto(shop.url(reverse("shop:booking", args=[cancelled.public_token])))
    expect(page.locator(".badge")).to_have_text("Cancelled")
    expect(page.get_by_test_id("money-back")).to_contain_text("Your booking is cancelled and holds no seats.")
    expect(page.locator(".facts")).to_contain_text("Seats booked")
    shoot("booking-slot-cancelled")

    page.goto(shop.url(reverse("shop:booking", args=[partly.public_token])))
    expect(page.locator(".badge")).to_have_text("Confirmed")
    expect(page.get_by_test_id("money-back")).to_contain_text(
        "Atelier Lumière refunded €10.00 of your €50.00 payment. Your booking still stands."
    )
    shoot("booking-partly-refunded")
