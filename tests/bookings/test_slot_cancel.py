"""Cancelling a slot: every confirmed booking is refunded once, seats come back, customers are
told, and running it again does nothing more. Stripe is not configured here, so refunds stay
recorded and unsent; tests/payments/test_refunds_stripe.py runs the same against the emulator."""

import pytest
from django.core import mail
from django.urls import reverse

from bookings.models import Booking, BookingStatus, Refund, RefundReason, RefundStatus
from bookings.services import BookingError, booking_refund, slot_cancel
from tests.concurrency import run_concurrently
from tests.factories import make_booking, make_confirmed_booking, make_slot, paid_facts

pytestmark = pytest.mark.django_db


@pytest.fixture
def busy_slot(listing, stripe_settings_unset):
    slot = make_slot(listing=listing, capacity=10)
    paid = [make_confirmed_booking(slot=slot, quantity=q) for q in (1, 2, 3)]
    free = make_booking(slot=slot, quantity=1)
    from bookings.services import booking_confirm

    booking_confirm(facts=paid_facts(free, payment_status="no_payment_required", amount_total=0, payment_intent_id=None))
    pending = make_booking(slot=slot, quantity=1)
    slot.refresh_from_db()
    assert slot.seats_left == 3
    return slot, paid, Booking.objects.get(pk=free.pk), pending


def test_cancelling_refunds_every_confirmed_booking_once_even_when_run_twice(busy_slot, django_capture_on_commit_callbacks):
    slot, paid, free, pending = busy_slot

    with django_capture_on_commit_callbacks(execute=True):
        first = slot_cancel(slot=slot)
    with django_capture_on_commit_callbacks(execute=True):
        second = slot_cancel(slot=slot)

    slot.refresh_from_db()
    assert (first.bookings_cancelled, first.refunds_opened, first.already_cancelled) == (4, 3, False)
    assert (second.bookings_cancelled, second.refunds_opened, second.already_cancelled) == (0, 0, True)
    assert slot.is_cancelled and not slot.is_on_sale
    assert slot.seats_left == slot.capacity
    refunds = Refund.objects.filter(booking__slot=slot)
    assert sorted((r.booking_id, r.amount, r.reason) for r in refunds) == sorted(
        (b.pk, b.amount_paid, RefundReason.SLOT_CANCELLED) for b in paid
    )
    assert {Booking.objects.get(pk=b.pk).status for b in paid} == {BookingStatus.REFUND_DUE}
    assert Booking.objects.get(pk=free.pk).status == BookingStatus.CANCELLED
    assert Booking.objects.get(pk=pending.pk).status == BookingStatus.PENDING
    # Without Stripe the refunds wait (reconcile sends them); the free booking's customer is told once.
    assert set(refunds.values_list("status", flat=True)) == {RefundStatus.REQUESTED}
    assert [m.to for m in mail.outbox] == [[free.customer_email]]
    assert "cancelled" in mail.outbox[0].subject


def test_a_payment_arriving_after_the_cancellation_is_refunded_with_the_cancellation_as_its_reason(
    busy_slot, django_capture_on_commit_callbacks
):
    slot, paid, free, pending = busy_slot
    slot_cancel(slot=slot)
    from bookings.services import booking_confirm

    result = booking_confirm(facts=paid_facts(pending))

    pending.refresh_from_db()
    assert result.outcome == "slot_cancelled_refund_due"
    assert pending.refunds.get().reason == RefundReason.SLOT_CANCELLED
    assert (pending.status, pending.ended_reason) == (BookingStatus.REFUND_DUE, RefundReason.SLOT_CANCELLED)


def test_a_partial_refund_not_yet_at_stripe_is_not_refunded_again_by_the_cancellation(listing, stripe_settings_unset):
    slot = make_slot(listing=listing, capacity=4)
    booking = make_confirmed_booking(slot=slot, quantity=2)  # paid 50.00
    booking_refund(booking=booking, amount=1000)  # 10.00 asked for, Stripe unreachable

    slot_cancel(slot=slot)

    amounts = sorted(Refund.objects.filter(booking=booking).values_list("reason", "amount"))
    assert amounts == [(RefundReason.MERCHANT, 1000), (RefundReason.SLOT_CANCELLED, booking.amount_paid - 1000)]


def test_the_cancel_page_says_what_it_will_do_and_the_post_says_what_it_did(client, busy_slot):
    slot, paid, free, pending = busy_slot
    client.force_login(slot.listing.merchant.user)
    url = reverse("merchant:slot_cancel", args=[slot.pk])

    confirm = client.get(url, headers={"HX-Request": "true"}).content.decode()
    done = client.post(url, follow=True).content.decode()
    again = client.post(url, follow=True).content.decode()

    assert "4 confirmed bookings" in confirm and "7 seats" in confirm and "€150.00" in confirm
    assert "<html" not in confirm
    assert "4 bookings cancelled and 3 refunds sent to Stripe" in done
    for booking in paid:
        assert f"#{booking.pk}" in done
    assert "was already cancelled; there was nothing more to refund" in again


def test_a_refund_cannot_exceed_what_is_left_once_refunds_waiting_for_stripe_are_counted(booking, stripe_settings_unset):
    booking = make_confirmed_booking(slot=booking.slot, quantity=2)  # 50.00 paid
    booking_refund(booking=booking, amount=3000)  # waiting for Stripe, not yet counted as refunded

    with pytest.raises(BookingError, match=r"between €0.01 and €20.00"):
        booking_refund(booking=booking, amount=3000)

    assert Refund.objects.filter(booking=booking).count() == 1


@pytest.mark.django_db(transaction=True)
def test_cancelling_while_the_merchant_refunds_the_same_bookings_refunds_each_once(stripe_settings_unset):
    slot = make_slot(capacity=20)
    bookings = [make_confirmed_booking(slot=slot, quantity=2) for _ in range(6)]

    def refund(booking):
        try:
            return booking_refund(booking=booking)
        except BookingError as error:
            return error

    results = run_concurrently([lambda: slot_cancel(slot=slot)] + [lambda b=b: refund(b) for b in bookings])

    assert not [r for r in results if isinstance(r, Exception) and not isinstance(r, BookingError)], results
    slot.refresh_from_db()
    assert slot.seats_left == slot.capacity
    for booking in bookings:
        full_refunds = Refund.objects.filter(booking=booking, amount=booking.amount_paid)
        assert full_refunds.count() == 1
        assert Booking.objects.get(pk=booking.pk).status == BookingStatus.REFUND_DUE
