"""Receipts and payment methods in a real browser: a visitor who has not proved the booking's
e-mail asks for a sign-in link, follows it from the e-mail and reaches the portal of their own
Customer (and only theirs)."""

import re

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from tests.e2e.pages import SUCCESS_URL, expect_status, prove_email_by_link, start_booking
from tests.factories import make_listing, make_slot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_an_unproven_visitor_follows_the_emailed_link_to_the_portal_of_their_own_customer(
    page, shop, stripe, portals_opened
):
    slot = make_slot(listing=make_listing(title="Harbour walk", price_amount=1800, currency="eur"), capacity=5)
    checkout = start_booking(page, shop, slot)
    checkout.pay()
    page.wait_for_url(SUCCESS_URL)
    expect_status(page, "confirmed", timeout=stripe.timeout)
    booking = checkout.booking
    booking.refresh_from_db()

    # The success page links to the booking page; not proved yet, that offers the e-mailed link, not the portal.
    expect(page.get_by_role("button", name="Receipts and payment methods")).to_have_count(0)
    page.get_by_role("link", name="Receipts and payment methods").click()
    page.wait_for_url(shop.url(reverse("shop:booking", args=[booking.public_token])) + "#receipts")
    expect(page.get_by_role("button", name="Receipts and payment methods")).to_have_count(0)
    prove_email_by_link(page, stripe, "ada@example.com")
    # Signed in, the link led to the booking's page.
    page.wait_for_url(shop.url(reverse("shop:booking", args=[booking.public_token])))

    page.get_by_role("button", name="Receipts and payment methods").click()
    page.wait_for_url(re.compile(r"/p/session/bps_"))
    payment = page.locator("[data-testid=payment-row]")
    expect(payment).to_have_count(1)
    expect(payment).to_contain_text("€18.00")
    assert portals_opened == [booking.stripe_customer_id]
