"""Confirmations per second through `booking_confirm`, against a raw-SQL baseline of the same
transaction measured in the same run, on PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test python benchmarks/confirm.py
    ... --processes 2 --threads 4 --slots 10
    ... --broker redis://127.0.0.1:6379/12

Without --broker the confirmation e-mail is sent in the confirming thread right after commit
(claimed, rendered, handed to the locmem backend), as without CELERY_BROKER_URL (the demo, a
laptop); with it the confirmation publishes the e-mail's task to that broker, as production does,
and a worker would send it (none runs here: the queue is purged at the end).

It works in a scratch database (Django's test database for DATABASE_URL), created and dropped
by the run. Every round checks that no seat was oversold. Not a test: it prints numbers.
"""

import argparse
import multiprocessing
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# A benchmark runs with DEBUG off, as production does, so it needs a secret key of its own.
os.environ.setdefault("DJANGO_SECRET_KEY", "slotbook-benchmark-only-secret-key-never-used-for-a-real-site")
os.environ.setdefault("EMAIL_BACKEND", "django.core.mail.backends.locmem.EmailBackend")
os.environ.setdefault("LOG_LEVEL", "WARNING")


def _broker_from_argv() -> str:
    # Settings are read once, at setup: the broker must be in the environment before it.
    for i, arg in enumerate(sys.argv):
        if arg == "--broker" and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
        if arg.startswith("--broker="):
            return arg.split("=", 1)[1]
    return ""


os.environ["CELERY_BROKER_URL"] = _broker_from_argv()

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection, connections  # noqa: E402

CHECKOUT_FACTS_TEMPLATE = "cs_test_bench_{}"


def build_round(*, bookings: int, slots: int) -> list[int]:
    """A fresh hot-slot workload: `slots` slots sharing `bookings` pending one-seat bookings."""
    from django.utils import timezone

    from bookings.models import Booking, Listing, Merchant, Refund, Slot
    from payments.models import StripeEvent
    from django.contrib.auth import get_user_model

    Refund.objects.all().delete()
    Booking.objects.all().delete()
    StripeEvent.objects.all().delete()
    Slot.objects.all().delete()
    Listing.objects.all().delete()
    Merchant.objects.all().delete()
    get_user_model().objects.all().delete()
    user = get_user_model().objects.create(username="bench")
    merchant = Merchant.objects.create(user=user, display_name="Bench")
    listing = Listing.objects.create(merchant=merchant, title="Hot", slug="hot", price_amount=1000, currency="eur")
    per_slot = bookings // slots
    slot_rows = [
        Slot.objects.create(
            listing=listing,
            starts_at=timezone.now() + timezone.timedelta(days=1, hours=i),
            capacity=per_slot,
            seats_left=per_slot,
        )
        for i in range(slots)
    ]
    created = Booking.objects.bulk_create(
        Booking(
            slot=slot_rows[i % slots],
            quantity=1,
            customer_email=f"c{i}@example.com",
            customer_name=f"C {i}",
            amount_total=1000,
            currency="eur",
            checkout_session_id=CHECKOUT_FACTS_TEMPLATE.format(i),
        )
        for i in range(per_slot * slots)
    )
    return [b.pk for b in created]


def confirm_with_service(booking_id: int) -> None:
    from bookings.gateway import CheckoutFacts
    from bookings.services import booking_confirm

    booking_confirm(
        facts=CheckoutFacts(
            session_id=CHECKOUT_FACTS_TEMPLATE.format(booking_id - BOOKING_ID_OFFSET),
            client_reference_id=f"booking-{booking_id}",
            metadata_booking_id=str(booking_id),
            status="complete",
            payment_status="paid",
            amount_subtotal=1000,
            amount_total=1000,
            currency="eur",
            payment_intent_id=f"pi_bench_{booking_id}",
            customer_id=f"cus_bench_{booking_id}",
        )
    )


RAW_CONFIRM = [
    "SELECT id, status, slot_id, quantity FROM bookings_booking WHERE checkout_session_id = %s FOR UPDATE",
    "UPDATE bookings_slot SET seats_left = seats_left - %s "
    "WHERE id = %s AND cancelled_at IS NULL AND seats_left >= %s",
    "UPDATE bookings_booking SET status = 'confirmed', confirmed_at = now(), updated_at = now(), "
    "amount_paid = %s, payment_intent_id = %s, stripe_customer_id = %s WHERE id = %s AND status = 'pending'",
    "UPDATE bookings_booking SET confirmation_email_sent_at = now() WHERE id = %s "
    "AND confirmation_email_sent_at IS NULL",
]


