"""A customer books and pays in a real browser, on the real pages: the listing, Stripe's hosted
Checkout with Stripe's test cards, the success page, the booking page and the customer portal.

Tests marked `both_stripes` run against the emulator and, with STRIPE_E2E_REAL=1, against real
Stripe test mode; the others steer webhooks through the emulator's control API.
"""

import re

import pytest
from django.core import mail
from django.urls import reverse
from playwright.sync_api import expect

from bookings.models import BookingStatus, Slot
from payments import stripe_api
from tests.connect_mode import on_account
from tests.e2e.conftest import both_stripes
from tests.e2e.pages import (
    AUTHENTICATION_FAILED,
    CARD_3DS,
    CARD_DECLINED,
    CARD_INSUFFICIENT_FUNDS,
    CARD_OK,
    DECLINED,
    INSUFFICIENT_FUNDS,
    STATUS,
    SUCCESS_URL,
    Customer,
    NavigationLog,
    expect_status,
    listing_url,
    prove_email_by_link,
    seats_shown,
    start_booking,
    stripe_unreachable,
)
from tests.e2e.test_pages import SCREENSHOTS
from tests.factories import make_listing, make_merchant, make_slot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

BOOKING_LINK = re.compile(r"https?://\S+/b/[\w-]+/")


@pytest.fixture
def slot():
    return make_slot(listing=make_listing(title="Sunrise kayak tour", price_amount=2500, currency="eur"), capacity=5)


def seats_left(slot: Slot) -> int:
    slot.refresh_from_db()
    return slot.seats_left


def sold_and_held(slot: Slot) -> tuple[int, int]:
    slot.refresh_from_db()
    return slot.seats_sold, slot.seats_held


@both_stripes
def test_a_card_payment_turns_the_page_to_confirmed_without_a_reload(page, shop, stripe, slot, settings):
    page.goto(listing_url(shop, slot))
    expect(seats_shown(page, slot)).to_have_text("5 seats left")
    checkout = start_booking(page, shop, slot)
    navigations = NavigationLog(page)

    if stripe.real:
        checkout.pay(CARD_OK)
        page.wait_for_url(SUCCESS_URL, timeout=stripe.timeout)
        loads = navigations.mark_document()
    else:
        # The webhook waits, and the page's first look at Stripe fails: the page has to wait too.
        stripe.control.hold_webhooks()
        with stripe_unreachable(settings):
            checkout.pay(CARD_OK)
            page.wait_for_url(SUCCESS_URL)
            expect_status(page, "pending", timeout=stripe.timeout)
        expect(page.locator(STATUS)).to_contain_text("Confirming your payment")
        loads = navigations.mark_document()
        stripe.control.release_webhooks()
        stripe.settle()

    expect_status(page, "confirmed", timeout=stripe.timeout)
    expect(page.get_by_role("heading", name="You're booked!")).to_be_visible()
    assert navigations.same_document(), "the page was reloaded"
    assert len(navigations.urls) == loads, navigations.urls
    booking = checkout.booking
    stripe.eventually(lambda: len(mail.outbox) == 1, "one confirmation e-mail")
    assert mail.outbox[0].to == ["ada@example.com"]
    assert booking_link_in(mail.outbox[0]) == shop.url(reverse("shop:booking", args=[booking.public_token]))

    page.get_by_role("link", name="View your booking").click()
    expect(page.locator(".badge")).to_have_text("Confirmed")
    expect(page.locator(".facts")).to_contain_text("€25.00")

    expect(page.get_by_role("button", name="Receipts and payment methods")).to_have_count(0)
    prove_email_by_link(page, stripe, "ada@example.com")
    page.get_by_role("button", name="Receipts and payment methods").click()
    if stripe.real:
        page.wait_for_url(re.compile(r"^https://billing\.stripe\.com/"), timeout=stripe.timeout)
        expect(page.get_by_text("€25.00").first).to_be_visible(timeout=stripe.timeout)
    else:
        page.wait_for_url(re.compile(r"/p/session/bps_"))
        payment = page.locator("[data-testid=payment-row]")
        expect(payment).to_have_count(1)
        expect(payment).to_contain_text("€25.00")
        expect(payment).to_contain_text("Sunrise kayak tour")
        expect(payment).to_contain_text("Paid")
        page.locator("#returnLink").click()
        page.wait_for_url(shop.url(reverse("shop:booking", args=[booking.public_token])))

    page.goto(listing_url(shop, slot))
    expect(seats_shown(page, slot)).to_have_text("4 seats left")
    assert seats_left(slot) == 4


