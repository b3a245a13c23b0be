"""What a customer is told when money comes back is the refund's recorded reason, on the success
page, its polled partial, the booking page and the e-mail; and a time the merchant cancels, stops
selling or archives cannot be paid for: its open Checkout Sessions are expired at Stripe after
commit, and a payment that arrives all the same is refunded with the cancellation as its reason.

Against the emulator, with a merchant in Europe/Paris (not the server's TIME_ZONE)."""

import re

import pytest
from django.core import mail
from django.urls import reverse

from bookings import services
from bookings.gateway import PaymentGatewayError
from bookings.models import Booking, BookingStatus, RefundReason
from bookings.services import RefundNotCreated, booking_confirm, booking_refund, listing_archive, slot_cancel, slot_selling_set
from payments import stripe_api
from payments.reconcile import reconcile_run
from stripe_emulator.control import ControlError
from tests.connect_mode import on_account
from tests.factories import make_listing, make_merchant, make_slot, paid_facts
from tests.payments.stripe_flow import lose_hold, open_checkout, poll

pytestmark = pytest.mark.django_db(transaction=True)

FAILS_LATER_CARD = "4000000000005126"  # pays; a refund of it fails shortly after


@pytest.fixture(autouse=True)
def _fast_status_checks(stripe_emulator, settings):
    settings.STRIPE_STATUS_CHECK_SECONDS = 0
    settings.FINAL_STATUS_CACHE_SECONDS = 0


@pytest.fixture
def paris_listing(db):
    merchant = make_merchant(timezone_name="Europe/Paris", display_name="Atelier Lumière")
    return make_listing(merchant=merchant, title="Pottery evening", price_amount=2500, currency="eur")


@pytest.fixture
def paris_slot(paris_listing):
    return make_slot(listing=paris_listing, capacity=4)


