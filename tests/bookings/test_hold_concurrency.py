"""Holds under real concurrency (threads, each with its own connection; run on PostgreSQL too):
no seat is held twice, and paying within a hold is never refunded."""

import pytest
from django.core import mail

from bookings.models import Booking, BookingStatus, Hold, HoldEnd, Refund, Slot
from bookings.services import BookingError, ConfirmOutcome, booking_confirm
from payments import stripe_api
from payments.checkout import checkout_cancel, checkout_start
from tests.connect_mode import checkout_sessions_everywhere
from tests.concurrency import run_concurrently
from tests.factories import make_slot

pytestmark = pytest.mark.django_db(transaction=True)

SUCCESS_URL = "http://testserver/checkout/success/?session_id={CHECKOUT_SESSION_ID}"


def sessions_created(control) -> int:
    """Checkout Sessions the (freshly reset) emulator holds, on whichever accounts they were made."""
    return checkout_sessions_everywhere()


def starter(slot, i: int):
    return lambda: checkout_start(
        slot=slot,
        quantity=1,
        customer_email=f"buyer{i}@example.com",
        customer_name=f"Buyer {i}",
        success_url=SUCCESS_URL,
        cancel_url="http://testserver/",
    )


def test_50_checkout_starts_for_10_seats_open_10_sessions_and_all_10_payers_are_confirmed(stripe_emulator, settings):
    settings.STRIPE_MAX_NETWORK_RETRIES = 2
    slot = make_slot(capacity=10)
    sessions_before = sessions_created(stripe_emulator)

    results = run_concurrently([starter(slot, i) for i in range(50)], timeout=120)

    started = [r.booking for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BookingError)]
    assert len(started) == 10 and len(refused) == 40, [r for r in results if isinstance(r, BaseException)][:3]
    assert all("sold out" in str(error) and "held by people paying" in str(error) for error in refused)
    assert sessions_created(stripe_emulator) - sessions_before == 10
    assert Booking.objects.filter(slot=slot).count() == 10  # a refused start leaves nothing behind
    slot.refresh_from_db()
    assert (slot.seats_sold, slot.seats_held, slot.seats_left) == (0, 10, 0)

    for booking in started:
        stripe_emulator.pay_session(booking.checkout_session_id, "4242424242424242")
    facts = [stripe_api.checkout_facts(b.checkout_session_id, stripe_account=b.stripe_account_id) for b in started]
    confirms = run_concurrently([lambda f=f: booking_confirm(facts=f) for f in facts])

    assert [r.outcome for r in confirms] == [ConfirmOutcome.CONFIRMED] * 10
    slot.refresh_from_db()
    assert (slot.seats_sold, slot.seats_held, slot.seats_left) == (10, 0, 0)
    assert Hold.objects.filter(slot=slot, end=HoldEnd.CONVERTED).count() == 10
    assert not Refund.objects.exists()
    assert len([m for m in mail.outbox if "You're booked" in m.subject]) == 10


def test_a_seat_freed_by_a_cancel_on_checkout_goes_to_exactly_one_of_the_racing_starts(stripe_emulator):
    slot = make_slot(capacity=1)
    holder = starter(slot, 99)().booking

    checkout_cancel(booking=holder)  # its seat is free immediately

    slot.refresh_from_db()
    holder.refresh_from_db()
    assert holder.status == BookingStatus.EXPIRED
    assert (slot.seats_held, slot.seats_left) == (0, 1)
    assert stripe_api.checkout_facts(holder.checkout_session_id, stripe_account=holder.stripe_account_id).status == "expired"

    results = run_concurrently([starter(slot, i) for i in range(8)])

    assert len([r for r in results if not isinstance(r, BaseException)]) == 1
    assert len([r for r in results if isinstance(r, BookingError)]) == 7
    slot = Slot.objects.get(pk=slot.pk)
    assert (slot.seats_held, slot.seats_left) == (1, 0)
