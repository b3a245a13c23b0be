"""The storefront's payment path end to end against the Stripe emulator: checkout, the polled
status view, webhooks, sold-out refunds and refund failures."""

import html
import re
import time

import pytest
from django.core import mail
from django.urls import reverse

from bookings.models import BookingStatus, Listing, Refund, RefundStatus
from payments.models import StripeBudget, StripeEvent
from payments import stripe_api
from payments.reconcile import reconcile_run
from stripe_emulator.control import PaymentDeclined
from tests.factories import make_slot
from tests.shop.customer_signin import prove_email
from tests.payments.stripe_flow import deliver_events, lose_hold, open_checkout, poll, stripe_session_reads
from tests.connect_mode import on_account

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _stripe(stripe_emulator):
    return stripe_emulator


def test_checkout_opens_a_stripe_session_describing_the_booking(client, slot):
    booking, url = open_checkout(client, slot, quantity=2)

    session = stripe_api.stripe_client().v1.checkout.sessions.retrieve(
        booking.checkout_session_id, params={"expand": ["line_items"]}, options=on_account(booking)
    )
    assert url == session.url
    assert booking.status == BookingStatus.PENDING
    assert session.client_reference_id == f"booking-{booking.pk}"
    assert session.metadata["booking_id"] == str(booking.pk)
    # An unproven visitor's Customer is made by Checkout when they pay: one Stripe call per start.
    assert session.customer is None and booking.stripe_customer_id == ""
    assert (session.customer_creation, session.customer_email) == ("always", booking.customer_email)
    assert session.amount_total == 2 * slot.listing.price_amount == booking.amount_total
    assert session.currency == slot.listing.currency
    assert session.line_items.data[0].quantity == 2
    # Codes are offered on the account the session is on: the platform's, or with Connect (--connect)
    # the merchant's, where the merchant's codes and the listing's product are made.
    assert session.allow_promotion_codes is True
    assert session.line_items.data[0].price.product == Listing.objects.get(pk=slot.listing_id).stripe_product_id
    assert session.invoice_creation.enabled is True
    assert 29 * 60 < session.expires_at - session.created <= 31 * 60
    assert session.success_url.endswith("/checkout/success/?session_id={CHECKOUT_SESSION_ID}")


def test_an_unproven_email_gets_a_customer_of_each_booking_and_stripe_is_never_searched(client, slot, stripe_emulator, settings):
    settings.STRIPE_STATUS_CHECK_SECONDS = 0
    first, _ = open_checkout(client, slot, email="same@example.com")
    second, _ = open_checkout(client, slot, email="same@example.com")
    for booking in (first, second):
        stripe_emulator.pay_session(booking.checkout_session_id, "4242424242424242")
        poll(client, booking)
        booking.refresh_from_db()

    assert first.status == second.status == BookingStatus.CONFIRMED
    assert first.stripe_customer_id and second.stripe_customer_id
    assert first.stripe_customer_id != second.stripe_customer_id
    customer = stripe_api.stripe_client().v1.customers.retrieve(first.stripe_customer_id, options=on_account(first))
    assert customer.email == "same@example.com"
    searches = [r for r in stripe_emulator.requests() if r["method"] == "GET" and r["path"] in ("/v1/customers", "/v1/customers/search")]
    assert searches == []


def test_status_view_confirms_once_paid_and_stops_asking_stripe_once_final(client, slot, stripe_emulator, settings):
    settings.STRIPE_STATUS_CHECK_SECONDS = 0
    booking, _ = open_checkout(client, slot)

    pending = poll(client, booking)
    assert pending.status_code == 200
    assert 'data-status="pending"' in pending.content.decode()
    assert "hx-trigger" in pending.content.decode()

    stripe_emulator.pay_session(booking.checkout_session_id, "4242424242424242")
    confirmed = poll(client, booking)
    assert confirmed.status_code == 286
    assert 'data-status="confirmed"' in confirmed.content.decode()
    assert "hx-trigger" not in confirmed.content.decode()

    reads = stripe_session_reads(stripe_emulator, booking.checkout_session_id)
    for _ in range(3):
        assert poll(client, booking).status_code == 286
    assert stripe_session_reads(stripe_emulator, booking.checkout_session_id) == reads
    slot.refresh_from_db()
    assert slot.seats_left == slot.capacity - 1
    assert len(mail.outbox) == 1


