"""The simulation's Connect checks can fail: a site made to open a checkout on the other
merchant's account or on the platform's own, to ask a wrong fee, or to give the fee back for a
refund reason CONNECT_REFUND_FEE_REASONS excludes (or to keep it for one it lists), is reported by
them (mutation tests); the same written-out scenario passes on the real site."""

import re

import pytest

from bookings.services import lifecycle, refunds
from tests.conftest import TEST_WEBHOOK_SECRET
from tests.simulation.runner import World
from tests.simulation.scenario import Customer, Scenario, SlotTime

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.own_connect_accounts]


def _customer(index: int, slot: int, quantity: int = 1) -> Customer:
    return Customer(index=index, slot=slot, quantity=quantity, method="pay", checkout_webhooks="on_time",
                    refund_webhooks="on_time", pays_again_after_decline=False)


def _written_out(*, fee=("7.5", 30), reasons=("sold_out", "slot_cancelled")) -> Scenario:
    """Connect on: c1 pays merchant A for slot 0, which A then cancels (a slot_cancelled refund);
    c2 pays merchant B for two seats of slot 1 and B refunds 12.50 of it (a merchant refund);
    c3 pays B for slot 1 and keeps the booking."""
    customers = [_customer(1, 0), _customer(2, 1, quantity=2), _customer(3, 1)]
    steps = []
    for c in customers:
        steps += [(("open", c.index),), (("pay", c.index, "pay"),), (("deliver", c.index, 1, False, "checkout"),)]
    steps += [(("cancel_slot", 0),), (("merchant_refund", 2, 1250),),
              (("deliver", 1, 1, False, "refund"),), (("deliver", 2, 1, False, "refund"),)]
    return Scenario(seed=-1, capacities=[2, 3], customers=customers, status_check_seconds=0, steps=steps,
                    zone="Europe/Paris", slot_times=[SlotTime("ordinary", 10, 0), SlotTime("ordinary", 15, 30)],
                    connect=True, fee=fee, fee_refund_reasons=reasons)


def _play(stripe_emulator, scenario: Scenario):
    world = World(stripe_emulator, TEST_WEBHOOK_SECRET)
    with world.running():
        return world.play(scenario), world


def _text(outcome) -> str:
    """The violations, one a line, without booking numbers: "c1's fee is ..."."""
    return re.sub(r" \(booking \d+\)", "", "\n".join(outcome.violations))


def test_the_written_out_connect_scenario_keeps_every_invariant(stripe_emulator):
    outcome, world = _play(stripe_emulator, _written_out())

    assert outcome.violations == []
    assert "Connect: on, merchants A/B (slots 0: A, 1: B)" in "\n".join(outcome.scenario.describe())
    # Both merchants sold, through their own accounts, and the fees were taken and given back as
    # the checks below expect them to be read.
    assert world.account_of("A") != world.account_of("B") and world.account_of("A").startswith("acct_")
    assert outcome.totals.refunds == 2 and outcome.totals.webhooks >= 5


def test_a_checkout_on_the_other_merchants_account_is_a_violation(stripe_emulator, monkeypatch):
    """The site opens B's customers' checkouts on A's account (and A's on B's)."""
    real = lifecycle._payment_terms

    def swapped(listing, amount_total):
        terms = real(listing, amount_total)
        other = listing.merchant.__class__.objects.exclude(pk=listing.merchant_id).get(user__username__startswith="sim-")
        return {**terms, "stripe_account_id": other.stripe_account_id}

    monkeypatch.setattr(lifecycle, "_payment_terms", swapped)

    text = _text(_play(stripe_emulator, _written_out())[0])

    assert "c1 booked merchant A's time and pays on merchant B's account" in text
    assert "c2 booked merchant B's time and pays on merchant A's account" in text
    assert "c2's fee is taken from merchant A's account, the time booked is merchant B's" in text
    assert "c2's refund of 1250 is made on merchant A's account" in text