def confirm_with_raw_sql(booking_id: int) -> None:
    """The same decision in hand-written SQL on the same connection type: the floor Django's path is held to."""
    raw = connection.connection
    if raw is None:
        connection.ensure_connection()
        raw = connection.connection
    with raw.cursor() as cursor:
        with raw.transaction():
            cursor.execute(RAW_CONFIRM[0], (CHECKOUT_FACTS_TEMPLATE.format(booking_id - BOOKING_ID_OFFSET),))
            found_id, status, slot_id, quantity = cursor.fetchone()
            if status != "pending":
                return
            cursor.execute(RAW_CONFIRM[1], (quantity, slot_id, quantity))
            if not cursor.rowcount:
                return
            cursor.execute(RAW_CONFIRM[2], (1000, f"pi_bench_{found_id}", f"cus_bench_{found_id}", found_id))
        cursor.execute(RAW_CONFIRM[3], (found_id,))


BOOKING_ID_OFFSET = 0


def _worker_process(mode: str, chunks: list[list[int]], start_at: float, results) -> None:
    connections.close_all()
    confirm = confirm_with_service if mode == "django" else confirm_with_raw_sql

    def run(ids: list[int]) -> None:
        try:
            if mode == "raw":
                connection.ensure_connection()
                connection.connection.autocommit = True
            for booking_id in ids:
                confirm(booking_id)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(chunk,)) for chunk in chunks]
    while time.time() < start_at:
        time.sleep(0.001)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put(time.time())


def run_round(mode: str, *, bookings: int, slots: int, processes: int, threads: int) -> float:
    global BOOKING_ID_OFFSET
    ids = build_round(bookings=bookings, slots=slots)
    BOOKING_ID_OFFSET = ids[0]
    connections.close_all()
    workers = processes * threads
    chunks = [ids[i::workers] for i in range(workers)]
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    start_at = time.time() + 0.5
    children = [
        context.Process(target=_worker_process, args=(mode, chunks[p * threads : (p + 1) * threads], start_at, results))
        for p in range(processes)
    ]
    for child in children:
        child.start()
    finished = max(results.get(timeout=600) for _ in children)
    for child in children:
        child.join()
        if child.exitcode:
            raise SystemExit(f"a {mode} worker process failed with exit code {child.exitcode}")
    elapsed = finished - start_at
    _check_no_oversell(len(ids))
    return len(ids) / elapsed


def _check_no_oversell(expected_confirmed: int) -> None:
    from django.db.models import F, Sum

    from bookings.models import Booking, Slot

    confirmed = Booking.objects.filter(status="confirmed").count()
    oversold = Slot.objects.filter(seats_left__lt=0).count() + Slot.objects.filter(seats_left__gt=F("capacity")).count()
    sold = Slot.objects.aggregate(sold=Sum(F("capacity") - F("seats_left")))["sold"]
    if confirmed != expected_confirmed or sold != confirmed or oversold:
        raise SystemExit(f"integrity check failed: confirmed={confirmed} sold={sold} expected={expected_confirmed}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bookings", type=int, default=1200, help="confirmations per round (default 1200)")
    parser.add_argument("--threads", type=int, default=4, help="threads per process (default 4)")
    parser.add_argument("--processes", type=int, nargs="+", default=[1], help="process counts to measure (default 1)")
    parser.add_argument("--slots", type=int, nargs="+", default=[1], help="slot counts: 1 = one hot slot (default 1)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per mode; the median is reported (default 3)")
    parser.add_argument(
        "--broker", default="", help="publish the e-mail tasks to this broker, as production does (default: in-process)"
    )
    args = parser.parse_args()

    if connection.vendor != "postgresql":
        raise SystemExit("Set DATABASE_URL to a PostgreSQL database: this benchmark measures row locking there.")
    test_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    email = f"e-mail task published to {args.broker}" if args.broker else "e-mail sent in-process after commit"
    print(
        f"scratch database {test_name}; {args.bookings} one-seat confirmations per round, median of {args.rounds}; {email}"
    )
    print(f"{'processes':>9} {'threads':>7} {'slots':>5} {'django/s':>10} {'raw SQL/s':>10} {'ratio':>6}")
    try:
        for processes in args.processes:
            for slots in args.slots:
                rates = {"django": [], "raw": []}
                for _ in range(args.rounds):
                    for mode in ("raw", "django"):
                        rates[mode].append(
                            run_round(
                                mode, bookings=args.bookings, slots=slots, processes=processes, threads=args.threads
                            )
                        )
                django_rate = statistics.median(rates["django"])
                raw_rate = statistics.median(rates["raw"])
                print(
                    f"{processes:>9} {args.threads:>7} {slots:>5} {django_rate:>10.0f} {raw_rate:>10.0f} "
                    f"{django_rate / raw_rate:>6.2f}"
                )
    finally:
        if args.broker:
            from config.celery import app

            app.control.purge()  # the e-mail tasks nobody will run
        connections.close_all()
        connection.creation.destroy_test_db(settings.DATABASES["default"]["NAME"], verbosity=0)


if __name__ == "__main__":
    main()
