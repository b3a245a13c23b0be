"""A merchant's tools in a real browser: a 100% code made on the dashboard and used by a customer
on Stripe's Checkout page, and the codes, attendee list and message pages at phone and desktop widths."""

import datetime as dt

import pytest
from django.core import mail
from django.urls import reverse
from playwright.sync_api import expect

from bookings.models import Booking, BookingStatus, PromotionCode
from tests.e2e.pages import SUCCESS_URL, expect_status, sign_in, start_booking
from tests.e2e.test_pages import SCREENSHOTS
from tests.factories import make_confirmed_booking, make_listing, make_merchant, make_slot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def shoot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for width, label in ((1280, "desktop"), (390, "phone")):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=SCREENSHOTS / f"{name}-{label}.png", full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})


def test_a_merchant_makes_a_100_percent_code_and_a_customer_books_with_it_paying_nothing(page, shop, stripe, live_server):
    merchant = make_merchant(username="atelier", timezone_name="Europe/Paris", display_name="Atelier Nord",
                             support_email="atelier@example.com")
    listing = make_listing(merchant=merchant, title="Wheel-throwing evening", price_amount=5500, currency="eur")
    slot = make_slot(listing=listing, capacity=4,
                     starts_at=dt.datetime.combine(dt.date.today() + dt.timedelta(days=5), dt.time(18, 30),
                                                   tzinfo=merchant.zone))
    make_confirmed_booking(slot=slot, quantity=2, customer_name="Zoë Martin", customer_email="zoe@example.com")
    sign_in(page, live_server.url, "atelier")

    page.get_by_role("link", name="Promotion codes").click()
    page.fill("#id_code", "FREECLAY")
    page.fill("#id_percent_off", "100")
    page.fill("#id_max_redemptions", "3")
    page.fill("#id_expires_on", (dt.date.today() + dt.timedelta(days=30)).isoformat())
    page.get_by_role("button", name="Create code").click()
    row = page.locator("tr[data-code='FREECLAY']")
    expect(row).to_contain_text("100% off")
    expect(row.locator("[data-testid=times-redeemed]")).to_contain_text("0 of 3")
    shoot(page, "merchant-promotion-codes")

    customer = page.context.new_page()
    checkout = start_booking(customer, shop, slot)
    checkout.apply_promotion_code("freeclay")
    expect(customer.locator("#cardNumber")).to_be_hidden(timeout=stripe.timeout)
    checkout.submit()
    customer.wait_for_url(SUCCESS_URL, timeout=stripe.timeout)
    expect_status(customer, "confirmed", timeout=stripe.timeout)
    booking = Booking.objects.get(pk=checkout.booking.pk)
    assert (booking.status, booking.amount_paid, booking.amount_total) == (BookingStatus.CONFIRMED, 0, 5500)

    page.reload()
    expect(page.locator("tr[data-code='FREECLAY'] [data-testid=times-redeemed]")).to_contain_text("1 of 3")
    # With Connect (`--connect`) the code and the session both live on the merchant's own account.
    assert PromotionCode.objects.get().times_redeemed == 1
    assert PromotionCode.objects.get().stripe_account == booking.stripe_account_id

    page.goto(live_server.url + reverse("merchant:slot_attendees", args=[slot.pk]))
    table = page.locator("[data-testid=attendees]")
    expect(table).to_contain_text("Zoë Martin")
    expect(table).to_contain_text(booking.customer_name)
    expect(page.locator("h1")).to_contain_text("18:30")
    shoot(page, "merchant-attendees")
    page.emulate_media(media="print")
    expect(page.locator("nav.tabs")).to_be_hidden()
    page.screenshot(path=SCREENSHOTS / "merchant-attendees-print.png", full_page=True)
    page.emulate_media(media="screen")

    mail.outbox.clear()
    page.goto(live_server.url + reverse("merchant:slot_message", args=[slot.pk]))
    page.fill("#id_subject", "Bring an apron")
    page.fill("#id_body", "Clay gets everywhere. See you at 18:30!")
    shoot(page, "merchant-message-form")
    page.get_by_role("button", name="Send to 2 bookings").click()
    expect(page.locator("[data-testid=message-history]")).to_contain_text("2 of 2")
    assert sorted(m.to[0] for m in mail.outbox) == sorted(["zoe@example.com", booking.customer_email])
    assert all(m.reply_to == ["atelier@example.com"] for m in mail.outbox)
    shoot(page, "merchant-message-history")
