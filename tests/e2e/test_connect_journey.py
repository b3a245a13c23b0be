"""Stripe Connect end to end in Chromium: a Europe/Paris merchant presses "Get paid with Stripe",
onboards on the emulator's hosted onboarding page, a customer pays on their listing (a direct
charge with the platform's fee), the merchant's dashboard shows gross, fee and net, and the
merchant refunds (keeping the fee, as the default setting says). Screenshots of the dashboard's
Connect panel and revenue at phone and desktop widths land in test-artifacts/screenshots/."""

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from bookings.models import Booking, BookingStatus, Merchant
from payments import stripe_api
from tests.e2e.pages import CARD_OK, SUCCESS_URL, Customer, expect_status, listing_url, sign_in, start_booking
from tests.e2e.test_pages import SCREENSHOTS
from tests.factories import make_listing, make_merchant, make_slot

# Connect is turned on here, with the account the merchant makes: `--connect` adds none.
pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.own_connect_accounts]

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


@pytest.fixture
def connect(settings, stripe):
    settings.CONNECT_ENABLED = True
    settings.CONNECT_ACCOUNT_TYPE = "express"
    settings.CONNECT_ACCOUNT_COUNTRY = "FR"
    settings.PLATFORM_FEE_PERCENT, settings.PLATFORM_FEE_FIXED = "10", 30  # on €45.00: €4.50 + €0.30
    settings.CONNECT_REFUND_FEE_REASONS = ["sold_out", "slot_cancelled"]  # a merchant's refund keeps the fee
    settings.STRIPE_CONNECT_WEBHOOK_SECRETS = [stripe.control.connect_webhook_secret]
    return stripe