def booking_link_in(message) -> str:
    return BOOKING_LINK.search(message.body).group(0)


@both_stripes
def test_a_declined_card_can_be_retried_with_another(page, shop, stripe, slot):
    checkout = start_booking(page, shop, slot)

    checkout.pay(CARD_DECLINED)

    checkout.expect_error(DECLINED)
    assert checkout.booking.status == BookingStatus.PENDING
    assert sold_and_held(slot) == (0, 1)  # nothing sold; the seat stays held while the customer tries again

    checkout.pay(CARD_OK)

    page.wait_for_url(SUCCESS_URL, timeout=stripe.timeout)
    expect_status(page, "confirmed", timeout=stripe.timeout)
    stripe.eventually(lambda: seats_left(slot) == 4, "one seat taken")
    stripe.eventually(lambda: len(mail.outbox) == 1, "one confirmation e-mail")


@both_stripes
def test_a_card_without_funds_says_so_and_books_nothing(page, shop, stripe, slot):
    checkout = start_booking(page, shop, slot)

    checkout.pay(CARD_INSUFFICIENT_FUNDS)

    checkout.expect_error(INSUFFICIENT_FUNDS)
    stripe.settle()
    assert checkout.booking.status == BookingStatus.PENDING
    assert sold_and_held(slot) == (0, 1)  # nothing sold; held until the session ends
    assert mail.outbox == []


@both_stripes
def test_completing_3d_secure_confirms(page, shop, stripe, slot):
    checkout = start_booking(page, shop, slot)

    checkout.pay(CARD_3DS)
    checkout.authentication("test-source-authorize-3ds").click()

    page.wait_for_url(SUCCESS_URL, timeout=stripe.timeout)
    expect_status(page, "confirmed", timeout=stripe.timeout)
    stripe.eventually(lambda: seats_left(slot) == 4, "one seat taken")


@both_stripes
def test_failing_3d_secure_charges_nothing_and_the_booking_expires_with_its_session(page, shop, stripe, slot):
    checkout = start_booking(page, shop, slot)

    checkout.pay(CARD_3DS)
    checkout.authentication("test-source-fail-3ds").click()

    checkout.expect_error(AUTHENTICATION_FAILED)
    session = stripe_api.stripe_client().v1.checkout.sessions.retrieve(
        checkout.session_id, params={"expand": ["payment_intent"]}, options=on_account(checkout.booking)
    )
    assert (session.status, session.payment_status) == ("open", "unpaid")
    assert session.payment_intent is None or session.payment_intent.amount_received == 0

    # The customer walks away; Stripe expires the session and says so by webhook.
    stripe.expire_session(checkout.session_id)
    stripe.eventually(lambda: checkout.booking.status == BookingStatus.EXPIRED, "the booking expired")

    if not stripe.real:
        page.reload()
        expect(page.locator("[data-testid=session-expired]")).to_be_visible()
    page.goto(shop.url(checkout.success_url_path))
    expect_status(page, "expired", timeout=stripe.timeout)
    expect(page.locator(STATUS)).to_contain_text("nothing was charged")
    page.goto(shop.url(reverse("shop:booking", args=[checkout.booking.public_token])))
    expect(page.locator(".badge")).to_have_text("Payment not completed")
    assert seats_left(slot) == 5 and sold_and_held(slot) == (0, 0)
    assert mail.outbox == []


