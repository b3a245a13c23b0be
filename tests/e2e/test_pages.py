"""The main pages as people see them, at a desktop and a phone width, under the site's
Content-Security-Policy. Screenshots land in test-artifacts/screenshots/ to be looked at."""

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.urls import reverse
from playwright.sync_api import expect

from bookings.demo import DEMO_PASSWORD, demo_data_load
from bookings.models import Listing
from tests.e2e.pages import CARD_DECLINED, CARD_OK, DECLINED, SUCCESS_URL, expect_status, sign_in, start_booking

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = Path(settings.BASE_DIR) / "test-artifacts" / "screenshots"
WIDTHS = {
    "desktop": {"viewport": {"width": 1280, "height": 900}},
    "phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True},
}


def test_a_csp_violation_on_a_page_is_caught(page, live_server, page_problems):
    page.goto(live_server.url + reverse("shop:catalog"))

    with page.expect_console_message(lambda message: "Content Security Policy" in message.text):
        page.evaluate("document.body.insertAdjacentHTML('beforeend', '<p style=\"color: red\">inline</p>')")

    assert len(page_problems.csp_violations) == 1
    assert "style-src" in page_problems.csp_violations[0]
    page_problems.clear()  # caught as it should be: this test passes


def fits_the_width(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")


@pytest.mark.parametrize("width", WIDTHS)
def test_the_main_pages_at_desktop_and_phone_widths(width, new_context, shop, stripe):
    demo_data_load(days=7)
    # A merchant whose clock is not the server's (Europe/London): Atelier Nord, Europe/Paris.
    listing = Listing.objects.get(slug="sourdough-masterclass")
    slot = listing.slots.filter(seats_left=listing.slots.first().capacity).order_by("starts_at").first()
    local = slot.starts_at.astimezone(ZoneInfo("Europe/Paris"))
    when = f"{local:%A} {local.day} {local:%B} {local.year}, 09:30 (Europe/Paris)"  # the demo sells it at 09:30
    page = new_context(**WIDTHS[width]).new_page()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def shoot(name: str, *, site: bool = True) -> None:
        page.screenshot(path=SCREENSHOTS / f"{name}-{width}.png", full_page=True)
        if site:
            assert fits_the_width(page), f"the {name} page scrolls sideways at the {width} width"

    page.goto(shop.url(reverse("shop:catalog")))
    expect(page.get_by_role("heading", name="Book an experience")).to_be_visible()
    shoot("catalog")

    expect(page.locator(".listing-card", has_text="Sourdough masterclass")).to_contain_text("Times in Europe/Paris")
    page.get_by_role("link", name="Sourdough masterclass").click()
    expect(page.get_by_role("heading", name="Book your seats")).to_be_visible()
    shoot("listing")

    checkout = start_booking(page, shop, slot)
    shoot("checkout", site=False)
    checkout.pay(CARD_DECLINED)
    checkout.expect_error(DECLINED)
    shoot("checkout-declined", site=False)

    checkout.pay(CARD_OK)
    page.wait_for_url(SUCCESS_URL)
    expect_status(page, "confirmed", timeout=stripe.timeout)
    expect(page.locator(".facts dd").nth(1)).to_have_text(when)
    shoot("success")

    page.get_by_role("link", name="View your booking").click()
    expect(page.locator(".badge")).to_have_text("Confirmed")
    expect(page.locator(".facts dd").first).to_have_text(when)
    shoot("booking")

    page.get_by_role("button", name="Manage payments and receipts").click()
    expect(page.locator("[data-testid=payment-row]")).to_have_count(1)
    shoot("portal", site=False)

    sign_in(page, shop.base_url, "atelier", DEMO_PASSWORD)
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    shoot("dashboard")
