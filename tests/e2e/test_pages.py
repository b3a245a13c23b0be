"""The main pages as people see them, at a desktop and a phone width, under the site's
Content-Security-Policy. Screenshots land in test-artifacts/screenshots/ to be looked at."""

import re
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.urls import reverse
from playwright.sync_api import expect

from bookings.demo import DEMO_PASSWORD, demo_data_load
from bookings.models import Listing
from tests.e2e.pages import CARD_DECLINED, CARD_OK, DECLINED, SUCCESS_URL, expect_status, prove_email_by_link, sign_in, start_booking

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

    page.get_by_role("button", name="E-mail me a link to my receipts").click()
    shoot("receipts-link-sent")
    page.go_back()
    prove_email_by_link(page, stripe, "ada@example.com")
    shoot("booking-signed-in")
    page.get_by_role("button", name="Receipts and payment methods").click()
    expect(page.locator("[data-testid=payment-row]")).to_have_count(1)
    shoot("portal", site=False)

    sign_in(page, shop.base_url, "atelier", DEMO_PASSWORD)
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    shoot("dashboard")


def expected_400(page_problems) -> None:
    """The failed submit answers 400, which Chromium reports as a resource it could not load."""
    page_problems.script_errors[:] = [e for e in page_problems.script_errors if "/book/: Failed to load resource" not in e]


def _weekly_listing():
    """A Europe/Paris merchant's listing with a weekly series of 72 times (8 weeks × 3 days × 3)."""
    import datetime as dt

    from django.utils import timezone

    from bookings.models import Slot
    from tests.factories import make_listing, make_merchant

    listing = make_listing(title="Weekly pottery", merchant=make_merchant(timezone_name="Europe/Paris"))
    today = timezone.localdate(timezone=listing.merchant.zone)
    monday = today + dt.timedelta(days=7 - today.weekday())
    slots = [
        Slot(
            listing=listing,
            starts_at=dt.datetime.combine(monday + dt.timedelta(weeks=week, days=day), dt.time(hour, 0), tzinfo=listing.merchant.zone),
            capacity=6,
            seats_left=6,
        )
        for week in range(8)
        for day in (1, 3, 5)
        for hour in (10, 14, 18)
    ]
    return listing, Slot.objects.bulk_create(slots), monday


@pytest.mark.parametrize("width", WIDTHS)
def test_a_listing_with_many_times_a_failed_submit_and_a_cancelled_checkout(width, new_context, shop, stripe, page_problems):
    import datetime as dt

    listing, slots, monday = _weekly_listing()
    page = new_context(**WIDTHS[width]).new_page()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    url = shop.url(reverse("shop:listing", args=[listing.slug]))

    def shoot(name: str) -> None:
        page.screenshot(path=SCREENSHOTS / f"{name}-{width}.png", full_page=True)
        assert fits_the_width(page), f"the {name} page scrolls sideways at the {width} width"

    page.goto(url)
    expect(page.locator("input[name=slot]")).to_have_count(9)
    first = slots[0]
    day = first.starts_at.astimezone(listing.merchant.zone)
    expect(page.get_by_role("radio", name=f"{day:%A} {day.day} {day:%B %Y}, 10:00, 6 seats left")).to_be_visible()
    # The form is close to the times: the page is short enough to reach it at a glance.
    height = page.evaluate("document.documentElement.scrollHeight")
    assert height < 2600, f"the week view is {height} px tall"
    shoot("listing-week")

    # Later, with JavaScript: htmx swaps the picker in place and the address follows.
    page.get_by_role("link", name=re.compile("Later")).click()
    second_week = (monday + dt.timedelta(weeks=1)).isoformat()
    page.wait_for_url(f"**?week={second_week}")
    expect(page.locator(f"input[name=slot][value='{slots[9].pk}']")).to_have_count(1)
    expect(page.locator("[data-week-label]")).to_be_focused()

    # A failed submit: the summary is in view, focused and linked to the fields.
    page.locator(f"input[name=slot][value='{slots[10].pk}']").check()
    page.fill("#id_customer_name", "Ada Lovelace")
    page.fill("#id_customer_email", "not an address")
    page.get_by_role("button", name="Continue to payment").click()
    summary = page.locator(".error-summary")
    expect(summary).to_be_focused()
    expected_400(page_problems)
    expect(summary).to_be_in_viewport()
    expect(summary.get_by_role("link", name="Enter a valid e-mail address.")).to_be_visible()
    expect(page.locator(f"input[name=slot][value='{slots[10].pk}']")).to_be_checked()
    shoot("listing-form-errors")

    # Corrected, to Checkout, and back: the form comes back as it was.
    page.fill("#id_customer_email", "ada@example.com")
    page.fill("#id_quantity", "2")
    page.get_by_role("button", name="Continue to payment").click()
    page.wait_for_url(re.compile(r"/c/pay/cs_"))
    page.locator("#cancelLink").click()
    page.wait_for_url(re.compile(r"\?checkout=cancelled"), timeout=stripe.timeout)
    expect(page.locator(".messages")).to_contain_text("Checkout cancelled")
    expect(page.locator(f"input[name=slot][value='{slots[10].pk}']")).to_be_checked()
    expect(page.locator("#id_quantity")).to_have_value("2")
    expect(page.locator("#id_customer_name")).to_have_value("Ada Lovelace")
    expect(page.locator("#id_customer_email")).to_have_value("ada@example.com")
    shoot("listing-after-cancelled-checkout")

    # Another browser sees none of it.
    stranger = new_context(**WIDTHS[width]).new_page()
    stranger.goto(url)
    expect(stranger.locator("#id_customer_email")).to_have_value("")
    expect(stranger.locator("#id_customer_name")).to_have_value("")


def test_week_navigation_without_javascript(new_context, shop, page_problems):
    import datetime as dt

    listing, slots, monday = _weekly_listing()
    page = new_context(java_script_enabled=False, **WIDTHS["phone"]).new_page()

    page.goto(shop.url(reverse("shop:listing", args=[listing.slug])))
    page.get_by_role("link", name=re.compile("Later")).click()
    page.wait_for_url(f"**?week={(monday + dt.timedelta(weeks=1)).isoformat()}")
    page.get_by_role("link", name=re.compile("Later")).click()
    page.wait_for_url(f"**?week={(monday + dt.timedelta(weeks=2)).isoformat()}")
    expect(page.locator(f"input[name=slot][value='{slots[18].pk}']")).to_have_count(1)
    page.get_by_role("link", name=re.compile("Earlier")).click()
    page.wait_for_url(f"**?week={(monday + dt.timedelta(weeks=1)).isoformat()}")
    expect(page.locator(f"input[name=slot][value='{slots[9].pk}']")).to_have_count(1)

    # A failed submit without JavaScript still lands on the summary.
    page.get_by_role("button", name="Continue to payment").click()
    expect(page.locator(".error-summary")).to_be_in_viewport()
    expect(page.locator(".error-summary").get_by_role("link", name="Pick a time.")).to_be_visible()
    expected_400(page_problems)
