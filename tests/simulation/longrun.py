"""The long run of the simulation, and the replay of one scenario.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/sim python3 -m tests.simulation --scenarios 10000 --seed 1
    python3 -m tests.simulation --replay 100042      # one scenario again, with its trace

Each worker process has its own Stripe emulator (in memory) and its own scratch database, made
and dropped by Django's test-database machinery (`test_<name>_w<n>`): a developer's own data is
never touched. Prints scenarios run, invariant violations, webhooks and polls exercised, refunds
issued and scenarios per second; exits 1 when any invariant was violated.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import os
import queue
import sys
import time


def _tuning() -> dict:
    from tests.conftest import EMULATOR_FAST_TUNING

    # Timers (expiries, refunds failing later) fire when the runner moves the emulator's clock,
    # so its timer thread need not wake often.
    return {**EMULATOR_FAST_TUNING, "timer_poll_interval": 1.0}


def _django(worker: int) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    os.environ.setdefault("LOG_LEVEL", "ERROR")
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    import django
    from django.conf import settings

    django.setup()
    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("sqlite3"):
        database["TEST"]["NAME"] = f".simulation-w{worker}.sqlite3"
    else:
        database["TEST"]["NAME"] = f"test_{database['NAME']}_sim_w{worker}"


def _test_settings():
    from django.test import override_settings

    from tests.conftest import TEST_SECRET_KEY, TEST_WEBHOOK_SECRET
    from tests.local_settings import LOCAL_RUN_SETTINGS

    return override_settings(
        **LOCAL_RUN_SETTINGS,
        STRIPE_SECRET_KEY=TEST_SECRET_KEY,
        STRIPE_WEBHOOK_SECRETS=[TEST_WEBHOOK_SECRET],
        SITE_URL="",
    )


def run_worker(worker: int, seeds: list[int], results) -> None:
    _django(worker)
    from django.db import connection
    from django.test.utils import setup_test_environment

    from stripe_emulator import Emulator
    from stripe_emulator.control import EmulatorControl
    from tests.conftest import TEST_WEBHOOK_SECRET
    from tests.simulation.runner import World, run_seeds

    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    failures_out: list[str] = []
    try:
        with Emulator(db=":memory:", port=0, webhook_secret=TEST_WEBHOOK_SECRET, account_name="Slotbook",
                      **_tuning()) as emulator, _test_settings() as _:
            from django.conf import settings

            settings.STRIPE_API_BASE = emulator.url
            world = World(EmulatorControl(emulator.url), TEST_WEBHOOK_SECRET, threads=True)

            def progress(n, totals):
                if n % 25 == 0:
                    results.put(("progress", worker, n))

            def failed(report: str) -> None:
                failures_out.append(report)
                print(report, file=sys.stderr, flush=True)

            totals, _failures = run_seeds(world, seeds, on_failure=failed, progress=progress)
        results.put(("done", worker, totals.__dict__, failures_out))
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


def replay(seed: int) -> int:
    _django(0)
    from django.db import connection
    from django.test.utils import setup_test_environment

    from stripe_emulator import Emulator
    from stripe_emulator.control import EmulatorControl
    from tests.conftest import TEST_WEBHOOK_SECRET
    from tests.simulation.runner import World

    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        with Emulator(db=":memory:", port=0, webhook_secret=TEST_WEBHOOK_SECRET, **_tuning()) as emulator, \
                _test_settings():
            from django.conf import settings

            settings.STRIPE_API_BASE = emulator.url
            world = World(EmulatorControl(emulator.url), TEST_WEBHOOK_SECRET)
            with world.running():
                outcome = world.run(seed)
            print("seconds per operation:", {k: round(v, 3) for k, v in outcome.op_seconds.most_common()})
            connection.close()
        print("\n".join(outcome.scenario.describe()))
        print("trace:")
        print("\n".join(f"  {line}" for line in outcome.trace))
        if outcome.violations:
            print(outcome.report())
            return 1
        print(f"scenario {seed}: every invariant holds")
        return 0
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tests.simulation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1, help="base seed: scenario i has seed SEED*100000+i")
    parser.add_argument("--workers", type=int, default=max(2, min(4, os.cpu_count() or 2)))
    parser.add_argument("--replay", type=int, help="run this one scenario seed and print its trace")
    args = parser.parse_args(argv)
    if args.replay is not None:
        return replay(args.replay)

    seeds = [args.seed * 100_000 + i for i in range(args.scenarios)]
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [
        context.Process(target=run_worker, args=(w, seeds[w - 1 :: args.workers], results), daemon=True)
        for w in range(1, args.workers + 1)
    ]
    started = time.perf_counter()
    for process in workers:
        process.start()
    totals: dict[str, float] = {}
    failures: list[str] = []
    done = progressed = 0
    per_worker: dict[int, int] = {}
    while done < len(workers):
        try:
            message = results.get(timeout=5)
        except queue.Empty:
            if any(not process.is_alive() and process.exitcode for process in workers):
                print("a worker process died; see its error above", file=sys.stderr)
                return 2
            continue
        if message[0] == "progress":
            per_worker[message[1]] = message[2]
            progressed = sum(per_worker.values())
            elapsed = time.perf_counter() - started
            print(f"  {progressed}/{args.scenarios} scenarios, {progressed / elapsed:.1f}/s", flush=True)
        else:
            done += 1
            for name, value in message[2].items():
                totals[name] = totals.get(name, 0) + value
            failures += message[3]
    for process in workers:
        process.join()
    elapsed = time.perf_counter() - started
    engine = "PostgreSQL" if os.environ.get("DATABASE_URL", "").startswith("postgres") else "SQLite"
    print(f"simulation: seed {args.seed}, {args.workers} workers, {engine}, {dt.date.today().isoformat()}")
    print(f"  scenarios run:        {int(totals.get('scenarios', 0))}")
    violations, failed = int(totals.get("violations", 0)), int(totals.get("failed_scenarios", 0))
    print(f"  invariant violations: {violations} (in {failed} scenarios)")
    print(f"  customers:            {int(totals.get('customers', 0))}")
    print(f"  webhooks delivered:   {int(totals.get('webhooks', 0))}")
    print(f"  status polls:         {int(totals.get('polls', 0))}")
    print(f"  reconcile runs:       {int(totals.get('reconciles', 0))}")
    print(f"  refunds issued:       {int(totals.get('refunds', 0))}")
    print(f"  holds taken:          {int(totals.get('holds_taken', 0))} (converted {int(totals.get('holds_converted', 0))}, "
          f"released {int(totals.get('holds_released', 0))}, lapsed {int(totals.get('holds_lapsed', 0))})")
    print(f"  cancels on Checkout:  {int(totals.get('cancels', 0))}")
    print(f"  waitlist joins:       {int(totals.get('waitlist_joins', 0))}; offers made {int(totals.get('offers_made', 0))} "
          f"(e-mailed {int(totals.get('offer_emails', 0))}, links opened {int(totals.get('offer_links_opened', 0))}, "
          f"booked {int(totals.get('offers_booked', 0))}, lapsed {int(totals.get('offers_lapsed', 0))}, "
          f"left {int(totals.get('offers_left', 0))})")
    print(f"  customers' own changes: {int(totals.get('customer_cancels', 0))} cancellations "
          f"({int(totals.get('late_cancels', 0))} late), {int(totals.get('reschedules', 0))} moves, "
          f"{int(totals.get('changes_refused', 0))} refused")
    print(f"  with Connect:         {int(totals.get('connect_scenarios', 0))} scenarios, "
          f"{int(totals.get('application_fees', 0))} application fees ({int(totals.get('fees_given_back', 0))} given back)")
    print(f"  seats added by the merchant: {int(totals.get('capacity_increases', 0))} time(s)")
    print(f"  waits / beat ticks:   {int(totals.get('waits', 0))} / {int(totals.get('beat_ticks', 0))}")
    print(f"  payments refused by an expired session: {int(totals.get('payments_refused', 0))}")
    print(f"  confirmed on free seats after their hold ended: {int(totals.get('confirmed_after_hold_time', 0))}")
    print(f"  scenarios per second: {totals.get('scenarios', 0) / elapsed:.2f} ({elapsed:.0f} s)")
    ok = int(totals.get("scenarios", 0)) == args.scenarios and not totals.get("violations") and not failures
    return 0 if ok else 1


