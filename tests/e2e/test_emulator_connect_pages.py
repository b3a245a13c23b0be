"""The emulator's Connect pages in Chromium, at a desktop and a phone width: a merchant onboards
on the hosted onboarding page (first with mistakes, then completely), a customer pays with a
platform fee, and the merchant's Express dashboard shows the payment, the fee and the net.
Screenshots land in test-artifacts/screenshots/ to be looked at."""

from pathlib import Path

import pytest
from django.conf import settings
from playwright.sync_api import expect

from stripe_emulator import Emulator
from tests.emulator.helpers import FAST, line_item, sdk_client

pytestmark = [pytest.mark.e2e]

SCREENSHOTS = Path(settings.BASE_DIR) / "test-artifacts" / "screenshots"
WIDTHS = {
    "desktop": {"viewport": {"width": 1280, "height": 900}},
    "phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True},
}


@pytest.fixture
def emulator():
    with Emulator(account_name="Slotbook", **FAST) as emu:
        yield emu


def fits_the_width(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")


@pytest.mark.parametrize("width", WIDTHS)
def test_a_merchant_onboards_and_sees_the_fee_on_the_express_dashboard(width, browser, emulator):
    client = sdk_client(emulator.url)
    account = client.v1.accounts.create(params={"type": "express", "country": "FR", "email": "owner@atelier.example"})
    return_url = f"{emulator.url}/_emulator/?onboarding=returned"
    link = client.v1.account_links.create(params={
        "account": account.id, "type": "account_onboarding", "return_url": return_url,
        "refresh_url": f"{emulator.url}/_emulator/?onboarding=refresh",
    })
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(**WIDTHS[width])
    page = context.new_page()

    def shoot(name: str) -> None:
        page.screenshot(path=SCREENSHOTS / f"emulator-{name}-{width}.png", full_page=True)
        assert fits_the_width(page), f"the {name} page scrolls sideways at the {width} width"

    page.goto(link.url)
    expect(page.get_by_test_id("connect-onboarding")).to_be_visible()
    expect(page.get_by_test_id("requirements-due")).to_contain_text("still needed")
    shoot("connect-onboarding")

    page.fill("#business_name", "Atelier Nord")
    page.select_option("#mcc", "8299")
    page.fill("#url", "not a website")
    page.fill("#first_name", "Jenny")
    page.fill("#last_name", "Rosen")
    page.fill("#email", "jenny@atelier.example")
    page.get_by_test_id("submit-onboarding").click()
    expect(page.get_by_test_id("form-error")).to_be_visible()
    expect(page.get_by_test_id("error-url")).to_have_text("Enter a website address starting with http:// or https://.")
    expect(page.get_by_test_id("error-tos")).to_be_visible()
    assert page.input_value("#business_name") == "Atelier Nord"  # what was typed is kept
    shoot("connect-onboarding-errors")
    assert not client.v1.accounts.retrieve(account.id).charges_enabled

    page.fill("#url", "https://atelier.example")
    page.fill("#dob", "1901-01-01")
    page.fill("#address_line1", "address_full_match")
    page.fill("#city", "Paris")
    page.fill("#postal_code", "75001")
    page.fill("#account_number", "DE89 3704 0044 0532 0130 00")
    page.check("#tos")
    page.get_by_test_id("submit-onboarding").click()
    page.wait_for_url(return_url)
    onboarded = client.v1.accounts.retrieve(account.id)
    assert (onboarded.charges_enabled, onboarded.payouts_enabled, onboarded.details_submitted) == (True, True, True)
    assert onboarded.business_profile.name == "Atelier Nord"

    session = client.v1.checkout.sessions.create(
        params={"mode": "payment", "success_url": f"{emulator.url}/_emulator/?paid=1",
                "line_items": [line_item("Sourdough masterclass", amount=4500)],
                "payment_intent_data": {"application_fee_amount": 450, "description": "Sourdough masterclass"}},
        options={"stripe_account": account.id})
    page.goto(session.url)
    expect(page.get_by_text("Pay Atelier Nord")).to_be_visible()
    page.fill("#email", "customer@example.com")
    page.fill("#cardNumber", "4242 4242 4242 4242")
    page.fill("#cardExpiry", "12 / 34")
    page.fill("#cardCvc", "123")
    page.fill("#billingName", "Customer Person")
    page.get_by_test_id("hosted-payment-submit-button").click()
    page.wait_for_url(f"{emulator.url}/_emulator/?paid=1")

    login = client.v1.accounts.login_links.create(account.id)
    page.goto(login.url)
    expect(page.get_by_test_id("express-dashboard")).to_be_visible()
    expect(page.get_by_test_id("balance")).to_contain_text("€40.50")
    row = page.get_by_test_id("payment-row")
    expect(row).to_contain_text("€45.00")
    expect(row.get_by_test_id("fee")).to_have_text("€4.50")
    expect(row.get_by_test_id("net")).to_have_text("€40.50")
    shoot("express-dashboard")
    context.close()
