"""The fair queue in a real browser: with Stripe's budget spent, a second buyer sees their place
in line on the waiting page, then reaches Stripe's Checkout by themselves when their turn comes,
with JavaScript (htmx polling, HX-Redirect) and without (a refresh, then a 303)."""

import re

import pytest
from playwright.sync_api import expect

from bookings.models import Booking
from payments import budget
from tests.e2e.pages import CHECKOUT_URL, Customer, listing_url, start_booking
from tests.factories import make_listing, make_slot
from tests.payments.test_checkout_queue import spend_budget

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

QUEUE_URL = re.compile(r"/checkout/queue/[^/]+/$")


def press_book(page, shop, slot, customer: Customer) -> None:
    page.goto(listing_url(shop, slot) + f"?slot={slot.pk}")
    page.locator(f"input[name=slot][value='{slot.pk}']").check()
    page.fill("#id_quantity", "1")
    page.fill("#id_customer_name", customer.name)
    page.fill("#id_customer_email", customer.email)
    page.get_by_role("button", name="Continue to payment").click()


@pytest.mark.parametrize("javascript", [True, False], ids=["htmx", "no-javascript"])
def test_a_second_buyer_waits_in_line_then_reaches_checkout_by_themselves(
    javascript, new_context, shop, stripe, settings
):
    settings.STRIPE_REQUESTS_PER_SECOND = 1
    settings.STRIPE_BUDGET_REDIS_URL = ""
    budget.budget_reset()
    slot = make_slot(listing=make_listing(title="Harbour night swim", price_amount=1800), capacity=4)
    first_page = new_context().new_page()
    start_booking(first_page, shop, slot, customer=Customer(name="Ada", email="ada@example.com"))
    spend_budget()  # the rest of this second's budget is gone, however long the browser took

    page = new_context(java_script_enabled=javascript).new_page()
    press_book(page, shop, slot, Customer(name="Grace Hopper", email="grace@example.com"))

    page.wait_for_url(QUEUE_URL)
    expect(page.get_by_test_id("queue-place")).to_have_text("You are number 1 in line")
    expect(page.get_by_test_id("queue-estimate")).to_contain_text("about 1 second")
    grace = Booking.objects.get(customer_email="grace@example.com")
    assert grace.checkout_session_id is None
    page.wait_for_timeout(2500)  # polls (or refreshes) meanwhile: still waiting, nobody jumps in
    expect(page.get_by_test_id("queue-place")).to_have_text("You are number 1 in line")

    budget.budget_reset()  # Stripe's budget has room again: the next poll opens Grace's checkout

    page.wait_for_url(CHECKOUT_URL, timeout=15_000)
    grace.refresh_from_db()
    assert grace.checkout_session_id and grace.checkout_session_id in page.url