def fits_the_width(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")


def revenue_cells(page) -> list[str]:
    row = page.locator("[aria-labelledby=revenue-heading] tbody tr").first
    return [cell.strip() for cell in row.locator("td").all_inner_texts()]


def shoot_dashboard(page, name: str) -> None:
    """The dashboard's Connect panel and revenue, at phone and desktop widths; neither scrolls sideways."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for width, viewport in (("phone", PHONE), ("desktop", DESKTOP)):
        page.set_viewport_size(viewport)
        page.screenshot(path=SCREENSHOTS / f"merchant-connect-{name}-{width}.png", full_page=True)
        page.get_by_test_id("stripe-account").screenshot(path=SCREENSHOTS / f"merchant-connect-{name}-panel-{width}.png")
        page.locator("[aria-labelledby=revenue-heading]").screenshot(
            path=SCREENSHOTS / f"merchant-connect-{name}-revenue-{width}.png"
        )
        assert fits_the_width(page), f"the dashboard scrolls sideways at the {width} width"
    page.set_viewport_size(DESKTOP)


def test_a_paris_merchant_onboards_a_customer_pays_the_dashboard_shows_gross_fee_net_and_the_merchant_refunds(
    page, new_context, shop, connect
):
    merchant = make_merchant(username="atelier", display_name="Atelier Nord", timezone_name="Europe/Paris")
    listing = make_listing(merchant=merchant, title="Sourdough masterclass", price_amount=4500, currency="eur")
    slot = make_slot(listing=listing, capacity=6)
    customer = new_context(viewport=PHONE).new_page()

    # Before onboarding, customers cannot book.
    customer.goto(listing_url(shop, slot))
    expect(customer.get_by_test_id("not-taking-bookings")).to_have_text(
        "Atelier Nord is not taking bookings yet. Please check back soon."
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for width, viewport in (("phone", PHONE), ("desktop", DESKTOP)):
        customer.set_viewport_size(viewport)
        customer.goto(listing_url(shop, slot))
        customer.screenshot(path=SCREENSHOTS / f"listing-not-taking-bookings-{width}.png", full_page=True)
        assert fits_the_width(customer), f"the listing scrolls sideways at the {width} width"
        customer.goto(shop.url("/"))
        expect(customer.get_by_test_id("not-taking-bookings")).to_have_text("Not taking bookings yet")
        customer.screenshot(path=SCREENSHOTS / f"catalog-not-taking-bookings-{width}.png", full_page=True)
    customer.set_viewport_size(PHONE)

    sign_in(page, shop.base_url, "atelier")
    panel = page.get_by_test_id("stripe-account")
    expect(panel).to_contain_text("Connect a Stripe account to take bookings")
    shoot_dashboard(page, "before")
    page.get_by_test_id("connect-start").click()

    # Stripe's hosted onboarding (the emulator's): first leave with details due, then finish.
    expect(page.get_by_test_id("connect-onboarding")).to_be_visible()
    account_id = Merchant.objects.get(pk=merchant.pk).stripe_account_id
    assert account_id.startswith("acct_")
    page.fill("#business_name", "Atelier Nord")
    page.get_by_test_id("save-for-later").click()
    page.wait_for_url(shop.url(reverse("merchant:dashboard")))
    expect(page.locator(".messages")).to_contain_text("Stripe still needs some details")
    expect(panel.get_by_test_id("charges-disabled")).to_be_visible()
    needs = panel.get_by_test_id("requirements-due")
    expect(needs).to_contain_text("What your business sells (its industry)")  # not "business_profile.mcc"
    expect(needs).to_contain_text("A bank account for your payouts")
    expect(needs).not_to_contain_text("business_profile")
    expect(panel.get_by_test_id("express-dashboard")).to_have_count(0)  # no login link before onboarding is done
    shoot_dashboard(page, "details-due")
    page.get_by_test_id("connect-start").click()  # "Finish setting up with Stripe": a new link
    expect(page.get_by_test_id("connect-onboarding")).to_be_visible()
    assert page.input_value("#business_name") == "Atelier Nord"  # what was saved is kept
    page.select_option("#mcc", "8299")
    page.fill("#url", "https://atelier-nord.example")
    page.fill("#first_name", "Camille")
    page.fill("#last_name", "Nordin")
    page.fill("#email", "camille@atelier-nord.example")
    page.fill("#dob", "1901-01-01")
    page.fill("#address_line1", "address_full_match")
    page.fill("#city", "Paris")
    page.fill("#postal_code", "75011")
    page.fill("#account_number", "FR14 2004 1010 0505 0001 3M02 606")
    page.check("#tos")
    page.get_by_test_id("submit-onboarding").click()
    page.wait_for_url(shop.url(reverse("merchant:dashboard")))
    expect(page.locator(".messages")).to_contain_text("Your Stripe account is ready: your customers can pay you.")
    expect(panel.get_by_test_id("charges-enabled")).to_be_visible()
    expect(panel.get_by_test_id("express-dashboard")).to_be_visible()
    merchant.refresh_from_db()
    assert (merchant.stripe_charges_enabled, merchant.stripe_payouts_enabled, merchant.stripe_requirements_due) == (True, True, [])

    # A customer pays: a direct charge on the merchant's account with the platform's fee.
    checkout = start_booking(customer, shop, slot, customer=Customer(name="Grace Hopper", email="grace@example.com"))
    checkout.pay(CARD_OK)
    customer.wait_for_url(SUCCESS_URL, timeout=connect.timeout)
    expect_status(customer, "confirmed", timeout=connect.timeout)
    booking = checkout.booking
    assert (booking.stripe_account_id, booking.amount_paid, booking.application_fee_amount) == (account_id, 4500, 480)
    intent = stripe_api.stripe_client().v1.payment_intents.retrieve(
        booking.payment_intent_id, options={"stripe_account": account_id}
    )
    assert (intent.amount_received, intent.application_fee_amount) == (4500, 480)

    page.reload()
    assert revenue_cells(page) == ["Sourdough masterclass EUR", "€45.00", "—", "−€4.80", "€40.20"]
    expect(page.locator(".stat__money").first).to_have_text("€40.20")
    starts = timezone.localtime(slot.starts_at, merchant.zone).strftime("%a %-d %b, %H:%M")
    expect(page.locator(".occupancy-list")).to_contain_text(starts)  # the time in Paris
    shoot_dashboard(page, "paid")

    # The merchant refunds in full; the platform keeps its fee (CONNECT_REFUND_FEE_REASONS).
    page.goto(shop.url(reverse("merchant:booking_detail", args=[booking.pk])))
    page.get_by_role("link", name="Refund…").click()
    expect(page.locator("#id_amount")).to_have_value("45.00")
    page.get_by_role("button", name="Refund", exact=True).click()
    expect(page.locator(".messages")).to_contain_text("€45.00")
    connect.eventually(lambda: Booking.objects.get(pk=booking.pk).status == BookingStatus.REFUNDED, "refunded")
    refunds = stripe_api.refunds_of_payment(booking.payment_intent_id, stripe_account=account_id)
    assert [(r["amount"], r["status"]) for r in refunds] == [(4500, "succeeded")]
    try:  # not on the platform's own account: Stripe says it has no such payment there
        on_platform = stripe_api.refunds_of_payment(booking.payment_intent_id)
    except stripe_api.PaymentsUnavailable:
        on_platform = []
    assert on_platform == []

    page.goto(shop.url(reverse("merchant:dashboard")))
    assert revenue_cells(page) == ["Sourdough masterclass EUR", "€45.00", "−€45.00", "−€4.80", "-€4.80"]  # net: the money format's own minus
    shoot_dashboard(page, "refunded")
