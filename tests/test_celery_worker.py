"""Background work on a real Celery worker: a separate process fed through the local Redis.

The worker (and, where a test needs it, beat and a web process that dies) run as subprocesses
on the test database: PostgreSQL when DATABASE_URL is set, else the suite's SQLite file, which
a second process can open as well (tests.settings names it; pytest-django keeps that name). Each
run has a queue of its own on Redis database 7. The tests wait for conditions with a deadline,
never for a fixed time.
"""

import os
import re
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings as django_settings
from django.core import mail

from bookings.models import Booking, BookingStatus, Refund, RefundReason, RefundStatus, Slot
from bookings.services import booking_confirm, booking_refund
from config import celery_app
from payments import stripe_api as payments
from payments.checkout import checkout_start
from tests.payments.stripe_flow import lose_hold
from tests.celery_broker import celery_publisher_reset
from tests.conftest import TEST_SECRET_KEY
from tests.factories import make_booking, make_slot, paid_facts

REDIS_HOST, REDIS_PORT, REDIS_DB = "127.0.0.1", 6379, 7
BROKER_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"
ROOT = Path(__file__).resolve().parent.parent
WAIT_SECONDS = 60
TASK_RECEIVED = re.compile(r"Task [\w.]+\[([0-9a-f-]+)\] received")
TASK_ENDED = re.compile(r"Task [\w.]+\[([0-9a-f-]+)\] (?:succeeded|retry|raised)")


def redis_refusal() -> str:
    """Why the local Redis cannot serve as the broker, or "" when it answers."""
    import redis

    try:
        redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB, socket_timeout=2, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        return f"Redis does not answer on {REDIS_HOST}:{REDIS_PORT} ({error}); these tests need it as the broker"
    return ""


@pytest.fixture(scope="module")
def redis_broker():
    refusal = redis_refusal()
    if refusal:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{refusal}. CI must run them: .ci/run starts Redis.")
        pytest.skip(refusal)
    return BROKER_URL