def _text(html: str) -> str:
    """What a reader sees: tags dropped, whitespace collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace(" .", ".").replace(" ,", ",")


def _paid(client, control, slot, *, quantity=2, card="4242424242424242", email="ada@example.com"):
    booking, _ = open_checkout(client, slot, quantity=quantity, email=email)
    control.pay_session(booking.checkout_session_id, card=card)
    poll(client, booking)
    booking.refresh_from_db()
    return booking


def _customer_reads(client, booking) -> dict[str, str]:
    """The success page, its polled partial, the booking page and the latest e-mail to the customer."""
    booking.refresh_from_db()
    success = client.get(reverse("shop:checkout_success") + f"?session_id={booking.checkout_session_id}")
    partial = poll(client, booking)
    page = client.get(reverse("shop:booking", args=[booking.public_token]))
    assert success.status_code == 200 and partial.status_code in (200, 286) and page.status_code == 200
    reads = {
        "success page": _text(success.content.decode()),
        "status partial": _text(partial.content.decode()),
        "booking page": _text(page.content.decode()),
    }
    to_customer = [m for m in mail.outbox if m.to == [booking.customer_email]]
    if to_customer:
        latest = to_customer[-1]
        reads["e-mail (text)"] = re.sub(r"\s+", " ", latest.subject + " " + latest.body)
        reads["e-mail (html)"] = _text(latest.alternatives[0][0])
    return reads


def _assert_everywhere(reads: dict[str, str], *sentences: str, absent: tuple[str, ...] = ()) -> None:
    for where, text in reads.items():
        for sentence in sentences:
            assert sentence in text, f"{where} does not say {sentence!r}:\n{text[:3000]}"
        for wrong in absent:
            assert wrong.lower() not in text.lower(), f"{where} says {wrong!r}:\n{text[:3000]}"


def _assert_holds_no_seats(client, booking, quantity: int) -> None:
    page = _text(client.get(reverse("shop:booking", args=[booking.public_token])).content.decode())
    assert "Cancelled" in page
    assert f"Seats booked {quantity} (cancelled; no seats held)" in page
    assert f"Seats {quantity}" not in page


# The reasons


def test_sold_out_while_paying_is_told_as_sold_out(client, stripe_emulator, paris_listing):
    slot = make_slot(listing=paris_listing, capacity=2)
    second, _ = open_checkout(client, slot, quantity=2, email="second@example.com")
    lose_hold(second)  # its payment comes after its hold ended: the seats go to the first
    first, _ = open_checkout(client, slot, quantity=2, email="first@example.com")
    stripe_emulator.pay_session(first.checkout_session_id)
    stripe_emulator.pay_session(second.checkout_session_id)
    poll(client, first)
    poll(client, second)

    second.refresh_from_db()
    assert (second.status, second.ended_reason) == (BookingStatus.REFUNDED, RefundReason.SOLD_OUT)
    reads = _customer_reads(client, second)
    _assert_everywhere(
        reads,
        "The last seats went to someone else while you were paying. Your booking is cancelled and holds no seats.",
        "Your payment of €50.00 has been refunded in full",
        absent=("cancelled this time", "Atelier Lumière cancelled"),
    )
    assert "Sold out while you paid — refunded" in reads["success page"]
    _assert_holds_no_seats(client, second, 2)


def test_a_cancelled_time_is_told_as_cancelled_by_the_merchant_never_as_sold_out(client, stripe_emulator, paris_slot):
    booking = _paid(client, stripe_emulator, paris_slot)

    slot_cancel(slot=paris_slot)

    booking.refresh_from_db()
    assert (booking.status, booking.ended_reason) == (BookingStatus.REFUNDED, RefundReason.SLOT_CANCELLED)
    reads = _customer_reads(client, booking)
    _assert_everywhere(
        reads,
        "Atelier Lumière cancelled this time. Your booking is cancelled and holds no seats.",
        "Your payment of €50.00 has been refunded in full",
        absent=("sold out", "someone else"),
    )
    assert "This time was cancelled — refunded" in reads["success page"]
    _assert_holds_no_seats(client, booking, 2)


def test_a_full_refund_by_the_merchant_is_told_as_such_in_the_booking_currency(client, stripe_emulator):
    merchant = make_merchant(timezone_name="Europe/Paris", display_name="Atelier Lumière")
    listing = make_listing(merchant=merchant, title="Pottery evening", price_amount=1850, currency="gbp")
    booking = _paid(client, stripe_emulator, make_slot(listing=listing, capacity=4))

    booking_refund(booking=booking)

    booking.refresh_from_db()
    assert (booking.status, booking.ended_reason) == (BookingStatus.REFUNDED, RefundReason.MERCHANT)
    reads = _customer_reads(client, booking)
    _assert_everywhere(
        reads,
        "Atelier Lumière cancelled your booking, so it holds no seats.",
        "Your payment of £37.00 has been refunded in full",
        absent=("sold out", "someone else", "€"),
    )
    assert "Cancelled and refunded by Atelier Lumière" in reads["success page"]
    _assert_holds_no_seats(client, booking, 2)


def test_a_partial_refund_keeps_the_booking_and_says_how_much_came_back(client, stripe_emulator, paris_slot):
    booking = _paid(client, stripe_emulator, paris_slot)

    booking_refund(booking=booking, amount=1000)

    booking.refresh_from_db()
    assert booking.status == BookingStatus.CONFIRMED
    reads = _customer_reads(client, booking)
    _assert_everywhere(
        reads,
        "Atelier Lumière refunded €10.00 of your €50.00 payment. Your booking still stands.",
        absent=("sold out", "holds no seats", "cancelled"),
    )
    assert "You're booked!" in reads["success page"]
    assert "Seats 2" in reads["booking page"] and "Confirmed" in reads["booking page"]


def test_a_failed_refund_says_it_failed_and_why_money_was_owed(client, stripe_emulator, paris_slot):
    booking = _paid(client, stripe_emulator, paris_slot, card=FAILS_LATER_CARD)
    slot_cancel(slot=paris_slot)
    stripe_emulator.advance_clock(5)
    stripe_emulator.wait_for_webhooks()
    reconcile_run()  # learns the failure from Stripe's events, as when its webhook is lost

    booking.refresh_from_db()
    assert booking.status == BookingStatus.REFUND_FAILED
    reads = _customer_reads(client, booking)
    del reads["e-mail (text)"], reads["e-mail (html)"]  # the failure is the merchant's to sort out
    _assert_everywhere(
        reads,
        "Atelier Lumière cancelled this time. Your booking is cancelled and holds no seats.",
        "The refund of €50.00 did not go through. Atelier Lumière has been alerted and will refund you",
        absent=("sold out", "has been refunded"),
    )
    assert "Your refund did not go through" in reads["success page"]


def test_a_free_booking_cancelled_by_the_merchant_says_nothing_was_charged(client, paris_slot):
    booking, _ = open_checkout(client, paris_slot, quantity=1)
    booking_confirm(facts=paid_facts(booking, payment_status="no_payment_required", amount_total=0, payment_intent_id=None))
    booking_refund(booking=Booking.objects.get(pk=booking.pk))

    reads = _customer_reads(client, booking)
    _assert_everywhere(
        reads,
        "Atelier Lumière cancelled your booking, so it holds no seats. Nothing was charged, so there is nothing to refund.",
        absent=("sold out",),
    )
    assert mail.outbox[-1].subject == "Your booking was cancelled: Pottery evening"


# A cancelled time cannot be paid for


def test_cancelling_a_time_expires_its_open_checkouts_after_commit_and_they_cannot_be_paid(
    client, stripe_emulator, paris_slot
):
    booking, _ = open_checkout(client, paris_slot)
    client.force_login(paris_slot.listing.merchant.user)

    response = client.post(reverse("merchant:slot_cancel", args=[paris_slot.pk]))

    assert response.status_code == 302
    session = stripe_api.stripe_client().v1.checkout.sessions.retrieve(booking.checkout_session_id, options=on_account(booking))
    assert session.status == "expired"
    booking.refresh_from_db()
    assert booking.status == BookingStatus.EXPIRED
    with pytest.raises(ControlError) as refused:
        stripe_emulator.pay_session(booking.checkout_session_id)
    assert refused.value.status == 400


@pytest.mark.parametrize("stop", ["stop selling", "archive the listing"])
def test_stopping_sales_or_archiving_expires_open_checkouts(client, stripe_emulator, paris_slot, stop):
    booking, _ = open_checkout(client, paris_slot)

    if stop == "stop selling":
        slot_selling_set(slot=paris_slot, on_sale=False)
    else:
        listing_archive(listing=paris_slot.listing)

    assert stripe_api.stripe_client().v1.checkout.sessions.retrieve(booking.checkout_session_id, options=on_account(booking)).status == "expired"
    assert Booking.objects.get(pk=booking.pk).status == BookingStatus.EXPIRED


def _expiring_fails(monkeypatch):
    def unreachable(self, *, session_id, stripe_account=""):
        raise PaymentGatewayError("Stripe unreachable", retryable=True)

    monkeypatch.setattr(stripe_api.StripeRefundGateway, "checkout_expire", unreachable)


def test_a_payment_for_a_cancelled_time_whose_expiry_failed_is_refunded_as_cancelled(
    client, stripe_emulator, paris_slot, monkeypatch
):
    booking, _ = open_checkout(client, paris_slot, quantity=2)
    _expiring_fails(monkeypatch)
    slot_cancel(slot=paris_slot)
    stripe_emulator.pay_session(booking.checkout_session_id)  # still open: Stripe could not be told

    poll(client, booking)

    booking.refresh_from_db()
    assert (booking.status, booking.ended_reason) == (BookingStatus.REFUNDED, RefundReason.SLOT_CANCELLED)
    assert [r.reason for r in booking.refunds.all()] == [RefundReason.SLOT_CANCELLED]
    refunds = stripe_api.refunds_of_payment(booking.payment_intent_id, stripe_account=booking.stripe_account_id)
    assert [(r["amount"], r["metadata"]["reason"]) for r in refunds] == [(5000, "slot_cancelled")]
    reads = _customer_reads(client, booking)
    assert reads["e-mail (text)"].startswith("Pottery evening is cancelled: your payment is refunded")
    _assert_everywhere(
        reads,
        "Atelier Lumière cancelled this time. Your booking is cancelled and holds no seats.",
        "Your payment of €50.00 has been refunded in full",
        absent=("sold out", "someone else"),
    )


def test_a_payment_that_raced_the_cancellation_is_refunded_as_cancelled_at_once(client, stripe_emulator, paris_slot):
    booking, _ = open_checkout(client, paris_slot)
    stripe_emulator.pay_session(booking.checkout_session_id)  # paid; its news not yet at the site

    slot_cancel(slot=paris_slot)  # Stripe refuses to expire a complete session: the payment is settled

    booking.refresh_from_db()
    assert (booking.status, booking.ended_reason) == (BookingStatus.REFUNDED, RefundReason.SLOT_CANCELLED)
    assert booking.refunds.get().reason == RefundReason.SLOT_CANCELLED


def test_payment_facts_forced_in_after_the_cancellation_are_refunded_as_cancelled(client, stripe_emulator, paris_slot):
    booking, _ = open_checkout(client, paris_slot)
    slot_cancel(slot=paris_slot)
    booking.refresh_from_db()
    assert booking.status == BookingStatus.EXPIRED

    # A made-up PaymentIntent Stripe does not know: the refund itself is refused afterwards.
    with pytest.raises(RefundNotCreated):
        booking_confirm(facts=paid_facts(booking))

    booking.refresh_from_db()
    assert booking.ended_reason == RefundReason.SLOT_CANCELLED
    assert booking.refunds.get().reason == RefundReason.SLOT_CANCELLED
    reads = _customer_reads(client, booking)
    assert set(reads) == {"success page", "status partial", "booking page"}  # nothing refunded: no refund e-mail
    _assert_everywhere(reads, "Atelier Lumière cancelled this time.", absent=("sold out",))


def test_a_payment_that_raced_a_stop_of_sales_is_honoured_while_seats_are_left(
    client, stripe_emulator, paris_slot, monkeypatch
):
    booking, _ = open_checkout(client, paris_slot)
    _expiring_fails(monkeypatch)
    slot_selling_set(slot=paris_slot, on_sale=False)
    stripe_emulator.pay_session(booking.checkout_session_id)

    poll(client, booking)

    booking.refresh_from_db()
    assert booking.status == BookingStatus.CONFIRMED
    assert not booking.refunds.exists()


@pytest.mark.parametrize("stop", ["cancel", "stop selling", "archive the listing"])
def test_reconcile_expires_checkouts_a_crash_left_open(client, stripe_emulator, paris_slot, monkeypatch, stop):
    booking, _ = open_checkout(client, paris_slot)
    with monkeypatch.context() as crash:
        crash.setattr(services, "checkouts_close", lambda **_: 0)  # the process died before its on_commit work
        if stop == "cancel":
            slot_cancel(slot=paris_slot)
        elif stop == "stop selling":
            slot_selling_set(slot=paris_slot, on_sale=False)
        else:
            listing_archive(listing=paris_slot.listing)
    session_id = booking.checkout_session_id
    assert stripe_api.stripe_client().v1.checkout.sessions.retrieve(session_id, options=on_account(booking)).status == "open"

    summary = reconcile_run()

    assert summary.checkouts_closed == 1
    assert stripe_api.stripe_client().v1.checkout.sessions.retrieve(session_id, options=on_account(booking)).status == "expired"
    assert Booking.objects.get(pk=booking.pk).status == BookingStatus.EXPIRED
    assert reconcile_run().checkouts_closed == 0
