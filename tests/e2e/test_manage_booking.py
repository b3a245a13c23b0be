"""A customer of a Europe/Paris merchant manages their own booking in a real browser: signs in by
the e-mailed link from My bookings, moves the booking to another time, then cancels it inside
the free window and sees the refund. Screenshots of My bookings, the move and the cancel
confirmation at a phone and a desktop width land in test-artifacts/screenshots/."""

import datetime as dt
import re
import zoneinfo

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from bookings.models import Booking, BookingStatus, RefundReason, Slot
from payments import stripe_api
from payments.checkout import checkout_start
from tests.e2e.pages import SIGNIN_LINK
from tests.e2e.test_pages import SCREENSHOTS, WIDTHS, fits_the_width
from tests.factories import make_listing, make_merchant, make_slot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PARIS = zoneinfo.ZoneInfo("Europe/Paris")


def long(wall: dt.datetime) -> str:
    return f"{wall:%A} {wall.day} {wall:%B} {wall.year}, {wall:%H:%M}"


@pytest.mark.parametrize("width", WIDTHS)
def test_a_customer_signs_in_by_link_moves_then_cancels_in_the_free_window_and_sees_the_refund(
    width, new_context, shop, stripe
):
    merchant = make_merchant(timezone_name="Europe/Paris", display_name="Atelier Lumière")
    listing = make_listing(
        merchant=merchant,
        title="Pottery evening",
        price_amount=1800,
        currency="eur",
        cancel_free_hours=48,
        cancel_late_keep_percent=50,
        place_kind="online",
        online_url="https://meet.example.com/atelier-lumiere/pottery-evening-room",
    )
    year = timezone.now().year + 1
    first = make_slot(listing=listing, capacity=4, starts_at=dt.datetime(year, 6, 5, 18, 30, tzinfo=PARIS))
    second = make_slot(listing=listing, capacity=4, starts_at=dt.datetime(year, 6, 12, 19, 0, tzinfo=PARIS))
    started = checkout_start(
        slot=first,
        quantity=2,
        customer_email="ada@example.com",
        customer_name="Ada Lovelace",
        success_url=shop.url(reverse("shop:checkout_success")) + "?session_id={CHECKOUT_SESSION_ID}",
        cancel_url=shop.url("/"),
    )
    stripe.control.pay_session(started.booking.checkout_session_id)
    stripe.control.wait_for_webhooks()
    booking = Booking.objects.get(pk=started.booking.pk)
    assert booking.status == BookingStatus.CONFIRMED
    page = new_context(**WIDTHS[width]).new_page()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def shoot(name: str) -> None:
        page.screenshot(path=SCREENSHOTS / f"{name}-{width}.png", full_page=True)
        assert fits_the_width(page), f"the {name} page scrolls sideways at the {width} width"

    # My bookings: not signed in, it asks for a link; the link comes back to it.
    page.goto(shop.url(reverse("shop:catalog")))
    page.get_by_role("link", name="My bookings").click()
    expect(page.get_by_role("heading", name="My bookings")).to_be_visible()
    page.fill("#id_email", "ada@example.com")
    page.get_by_role("button", name="E-mail me a sign-in link").click()
    expect(page.get_by_role("heading", name="Check your e-mail")).to_be_visible()
    sent = [m for m in mail.outbox if m.to == ["ada@example.com"] and "Receipts and payment methods" in m.subject]
    stripe.eventually(lambda: bool(sent or [m for m in mail.outbox if m.to == ["ada@example.com"]]), "a sign-in link")
    sent = [m for m in mail.outbox if m.to == ["ada@example.com"] and SIGNIN_LINK.search(m.body)]
    page.goto(SIGNIN_LINK.search(sent[-1].body).group(0))
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(shop.url(reverse("shop:my_bookings")))
    row = page.get_by_test_id(f"my-booking-{booking.pk}")
    expect(row).to_contain_text("Pottery evening")
    expect(row).to_contain_text(f"{long(dt.datetime(year, 6, 5, 18, 30))} (Europe/Paris)")
    expect(row).to_contain_text("Confirmed")
    # Its place: the online link, given while the booking is confirmed.
    expect(row.get_by_test_id("my-booking-place")).to_contain_text(
        "Online: https://meet.example.com/atelier-lumiere/pottery-evening-room"
    )
    shoot("my-bookings")

    # Move it to the other time.
    row.get_by_role("link", name="Move to another time").click()
    expect(page.get_by_role("heading", name="Move Pottery evening")).to_be_visible()
    expect(page.locator("body")).to_contain_text(f"You can move it until {long(dt.datetime(year, 6, 3, 18, 30))} (Europe/Paris)")
    shoot("reschedule")
    page.get_by_label(re.compile(re.escape(long(dt.datetime(year, 6, 12, 19, 0))))).check()
    page.get_by_role("button", name="Move my booking").click()
    expect(page.locator(".messages")).to_contain_text(
        f"Your booking is moved to {long(dt.datetime(year, 6, 12, 19, 0))} (Europe/Paris)."
    )
    assert [Slot.objects.get(pk=s.pk).seats_left for s in (first, second)] == [4, 2]

    # Cancel it inside the free window: the whole payment comes back.
    page.get_by_role("link", name="Cancel booking").click()
    quote = page.get_by_test_id("cancel-quote")
    expect(quote).to_contain_text("You get back €36.00")
    expect(quote).to_contain_text(
        f"before free cancellation ends on {long(dt.datetime(year, 6, 10, 19, 0))} (Europe/Paris)"
    )
    shoot("cancel-confirm")
    page.get_by_role("button", name="Cancel my booking and refund €36.00").click()
    expect(page.locator(".messages")).to_contain_text("Your booking is cancelled. A refund of €36.00 is on its way.")
    expect(page.get_by_test_id("money-back")).to_contain_text("You cancelled this booking, so it holds no seats.")
    stripe.control.wait_for_webhooks()
    page.reload()
    expect(page.get_by_test_id("money-back")).to_contain_text("Your payment of €36.00 has been refunded in full")
    shoot("booking-cancelled-by-customer")

    booking.refresh_from_db()
    assert (booking.status, booking.ended_reason, booking.amount_refunded) == (
        BookingStatus.REFUNDED,
        RefundReason.CUSTOMER_CANCELLED,
        3600,
    )
    assert [r["amount"] for r in stripe_api.refunds_of_payment(booking.payment_intent_id, stripe_account=booking.stripe_account_id)] == [3600]
    assert Slot.objects.get(pk=second.pk).seats_left == 4

    page.goto(shop.url(reverse("shop:my_bookings")))
    cancelled_row = page.get_by_test_id(f"my-booking-{booking.pk}")
    expect(cancelled_row).to_contain_text("Cancelled by you")
    # Cancelled: still "Online", but the link is no longer given.
    expect(cancelled_row.get_by_test_id("my-booking-place")).to_have_text("Online")
    shoot("my-bookings-after-cancel")


