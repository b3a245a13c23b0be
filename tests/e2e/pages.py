"""What a customer does on the site and on Stripe's hosted pages, in the words of the pages.

Stripe's hosted Checkout and the emulator's share element ids (`#cardNumber`, `#cardExpiry`,
`#cardCvc`, `#billingName`, `#promotionCode`, the `hosted-payment-submit-button`), so the same
steps drive either; where real Stripe differs (its fields format what is typed, its 3-D Secure
challenge sits in frames), the real-Stripe branch says so.
"""

import re
from contextlib import contextmanager
from dataclasses import dataclass

from django.urls import reverse
from playwright.sync_api import Page, expect

from bookings.models import Booking, Slot

CARD_OK = "4242424242424242"
CARD_DECLINED = "4000000000000002"
CARD_INSUFFICIENT_FUNDS = "4000000000009995"
CARD_3DS = "4000002500003155"

DECLINED = "Your card has been declined."
INSUFFICIENT_FUNDS = "Your card has insufficient funds."
AUTHENTICATION_FAILED = "We are unable to authenticate your payment method."

CHECKOUT_URL = re.compile(r"/c/pay/(cs_(?:test|live)_[A-Za-z0-9]+)")
SUCCESS_URL = re.compile(r"/checkout/success/\?session_id=cs_")
STATUS = "#booking-status"


@dataclass(frozen=True)
class Customer:
    name: str = "Ada Lovelace"
    email: str = "ada@example.com"


def listing_url(shop, slot: Slot) -> str:
    return shop.url(reverse("shop:listing", args=[slot.listing.slug]))


def seats_shown(page: Page, slot: Slot):
    """The listing page's "n seats left" of a slot."""
    return page.locator(f"[data-slot-seats='{slot.pk}']")


def start_booking(page: Page, shop, slot: Slot, *, quantity: int = 1, customer: Customer = Customer()) -> "Checkout":
    """From the listing page to Stripe's Checkout: pick the time, say who, continue."""
    page.goto(listing_url(shop, slot) + f"?slot={slot.pk}")  # opens the week of that time
    page.locator(f"input[name=slot][value='{slot.pk}']").check()
    page.fill("#id_quantity", str(quantity))
    page.fill("#id_customer_name", customer.name)
    page.fill("#id_customer_email", customer.email)
    page.get_by_role("button", name="Continue to payment").click()
    page.wait_for_url(CHECKOUT_URL)
    return Checkout(page, shop.stripe)


class Checkout:
    """Stripe's hosted Checkout page of one booking."""

    def __init__(self, page: Page, stripe):
        self.page = page
        self.stripe = stripe
        self.session_id = CHECKOUT_URL.search(page.url).group(1)

    @property
    def booking(self) -> Booking:
        return Booking.objects.get(checkout_session_id=self.session_id)

    @property
    def success_url_path(self) -> str:
        return reverse("shop:checkout_success") + f"?session_id={self.session_id}"

    def _type(self, selector: str, text: str) -> None:
        field = self.page.locator(selector)
        if self.stripe.real:
            # Stripe's fields format as you type and ignore a value set all at once.
            field.press_sequentially(text, delay=20)
        else:
            field.fill(text)

    def fill_card(self, number: str, *, expiry: str = "1234", cvc: str = "123", name: str = "Ada Lovelace") -> None:
        self._type("#cardNumber", number)
        self._type("#cardExpiry", expiry)
        self._type("#cardCvc", cvc)
        self.page.fill("#billingName", name)
        if self.stripe.real:
            # Stripe asks for the billing country, and a postal code for some countries.
            if self.page.locator("#billingCountry").is_visible():
                self.page.select_option("#billingCountry", "US")
            if self.page.locator("#billingPostalCode").is_visible():
                self.page.fill("#billingPostalCode", "10001")

    def submit(self) -> None:
        self.page.locator("[data-testid=hosted-payment-submit-button]").click()

    def pay(self, number: str = CARD_OK, **card) -> None:
        self.fill_card(number, **card)
        self.submit()

    def expect_error(self, message: str) -> None:
        if self.stripe.real:
            expect(self.page.get_by_text(message).first).to_be_visible(timeout=self.stripe.timeout)
        else:
            expect(self.page.locator("[data-testid=payment-error]")).to_contain_text(message)

    def apply_promotion_code(self, code: str) -> None:
        field = self.page.locator("#promotionCode")
        if self.stripe.real and not field.is_visible():
            self.page.get_by_role("button", name=re.compile("promotion code", re.I)).click()
        field.fill(code)
        if self.stripe.real:
            field.press("Enter")
        else:
            self.page.locator("#applyPromotionCode").click()

    def authentication(self, button_id: str):
        """The 3-D Secure challenge's Complete (`test-source-authorize-3ds`) or Fail
        (`test-source-fail-3ds`) button: a page of its own on the emulator, nested frames on Stripe."""
        if not self.stripe.real:
            self.page.wait_for_url(re.compile(r"/authenticate$"))
            return self.page.locator(f"#{button_id}")
        return _button_in_some_frame(self.page, button_id, timeout=self.stripe.timeout)

    def cancel(self) -> None:
        self.page.locator("#cancelLink").click()