def wait_for(condition: Callable[[], object], *, what: str, process_logs: list[Path] = ()) -> object:
    """Poll `condition` until it is truthy, up to WAIT_SECONDS; fail with `what` and the logs."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    logs = "\n".join(f"--- {path.name}\n{path.read_text()[-4000:]}" for path in process_logs if path.exists())
    pytest.fail(f"Not seen within {WAIT_SECONDS} s: {what}\n{logs}")


def database_environment() -> dict[str, str]:
    """The environment that points a subprocess at the test database this process uses."""
    database = django_settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.postgresql":
        user = quote(database.get("USER") or "")
        password = f":{quote(database['PASSWORD'])}" if database.get("PASSWORD") else ""
        url = f"postgres://{user}{password}@{database.get('HOST') or '127.0.0.1'}:{database.get('PORT') or 5432}/{database['NAME']}"
        return {"DATABASE_URL": url}
    return {"SQLITE_PATH": str(database["NAME"])}


class Processes:
    """The worker of this module, and the other processes a test starts, with their logs."""

    def __init__(self, directory: Path, environment: dict[str, str], queue: str):
        self.directory = directory
        self.environment = environment
        self.queue = queue
        self.worker_mail = directory / "worker-mail"
        self.web_mail = directory / "web-mail"
        self.worker_log = directory / "worker.log"
        self.children: list[subprocess.Popen] = []

    def start(self, name: str, *arguments: str, **extra_environment: str) -> subprocess.Popen:
        log = (self.directory / f"{name}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, *arguments],
            cwd=ROOT,
            env={**self.environment, **extra_environment},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.children.append(process)
        return process

    def stop(self, process: subprocess.Popen) -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def worker_mail_to(self, address: str) -> list[str]:
        """The e-mails the worker process wrote, to `address`."""
        if not self.worker_mail.is_dir():
            return []
        texts = [path.read_text() for path in sorted(self.worker_mail.iterdir())]
        return [text for text in texts if f"To: {address}" in text]

    def log_since(self, offset: int) -> str:
        return self.worker_log.read_bytes()[offset:].decode(errors="replace")

    def log_size(self) -> int:
        return self.worker_log.stat().st_size if self.worker_log.exists() else 0

    def wait_until_idle(self) -> None:
        """Wait until every task the worker received has ended (succeeded, failed or retried).

        The next test's database flush truncates every table; a task still writing would
        deadlock with it, and PostgreSQL may pick the flush as the one to abort.
        """

        import redis

        broker = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB)

        def idle() -> bool:
            # A task may enqueue another as it ends: nothing may wait on the queue or be
            # fetched and unacknowledged, and every delivery (a retry is delivered again) ended.
            # Each priority is a list of its own (the queue's name, then one per step).
            if any(broker.llen(key) for key in broker.scan_iter(match=f"{self.queue}*")) or broker.hlen("unacked"):
                return False
            log = self.log_since(0)
            ended = Counter(TASK_ENDED.findall(log))
            return all(count <= ended[task] for task, count in Counter(TASK_RECEIVED.findall(log)).items())

        wait_for(idle, what="the worker to finish the tasks it received", process_logs=[self.worker_log])


@pytest.fixture(scope="module")
def processes(redis_broker, django_db_setup, django_db_blocker, stripe_emulator_server, tmp_path_factory):
    """One Celery worker for the module, on a queue of its own, writing e-mails to files."""
    import redis

    directory = tmp_path_factory.mktemp("celery")
    queue = f"slotbook-test-{uuid.uuid4().hex[:12]}"
    environment = {
        key: value for key, value in os.environ.items() if key not in {"DATABASE_URL", "SQLITE_PATH", "REDIS_URL"}
    }
    with django_db_blocker.unblock():
        environment.update(database_environment())
    environment.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        CELERY_BROKER_URL=redis_broker,
        CELERY_QUEUE=queue,
        STRIPE_SECRET_KEY=TEST_SECRET_KEY,
        STRIPE_API_BASE=stripe_emulator_server.url,
        # Each try of a task makes one call: the Stripe SDK's own retries would hide Celery's.
        STRIPE_MAX_NETWORK_RETRIES="0",
        TASK_RETRY_BACKOFF_MAX_SECONDS="2",
        EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
        SITE_URL="http://testserver",
        LOG_FORMAT="plain",
        DJANGO_SECURE_SSL_REDIRECT="false",
    )
    running = Processes(directory, environment, queue)
    worker = running.start(
        "worker",
        "-m", "celery", "-A", "config", "worker", "--pool=solo", "--loglevel=INFO",
        "-Q", queue, "-n", f"{queue}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat",
        EMAIL_FILE_PATH=str(running.worker_mail),
    )
    started = time.monotonic()
    wait_for(
        lambda: worker.poll() is not None or " ready." in running.worker_log.read_text(errors="replace"),
        what="the Celery worker to be ready",
        process_logs=[running.worker_log],
    )
    assert worker.poll() is None, running.worker_log.read_text()
    running.worker_ready_seconds = time.monotonic() - started
    print(f"\nCelery worker ready in {running.worker_ready_seconds:.1f} s")

    # This process enqueues to the same queue (tasks go out through the app's producer pool).
    previous = {"broker_url": celery_app.conf.broker_url, "task_default_queue": celery_app.conf.task_default_queue}
    celery_app.conf.update(broker_url=redis_broker, task_default_queue=queue)
    celery_publisher_reset()
    yield running
    celery_app.conf.update(previous)
    celery_publisher_reset()
    for child in reversed(running.children):
        running.stop(child)
    redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB).delete(queue)


@pytest.fixture
def on_the_worker(processes, settings, stripe_emulator):
    """This process enqueues to the worker after each commit (CELERY_BROKER_URL set)."""
    settings.CELERY_BROKER_URL = BROKER_URL
    settings.CELERY_TASK_DEFAULT_QUEUE = processes.queue
    yield processes
    processes.wait_until_idle()


CARD_OK = "4242424242424242"


def paid_checkout(slot: Slot, *, email: str) -> Booking:
    """A booking whose Checkout Session is paid at the emulator and not yet confirmed here."""
    started = checkout_start(
        slot=slot,
        quantity=1,
        customer_email=email,
        customer_name="Grace Hopper",
        success_url="http://testserver/checkout/success/?session_id={CHECKOUT_SESSION_ID}",
        cancel_url="http://testserver/",
    )
    return started.booking


pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]


def test_the_confirmation_email_is_sent_by_the_worker_not_the_web_process(on_the_worker):
    booking = make_booking(slot=make_slot(capacity=3), customer_email="ada@example.com")

    result = booking_confirm(facts=paid_facts(booking))

    assert result.outcome == "confirmed"
    sent = wait_for(
        lambda: on_the_worker.worker_mail_to("ada@example.com"),
        what="the confirmation e-mail in the worker's mail folder",
        process_logs=[on_the_worker.worker_log],
    )
    assert len(sent) == 1
    assert f"Subject: You're booked: {booking.slot.listing.title}" in sent[0]
    assert mail.outbox == []  # nothing was sent by this (the web) process
    assert Booking.objects.get(pk=booking.pk).confirmation_email_sent_at is not None
    # The worker logs the sending just after it wrote the file.
    wait_for(
        lambda: f"email_sent template=booking_confirmed booking={booking.pk}" in on_the_worker.worker_log.read_text(),
        what="the worker's log of the sending",
        process_logs=[on_the_worker.worker_log],
    )


CONFIRM_AND_DIE = textwrap.dedent(
    """
    import os, django
    django.setup()
    from django.db import transaction
    from bookings.services import booking_confirm
    from payments import stripe_api as payments

    facts = payments.checkout_facts({session_id!r})
    if {before_enqueue!r}:
        # Dies between the commit and the enqueue: the first callback after commit is this exit.
        with transaction.atomic():
            transaction.on_commit(lambda: os._exit(1))
            booking_confirm(facts=facts)
    else:
        result = booking_confirm(facts=facts)  # committed, and its follow-up enqueued
        print(result.outcome, flush=True)
        os._exit(1)
    """
)


def sold_out_paid_booking(stripe_emulator, *, email: str) -> Booking:
    slot = make_slot(capacity=1)
    booking = paid_checkout(slot, email=email)
    stripe_emulator.pay_session(booking.checkout_session_id, card=CARD_OK)
    lose_hold(booking)  # its hold ended before the payment was heard of,
    Slot.objects.filter(pk=slot.pk).update(seats_left=0)  # and the last seat went to someone else meanwhile
    return booking


def refunded_at_stripe(booking: Booking) -> list[dict]:
    booking.refresh_from_db()
    if booking.status != BookingStatus.REFUNDED:
        return []
    return payments.refunds_of_payment(booking.payment_intent_id)


def die_after_commit(processes: Processes, booking: Booking, *, before_enqueue: bool) -> None:
    web = processes.start(
        "web",
        "-c",
        CONFIRM_AND_DIE.format(session_id=booking.checkout_session_id, before_enqueue=before_enqueue),
        EMAIL_FILE_PATH=str(processes.web_mail),
    )
    assert web.wait(timeout=WAIT_SECONDS) == 1  # killed itself right after the commit
    booking.refresh_from_db()
    # Committed as refund due (the worker may already have made the refund when it was enqueued).
    assert booking.status in (BookingStatus.REFUND_DUE, BookingStatus.REFUNDED)
    assert booking.ended_reason == RefundReason.SOLD_OUT


def test_a_sold_out_refund_is_made_by_the_worker_after_the_confirming_process_died_right_after_commit(
    on_the_worker, stripe_emulator
):
    booking = sold_out_paid_booking(stripe_emulator, email="grace@example.com")
    offset = on_the_worker.log_size()

    die_after_commit(on_the_worker, booking, before_enqueue=False)

    refunds = wait_for(
        lambda: refunded_at_stripe(booking), what="the refund at Stripe", process_logs=[on_the_worker.worker_log]
    )
    assert [(r["amount"], r["metadata"]["reason"]) for r in refunds] == [(booking.amount_paid, RefundReason.SOLD_OUT)]
    # The enqueued follow-up made it (no beat runs here, so no reconcile could have).
    assert "slotbook.booking_follow_up" in on_the_worker.log_since(offset)
    assert "slotbook.reconcile" not in on_the_worker.log_since(offset)
    notice = wait_for(lambda: on_the_worker.worker_mail_to("grace@example.com"), what="the refund notice")
    assert "sold out: your payment is refunded" in notice[0]
    assert not on_the_worker.web_mail.exists() or not any(on_the_worker.web_mail.iterdir())


def test_a_refund_whose_enqueue_was_lost_in_a_crash_is_made_by_the_periodic_reconcile_on_beat(
    on_the_worker, stripe_emulator
):
    booking = sold_out_paid_booking(stripe_emulator, email="katherine@example.com")
    offset = on_the_worker.log_size()

    die_after_commit(on_the_worker, booking, before_enqueue=True)

    refund = Refund.objects.get(booking=booking)
    assert booking.status == BookingStatus.REFUND_DUE
    assert (refund.status, refund.attempts) == (RefundStatus.REQUESTED, 0)  # nothing asked Stripe: no task exists
    beat = on_the_worker.start(
        "beat",
        "-m", "celery", "-A", "config", "beat", "--loglevel=INFO",
        "-s", str(on_the_worker.directory / f"beat-schedule-{uuid.uuid4().hex[:6]}"),
        RECONCILE_EVERY_SECONDS="1",
    )
    try:
        refunds = wait_for(
            lambda: refunded_at_stripe(booking),
            what="the refund made by reconcile",
            process_logs=[on_the_worker.worker_log, on_the_worker.directory / "beat.log"],
        )
    finally:
        on_the_worker.stop(beat)
    assert [r["amount"] for r in refunds] == [booking.amount_paid]
    assert "slotbook.reconcile" in on_the_worker.log_since(offset)
    assert Refund.objects.get(booking=booking).attempts == 1


def test_a_refund_that_fails_twice_on_a_stripe_500_succeeds_on_its_third_try_with_one_refund_at_stripe(
    on_the_worker, stripe_emulator
):
    slot = make_slot(capacity=2)
    booking = paid_checkout(slot, email="mary@example.com")
    stripe_emulator.pay_session(booking.checkout_session_id, card=CARD_OK)
    booking_confirm(facts=payments.checkout_facts(booking.checkout_session_id))
    booking.refresh_from_db()
    assert booking.status == BookingStatus.CONFIRMED
    stripe_emulator.fail_refunds(count=2, mode="error")
    offset = on_the_worker.log_size()
    earlier_requests = {r["id"] for r in stripe_emulator.requests()}

    booking_refund(booking=booking)

    refunds = wait_for(
        lambda: refunded_at_stripe(booking), what="the refund at Stripe", process_logs=[on_the_worker.worker_log]
    )
    assert [r["amount"] for r in refunds] == [booking.amount_paid]
    refund = Refund.objects.get(booking=booking)
    assert refund.attempts == 3
    asked = [
        r["status"]
        for r in reversed(stripe_emulator.requests())
        if r["id"] not in earlier_requests and r["method"] == "POST" and r["path"] == "/v1/refunds"
    ]
    assert asked == [500, 500, 200]
    log = on_the_worker.log_since(offset)
    assert log.count("slotbook.booking_follow_up") >= 3
    assert log.count("Retry in") == 2
    assert Slot.objects.get(pk=slot.pk).seats_left == 2


def test_beat_sends_a_due_reminder_through_the_worker_once_however_often_it_runs(on_the_worker):
    """Beat enqueues `slotbook.reminders_send` every second here; the worker sends the one
    reminder due, once, and the runs after it find nothing left."""
    from datetime import timedelta

    from bookings.models import Listing

    slot = make_slot(capacity=3, starts_in=timedelta(hours=2))
    Listing.objects.filter(pk=slot.listing_id).update(reminder_hours=3)
    booking = make_booking(slot=slot, customer_email="hedy@example.com")
    booking_confirm(facts=paid_facts(booking))
    Booking.objects.filter(pk=booking.pk).update(confirmed_at=slot.starts_at - timedelta(hours=30))
    offset = on_the_worker.log_size()
    beat = on_the_worker.start(
        "beat",
        "-m", "celery", "-A", "config", "beat", "--loglevel=INFO",
        "-s", str(on_the_worker.directory / f"beat-schedule-{uuid.uuid4().hex[:6]}"),
        REMINDERS_EVERY_SECONDS="1",
        RECONCILE_EVERY_SECONDS="3600",
    )
    try:
        wait_for(
            lambda: [m for m in on_the_worker.worker_mail_to("hedy@example.com") if "Subject: Reminder:" in m],
            what="the reminder in the worker's mail folder",
            process_logs=[on_the_worker.worker_log, on_the_worker.directory / "beat.log"],
        )
        # Runs after it was sent find nothing (each run is logged as received and as succeeded).
        wait_for(
            lambda: on_the_worker.log_since(offset).count("slotbook.reminders_send") >= 8,
            what="more runs of the reminders task",
            process_logs=[on_the_worker.worker_log, on_the_worker.directory / "beat.log"],
        )
    finally:
        on_the_worker.stop(beat)
    reminders = [m for m in on_the_worker.worker_mail_to("hedy@example.com") if "Subject: Reminder:" in m]
    assert len(reminders) == 1
    assert f"Subject: Reminder: {slot.listing.title}" in reminders[0]
    assert f"email_sent template=booking_reminder booking={booking.pk}" in on_the_worker.log_since(offset)
    assert Booking.objects.get(pk=booking.pk).reminder_sent_at is not None