@both_stripes
@pytest.mark.platform_account  # promotion codes are the platform's: not offered on direct charges
def test_a_100_percent_promotion_code_confirms_with_nothing_paid_and_no_card(page, shop, stripe, slot):
    code = stripe.create_free_promotion_code("FREESEAT")
    checkout = start_booking(page, shop, slot)

    checkout.apply_promotion_code(code)

    expect(page.locator("#cardNumber")).to_be_hidden(timeout=stripe.timeout)
    checkout.submit()
    page.wait_for_url(SUCCESS_URL, timeout=stripe.timeout)
    expect_status(page, "confirmed", timeout=stripe.timeout)
    expect(page.locator(".facts")).to_contain_text("€0.00")
    booking = checkout.booking
    assert (booking.amount_paid, booking.payment_intent_id) == (0, "")
    stripe.eventually(lambda: seats_left(slot) == 4, "one seat taken")


@both_stripes
def test_a_browser_closed_before_the_redirect_is_confirmed_by_the_webhook_alone(new_context, shop, stripe, slot):
    context = new_context()
    page = context.new_page()
    checkout = start_booking(page, shop, slot)
    dropped = stop_on_the_way_to_the_success_page(page)

    with page.expect_event("requestfailed", lambda request: "/checkout/success/" in request.url or "/c/pay/" in request.url):
        checkout.pay(CARD_OK)
    context.close()

    if not stripe.real:
        [(status, location)] = dropped
        assert status == 303 and "/checkout/success/?session_id=" in location, "paid, and sent on to the site"

    booking = checkout.booking
    stripe.eventually(lambda: checkout.booking.status == BookingStatus.CONFIRMED, "the webhook confirmed")
    booking.refresh_from_db()
    assert booking.stripe_checked_at is None, "the success page was never asked"
    stripe.eventually(lambda: len(mail.outbox) == 1, "one confirmation e-mail")
    assert seats_left(slot) == 4

    # Later, the customer opens the link in the e-mail.
    page = new_context().new_page()
    page.goto(booking_link_in(mail.outbox[0]))
    expect(page.locator(".badge")).to_have_text("Confirmed")


def stop_on_the_way_to_the_success_page(page) -> list[tuple[int, str]]:
    """The browser dies between paying and arriving back: the request for the success page never
    leaves it. Real Stripe's page goes there by script; the emulator's form answers with a
    redirect, which Playwright does not route, so that answer is taken and dropped instead.
    Returns the (status, Location) of the dropped answers."""
    dropped = []

    def pay_then_drop_the_redirect(route):
        if route.request.method != "POST":
            route.fallback()
            return
        response = route.fetch(max_redirects=0)
        dropped.append((response.status, response.headers.get("location", "")))
        route.abort()

    page.route(re.compile(r"/checkout/success/"), lambda route: route.abort())
    page.route(re.compile(r"/c/pay/cs_\w+$"), pay_then_drop_the_redirect)
    return dropped


def test_with_webhooks_held_the_polled_page_alone_confirms_and_late_webhooks_change_nothing(
    page, shop, stripe, slot, settings
):
    settings.STRIPE_STATUS_CHECK_SECONDS = 1
    # Whatever was sent before (with --connect, the merchant's account.updated) is not this test's.
    stripe.control.wait_for_webhooks(timeout=10)
    sent_before = {d["delivery_id"] for d in stripe.control.deliveries()}
    stripe.control.hold_webhooks()
    checkout = start_booking(page, shop, slot)
    navigations = NavigationLog(page)
    with stripe_unreachable(settings):
        checkout.pay(CARD_OK)
        page.wait_for_url(SUCCESS_URL)
        expect_status(page, "pending", timeout=stripe.timeout)
    loads = navigations.mark_document()

    expect_status(page, "confirmed", timeout=stripe.timeout)  # the page's next poll asked Stripe

    assert navigations.same_document() and len(navigations.urls) == loads
    assert [d for d in stripe.control.deliveries() if d["delivery_id"] not in sent_before] == [], (
        "no webhook was sent while held"
    )
    assert seats_left(slot) == 4
    assert len(mail.outbox) == 1

    stripe.control.release_webhooks()
    stripe.settle()

    assert stripe.control.deliveries(type="checkout.session.completed")[0]["status"] == 200
    assert all(status == 200 for status in stripe.webhook_answers())
    assert seats_left(slot) == 4
    assert len(mail.outbox) == 1
    assert checkout.booking.status == BookingStatus.CONFIRMED