def _button_in_some_frame(page: Page, button_id: str, *, timeout: float):
    # Stripe nests the bank's test page two or three frames deep in a modal; which frames
    # exist changes over time, so look in each until the button appears.
    deadline_polls = int(timeout / 250)
    for _ in range(deadline_polls):
        for frame in page.frames:
            button = frame.locator(f"#{button_id}")
            if button.count():
                return button
        page.wait_for_timeout(250)
    raise AssertionError(f"no #{button_id} in any frame of {page.url}")


def expect_status(page: Page, status: str, *, timeout: float) -> None:
    expect(page.locator(STATUS)).to_have_attribute("data-status", status, timeout=timeout)


class NavigationLog:
    """Every document the page loads; with a marker set on `window`, proof that a change came
    through htmx in the same document, not through a reload."""

    MARKER = "window.__slotbookSameDocument"

    def __init__(self, page: Page):
        self.page = page
        self.urls: list[str] = []
        page.on("framenavigated", self._navigated)

    def _navigated(self, frame) -> None:
        if frame == self.page.main_frame:
            self.urls.append(frame.url)

    def mark_document(self) -> int:
        self.page.evaluate(f"{self.MARKER} = true")
        return len(self.urls)

    def same_document(self) -> bool:
        return self.page.evaluate(f"{self.MARKER} === true")


@contextmanager
def stripe_unreachable(settings):
    """For a moment the site cannot reach Stripe's API (the browser still reaches Stripe's pages).

    Stripe redirects a customer only once it has the payment, so the success page's first look
    at Stripe settles the booking at once; a test that wants to see the page wait for its
    confirmation makes that first look fail, as when Stripe is slow to answer."""
    saved = settings.STRIPE_API_BASE, settings.STRIPE_MAX_NETWORK_RETRIES
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # nothing listens there
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    try:
        yield
    finally:
        settings.STRIPE_API_BASE, settings.STRIPE_MAX_NETWORK_RETRIES = saved


MERCHANT_PASSWORD = "pw-123456789"  # what tests.factories.make_merchant sets


def sign_in(page: Page, base_url: str, username: str, password: str = MERCHANT_PASSWORD) -> None:
    page.goto(base_url + reverse("accounts:login"))
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(base_url + reverse("merchant:dashboard"))


SIGNIN_LINK = re.compile(r"https?://\S+/receipts/sign-in/\?token=\S+")


def prove_email_by_link(page: Page, stripe, email: str) -> None:
    """On a booking or success page: ask for the e-mailed sign-in link, follow it from the
    outbox and confirm; the page then shows "Receipts and payment methods"."""
    from django.core import mail

    page.get_by_role("button", name="E-mail me a link to my receipts").click()
    expect(page.get_by_role("heading", name="Check your e-mail")).to_be_visible()
    expect(page.locator("#receipts-link-sent")).to_contain_text(email)

    def link_sent():
        return [m for m in mail.outbox if m.to == [email] and "Receipts and payment methods" in m.subject]

    stripe.eventually(lambda: bool(link_sent()), "a sign-in link e-mailed")
    page.goto(SIGNIN_LINK.search(link_sent()[-1].body).group(0))
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("button", name="Receipts and payment methods")).to_be_visible()