def test_status_view_asks_stripe_at_most_once_per_interval(client, slot, stripe_emulator, settings):
    settings.STRIPE_STATUS_CHECK_SECONDS = 60
    booking, _ = open_checkout(client, slot)

    for _ in range(5):
        poll(client, booking)

    assert stripe_session_reads(stripe_emulator, booking.checkout_session_id) == 1


def test_webhook_alone_confirms_and_a_later_poll_changes_nothing(client, slot, stripe_emulator, settings):
    settings.STRIPE_STATUS_CHECK_SECONDS = 0
    booking, _ = open_checkout(client, slot)
    stripe_emulator.pay_session(booking.checkout_session_id, "4242424242424242")

    responses = deliver_events(client, stripe_emulator)

    assert all(r.status_code == 200 for r in responses)
    booking.refresh_from_db()
    assert booking.status == BookingStatus.CONFIRMED
    assert poll(client, booking).status_code == 286
    slot.refresh_from_db()
    assert slot.seats_left == slot.capacity - 1
    assert len(mail.outbox) == 1
    assert StripeEvent.objects.filter(type="checkout.session.completed", status="processed").count() == 1


@pytest.mark.platform_account  # promotion codes are the platform's: not offered on direct charges
def test_a_100_percent_promotion_code_confirms_with_nothing_paid(client, slot, stripe_emulator, settings):
    settings.STRIPE_STATUS_CHECK_SECONDS = 0
    api = stripe_api.stripe_client()
    coupon = api.v1.coupons.create(params={"percent_off": 100, "duration": "once"})
    api.v1.promotion_codes.create(params={"coupon": coupon.id, "code": "FREEBIE"})
    booking, _ = open_checkout(client, slot)

    stripe_emulator.pay_session(booking.checkout_session_id, promotion_code="FREEBIE")
    poll(client, booking)

    booking.refresh_from_db()
    assert booking.status == BookingStatus.CONFIRMED
    assert booking.amount_paid == 0
    assert booking.payment_intent_id == ""


def test_the_slot_selling_out_while_paying_refunds_the_payment_exactly_once(client, stripe_emulator, settings):
    settings.STRIPE_STATUS_CHECK_SECONDS = 0
    slot = make_slot(capacity=1)
    loser, _ = open_checkout(client, slot, email="second@example.com")
    lose_hold(loser)  # its payment comes after its hold ended: the seat goes to the first
    winner, _ = open_checkout(client, slot, email="first@example.com")
    for booking in (winner, loser):
        stripe_emulator.pay_session(booking.checkout_session_id, "4242424242424242")

    assert poll(client, winner).status_code == 286
    sold_out = poll(client, loser)
    deliver_events(client, stripe_emulator)  # the webhooks arrive afterwards: nothing changes

    loser.refresh_from_db()
    slot.refresh_from_db()
    assert "Sold out while you paid" in sold_out.content.decode()
    assert loser.status == BookingStatus.REFUNDED
    assert loser.amount_refunded == loser.amount_paid == loser.amount_total
    refunds = stripe_api.stripe_client().v1.refunds.list(params={"payment_intent": loser.payment_intent_id}, options=on_account(loser)).data
    assert [(r.amount, r.metadata["reason"]) for r in refunds] == [(loser.amount_total, "sold_out")]
    assert slot.seats_left == 0
    apologies = [m for m in mail.outbox if m.to == ["second@example.com"]]
    assert len(apologies) == 1 and "sold out" in apologies[0].subject


def sold_out_booking(client, stripe_emulator, *, card="4242424242424242"):
    slot = make_slot(capacity=1)
    loser, _ = open_checkout(client, slot, email="second@example.com")
    lose_hold(loser)  # its payment comes after its hold ended: the seat goes to the first
    winner, _ = open_checkout(client, slot, email="first@example.com")
    stripe_emulator.pay_session(winner.checkout_session_id, "4242424242424242")
    stripe_emulator.pay_session(loser.checkout_session_id, card)
    poll(client, winner)
    return loser


