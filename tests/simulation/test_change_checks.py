"""The simulation's checks of customers' own cancellations and moves can fail: a site made to
refund more than its policy promises, to tell a cancellation or a move twice, or to keep a moved
booking's seats on its old time, is reported by them (mutation tests); the same written-out
scenarios pass on the real site, the customer signed in by the e-mailed link and acting on the
booking's cancel and reschedule pages."""

import re

import pytest

from bookings import notifications, policies
from bookings.models import Booking, BookingStatus, Refund
from bookings.services import customer_changes
from tests.conftest import TEST_WEBHOOK_SECRET
from tests.simulation.runner import World
from tests.simulation.scenario import Customer, Scenario, SlotTime

pytestmark = pytest.mark.django_db(transaction=True)


def _customer(index: int, quantity: int = 1, method: str = "pay") -> Customer:
    return Customer(index=index, slot=0, quantity=quantity, method=method, checkout_webhooks="on_time",
                    refund_webhooks="on_time", pays_again_after_decline=False)


def _paid(index: int) -> list:
    return [(("open", index),), (("pay", index, "pay"),), (("deliver", index, 1, False, "checkout"),)]


def _scenario(steps, *, policy=("customer", 24, 50), customers=None, spare: bool = False) -> Scenario:
    return Scenario(seed=-1, capacities=[3], customers=customers or [_customer(1, quantity=2)], status_check_seconds=0,
                    steps=steps, zone="Asia/Kolkata", slot_times=[SlotTime("ordinary", 18, 30)], policy=policy,
                    spare_slot=SlotTime("ordinary", 9, 0) if spare else None, spare_capacity=2 if spare else 0)


def _cancel(policy) -> Scenario:
    """c1 pays for two seats and cancels them on the cancel page, its refund's webhook delivered."""
    return _scenario(_paid(1) + [(("self_cancel", 1),), (("deliver", 1, 1, False, "refund"),)], policy=policy)


def _move() -> Scenario:
    """c1 pays for two seats and moves them to the spare time, from two tabs at once."""
    return _scenario(_paid(1) + [(("reschedule", 1), ("reschedule", 1))], spare=True)


def _play(stripe_emulator, scenario: Scenario):
    world = World(stripe_emulator, TEST_WEBHOOK_SECRET)
    with world.running():
        return world.play(scenario)


def _violations(outcome) -> str:
    return "\n".join(re.sub(r"^\[step \d+\] ", "", v) for v in outcome.violations)


@pytest.mark.parametrize("policy, refunded, status", [
    (("customer", 24, 50), 5000, BookingStatus.REFUNDED),  # within the free window
    (("customer", 2000, 33), 5000 - 1650, BookingStatus.REFUNDED),  # late: 33% kept
    (("customer", 2000, 100), 0, BookingStatus.CANCELLED),  # late: all kept
])
def test_a_customer_cancellation_keeps_every_invariant(stripe_emulator, policy, refunded, status):
    outcome = _play(stripe_emulator, _cancel(policy))

    booking = Booking.objects.get(customer_email="c1@sim.example")
    assert (booking.status, booking.amount_refunded) == (status, refunded)
    assert outcome.totals.customer_cancels == 1 and outcome.violations == []


def test_without_self_service_the_cancel_page_refuses_and_nothing_changes(stripe_emulator):
    outcome = _play(stripe_emulator, _cancel(("none", 24, 100)))

    assert Booking.objects.get(customer_email="c1@sim.example").status == BookingStatus.CONFIRMED
    assert (outcome.totals.customer_cancels, outcome.totals.changes_refused, outcome.violations) == (0, 1, [])


def test_a_move_from_two_tabs_keeps_every_invariant(stripe_emulator):
    outcome = _play(stripe_emulator, _move())

    booking = Booking.objects.select_related("slot").get(customer_email="c1@sim.example")
    assert (booking.reschedules, booking.slot.seats_left) == (1, 0)
    assert (outcome.totals.reschedules, outcome.violations) == (1, [])


def test_a_refund_above_the_policys_promise_is_reported(stripe_emulator, monkeypatch):
    monkeypatch.setattr(policies.CancellationTerms, "kept", lambda self, amount_paid: amount_paid * self.keep_percent // 200)

    outcome = _play(stripe_emulator, _cancel(("customer", 2000, 33)))

    assert "late) of 5000 paid: refunds [4175], the policy promised 3350" in _violations(outcome)


def test_a_cancellation_told_twice_is_reported(stripe_emulator, monkeypatch):
    send = notifications.customer_cancelled_merchant_send

    def twice(*, booking):
        send(booking=booking)
        type(booking).objects.filter(pk=booking.pk).update(merchant_cancel_notice_sent_at=None)
        return send(booking=booking)

    monkeypatch.setattr(notifications, "customer_cancelled_merchant_send", twice)

    outcome = _play(stripe_emulator, _cancel(("customer", 24, 50)))

    assert "2 e-mail(s) telling the merchant of the cancellation" in _violations(outcome)


def test_a_move_told_twice_is_reported(stripe_emulator, monkeypatch):
    send = notifications.booking_rescheduled_send

    def twice(*, booking):
        send(booking=booking)
        type(booking).objects.filter(pk=booking.pk).update(reschedules_notified=0)
        return send(booking=booking)

    monkeypatch.setattr(notifications, "booking_rescheduled_send", twice)

    outcome = _play(stripe_emulator, _move())

    assert "2 e-mail(s) 'Your booking is moved: Sea kayak tour' for 1 move(s)" in _violations(outcome)


def test_a_move_keeping_the_old_seats_is_reported(stripe_emulator, monkeypatch):
    monkeypatch.setattr(customer_changes, "_release_seats", lambda booking: None)

    outcome = _play(stripe_emulator, _move())

    assert "slot 0 sold 2 seats, confirmed bookings hold 0" in _violations(outcome)
    assert not Refund.objects.exists()


def test_a_booking_made_from_the_waitlist_then_moved_passes_its_checks(stripe_emulator):
    """c1 holds the one seat and cancels on Checkout; c2, waiting, takes up the offer, pays, and
    moves to the spare time: the waitlist's e-mails gave the time waited for (not the new one),
    the confirmation and the move's e-mail the times they were about. The long run of 2026-12-03
    flagged this path through a check that compared the waitlist's e-mails with the new time."""
    customers = [Customer(index=1, slot=0, quantity=1, method="abandon", checkout_webhooks="on_time",
                          refund_webhooks="on_time", pays_again_after_decline=False), _customer(2)]
    steps = [(("open", 1),), (("open", 2),), (("join", 2, True),), (("cancel", 1),), (("offer", 2, "pay"),),
             (("deliver", 2, 1, False, "checkout"),), (("reschedule", 2),)]
    scenario = Scenario(seed=-1, capacities=[1], customers=customers, status_check_seconds=0, steps=steps,
                        zone="Europe/Paris", slot_times=[SlotTime("ordinary", 12, 15)], policy=("customer", 24, 50),
                        spare_slot=SlotTime("ordinary", 20, 30), spare_capacity=3)
    world = World(stripe_emulator, TEST_WEBHOOK_SECRET)
    with world.running():
        outcome = world.play(scenario)

    assert outcome.violations == []
    assert outcome.totals.offers_booked == 1 and outcome.totals.reschedules == 1
    moved = Booking.objects.get(customer_email="c2@sim.example")
    assert moved.status == BookingStatus.CONFIRMED and moved.slot_id != Booking.objects.get(customer_email="c1@sim.example").slot_id
