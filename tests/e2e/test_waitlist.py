"""The waitlist in a real browser: a customer finds the last seat held, joins its waitlist, the
holder cancels on Checkout, and the waiting customer gets the offer e-mail, opens it and pays."""

import re

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from bookings.models import BookingStatus, WaitlistEntry, WaitlistStatus
from bookings.services import waitlist_join
from tests.e2e.pages import (
    CARD_OK,
    SUCCESS_URL,
    Checkout,
    Customer,
    CHECKOUT_URL,
    expect_status,
    listing_url,
    seats_shown,
    sign_in,
    start_booking,
)
from tests.e2e.test_pages import SCREENSHOTS
from tests.factories import make_listing, make_merchant, make_slot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

OFFER_PATH = re.compile(r"/waitlist/offer/[^/\s]+/")


def shoot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    width = page.viewport_size["width"] if page.viewport_size else 1280
    page.set_viewport_size({"width": 1280, "height": 900})
    page.screenshot(path=SCREENSHOTS / f"{name}-desktop.png", full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=SCREENSHOTS / f"{name}-phone.png", full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, f"{name} scrolls sideways on a phone"
    page.set_viewport_size({"width": width, "height": 900})


def test_a_customer_who_finds_the_last_seat_held_joins_the_waitlist_and_pays_once_it_frees(
    new_context, shop, stripe, live_server, page_problems
):
    paris = make_merchant(username="nord", timezone_name="Europe/Paris", display_name="Atelier Nord")
    slot = make_slot(listing=make_listing(merchant=paris, title="Sea cave explorer", price_amount=2500), capacity=1)
    ada_page, grace_page, merchant_page = (new_context().new_page() for _ in range(3))
    ada = start_booking(ada_page, shop, slot, customer=Customer(name="Ada", email="ada@example.com"))

    # Grace finds the last seat held, and joins its waitlist from the listing (htmx).
    grace_page.goto(listing_url(shop, slot) + f"?slot={slot.pk}")
    expect(seats_shown(grace_page, slot)).to_have_text("Sold out for now")
    grace_page.locator(f"[data-waitlist-link='{slot.pk}']").click()
    expect(grace_page.locator("#waitlist-heading")).to_have_text("Join the waitlist")
    starts = timezone.localtime(slot.starts_at, paris.zone)
    expect(grace_page.get_by_test_id("waitlist-time")).to_contain_text(f"{starts:%H:%M}")
    grace_page.fill("#waitlist_customer_name", "Grace Hopper")
    grace_page.fill("#waitlist_customer_email", "grace@example.com")
    shoot(grace_page, "waitlist-form")
    grace_page.get_by_role("button", name="Join the waitlist").click()
    expect(grace_page.get_by_test_id("waitlist-joined")).to_contain_text("You are first in line")
    assert grace_page.url.startswith(listing_url(shop, slot))  # the panel only was swapped
    waitlist_join(slot=slot, quantity=1, customer_email="linus@example.com", customer_name="Linus")

    # Ada cancels on Stripe's page: her seat is free at once, and offered to Grace.
    ada.cancel()
    ada_page.wait_for_url(re.compile(re.escape(listing_url(shop, slot)) + r"\?checkout=cancelled"), timeout=stripe.timeout)
    stripe.settle()
    offers = [m for m in mail.outbox if m.subject == "Seats are free for you: Sea cave explorer"]
    assert [m.to for m in offers] == [["grace@example.com"]]
    grace = WaitlistEntry.objects.get(customer_email="grace@example.com")
    assert grace.status == WaitlistStatus.OFFERED
    until = timezone.localtime(grace.offer_hold.expires_at, paris.zone)
    assert f"held for you until {until:%H:%M}" in offers[0].body and "(Europe/Paris)" in offers[0].body

    # The merchant sees the offer and the line behind it, on Paris time.
    sign_in(merchant_page, live_server.url, "nord")
    merchant_page.goto(live_server.url + reverse("merchant:slot_detail", args=[slot.pk]))
    expect(merchant_page.get_by_test_id("waitlist-length")).to_have_text("2 in line")
    expect(merchant_page.get_by_test_id("offer-until")).to_have_text(f"Seats held until {until:%H:%M}")
    shoot(merchant_page, "merchant-waitlist")

    # Grace opens the offer from her e-mail and pays on Checkout.
    grace_page.goto(shop.url(OFFER_PATH.search(offers[0].body).group(0)))
    expect(grace_page.get_by_test_id("offer-held-until")).to_contain_text(f"until {until:%H:%M}")
    shoot(grace_page, "waitlist-offer")
    grace_page.get_by_role("button", name="Continue to payment").click()
    grace_page.wait_for_url(CHECKOUT_URL)
    checkout = Checkout(grace_page, stripe)
    checkout.pay(CARD_OK, name="Grace Hopper")
    grace_page.wait_for_url(SUCCESS_URL, timeout=stripe.timeout)
    expect_status(grace_page, "confirmed", timeout=stripe.timeout)
    stripe.settle()

    booking = checkout.booking
    assert booking.status == BookingStatus.CONFIRMED and booking.customer_email == "grace@example.com"
    assert ada.booking.status == BookingStatus.EXPIRED
    assert not stripe.refunds_of(booking.payment_intent_id)
    slot.refresh_from_db()
    assert (slot.seats_sold, slot.seats_held, slot.seats_left) == (1, 0, 0)
    grace.refresh_from_db()
    assert grace.status == WaitlistStatus.BOOKED and grace.booking_id == booking.pk
    # The offer link, used, says so.
    grace_page.goto(shop.url(OFFER_PATH.search(offers[0].body).group(0)))
    expect(grace_page.get_by_test_id("waitlist-link-message")).to_contain_text("You have already used this offer")
    page_problems.clear()  # that 409 is the page meant