def test_a_refund_stripe_answers_500_to_is_retried_with_a_new_key_and_made_once(client, stripe_emulator, settings):
    settings.STRIPE_STATUS_CHECK_SECONDS = 0
    loser = sold_out_booking(client, stripe_emulator)
    stripe_emulator.fail_refunds(1, mode="error")

    webhook_answers = deliver_events(client, stripe_emulator, types={"checkout.session.completed"})

    loser.refresh_from_db()
    assert [r.status_code for r in webhook_answers] == [200, 500]  # Stripe will send the second again
    assert loser.status == BookingStatus.REFUND_DUE
    assert StripeEvent.objects.filter(status="failed").count() == 1

    # Stripe replays a saved 500 to the same key: the retry looks for a refund, then uses a new key.
    summary = reconcile_run()

    loser.refresh_from_db()
    assert summary.refunds_submitted == 1
    assert loser.status == BookingStatus.REFUNDED
    refunds = stripe_api.stripe_client().v1.refunds.list(params={"payment_intent": loser.payment_intent_id}, options=on_account(loser)).data
    assert len(refunds) == 1
    assert Refund.objects.get(booking=loser).attempts == 2


def test_a_refund_whose_answer_was_lost_is_recorded_without_a_second_refund(client, stripe_emulator, settings):
    settings.STRIPE_STATUS_CHECK_SECONDS = 0
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    loser = sold_out_booking(client, stripe_emulator)
    stripe_emulator.fail_refunds(1, mode="lost_response")

    poll(client, loser)  # creates the refund at Stripe, but never hears back
    loser.refresh_from_db()
    assert loser.status == BookingStatus.REFUND_DUE

    reconcile_run()

    loser.refresh_from_db()
    refunds = stripe_api.stripe_client().v1.refunds.list(params={"payment_intent": loser.payment_intent_id}, options=on_account(loser)).data
    assert loser.status == BookingStatus.REFUNDED
    assert len(refunds) == 1
    assert Refund.objects.get(booking=loser).stripe_refund_id == refunds[0].id


def test_a_refund_that_fails_later_marks_the_booking_and_alerts_the_merchant(client, stripe_emulator, settings):
    settings.STRIPE_STATUS_CHECK_SECONDS = 0
    loser = sold_out_booking(client, stripe_emulator, card="4000000000005126")
    poll(client, loser)
    loser.refresh_from_db()
    assert loser.status == BookingStatus.REFUNDED

    stripe_emulator.advance_clock(5)
    wait_for_event(stripe_emulator, "refund.failed")
    deliver_events(client, stripe_emulator, types={"refund.updated", "refund.failed"})

    loser.refresh_from_db()
    refund = Refund.objects.get(booking=loser)
    assert loser.status == BookingStatus.REFUND_FAILED
    assert loser.amount_refunded == 0
    assert refund.status == RefundStatus.FAILED
    assert refund.failure_reason == "expired_or_canceled_card"
    merchant_email = loser.slot.listing.merchant.support_email
    alerts = [m for m in mail.outbox if m.to == [merchant_email]]
    assert len(alerts) == 1 and "refund failed" in alerts[0].subject


def wait_for_event(control, event_type: str) -> None:
    deadline = time.monotonic() + 10
    while not control.events(type=event_type):
        assert time.monotonic() < deadline, f"no {event_type} event"
        control.advance_clock(1)


def test_the_customer_portal_opens_for_the_bookings_customer(client, slot, stripe_emulator, settings):
    settings.STRIPE_STATUS_CHECK_SECONDS = 0
    booking, _ = open_checkout(client, slot)
    stripe_emulator.pay_session(booking.checkout_session_id)
    poll(client, booking)
    prove_email(client, booking.customer_email)

    response = client.post(reverse("shop:booking_portal", args=[booking.public_token]))

    assert response.status_code == 303
    assert response["Location"].startswith(stripe_emulator.base_url + "/p/session/bps_")


def test_reconcile_confirms_a_paid_booking_whose_webhook_never_came(client, slot, stripe_emulator):
    booking, _ = open_checkout(client, slot)
    stripe_emulator.pay_session(booking.checkout_session_id)

    summary = reconcile_run()

    booking.refresh_from_db()
    assert summary.confirmed == 1
    assert booking.status == BookingStatus.CONFIRMED


def test_reconcile_expires_a_booking_whose_session_expired(client, slot, stripe_emulator):
    booking, _ = open_checkout(client, slot)
    stripe_emulator.expire_session(booking.checkout_session_id)

    summary = reconcile_run()

    booking.refresh_from_db()
    assert summary.expired == 1
    assert booking.status == BookingStatus.EXPIRED


