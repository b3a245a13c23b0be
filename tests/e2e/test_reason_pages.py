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


def _paid_booking(shop, stripe, slot, email: str, card: str = "4242424242424242") -> Booking:
    started = checkout_start(
        slot=slot,
        quantity=2,
        customer_email=email,
        customer_name="Ada Lovelace",
        success_url=shop.url(reverse("shop:checkout_success")) + "?session_id={CHECKOUT_SESSION_ID}",
        cancel_url=shop.url("/"),
    )
    stripe.control.pay_session(started.booking.checkout_session_id, card=card)
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


@pytest.mark.parametrize("width", WIDTHS)
def test_a_partial_refund_made_after_the_customer_cancelled_reads_true_on_the_booking_page_and_in_its_email(
    width, new_context, shop, stripe, settings
):
    """Simulation seeds 424201083 and 424201107: the merchant's partial refund, which Stripe could
    not make at once, is made by the customer's cancellation; nothing may say the merchant cancelled."""
    from django.core import mail

    from bookings.models import CancellationPolicy
    from bookings.services import booking_customer_cancel

    merchant = make_merchant(timezone_name="Europe/Paris", display_name="Atelier Lumière")
    listing = make_listing(
        merchant=merchant, title="Pottery evening", price_amount=2500, currency="eur",
        cancel_policy=CancellationPolicy.CUSTOMER_MAY_CANCEL,
    )
    booking = _paid_booking(shop, stripe, make_slot(listing=listing, capacity=4), "ada@example.com")
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    stripe.control.fail_refunds(count=1, mode="error")
    booking_refund(booking=booking, amount=1000)  # Stripe fails it: left to be asked again
    booking_customer_cancel(booking=Booking.objects.get(pk=booking.pk), expected_refund=4000)
    stripe.control.wait_for_webhooks()
    booking.refresh_from_db()
    assert (booking.status, booking.amount_refunded) == ("refunded", 5000)
    notice = next(m for m in mail.outbox if m.subject == "A refund for your booking: Pottery evening")
    assert ("Atelier Lumière refunded €10.00 of your €50.00 payment. You cancelled this booking, so it holds "
            "no seats. The refund has been made") in notice.body
    page = new_context(**WIDTHS[width]).new_page()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    page.goto(shop.url(reverse("shop:booking", args=[booking.public_token])))

    expect(page.get_by_role("heading", name="You cancelled this booking — refunded")).to_be_visible()
    expect(page.get_by_test_id("money-back")).to_contain_text("You cancelled this booking, so it holds no seats.")
    expect(page.get_by_test_id("money-back")).to_contain_text("Your payment of €50.00 has been refunded in full")
    expect(page.locator("body")).not_to_contain_text("Atelier Lumière cancelled")
    starts = booking.slot.starts_at.astimezone(merchant.zone)
    expect(page.locator(".facts")).to_contain_text(f"{starts:%H:%M} (Europe/Paris)")
    page.screenshot(path=SCREENSHOTS / f"booking-partly-refunded-then-cancelled-{width}.png", full_page=True)
    assert fits_the_width(page), f"the booking page scrolls sideways at the {width} width"


