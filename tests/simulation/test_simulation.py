"""The quick run of the simulation, part of every test run: a few hundred seeded scenarios
against the real views, the configured database and the Stripe emulator, each checked against
the money invariants. A failure prints each failing scenario's seed, plan and trace."""

import os

import pytest

from tests.conftest import TEST_WEBHOOK_SECRET
from tests.simulation.runner import World, run_seeds
from tests.simulation.scenario import generate

# The scenarios switch Connect on and off themselves (a third sell through two merchants' accounts).
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.own_connect_accounts]

QUICK_SEED = 20261123
# SQLite serializes every write, so the same scenarios take about twice as long there. The long
# run (`python3 -m tests.simulation`) is the proof; this keeps `.ci/run` well inside its bound.
QUICK_SCENARIOS = int(
    os.environ.get("SIMULATION_QUICK_SCENARIOS") or (150 if os.environ.get("DATABASE_URL", "").startswith("postgres") else 100)
)


def test_the_same_seed_gives_the_same_scenario():
    first, again, other = generate(42), generate(42), generate(43)

    assert first.describe() == again.describe() and first.steps == again.steps
    assert (first.describe(), first.steps) != (other.describe(), other.steps)


# Scenarios now let time pass (the scheduled reconcile runs in each wait): longer than most tests.
@pytest.mark.timeout(900)
def test_a_quick_run_of_random_races_and_faults_keeps_every_money_invariant(stripe_emulator, capsys):
    world = World(stripe_emulator, TEST_WEBHOOK_SECRET)
    seeds = range(QUICK_SEED * 100_000, QUICK_SEED * 100_000 + QUICK_SCENARIOS)

    totals, failures = run_seeds(world, seeds, on_failure=lambda report: None)

    with capsys.disabled():
        print(
            f"\nsimulation quick run: {totals.scenarios} scenarios, {totals.violations} violations, "
            f"{totals.webhooks} webhooks, {totals.polls} polls, {totals.refunds} refunds, "
            f"{totals.waitlist_joins} waitlist joins, {totals.offers_made} offers ({totals.offers_booked} booked), "
            f"{totals.customer_cancels} customer cancellations ({totals.late_cancels} late), "
            f"{totals.reschedules} moves, {totals.changes_refused} changes refused, "
            f"{totals.connect_scenarios} with Connect ({totals.application_fees} fees, {totals.fees_given_back} given back), "
            f"{totals.scenarios / totals.seconds:.1f} scenarios/s"
        )
    assert totals.scenarios == QUICK_SCENARIOS
    assert not failures, "\n\n".join(outcome.report() for outcome in failures[:3])
    assert totals.webhooks and totals.polls and totals.refunds and totals.offers_booked  # the run exercised what it claims to
    assert totals.customer_cancels and totals.reschedules
    assert totals.connect_scenarios and totals.application_fees and totals.fees_given_back