def test_a_stripe_outage_at_checkout_is_a_polite_message_and_no_pending_booking(client, slot, settings):
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # nothing listens there
    settings.STRIPE_MAX_NETWORK_RETRIES = 0

    response = client.post(
        reverse("shop:checkout_create", args=[slot.listing.slug]),
        {"slot": slot.pk, "quantity": 1, "customer_email": "a@example.com", "customer_name": "A"},
    )

    assert response.status_code == 503
    assert "We could not reach our payment provider" in response.content.decode()
    assert slot.bookings.get().status == BookingStatus.EXPIRED


def test_declined_card_leaves_the_booking_pending_until_the_session_expires(client, slot, stripe_emulator, settings):
    settings.STRIPE_STATUS_CHECK_SECONDS = 0
    booking, _ = open_checkout(client, slot)

    with pytest.raises(PaymentDeclined) as declined:
        stripe_emulator.pay_session(booking.checkout_session_id, "4000000000000002")
    assert "declined" in str(declined.value).lower()
    assert poll(client, booking).status_code == 200

    stripe_emulator.expire_session(booking.checkout_session_id)
    final = poll(client, booking)

    assert final.status_code == 286
    assert "Payment not completed" in final.content.decode()


def test_the_success_page_that_confirms_reads_the_time_listing_and_merchant_once(client, stripe_emulator, settings):
    import datetime as dt
    from zoneinfo import ZoneInfo

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.factories import make_listing, make_merchant

    settings.STRIPE_STATUS_CHECK_SECONDS = 0
    merchant = make_merchant(timezone_name="Europe/Paris")
    listing = make_listing(merchant=merchant, title="Canal walk")
    starts_at = dt.datetime(2030, 6, 3, 9, 30, tzinfo=ZoneInfo("Europe/Paris"))
    booking, _ = open_checkout(client, make_slot(listing=listing, starts_at=starts_at))
    stripe_emulator.pay_session(booking.checkout_session_id, "4242424242424242")

    with CaptureQueriesContext(connection) as queries:
        page = client.get(reverse("shop:checkout_success"), {"session_id": booking.checkout_session_id})

    # Read with the booking (joined), then kept through the confirmation: no second read of any.
    reads_of_their_own = [
        q["sql"] for q in queries.captured_queries
        if q["sql"].startswith("SELECT") and any(
            f'FROM "{table}"' in q["sql"] for table in ("bookings_slot", "bookings_listing", "bookings_merchant")
        )
    ]
    html = page.content.decode()
    booking.refresh_from_db()
    assert booking.status == BookingStatus.CONFIRMED
    assert reads_of_their_own == []
    assert "Canal walk" in html and "Monday 3 June 2030, 09:30" in html and "Europe/Paris" in html


def test_a_poll_of_a_booking_still_being_paid_tells_its_hold_and_reads_no_refunds(client, slot, settings):
    from zoneinfo import ZoneInfo

    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from bookings.models import Hold

    settings.STRIPE_STATUS_CHECK_SECONDS = 0
    booking, _ = open_checkout(client, slot)  # not paid yet: Stripe says the session is open

    with CaptureQueriesContext(connection) as queries:
        panel = poll(client, booking).content.decode()

    hold = Hold.objects.get(booking=booking, ended_at__isnull=True)
    zone = slot.listing.merchant.timezone
    held_until = timezone.localtime(hold.expires_at, ZoneInfo(zone)).strftime("%H:%M")
    assert f"Your seat is held for you until {held_until}" in panel and f"({zone})" in panel
    # Nothing was paid, so nothing can have come back: the refunds are not read.
    assert not [q["sql"] for q in queries.captured_queries if 'FROM "bookings_refund"' in q["sql"]]