@pytest.mark.parametrize("width", WIDTHS)
def test_a_late_cancellation_whose_counted_refund_failed_says_what_is_owed_to_the_customer_and_the_merchant(
    width, new_context, shop, stripe, live_server
):
    """Simulation seed 424200367: the merchant refunded half, the customer cancelled late (the
    policy keeping half, nothing more came back), then the merchant's refund failed at the bank."""
    from django.core import mail

    from bookings.models import CancellationPolicy
    from bookings.services import booking_customer_cancel
    from tests.e2e.pages import SIGNIN_LINK, sign_in

    merchant = make_merchant(username="atelier", timezone_name="Europe/Paris", display_name="Atelier Lumière")
    listing = make_listing(
        merchant=merchant, title="Pottery evening", price_amount=2500, currency="eur",
        cancel_policy=CancellationPolicy.CUSTOMER_MAY_CANCEL, cancel_free_hours=2000, cancel_late_keep_percent=50,
    )
    booking = _paid_booking(shop, stripe, make_slot(listing=listing, capacity=4), "ada@example.com",
                            card="4000000000005126")  # its refunds fail a moment later
    booking_refund(booking=booking, amount=2500)
    booking_customer_cancel(booking=Booking.objects.get(pk=booking.pk), expected_refund=0)
    stripe.control.advance_clock(60)
    stripe.control.wait_for_webhooks()
    booking.refresh_from_db()
    assert (booking.status, booking.amount_refunded) == ("refund_failed", 0)
    failed = [m for m in mail.outbox if m.subject == "Your refund did not go through: Pottery evening"]
    assert len(failed) == 1 and failed[0].to == ["ada@example.com"]
    page = new_context(**WIDTHS[width]).new_page()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    starts = booking.slot.starts_at.astimezone(merchant.zone)

    page.goto(shop.url(reverse("shop:booking", args=[booking.public_token])))

    expect(page.get_by_role("heading", name="Your refund did not go through")).to_be_visible()
    expect(page.get_by_test_id("money-back")).to_contain_text(
        "You cancelled this booking, so it holds no seats. The refund of €25.00 did not go through. "
        f"Atelier Lumière has been alerted and will refund you; you can reach them at {merchant.support_email}."
    )
    expect(page.locator(".facts")).to_contain_text(f"{starts:%H:%M} (Europe/Paris)")
    expect(page.locator("body")).not_to_contain_text("nothing is refunded")
    page.screenshot(path=SCREENSHOTS / f"booking-cancelled-late-refund-failed-{width}.png", full_page=True)
    assert fits_the_width(page), f"the booking page scrolls sideways at the {width} width"

    # My bookings, once the customer has proved the address by a link.
    page.goto(shop.url(reverse("shop:my_bookings")))
    page.fill("#id_email", "ada@example.com")
    page.get_by_role("button", name="E-mail me a sign-in link").click()
    expect(page.get_by_role("heading", name="Check your e-mail")).to_be_visible()
    link = next(SIGNIN_LINK.search(m.body) for m in reversed(mail.outbox) if SIGNIN_LINK.search(m.body))
    page.goto(link.group(0))
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(shop.url(reverse("shop:my_bookings")))
    row = page.get_by_test_id(f"my-booking-{booking.pk}")
    expect(row).to_contain_text("Cancelled by you")
    expect(row.get_by_test_id("my-booking-refund-failed")).to_have_text(
        "The refund of €25.00 did not go through. Atelier Lumière has been alerted and will refund you."
    )
    expect(row).to_contain_text(f"{starts:%H:%M}")
    page.screenshot(path=SCREENSHOTS / f"my-bookings-refund-failed-{width}.png", full_page=True)
    assert fits_the_width(page), f"My bookings scrolls sideways at the {width} width"

    sign_in(page, live_server.url, "atelier")
    page.goto(live_server.url + reverse("merchant:booking_detail", args=[booking.pk]))
    expect(page.locator(".callout--bad")).to_contain_text(
        "Ada Lovelace has not got back the €25.00 your cancellation policy gives back for their cancellation."
    )
    expect(page.locator(".facts").first).to_contain_text("By the customer")
    expect(page.locator("table")).to_contain_text("Customer told it failed")
    expect(page.get_by_role("button", name="Retry the refund of €25.00")).to_be_visible()
    expect(page.locator(".facts").first).to_contain_text(f"{starts:%H:%M}")
    page.screenshot(path=SCREENSHOTS / f"merchant-booking-refund-failed-{width}.png", full_page=True)
    assert fits_the_width(page), f"the merchant's booking page scrolls sideways at the {width} width"