@both_stripes
def test_the_last_seat_held_by_one_customer_is_shown_held_and_goes_to_the_next_once_they_cancel(
    new_context, shop, stripe
):
    paris = make_merchant(timezone_name="Europe/Paris", display_name="Atelier Nord")
    slot = make_slot(listing=make_listing(merchant=paris, title="Sea cave explorer"), capacity=1)
    ada_page, grace_page = (new_context().new_page() for _ in range(2))
    ada = start_booking(ada_page, shop, slot, customer=Customer(name="Ada", email="ada@example.com"))

    # Grace finds the time sold out for now: its seat is held by someone paying, and cannot be picked.
    grace_page.goto(listing_url(shop, slot) + f"?slot={slot.pk}")
    expect(seats_shown(grace_page, slot)).to_have_text("Sold out for now")
    expect(grace_page.locator(f"[data-slot-held='{slot.pk}']")).to_have_text(
        "1 held by people paying now; may free up within 30 minutes"
    )
    expect(grace_page.locator(f"input[name=slot][value='{slot.pk}']")).to_be_disabled()
    expect(grace_page.locator(".callout")).to_have_text(
        "Every upcoming time is taken for now. Seats held by people paying may free up within 30 minutes; "
        "new times are added regularly. Join a time's waitlist to be e-mailed if seats free up."
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    grace_page.screenshot(path=SCREENSHOTS / "listing-seat-held-desktop.png", full_page=True)
    grace_page.set_viewport_size({"width": 390, "height": 844})
    grace_page.screenshot(path=SCREENSHOTS / "listing-seat-held-phone.png", full_page=True)

    ada.cancel()  # Ada changes her mind on Stripe's page: her seat is free at once
    ada_page.wait_for_url(re.compile(re.escape(listing_url(shop, slot)) + r"\?checkout=cancelled"), timeout=stripe.timeout)
    expect(ada_page.locator(".messages")).to_contain_text("the seats you held are free again")
    expect(seats_shown(ada_page, slot)).to_have_text("1 seat left")

    grace = start_booking(grace_page, shop, slot, customer=Customer(name="Grace", email="grace@example.com"))
    grace.pay(CARD_OK)
    grace_page.wait_for_url(SUCCESS_URL, timeout=stripe.timeout)
    expect_status(grace_page, "confirmed", timeout=stripe.timeout)

    assert ada.booking.status == BookingStatus.EXPIRED
    assert grace.booking.status == BookingStatus.CONFIRMED
    assert not stripe.refunds_of(grace.booking.payment_intent_id)
    assert seats_left(slot) == 0


@both_stripes
def test_cancelling_on_the_checkout_page_returns_to_the_listing_and_books_nothing(page, shop, stripe, slot):
    checkout = start_booking(page, shop, slot)

    checkout.cancel()

    page.wait_for_url(re.compile(re.escape(listing_url(shop, slot)) + r"\?checkout=cancelled"), timeout=stripe.timeout)
    expect(page.locator(".messages")).to_contain_text("Checkout cancelled. Nothing was charged")
    expect(seats_shown(page, slot)).to_have_text("5 seats left")
    stripe.settle()
    assert checkout.booking.status == BookingStatus.EXPIRED  # its session expired at Stripe, its seat released
    assert mail.outbox == []


def test_without_javascript_the_success_page_refreshes_itself_to_confirmed(new_context, shop, stripe, slot, settings):
    page = new_context(java_script_enabled=False).new_page()
    stripe.control.hold_webhooks()  # only the page's own refreshes can confirm
    checkout = start_booking(page, shop, slot)
    navigations = NavigationLog(page)
    with stripe_unreachable(settings):
        checkout.pay(CARD_OK)
        page.wait_for_url(SUCCESS_URL)
        expect_status(page, "pending", timeout=stripe.timeout)
    loads = len(navigations.urls)

    expect_status(page, "confirmed", timeout=15_000)

    assert len(navigations.urls) > loads, "confirmed by a refresh of the page"
    assert seats_left(slot) == 4
    assert len(mail.outbox) == 1