def test_a_poll_between_two_checks_only_reads_the_booking_and_its_hold(client, slot, stripe_emulator, settings):
    """In an on-sale most polls come between two checks of their booking with Stripe: they read
    the booking (with its time, listing and merchant) and its hold, and write nothing."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    settings.STRIPE_STATUS_CHECK_SECONDS = 60
    booking, _ = open_checkout(client, slot)
    poll(client, booking)  # asks Stripe: the session is still open

    with CaptureQueriesContext(connection) as queries:
        panel = poll(client, booking)

    statements = [q["sql"] for q in queries.captured_queries]
    assert panel.status_code == 200 and 'data-status="pending"' in panel.content.decode()
    assert "Your seat is held for you until" in panel.content.decode()
    assert [s.split(" ", 1)[0] for s in statements] == ["SELECT", "SELECT"], statements
    assert 'FROM "bookings_booking"' in statements[0] and 'FROM "bookings_hold"' in statements[1]
    assert stripe_session_reads(stripe_emulator, booking.checkout_session_id) == 1


def test_a_check_the_budget_cannot_spare_writes_its_claim_and_reads_nothing_again(client, slot, stripe_emulator, settings):
    """A pending booking due for a check when Stripe's budget has no token to spare: the claim
    (which found it still pending) is the one write, the booking is not read a second time, and
    Stripe is not asked; the webhook settles it."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from payments import budget

    settings.STRIPE_STATUS_CHECK_SECONDS = 0
    booking, _ = open_checkout(client, slot)
    reads = stripe_session_reads(stripe_emulator, booking.checkout_session_id)
    settings.STRIPE_BUDGET_REDIS_URL = ""
    budget.budget_reset()
    assert budget.budget_take()  # makes the row; then the budget spent for the next hour
    StripeBudget.objects.filter(name=budget.STRIPE_BUDGET).update(tat_us=time.time_ns() // 1000 + 3600 * 10**6)

    with CaptureQueriesContext(connection) as queries:
        panel = poll(client, booking)

    statements = [q["sql"] for q in queries.captured_queries]
    assert panel.status_code == 200 and 'data-status="pending"' in panel.content.decode()
    assert sum(1 for s in statements if 'FROM "bookings_booking"' in s and s.startswith("SELECT")) == 1, statements
    assert sum(1 for s in statements if s.startswith("UPDATE")) == 1, statements
    assert stripe_session_reads(stripe_emulator, booking.checkout_session_id) == reads


def test_pressing_book_reads_the_listing_once(client, slot, stripe_emulator):
    """The listing is read by its address; the chosen time is read with it joined (the form
    checks the payment's size by its price), not followed by a second read of the listing."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        open_checkout(client, slot)

    listing_reads = [q["sql"] for q in queries.captured_queries if q["sql"].startswith('SELECT "bookings_listing"')]
    assert len(listing_reads) == 1, listing_reads


def test_a_payment_still_unconfirmed_after_some_seconds_no_longer_says_a_few_seconds(client, slot, stripe_emulator):
    """In a big on-sale a paid buyer waited 40 s at the median for the webhook: from the fifth poll
    (about 7 s in) the panel says it is taking longer than usual, and that the confirmation is e-mailed."""
    booking, _ = open_checkout(client, slot)
    url = reverse("shop:checkout_status", args=[booking.checkout_session_id])

    early = client.get(url, {"poll": 0}, headers={"HX-Request": "true"}).content.decode()
    late = client.get(url, {"poll": 5}, headers={"HX-Request": "true"}).content.decode()

    assert "This usually takes a few seconds." in early and "taking longer than usual" not in early
    assert "This is taking longer than usual." in late and "a few seconds" not in late
    assert "we e-mail you as soon as your booking is confirmed" in late
    assert 'data-status="pending"' in late and 'hx-trigger="load delay:' in late  # still polling


def test_without_javascript_the_reloading_page_counts_its_reloads_and_says_when_it_is_taking_long(client, slot, stripe_emulator):
    """The success page reloads itself every 3 s without JavaScript (a meta refresh, and a link):
    each reload names the next count, so a customer without htmx is told too."""
    booking, _ = open_checkout(client, slot)
    url = reverse("shop:checkout_success")

    first = client.get(url, {"session_id": booking.checkout_session_id}).content.decode()
    refresh = re.search(r'http-equiv="refresh" content="3;url=([^"]+)"', first)
    assert refresh, first
    assert html.unescape(refresh.group(1)) == f"{url}?session_id={booking.checkout_session_id}&poll=1"
    assert "This usually takes a few seconds." in first

    later = client.get(url, {"session_id": booking.checkout_session_id, "poll": 5}).content.decode()
    assert "This is taking longer than usual." in later and "a few seconds" not in later
    assert f"session_id={booking.checkout_session_id}&amp;poll=6" in later


@pytest.mark.parametrize("poll", ["abc", "-3", "99999999999999999999", "\x00", "٣"])
def test_a_success_page_reload_count_that_is_not_a_small_number_counts_as_the_first(client, slot, stripe_emulator, poll):
    booking, _ = open_checkout(client, slot)

    response = client.get(reverse("shop:checkout_success"), {"session_id": booking.checkout_session_id, "poll": poll})

    page = response.content.decode()
    assert response.status_code == 200
    assert "This usually takes a few seconds." in page
    assert f"session_id={booking.checkout_session_id}&amp;poll=1" in page