@pytest.mark.parametrize("width", WIDTHS)
def test_a_payment_not_yet_confirmed_says_so_then_that_it_is_taking_longer(width, new_context, shop, stripe):
    """The success page of a booking Stripe has not confirmed (as in a big on-sale, when the
    webhook waits): at first "a few seconds" and the seats' hold in the merchant's zone, then,
    polled on by htmx, that it is taking longer and the confirmation will be e-mailed."""
    from zoneinfo import ZoneInfo

    from bookings.models import Hold

    merchant = make_merchant(timezone_name="Europe/Paris", display_name="Atelier Lumière")
    listing = make_listing(merchant=merchant, title="Pottery evening", price_amount=2500, currency="eur")
    started = checkout_start(
        slot=make_slot(listing=listing, capacity=4),
        quantity=1,
        customer_email="ada@example.com",
        customer_name="Ada Lovelace",
        success_url=shop.url(reverse("shop:checkout_success")) + "?session_id={CHECKOUT_SESSION_ID}",
        cancel_url=shop.url("/"),
    )
    hold = Hold.objects.get(booking=started.booking, ended_at__isnull=True)
    held_until = hold.expires_at.astimezone(ZoneInfo("Europe/Paris")).strftime("%H:%M")
    page = new_context(**WIDTHS[width]).new_page()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    page.goto(shop.url(reverse("shop:checkout_success")) + f"?session_id={started.booking.checkout_session_id}")
    panel = page.locator("#booking-status")
    expect(panel.get_by_role("heading", name="Confirming your payment…")).to_be_visible()
    expect(panel).to_contain_text("This usually takes a few seconds.")
    expect(panel).to_contain_text(f"Your seat is held for you until {held_until} (Europe/Paris).")
    page.screenshot(path=SCREENSHOTS / f"success-pending-{width}.png", full_page=True)

    # The panel's own polls, 1+1+1+2+2 s apart, reach the fifth.
    expect(page.get_by_test_id("taking-long")).to_contain_text("This is taking longer than usual.", timeout=30_000)
    expect(panel).to_contain_text("we e-mail you as soon as your booking is confirmed")
    expect(panel).to_contain_text(f"Your seat is held for you until {held_until} (Europe/Paris).")
    expect(panel).not_to_contain_text("a few seconds")
    page.screenshot(path=SCREENSHOTS / f"success-taking-long-{width}.png", full_page=True)
    assert fits_the_width(page), f"the success page scrolls sideways at the {width} width"


@pytest.mark.parametrize("width", WIDTHS)
def test_without_javascript_the_success_page_reloads_itself_and_says_when_it_is_taking_longer(
    width, new_context, shop, stripe
):
    """JavaScript off: the page's own meta refresh reloads it every 3 s with the next count, so a
    customer without htmx is told too. Opened at the fourth reload, the next one says so."""
    from zoneinfo import ZoneInfo

    from bookings.models import Hold

    merchant = make_merchant(timezone_name="Europe/Paris", display_name="Atelier Lumière")
    listing = make_listing(merchant=merchant, title="Pottery evening", price_amount=2500, currency="eur")
    started = checkout_start(
        slot=make_slot(listing=listing, capacity=4),
        quantity=1,
        customer_email="ada@example.com",
        customer_name="Ada Lovelace",
        success_url=shop.url(reverse("shop:checkout_success")) + "?session_id={CHECKOUT_SESSION_ID}",
        cancel_url=shop.url("/"),
    )
    session_id = started.booking.checkout_session_id
    held_until = Hold.objects.get(booking=started.booking, ended_at__isnull=True).expires_at
    held_until = held_until.astimezone(ZoneInfo("Europe/Paris")).strftime("%H:%M")
    page = new_context(**WIDTHS[width], java_script_enabled=False).new_page()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    page.goto(shop.url(reverse("shop:checkout_success")) + f"?session_id={session_id}&poll=4")
    expect(page.get_by_role("heading", name="Confirming your payment…")).to_be_visible()
    expect(page.locator("body")).to_contain_text("This usually takes a few seconds.")
    expect(page.get_by_role("link", name="Refresh")).to_have_attribute("href", f"/checkout/success/?session_id={session_id}&poll=5")

    page.wait_for_url("**poll=5", timeout=10_000)  # the meta refresh, by itself
    expect(page.get_by_test_id("taking-long")).to_contain_text(
        "This is taking longer than usual. You can keep this page open; it updates by itself, and we e-mail you "
        "as soon as your booking is confirmed."
    )
    expect(page.locator("body")).to_contain_text(f"Your seat is held for you until {held_until} (Europe/Paris).")
    expect(page.locator("body")).not_to_contain_text("a few seconds")
    page.screenshot(path=SCREENSHOTS / f"success-taking-long-no-js-{width}.png", full_page=True)
    assert fits_the_width(page), f"the success page scrolls sideways at the {width} width"