def test_a_checkout_on_the_platforms_own_account_is_a_violation(stripe_emulator, monkeypatch):
    """Connect on, yet the site takes the payments on the platform's own account, without a fee."""
    monkeypatch.setattr(lifecycle, "_payment_terms", lambda listing, amount_total: {})

    text = _text(_play(stripe_emulator, _written_out())[0])

    assert "c3 booked merchant B's time and pays on the platform's own account" in text
    assert "c3 paid 2500 (paid) with 0 application fee(s)" in text
    assert "the platform's own account made 2 refund(s)" in text


def test_a_fee_the_settings_do_not_give_is_a_violation(stripe_emulator, monkeypatch):
    """The site rounds the percentage down (7.5% of 2500 is 187.5: the settings give 188 + 30)."""
    monkeypatch.setattr(lifecycle, "platform_fee", lambda amount: amount * 75 // 1000 + 30)

    text = _text(_play(stripe_emulator, _written_out())[0])

    assert "c1's fee is 217 on 2500 paid; a fee of 7.5% + 30 is 218" in text
    assert "c3's fee is 217 on 2500 paid" in text
    assert "c2's fee is 405 on 5000 paid; a fee of 7.5% + 30 is 405" not in text  # 375 + 30, exact


def test_a_fee_given_back_for_a_reason_the_setting_excludes_is_a_violation(stripe_emulator, monkeypatch):
    """The site gives the fee back with every refund, the merchant's too (the setting lists only
    sold out and cancelled times)."""
    monkeypatch.setattr(refunds, "refund_gives_fee_back", lambda booking, reason: True)
    monkeypatch.setattr(lifecycle, "refund_gives_fee_back", lambda booking, reason: True)

    text = _text(_play(stripe_emulator, _written_out())[0])

    assert ("c2's fee 405: 101 given back with refund(s) for merchant, a reason "
            "CONNECT_REFUND_FEE_REASONS (slot_cancelled, sold_out) does not list") in text
    assert "c1" not in text  # its time was cancelled: its fee goes back, as listed


def test_a_fee_kept_for_a_reason_the_setting_lists_is_a_violation(stripe_emulator, monkeypatch):
    """The site keeps the fee whatever the reason; the setting lists the merchant's refunds too."""
    monkeypatch.setattr(refunds, "refund_gives_fee_back", lambda booking, reason: False)
    monkeypatch.setattr(lifecycle, "refund_gives_fee_back", lambda booking, reason: False)

    text = _text(_play(stripe_emulator, _written_out(reasons=("slot_cancelled", "merchant")))[0])

    assert ("c1's fee 218: 0 given back; refunds 2500 (slot_cancelled) of 2500 paid give back 218 "
            "(CONNECT_REFUND_FEE_REASONS: merchant, slot_cancelled)") in text
    assert "c2's fee 405: 0 given back; refunds 1250 (merchant) of 5000 paid give back 101" in text


def test_a_connect_scenario_leaves_no_connect_behind(stripe_emulator, settings):
    """After a Connect scenario the settings are back and the next scenario, without Connect,
    sells on the platform's own account, its merchant without a connected account."""
    world = World(stripe_emulator, TEST_WEBHOOK_SECRET)
    platform = _written_out()
    platform.connect, platform.fee, platform.fee_refund_reasons = False, ("0", 0), ()
    with world.running():
        first, then = world.play(_written_out()), world.play(platform)

    assert first.violations == [] and then.violations == []
    assert settings.CONNECT_ENABLED is False and settings.PLATFORM_FEE_FIXED == 0
    assert [m.stripe_account_id for m in world.merchants.values()] == ["", ""]
    assert first.totals.connect_scenarios == 1 and first.totals.application_fees == 3
    assert first.totals.fees_given_back == 1  # c1's, for its cancelled time; c2's merchant refund keeps it
    assert then.totals.connect_scenarios == 0 and then.totals.application_fees == 0 and then.totals.refunds == 2
