"""The simulation's checks of what customers are told can fail: a site made to tell a wrong
reason, or to show times in the server's zone, is reported by them (mutation tests)."""

import re
import zoneinfo

import pytest

from bookings import notifications, selectors
from bookings.models import Merchant
from tests.conftest import TEST_WEBHOOK_SECRET
from tests.simulation.runner import World
from tests.simulation.scenario import Customer, Scenario, SlotTime

pytestmark = pytest.mark.django_db(transaction=True)


def _customer(index: int, slot: int) -> Customer:
    return Customer(index=index, slot=slot, quantity=1, method="pay", checkout_webhooks="on_time",
                    refund_webhooks="on_time", pays_again_after_decline=False)


def _written_out(zone: str) -> Scenario:
    """c1 pays for slot 0, which the merchant then cancels; c2 pays for slot 1 and the merchant
    refunds part of it; c3 pays for slot 1 and is refunded in full."""
    customers = [_customer(1, 0), _customer(2, 1), _customer(3, 1)]
    steps = []
    for c in customers:
        steps += [(("open", c.index),), (("pay", c.index, "pay"),), (("deliver", c.index, 1, False, "checkout"),)]
    steps += [(("cancel_slot", 0),), (("merchant_refund", 2, 500),), (("merchant_refund", 3, None),)]
    return Scenario(seed=-1, capacities=[2, 3], customers=customers, status_check_seconds=0, steps=steps, zone=zone,
                    slot_times=[SlotTime("clock_change", 9, 30), SlotTime("other_utc_day", 1, 15)])


def _play(stripe_emulator, scenario: Scenario):
    world = World(stripe_emulator, TEST_WEBHOOK_SECRET)
    with world.running():
        return world.play(scenario)


def _violations(outcome) -> str:
    """The violations, one a line, without step and booking numbers: "c1 (refunded): ..."."""
    return "\n".join(re.sub(r"^\[step \d+\] (c\d+) \(booking \d+, ", r"\1 (", v) for v in outcome.violations)


def test_the_written_out_scenario_tells_the_truth(stripe_emulator):
    outcome = _play(stripe_emulator, _written_out("Europe/Paris"))

    assert outcome.violations == []
    # Every customer got e-mails and both pages were read: the mutations below are checked.
    assert outcome.totals.emails_checked == 6 and outcome.totals.pages_checked == 6


def test_a_wrong_reason_in_the_emails_and_on_the_pages_is_a_violation(stripe_emulator, monkeypatch):
    """The site says "sold out" whatever happened (as it did before issue 11)."""
    _mutate_money_back(monkeypatch, reason="sold_out", ended_reason="sold_out")

    violations = _violations(_play(stripe_emulator, _written_out("Europe/Paris")))

    cancelled = "c1 (refunded): "
    assert cancelled + "e-mail 'Sea kayak tour is cancelled: your payment is refunded' (text) states the reason ['sold_out'], recorded ['slot_cancelled']" in violations
    assert cancelled + "e-mail 'Sea kayak tour is cancelled: your payment is refunded' (HTML) does not say: 'Sim Kayaks cancelled this time." in violations
    assert cancelled + "the booking page states the reason ['sold_out'], recorded ['slot_cancelled']" in violations
    assert cancelled + "the status panel does not say: 'Sim Kayaks cancelled this time." in violations
    refunded = "c3 (refunded): "
    assert refunded + "e-mail 'A refund for your booking: Sea kayak tour' (text) states the reason ['sold_out'], recorded ['merchant']" in violations
    assert refunded + "the status panel states the reason ['sold_out'], recorded ['merchant']" in violations
    assert "c2 (" not in violations  # a partial refund's words do not depend on the reason
    assert "time as" not in violations and "times of day" not in violations  # only reasons are wrong


def test_a_partial_refund_told_as_a_cancellation_is_a_violation(stripe_emulator, monkeypatch):
    _mutate_money_back(monkeypatch, booking_ended=True)

    violations = _violations(_play(stripe_emulator, _written_out("Asia/Kathmandu")))

    partial = "c2 (confirmed): "
    assert partial + "e-mail 'A refund for your booking: Sea kayak tour' (text) does not say: 'Sim Kayaks refunded €5.00 of your €25.00 payment. Your booking still stands." in violations
    assert partial + "the booking page does not say: 'Sim Kayaks refunded €5.00 of your €25.00 payment." in violations
    assert partial + "the status panel does not say: 'Sim Kayaks refunded €5.00" in violations


def _mutate_money_back(monkeypatch, **wrong):
    real = selectors.booking_money_back

    def mutated(booking, **kwargs):
        told = real(booking, **kwargs)
        return told and selectors.MoneyBack(**{**told.__dict__, **wrong})

    monkeypatch.setattr(selectors, "booking_money_back", mutated)
    monkeypatch.setattr(notifications, "booking_money_back", mutated)


@pytest.mark.parametrize("zone", ["Asia/Kolkata", "America/New_York"])
def test_times_in_the_servers_zone_are_a_violation(stripe_emulator, monkeypatch, zone):
    """The site shows every time in TIME_ZONE (Europe/London) instead of the merchant's zone."""
    monkeypatch.setattr(Merchant, "zone", property(lambda merchant: zoneinfo.ZoneInfo("Europe/London")))

    violations = _play(stripe_emulator, _written_out(zone)).violations
    text = "\n".join(violations)

    assert "e-mail 'You're booked: Sea kayak tour' (text) does not give the time as" in text
    assert "e-mail 'You're booked: Sea kayak tour' (HTML) states other times of day" in text
    assert "the booking page does not give the time as" in text and "the status panel does not give the time" in text
    assert all("time" in v for v in violations)  # only times are wrong: the reasons still hold