@pytest.mark.parametrize("width", WIDTHS)
def test_a_merchant_sets_a_listings_cancellation_policy_and_the_listing_shows_it(width, new_context, shop, stripe):
    from tests.e2e.pages import sign_in

    merchant = make_merchant(username="atelier", timezone_name="Europe/Paris", display_name="Atelier Lumière")
    listing = make_listing(merchant=merchant, title="Pottery evening", price_amount=1800, currency="eur")
    make_slot(listing=listing, capacity=4)
    page = new_context(**WIDTHS[width]).new_page()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    sign_in(page, shop.base_url, "atelier")

    page.goto(shop.url(reverse("merchant:listing_edit", args=[listing.pk])))
    page.fill("#id_cancel_free_hours", "48")
    page.fill("#id_cancel_late_keep_percent", "30")
    page.screenshot(path=SCREENSHOTS / f"merchant-listing-policy-{width}.png", full_page=True)
    assert fits_the_width(page)
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator(".messages")).to_contain_text("their cancellation terms unless the new ones are more lenient")

    listing.refresh_from_db()
    assert (listing.cancel_policy, listing.cancel_free_hours, listing.cancel_late_keep_percent) == ("customer", 48, 30)
    page.goto(shop.url(reverse("shop:listing", args=[listing.slug])))
    expect(page.get_by_test_id("cancellation-policy")).to_contain_text(
        "Free cancellation until 48 hours before the start; after that, 30% of the payment is kept."
    )
    page.screenshot(path=SCREENSHOTS / f"listing-policy-{width}.png", full_page=True)
    assert fits_the_width(page)
