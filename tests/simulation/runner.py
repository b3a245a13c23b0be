"""Running scenarios against the real site (its views, through Django's test client, on the
configured database) and the Stripe emulator, then checking the money invariants.

Timing is scenario data: a "late" webhook is one delivered after other steps, never one that
waits for the clock. Webhooks are not forwarded by the emulator: the runner takes its signed
events and posts them to the site's webhook view, as Stripe would, on time, late, twice,
concurrently, out of order or never.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import threading
import time
import traceback
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core import mail
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection, connections, transaction
from django.db.backends.signals import connection_created
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone
from stripe._http_client import HTTPClient

import re
from decimal import ROUND_HALF_UP, Decimal

import stripe

from bookings.models import (
    Booking, BookingStatus, CustomerSignInLink, Hold, HoldEnd, HoldKind, Listing, Merchant, PromotionCode, ProvenCustomer, Refund,
    RefundStatus, Slot, WaitlistEntry, WaitlistStatus, rows_written_in_bulk,
)
from payments.models import CheckoutQueueEntry, StripeEvent
from bookings.money import from_minor_units
from bookings.models import RefundReason
from payments import stripe_api
from payments.webhooks import HANDLED_EVENTS
from stripe_emulator.control import ControlError, EmulatorControl, PaymentDeclined
from tests.payments.webhook_signing import stripe_signature
from tests.connect_mode import merchant_connect
from tests.simulation import told
from tests.simulation.scenario import CARDS, Customer, Scenario, SlotTime, generate

RETRY_ANSWER = "Not processed yet; please retry."
CUSTOMER_CANCEL = RefundReason.CUSTOMER_CANCELLED
MAX_RACERS = 48
EVENTS_PAGE = 1000
FINAL_STATUS_CACHE_SECONDS = 60  # shop/settings.py's default
PRICE = 2500
TITLE = "Sea kayak tour"
CHECKOUT_EVENTS = {"checkout.session.completed", "checkout.session.async_payment_succeeded",
                   "checkout.session.expired", "checkout.session.async_payment_failed"}


def next_clock_change(zone: ZoneInfo, after: dt.date) -> dt.date | None:
    """The first day from `after` on which the zone's clocks change (its UTC offset at the
    next midnight differs from this midnight's), if they change in the coming year."""
    day = after
    for _ in range(400):
        midnight = dt.datetime(day.year, day.month, day.day, tzinfo=zone)
        following = day + dt.timedelta(days=1)
        if midnight.utcoffset() != dt.datetime(following.year, following.month, following.day, tzinfo=zone).utcoffset():
            return day
        day = following
    return None


def slot_start(zone_name: str, when: SlotTime, n: int, now: dt.datetime) -> dt.datetime:
    """The instant a planned time starts: its wall-clock time in the merchant's zone on its
    day (a few days ahead, or the zone's next clock-change day at least two days ahead). A time
    in a spring-forward gap is the instant zoneinfo gives it (fold 0); a repeated one, the first."""
    zone = ZoneInfo(zone_name)
    today = now.astimezone(zone).date()
    day = next_clock_change(zone, today + dt.timedelta(days=2)) if when.day == "clock_change" else None
    day = day or today + dt.timedelta(days=3 + n)
    local = dt.datetime(day.year, day.month, day.day, when.hour, when.minute, tzinfo=zone)
    return local.astimezone(dt.UTC)


@dataclass
class Totals:
    scenarios: int = 0
    violations: int = 0
    failed_scenarios: int = 0
    webhooks: int = 0
    polls: int = 0
    reconciles: int = 0
    refunds: int = 0
    customers: int = 0
    emails_checked: int = 0
    pages_checked: int = 0
    cancels: int = 0
    waits: int = 0
    beat_ticks: int = 0
    payments_refused: int = 0
    holds_taken: int = 0
    holds_converted: int = 0
    holds_released: int = 0
    holds_lapsed: int = 0
    confirmed_after_hold_time: int = 0
    waitlist_joins: int = 0
    offers_made: int = 0
    offers_booked: int = 0
    offers_lapsed: int = 0
    offers_left: int = 0
    offer_links_opened: int = 0
    offer_emails: int = 0
    capacity_increases: int = 0
    customer_cancels: int = 0
    late_cancels: int = 0
    reschedules: int = 0
    changes_refused: int = 0
    connect_scenarios: int = 0
    application_fees: int = 0
    fees_given_back: int = 0
    seconds: float = 0.0

    def add(self, other: Totals) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class ConnectFacts:
    """Stripe's money objects of a scenario with the account each lives on ("" the platform's)."""

    sessions: dict[str, tuple[str, dict]] = field(default_factory=dict)  # id -> (account, session)
    fees: dict[str, dict] = field(default_factory=dict)  # application fees (the platform's objects)
    refunds: dict[str, tuple[str, dict]] = field(default_factory=dict)  # id -> (account, refund), oldest first
    intent_of_charge: dict[str, str] = field(default_factory=dict)


@dataclass
class Rows:
    """The scenario's rows as a step left them, read once (a query per model) for every check
    after the step. Every row of these models is the scenario's: the world deletes them all
    between scenarios."""

    slots: list[dict]  # in the slots' order (starts_at, pk), with their listing's is_active
    holds: list[dict]  # in the holds' order (expires_at, pk)
    bookings: list[dict]  # in the bookings' order (newest first)
    entries: list[dict] | None = None  # waitlist entries (created_at, pk), when the waitlist was used

    def open_holds(self) -> list[dict]:
        return [hold for hold in self.holds if hold["ended_at"] is None]

    def hold_of_booking(self) -> dict[int, dict]:
        return {hold["booking_id"]: hold for hold in self.holds if hold["booking_id"] is not None}


@dataclass
class Outcome:
    scenario: Scenario
    violations: list[str]
    trace: list[str]
    totals: Totals
    op_seconds: Counter = field(default_factory=Counter)

    def report(self) -> str:
        lines = [f"SCENARIO {self.scenario.seed} FAILED: {len(self.violations)} invariant violation(s)"]
        lines += [f"  ! {v}" for v in self.violations]
        lines += ["plan:"] + self.scenario.describe()
        lines += ["trace:"] + [f"  {line}" for line in self.trace]
        lines.append(f"replay: python3 -m tests.simulation --replay {self.scenario.seed}")
        return "\n".join(lines)


class ErrorLog(logging.Handler):
    """Every ERROR record of the site (5xx answers are checked on the responses themselves)."""

    def __init__(self):
        super().__init__(level=logging.ERROR)
        self.records: list[str] = []
        self.lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "django.request":
            return
        with self.lock:
            self.records.append(f"{record.name}: {record.getMessage()[:300]}")


def _scratch_commits(sender=None, connection=None, **kwargs) -> None:
    """The simulation's database is a scratch one: PostgreSQL need not wait for each commit to
    reach the disk (isolation and locking are unchanged; only a crash could lose commits)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit = off")


class ReadTogether:
    """The rows of some `values()` querysets, as `list(queryset)` gives them, read again on each
    call. On PostgreSQL in one round trip: psycopg's client-side binding (Django's default) sends
    the statements of one call together and hands back each one's result in turn; the SQL is
    made once."""

    def __init__(self, querysets):
        self.querysets = querysets
        self.together = connection.vendor == "postgresql" and not connection.settings_dict["OPTIONS"].get(
            "server_side_binding")
        if self.together:
            self.compilers = [queryset.query.get_compiler(using=queryset.db) for queryset in querysets]
            statements = [compiler.as_sql() for compiler in self.compilers]
            self.sql = "; ".join(sql for sql, _ in statements)
            self.params = [param for _, params in statements for param in params]
            self.names = [[*queryset.query.extra_select, *queryset.query.values_select,
                           *queryset.query.annotation_select] for queryset in querysets]

    def __call__(self) -> list[list[dict]]:
        if not self.together:
            return [list(queryset.all()) for queryset in self.querysets]
        read = []
        with connection.cursor() as cursor:
            cursor.execute(self.sql, self.params)
            for n, (names, compiler) in enumerate(zip(self.names, self.compilers)):
                if n:
                    cursor.cursor.nextset()
                read.append([dict(zip(names, row)) for row in compiler.results_iter(results=[cursor.fetchall()])])
        return read


@contextmanager
def sdk_retries_without_sleeping():
    """The SDK's retries happen as in production, without its back-off sleeps."""
    saved = HTTPClient.INITIAL_DELAY, HTTPClient.MAX_DELAY
    HTTPClient.INITIAL_DELAY = HTTPClient.MAX_DELAY = 0.0
    try:
        yield
    finally:
        HTTPClient.INITIAL_DELAY, HTTPClient.MAX_DELAY = saved


# The scheduled work (Celery beat, or the demo's in-process loop) runs `reconcile` every minute:
# a hold must end within this long of its session's end.
HOLD_END_GRACE_SECONDS = 60


class Clock:
    """The site's clock (`django.utils.timezone.now`, which every service reads) and the
    emulator's, moved forward together by the same amount, so that a hold's end on the site and
    its session's `expires_at` at Stripe stay the same instant. Time only moves when a scenario
    says so (a wait, settling); everything else happens at one instant."""

    def __init__(self, control: EmulatorControl):
        self.control = control
        self.offset = dt.timedelta()
        self._real_now = timezone.now

    def now(self) -> dt.datetime:
        return self._real_now() + self.offset

    def install(self) -> None:
        timezone.now = self.now

    def uninstall(self) -> None:
        timezone.now = self._real_now

    def reset(self) -> None:
        """After the emulator's reset (its clock back to the wall clock)."""
        self.offset = dt.timedelta()

    def advance(self, seconds: float) -> None:
        """Whatever falls due at Stripe by then (sessions expiring) happens before this returns."""
        self.control.advance_clock(seconds)
        self.offset += dt.timedelta(seconds=seconds)


# The rows a scenario makes, each model after those referring to it.
SCENARIO_MODELS = (CheckoutQueueEntry, Refund, StripeEvent, WaitlistEntry, Hold, Booking, PromotionCode.listings.through,
                   Slot, Listing, ProvenCustomer, CustomerSignInLink)


class World:
    """The site and the emulator, reused from scenario to scenario and reset between them."""

    def __init__(self, control: EmulatorControl, webhook_secret: str, *, threads: bool = True):
        self.control = control
        self.secret = webhook_secret
        self.threads = threads
        self.errors = ErrorLog()
        self.clock = Clock(control)
        # One request handler, its middleware loaded once, shared by every client and thread (as
        # one web process serves many requests); a client of its own per customer and request.
        self.handler = Client().handler
        # Merchant A sells every scenario's times; with Connect, merchant B sells some (scenario.py).
        self.merchants: dict[str, Merchant] = {}
        self.merchant_clients: dict[str, Client] = {}
        user_model = Merchant._meta.get_field("user").related_model
        for letter, username, name, email in (("A", "sim-merchant", "Sim Kayaks", "alerts@merchant.example"),
                                               ("B", "sim-merchant-b", "Sim Canoes", "alerts-b@merchant.example")):
            user, _ = user_model.objects.get_or_create(username=username, defaults={"email": f"{username}@sim.example"})
            self.merchants[letter], _ = Merchant.objects.get_or_create(
                user=user, defaults={"display_name": name, "support_email": email}
            )
            self.merchant_clients[letter] = self.client()
            self.merchant_clients[letter].force_login(user)
        self.merchant = self.merchants["A"]
        self.merchant_client = self.merchant_clients["A"]
        self._connect_secret: str | None = None

    def client(self, **defaults) -> Client:
        client = Client(**defaults)
        client.handler = self.handler
        return client

    @contextmanager
    def running(self):
        """While scenarios run: errors are collected, database connections are kept open between
        requests (one per thread, as in a long-lived web process) and racing threads are pooled."""
        root = logging.getLogger()
        root.addHandler(self.errors)
        database = connections.settings["default"]
        saved_max_age = database.get("CONN_MAX_AGE", 0)
        database["CONN_MAX_AGE"] = None
        connection_created.connect(_scratch_commits, dispatch_uid="simulation-scratch-commits")
        if connection.connection is not None:
            _scratch_commits(connection=connection)
        self.pool = ThreadPoolExecutor(max_workers=MAX_RACERS, thread_name_prefix="racer")
        self.clock.install()
        try:
            with sdk_retries_without_sleeping():
                yield self
        finally:
            self.clock.uninstall()
            root.removeHandler(self.errors)
            connection_created.disconnect(dispatch_uid="simulation-scratch-commits")
            self._close_pool()
            database["CONN_MAX_AGE"] = saved_max_age
            connection.close()

    def _close_pool(self) -> None:
        threads = len(self.pool._threads)
        if threads:
            self.race([lambda: connection.close()] * threads)
        self.pool.shutdown()

    def race(self, functions) -> list:
        """Start every function at the same moment, each in its own thread (a barrier), and
        return their results in order; an exception is returned in its place."""
        barrier = threading.Barrier(len(functions), timeout=60)

        def racer(function):
            try:
                barrier.wait()
                return function()
            except BaseException as error:  # noqa: BLE001 - handed back to the caller
                return error

        futures = [self.pool.submit(racer, function) for function in functions]
        return [future.result(timeout=120) for future in futures]

    def reset(self) -> None:
        self.control.reset()
        self.clock.reset()
        mail.outbox = []
        cache.clear()
        # Every row of the last scenario, referring rows first, in one transaction (one round
        # trip on PostgreSQL); with Stripe Customers and sign-ins: the emulator has forgotten them.
        deletes = [f"DELETE FROM {connection.ops.quote_name(model._meta.db_table)}" for model in SCENARIO_MODELS]
        with transaction.atomic(), connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("; ".join(deletes))
            else:
                for delete in deletes:
                    cursor.execute(delete)
        for model in (Slot, Listing):  # the storefront's fragments of them are stale (bookings/storefront_cache.py)
            rows_written_in_bulk.send(sender=model)
        self.errors.records.clear()

    def run(self, seed: int) -> Outcome:
        return self.play(generate(seed))

    @property
    def connect_secret(self) -> str:
        if self._connect_secret is None:
            self._connect_secret = self.control.connect_webhook_secret
        return self._connect_secret

    def connect_settings(self, scenario: Scenario) -> dict:
        """The settings a scenario runs with: Connect on with its fee and fee-refund reasons, or
        off (the platform's own account takes every payment)."""
        if not scenario.connect:
            return {"CONNECT_ENABLED": False}
        return {"CONNECT_ENABLED": True, "PLATFORM_FEE_PERCENT": scenario.fee[0], "PLATFORM_FEE_FIXED": scenario.fee[1],
                "CONNECT_REFUND_FEE_REASONS": list(scenario.fee_refund_reasons),
                "STRIPE_CONNECT_WEBHOOK_SECRETS": [self.connect_secret]}

    def prepare_merchants(self, scenario: Scenario) -> None:
        """Both merchants in the scenario's zone. With Connect each gets a new onboarded connected
        account (the emulator's reset forgot the last ones); without, none, as a merchant of a
        site without Connect has."""
        for merchant in self.merchants.values():
            merchant.timezone = scenario.zone
            Merchant.objects.filter(pk=merchant.pk).update(
                timezone=scenario.zone, stripe_account_id="", stripe_charges_enabled=False,
                stripe_payouts_enabled=False, stripe_details_submitted=False, stripe_account_synced_at=None,
            )
            merchant.refresh_from_db()
            if scenario.connect:
                merchant_connect(merchant)

    def account_of(self, letter: str) -> str:
        return self.merchants[letter].stripe_account_id

    def connected_accounts(self) -> list[str]:
        return [merchant.stripe_account_id for merchant in self.merchants.values() if merchant.stripe_account_id]

    def play(self, scenario: Scenario) -> Outcome:
        """Run one scenario (planned from a seed, or written out by a test) and check it."""
        self.reset()
        started = time.perf_counter()
        run = ScenarioRun(self, scenario)
        # Final status panels are kept as in production (the test suite turns that off); Connect
        # and its fee as the scenario says, put back afterwards. The fair queue is off: its pace is
        # real seconds while this clock is simulated, and the emulator here never answers 429
        # (tests/payments/test_checkout_queue.py covers the queue).
        with override_settings(STRIPE_STATUS_CHECK_SECONDS=scenario.status_check_seconds,
                               FINAL_STATUS_CACHE_SECONDS=FINAL_STATUS_CACHE_SECONDS,
                               STRIPE_REQUESTS_PER_SECOND=0,
                               **self.connect_settings(scenario)):
            try:
                self.prepare_merchants(scenario)
                run.play()
            except Exception:  # noqa: BLE001 - an unhandled error is a finding, reported with its trace
                run.violation("the run itself crashed:\n" + traceback.format_exc())
        run.totals.seconds = time.perf_counter() - started
        run.totals.scenarios = 1
        run.totals.violations = len(run.violations)
        run.totals.failed_scenarios = int(bool(run.violations))
        run.op_seconds["checks"] = run.check_seconds
        return Outcome(scenario, run.violations, run.trace, run.totals, run.op_seconds)


class ScenarioRun:
    def __init__(self, world: World, scenario: Scenario):
        self.world = world
        self.control = world.control
        self.scenario = scenario
        self.customers = {c.index: c for c in scenario.customers}
        self.violations: list[str] = []
        self.trace: list[str] = []
        self.totals = Totals(customers=len(scenario.customers))
        self.lock = threading.RLock()
        self.sessions: dict[int, str] = {}  # customer -> Checkout Session id
        self.told_sold_out: set[int] = set()  # customers whose checkout start was refused
        self.idle = 0  # operations of this step that found nothing to do (a join by someone not refused...)
        self.waitlist_used = False  # someone has asked to join a waitlist (else it has nothing to check)
        self.delivered: set[str] = set()
        self.slots: list[Slot] = []
        self.slot_merchant: dict[int, str] = {}  # slot pk -> the merchant ("A", "B") selling it
        self._connect_facts = ConnectFacts()  # what Stripe's events have told of the money (Connect)
        self._connect_cursor = 0  # events read into it
        self.step_no = 0
        self._events: list[dict] = []
        self._events_step = -1
        self._readers: dict[tuple, ReadTogether] = {}
        self.op_seconds: Counter = Counter()
        self.check_seconds = 0.0
        self.signins: dict[int, str] = {}  # customer -> their session cookie, once proven by the e-mailed link
        self.signin_locks: dict[int, threading.Lock] = {c.index: threading.Lock() for c in scenario.customers}
        self.moves: Counter = Counter()  # customer -> moves the site said it made (302)
        self.first_slot: dict[int, int] = {}  # customer -> the slot their booking was on before it moved

    # -- bookkeeping --------------------------------------------------------------------------

    def note(self, line: str) -> None:
        with self.lock:
            self.trace.append(f"{self.step_no:>3} {line}")

    def violation(self, text: str) -> None:
        with self.lock:
            self.violations.append(f"[step {self.step_no}] {text}")

    def count(self, name: str, n: int = 1) -> None:
        with self.lock:
            setattr(self.totals, name, getattr(self.totals, name) + n)

    def answered(self, what: str, response, *, webhook: bool = False) -> None:
        body = response.content.decode(errors="replace")
        if response.status_code >= 500 and not (webhook and response.status_code == 500 and body == RETRY_ANSWER):
            self.violation(f"{what} answered {response.status_code}: {body[:200]}")

    # -- the scenario -------------------------------------------------------------------------

    def play(self) -> None:
        policy, free_hours, keep = self.scenario.policy
        # One listing per merchant selling here (B's only with Connect), the same tour at the same price.
        listings = {
            letter: Listing.objects.create(
                merchant=self.world.merchants[letter], title=TITLE, slug=f"sim-{self.scenario.seed}-{letter.lower()}",
                price_amount=PRICE, currency="eur", cancel_policy=policy, cancel_free_hours=free_hours,
                cancel_late_keep_percent=keep,
            )
            for letter in sorted({self.scenario.merchant_of_slot(n) for n in range(len(self.scenario.capacities))})
        }
        from django.utils import timezone

        now, taken = timezone.now(), set()
        for n, capacity in enumerate(self.scenario.capacities):
            starts = slot_start(self.scenario.zone, self.scenario.slot_times[n], n, now)
            while starts in taken:  # two times planned at the same moment: the second an hour on
                starts += dt.timedelta(hours=1)
            taken.add(starts)
            self.note(f"slot {n} starts {told.wall_clock(starts, self.scenario.zone)[0]} {self.scenario.zone} "
                      f"({starts:%Y-%m-%d %H:%M} UTC)")
            self.slots.append(Slot.objects.create(listing=listings[self.scenario.merchant_of_slot(n)],
                                                  starts_at=starts, capacity=capacity, seats_left=capacity))
        if self.scenario.spare_slot is not None:
            # A time nobody buys at first, for customers to move their bookings to.
            n, capacity = len(self.slots), self.scenario.spare_capacity
            starts = slot_start(self.scenario.zone, self.scenario.spare_slot, n, now)
            while starts in taken:
                starts += dt.timedelta(hours=1)
            self.note(f"spare slot {n} starts {told.wall_clock(starts, self.scenario.zone)[0]} {self.scenario.zone}")
            self.slots.append(Slot.objects.create(listing=listings[self.scenario.merchant_of_slot(n)],
                                                  starts_at=starts, capacity=capacity, seats_left=capacity))
        self.slot_merchant = {slot.pk: self.scenario.merchant_of_slot(n) for n, slot in enumerate(self.slots)}
        if any(c.method == "free" for c in self.scenario.customers):
            api = stripe_api.stripe_client()
            coupon = api.v1.coupons.create(params={"percent_off": 100, "duration": "once"})
            api.v1.promotion_codes.create(params={"coupon": coupon.id, "code": "FREEBIE"})
        for step in self.scenario.steps:
            self.step_no += 1
            self.idle = 0
            self.run_step(step)
            if self.idle < len(step):  # a step where nothing happened changes nothing to check
                self.check_step("during the run")
        self.step_no += 1
        self.settle()
        started = time.perf_counter()
        self.check_invariants()
        self.count_holds()
        self.count_waitlist()
        self.check_seconds += time.perf_counter() - started

    def accounts(self) -> list[str]:
        """The Stripe accounts money of this scenario may be on: the platform's own (""), and
        with Connect the merchants' connected accounts."""
        if not self.scenario.connect:
            return [""]
        return ["", *self.world.connected_accounts()]

    def check_step(self, when: str) -> None:
        started = time.perf_counter()
        if self.scenario.connect:
            self.stripe_events(fresh=True)  # once for both checks reading them
        rows = self.rows()
        self.check_seats(when, rows)
        self.check_holds(when, rows)
        self.check_waitlist(when, rows)
        if self.scenario.connect:
            self.check_connect(when, rows=rows)
        self.check_seconds += time.perf_counter() - started

    def row_querysets(self) -> list:
        querysets = [
            Slot.objects.filter(pk__in=[slot.pk for slot in self.slots]).values(
                "pk", "capacity", "seats_left", "seats_held", "is_on_sale", "cancelled_at", "starts_at",
                "listing__is_active"),
            Hold.objects.filter(slot__in=self.slots).values(
                "pk", "slot_id", "booking_id", "kind", "quantity", "expires_at", "ended_at", "end"),
            Booking.objects.filter(slot__in=self.slots).values(
                "pk", "slot_id", "status", "quantity", "customer_email", "checkout_session_id", "ended_reason"),
        ]
        if self.waitlist_used:
            querysets.append(WaitlistEntry.objects.filter(slot__in=self.slots).values(
                "pk", "slot_id", "customer_email", "status", "quantity", "offer_hold_id", "offer_email_sent_at",
                "joined_email_sent_at", "booking_id"))
        return querysets

    def rows(self) -> Rows:
        """The rows every check after a step reads: a query per model, in one round trip."""
        key = (self.waitlist_used, len(self.slots))
        if key not in self._readers:
            self._readers[key] = ReadTogether(self.row_querysets())
        return Rows(*self._readers[key]())

    # Time passing is not an actor racing the customers: a wait planned in a step runs after the
    # step's other operations, so the scheduled reconcile it runs (within a minute of "now", and
    # after each hold's end) sees what they did, as production's every-minute beat would. Raced
    # with a payment, a wait could tick before the payment and then move the clock ten minutes
    # with nobody looking (the long run of 2026-12-03, seed 102759).
    TIME_PASSING = ("wait", "wait_in_line")

    def run_step(self, step) -> None:
        actions = [op for op in step if op[0] not in self.TIME_PASSING]
        waits = [op for op in step if op[0] in self.TIME_PASSING]
        calls = [self.operation(op) for op in actions]
        if len(calls) == 1 or not self.world.threads:
            for call in calls:
                call()
        elif calls:
            self.race(calls)
        for op in waits:
            self.operation(op)()

    def race(self, functions) -> list:
        results = self.world.race(functions)
        for result in results:
            if isinstance(result, BaseException):
                self.violation("".join(traceback.format_exception(result))[-1500:])
        return results

    def operation(self, op):
        kind, *args = op

        def call():
            started = time.perf_counter()
            try:
                return getattr(self, f"op_{kind}")(*args)
            finally:
                self.op_seconds[kind] += time.perf_counter() - started

        return call

    def stripe_events(self, *, fresh: bool = False) -> list[dict]:
        """The emulator's events, oldest first, read once per step (events only come from steps)
        unless `fresh`; only those made since the last one read are fetched."""
        with self.lock:
            if fresh or self._events_step != self.step_no:
                self._events_step = self.step_no
                if not self._events:  # all there are, newest first
                    limit = EVENTS_PAGE
                    while len(newest_first := self.control.events(limit=limit)) == limit < 10_000:
                        limit *= 10
                    self._events = newest_first[::-1]
                    return self._events
                while True:
                    page = self.control.events(after=self._events[-1]["id"], limit=EVENTS_PAGE)
                    self._events += page
                    if len(page) < EVENTS_PAGE:
                        break
            return self._events

    # -- operations -----------------------------------------------------------------------------

    def client(self, c: Customer) -> Client:
        return self.world.client(REMOTE_ADDR=f"10.0.{c.index}.1")

    def booking(self, c: Customer) -> Booking | None:
        return Booking.objects.filter(customer_email=c.email).first()

    def merchant_of(self, booking: Booking) -> Merchant:
        """The merchant whose time was booked (a move stays within the listing, so the merchant)."""
        return self.world.merchants[self.slot_merchant[booking.slot_id]]

    def on_account_of(self, c: Customer) -> dict:
        """The SDK's options reading the customer's objects where they live: on the connected
        account of the merchant of the slot they buy (Connect), else on the platform's own."""
        if not self.scenario.connect:
            return {}
        return {"stripe_account": self.world.account_of(self.scenario.merchant_of_slot(c.slot))}

    def op_noop(self) -> None:
        pass

    def op_open(self, index: int) -> None:
        c = self.customers[index]
        slot = self.slots[c.slot]
        response = self.client(c).post(
            reverse("shop:checkout_create", args=[slot.listing.slug]),
            {"slot": slot.pk, "quantity": c.quantity, "customer_email": c.email, "customer_name": c.name},
        )
        self.answered(f"{c.name}'s checkout", response)
        booking = self.booking(c)
        if response.status_code == 303 and booking and booking.checkout_session_id:
            with self.lock:
                self.sessions[index] = booking.checkout_session_id
            self.note(f"{c.name} starts checkout for {c.quantity} seat(s): booking {booking.pk}")
        else:
            if response.status_code == 409:
                with self.lock:
                    self.told_sold_out.add(index)
            self.note(f"{c.name} cannot start checkout ({response.status_code})")

    def op_pay(self, index: int, method: str) -> None:
        c = self.customers[index]
        session_id = self.sessions.get(index)
        if not session_id:
            return
        kwargs: dict = {}
        if method == "free":
            kwargs = {"promotion_code": "FREEBIE"}
        else:
            kwargs = {"card": CARDS[method]}
            if method.startswith("three_d_secure"):
                kwargs["three_d_secure"] = "fail" if method.endswith("fail") else "complete"
        try:
            session = self.control.pay_session(session_id, **kwargs)
        except PaymentDeclined as error:
            self.note(f"{c.name} pays ({method}): declined ({error.error.get('code')})")
            return
        except ControlError as error:
            self.count("payments_refused")
            self.note(f"{c.name} pays ({method}): refused by Checkout ({error})")
            return
        self.note(f"{c.name} pays ({method}): {session.get('payment_status')} {session.get('amount_total')}")

    def op_poll(self, index: int, tabs: int) -> None:
        c = self.customers[index]
        session_id = self.sessions.get(index)
        if not session_id:
            return
        url = reverse("shop:checkout_status", args=[session_id])

        def one_tab():
            response = self.client(c).get(url, headers={"HX-Request": "true"})
            self.count("polls")
            self.answered(f"{c.name}'s status poll", response)
            return response.status_code

        if tabs == 1 or not self.world.threads:
            answers = [one_tab() for _ in range(tabs)]
        else:
            answers = self.race([one_tab] * tabs)
        self.note(f"{c.name} polls from {tabs} tab(s): {answers}")

    def events_of(self, c: Customer, kind: str) -> list[dict]:
        """The customer's events of one kind (checkout or refund) the site subscribes to, oldest first."""
        session_id = self.sessions.get(c.index)
        if not session_id:
            return []
        booking = self.booking(c)
        payment_intent = booking.payment_intent_id if booking else ""
        mine = []
        for event in self.stripe_events():
            obj = event["data"]["object"]
            if event["type"] not in HANDLED_EVENTS:
                continue
            if kind == "checkout" and event["type"] in CHECKOUT_EVENTS and obj.get("id") == session_id:
                mine.append(event)
            elif (kind == "refund" and event["type"] not in CHECKOUT_EVENTS and payment_intent
                  and stripe_api.id_of(obj.get("payment_intent")) == payment_intent):
                mine.append(event)
        return mine

    def post_event(self, event: dict) -> int:
        """Deliver an event where Stripe sends it: a connected account's (`account` set) to the
        Connect endpoint signed with its secret, the platform's to the platform endpoint."""
        payload = json.dumps(event).encode()
        connect = bool(event.get("account"))
        response = self.world.client().post(
            reverse("payments:stripe_connect_webhook" if connect else "payments:stripe_webhook"),
            data=payload,
            content_type="application/json",
            HTTP_STRIPE_SIGNATURE=stripe_signature(payload, self.world.connect_secret if connect else self.world.secret),
        )
        self.count("webhooks")
        self.answered(f"webhook {event['type']} {event['id']}", response, webhook=True)
        return response.status_code

    def op_deliver(self, index: int, copies: int, reverse_order: bool, kind: str) -> None:
        c = self.customers[index]
        with self.lock:
            events = [e for e in self.events_of(c, kind) if e["id"] not in self.delivered]
            self.delivered.update(e["id"] for e in events)
        if reverse_order:
            events.reverse()
        answers = []
        for event in events:
            if copies == 1 or not self.world.threads:
                codes = [self.post_event(event) for _ in range(copies)]
            else:
                codes = self.race([lambda e=event: self.post_event(e)] * copies)
            answers.append(f"{event['type']}={'/'.join(map(str, codes))}")
            # A webhook answered 500 is sent again by Stripe.
            while 500 in codes and len(answers) < 50:
                codes = [self.post_event(event)]
                answers.append(f"{event['type']} again={codes[0]}")
        how = f"{'twice, concurrently' if copies == 2 else 'once'}{', in reverse order' if reverse_order else ''}"
        self.note(f"{c.name}'s {kind} webhooks delivered {how}: {answers or 'none yet'}")

    def op_expire(self, index: int) -> None:
        c = self.customers[index]
        session_id = self.sessions.get(index)
        if not session_id:
            return
        try:
            self.control.expire_session(session_id)
            self.note(f"{c.name}'s session expires")
        except ControlError:
            self.note(f"{c.name}'s session is no longer open")

    def op_cancel(self, index: int) -> None:
        """The customer leaves Checkout by its cancel link: back on the listing, whose page
        expires the session at Stripe and releases the seats (or, paid after all, sends them to
        their booking)."""
        c = self.customers[index]
        session_id = self.sessions.get(index)
        if not session_id:
            return
        session = stripe_api.stripe_client().v1.checkout.sessions.retrieve(session_id, options=self.on_account_of(c))
        cancel_url = urlsplit(session.cancel_url)
        response = self.client(c).get(f"{cancel_url.path}?{cancel_url.query}")
        self.count("cancels")
        self.answered(f"{c.name}'s return from a cancelled Checkout", response)
        booking = self.booking(c)
        where = response.headers.get("Location", "the listing") if response.status_code in (302, 303) else "the listing"
        self.note(f"{c.name} cancels on Checkout ({response.status_code}, to {where}): booking now {booking.status}")
        if response.status_code == 200 and booking.status == BookingStatus.PENDING:
            self.violation(f"{c.name} was told the checkout is cancelled, yet their booking is still pending")

    def op_join(self, index: int, htmx: bool) -> None:
        """A customer told the time is sold out joins its waitlist, on the join view (the listing's
        htmx form, or its page without JavaScript), for the seats they wanted."""
        c = self.customers[index]
        if index not in self.told_sold_out or index in self.sessions:
            self.nothing_done()
            return
        slot = self.slots[c.slot]
        self.waitlist_used = True
        response = self.client(c).post(
            reverse("shop:waitlist_join", args=[slot.listing.slug]),
            {"slot": slot.pk, "quantity": c.quantity, "customer_email": c.email, "customer_name": c.name},
            headers={"HX-Request": "true"} if htmx else {},
        )
        self.answered(f"{c.name}'s joining the waitlist", response)
        if response.status_code == 201:
            self.count("waitlist_joins")
        entry = WaitlistEntry.objects.filter(customer_email=c.email).first()
        self.note(f"{c.name} joins the waitlist for {c.quantity} seat(s){' (htmx)' if htmx else ''}: "
                  f"{response.status_code}, entry {entry.status if entry else 'none'}")

    def mailed_link(self, c: Customer, subject: str, name: str) -> str | None:
        """The path of the `name` link (waitlist_offer, waitlist_leave) in the newest e-mail to
        the customer with this subject, as the customer would click it."""
        messages = [m for m in list(mail.outbox) if m.to == [c.email] and m.subject == subject]
        if not messages:
            return None
        prefix = reverse(f"shop:{name}", args=["T"])[:-2]
        found = re.search(re.escape(prefix) + r"[^\s/]+/", messages[-1].body)
        return found.group(0) if found else None

    def op_offer(self, index: int, action: str) -> None:
        """A waitlist customer acts on the offer e-mail: opens its link and starts checkout from
        the offer page (then pays, or walks away from Checkout), or leaves the waitlist by its
        leave link (confirming on the page). Nothing when no offer e-mail has come."""
        c = self.customers[index]
        offer_url = self.mailed_link(c, OFFER_SUBJECT, "waitlist_offer")
        if offer_url is None:
            self.nothing_done()
            return
        client = self.client(c)
        if action == "leave":
            leave_url = self.mailed_link(c, OFFER_SUBJECT, "waitlist_leave")
            if leave_url is None:
                self.violation(f"{c.name}'s offer e-mail has no link to leave the waitlist")
                return
            asked = client.get(leave_url)
            self.answered(f"{c.name}'s leave page", asked)
            response = client.post(leave_url)
            self.answered(f"{c.name}'s leaving the waitlist", response)
            entry = WaitlistEntry.objects.filter(customer_email=c.email).first()
            self.note(f"{c.name} leaves the waitlist ({asked.status_code}/{response.status_code}): entry {entry.status}")
            return
        page = client.get(offer_url)
        self.count("offer_links_opened")
        self.answered(f"{c.name}'s offer page", page)
        if page.status_code != 200:
            self.note(f"{c.name} opens the offer link: {page.status_code}")
            return
        response = client.post(offer_url, {"customer_name": c.name})
        self.answered(f"{c.name}'s checkout from the offer", response)
        booking = Booking.objects.filter(customer_email=c.email).order_by("-pk").first()
        if response.status_code != 303 or booking is None or not booking.checkout_session_id:
            self.note(f"{c.name} starts checkout from the offer: {response.status_code}")
            return
        with self.lock:
            self.sessions[index] = booking.checkout_session_id
        self.note(f"{c.name} starts checkout from the offer: booking {booking.pk}")
        if action == "pay":
            self.op_pay(index, c.method if c.method in CARDS or c.method == "free" else "pay")

    def op_capacity(self, slot_index: int, more: int) -> None:
        """The merchant adds seats to a time, on the slots table (htmx)."""
        slot = Slot.objects.get(pk=self.slots[slot_index].pk)
        response = self.world.merchant_clients[self.slot_merchant[slot.pk]].post(
            reverse("merchant:slot_capacity", args=[slot.pk]), {"capacity": slot.capacity + more},
            headers={"HX-Request": "true"},
        )
        self.answered(f"adding seats to slot {slot_index}", response)
        slot.refresh_from_db()
        if response.status_code == 200:
            self.count("capacity_increases")
        self.note(f"merchant adds {more} seat(s) to slot {slot_index} ({response.status_code}): "
                  f"capacity {slot.capacity}, {slot.seats_left} free")

    # -- customers' own changes (my bookings) ----------------------------------------------------

    def signed_in(self, c: Customer) -> Client | None:
        """A client of the customer's with their e-mail proven as a customer does it: the link
        asked for on the site, read from the outbox, opened and used (once per customer)."""
        client = self.client(c)
        with self.signin_locks[c.index]:
            if c.index not in self.signins:
                asked = client.post(reverse("shop:receipts_link"), {"email": c.email, "next": ""})
                self.answered(f"{c.name}'s asking for a sign-in link", asked)
                sent = [m for m in list(mail.outbox) if m.to == [c.email] and m.subject == SIGNIN_SUBJECT]
                found = SIGNIN_TOKEN.search(sent[-1].body) if sent else None
                if found is None:
                    self.violation(f"{c.name} asked for a sign-in link ({asked.status_code}) and got none")
                    return None
                token = found.group(1)
                opened = client.get(reverse("shop:receipts_signin"), {"token": token})
                used = client.post(reverse("shop:receipts_signin"), {"token": token})
                self.answered(f"{c.name}'s signing in", used)
                if used.status_code != 302:
                    self.violation(f"{c.name}'s sign-in link did not sign them in ({opened.status_code}/{used.status_code})")
                    return None
                self.signins[c.index] = client.cookies[settings.SESSION_COOKIE_NAME].value
            client.cookies[settings.SESSION_COOKIE_NAME] = self.signins[c.index]
        return client

    def confirmed_booking(self, c: Customer) -> Booking | None:
        return Booking.objects.filter(customer_email=c.email, status=BookingStatus.CONFIRMED).first()

    def op_self_cancel(self, index: int) -> None:
        """A confirmed customer cancels their booking on its cancel page: reads what they get back,
        and confirms it with the page's button (the amount they were shown goes with it)."""
        c = self.customers[index]
        booking = self.confirmed_booking(c)
        if booking is None:
            self.nothing_done()
            return
        client = self.signed_in(c)
        if client is None:
            return
        url = reverse("shop:booking_cancel", args=[booking.public_token])
        page = client.get(url)
        self.answered(f"{c.name}'s cancel page", page)
        shown = EXPECTED_REFUND.search(page.content.decode()) if page.status_code == 200 else None
        if self.scenario.policy[0] == "none" and page.status_code == 200:
            self.violation(f"{c.name} is offered to cancel a booking sold without self-service")
        if shown is None:
            self.count("changes_refused")
            self.note(f"{c.name} opens the cancel page: {page.status_code}, no button: {told.readable(page.content.decode())[-900:]}")
            return
        response = client.post(url, {"expected_refund": shown.group(1)})
        self.answered(f"{c.name}'s cancellation", response)
        booking.refresh_from_db()
        if response.status_code == 302:
            self.count("customer_cancels")
            quoted = int(shown.group(1))
            if quoted < booking.amount_paid:
                self.count("late_cancels")
        else:
            self.count("changes_refused")
        self.note(f"{c.name} cancels their booking, shown {shown.group(1)} back ({response.status_code}): "
                  f"booking now {booking.status}")

    def op_reschedule(self, index: int) -> None:
        """A confirmed customer moves their booking to another time of the same listing, on its
        reschedule page."""
        c = self.customers[index]
        booking = self.confirmed_booking(c)
        if booking is None:
            self.nothing_done()
            return
        client = self.signed_in(c)
        if client is None:
            return
        url = reverse("shop:booking_reschedule", args=[booking.public_token])
        page = client.get(url)
        self.answered(f"{c.name}'s reschedule page", page)
        others = [slot for slot in self.slots if slot.pk != booking.slot_id]
        to = others[-1]
        response = client.post(url, {"slot": to.pk})
        self.answered(f"{c.name}'s move", response)
        if response.status_code == 302:
            with self.lock:
                self.moves[index] += 1
                self.first_slot.setdefault(index, booking.slot_id)
            self.count("reschedules")
        else:
            self.count("changes_refused")
        self.note(f"{c.name} moves their booking to slot {self.slots.index(to)} "
                  f"({page.status_code}/{response.status_code})")

    def nothing_done(self) -> None:
        with self.lock:
            self.idle += 1

    def op_wait_in_line(self, index: int, seconds: int, beat_delay: int) -> None:
        """Time passes while the customer waits in line (a wait, if they did join)."""
        if not WaitlistEntry.objects.filter(customer_email=self.customers[index].email).exists():
            self.nothing_done()
            return
        self.op_wait(seconds, beat_delay)

    def op_wait(self, seconds: int, beat_delay: int) -> None:
        """Time passes, `seconds` on both clocks, with the scheduled work running as it does in
        production: `reconcile` within a minute (`beat_delay` s) after now, and within a minute
        after each hold's end (the session expires at Stripe at that moment). Nothing changes
        between those runs except Stripe's own timers, so the minutes in between are skipped."""
        clock = self.world.clock
        target = clock.now() + dt.timedelta(seconds=seconds)
        self.count("waits")
        self.note(f"-- {seconds} s pass --")
        seen_through = self.beat_tick(beat_delay)
        while True:
            # Due: a hold ending after the last reconcile looked, even one that ended while that
            # reconcile ran (its end is then already past, and the next run is still a minute away).
            due = (Hold.objects.filter(slot__in=self.slots, ended_at__isnull=True, expires_at__gt=seen_through,
                                       expires_at__lte=target)
                   .order_by("expires_at").values_list("expires_at", flat=True).first())
            if due is None:
                break
            clock.advance(max((due - clock.now()).total_seconds(), 0))
            self.note(f"a hold's time is up ({told.wall_clock(due, 'UTC')[1]} UTC)")
            seen_through = self.beat_tick(beat_delay)
        remaining = (target - clock.now()).total_seconds()
        if remaining > 0:
            clock.advance(remaining)

    def beat_tick(self, delay: int) -> dt.datetime:
        """The scheduled `reconcile`, `delay` seconds (under a minute) from now. Returns the time
        it started at: every hold that had ended by then, it saw."""
        self.world.clock.advance(delay)
        self.count("beat_ticks")
        started = self.world.clock.now()
        self.op_reconcile()
        return started

    def op_reconcile(self) -> None:
        out, err = io.StringIO(), io.StringIO()
        call_command("reconcile", stdout=out, stderr=err)
        self.count("reconciles")
        summary = "; ".join(line for line in out.getvalue().splitlines() if not line.rstrip().endswith(": 0"))
        self.note(f"reconcile: {summary or 'nothing to do'}{' | ' + err.getvalue().strip() if err.getvalue() else ''}")

    def op_fail_refunds(self, count: int, mode: str) -> None:
        self.control.fail_refunds(count, mode=mode, seconds=0.01 if mode == "timeout" else None)
        self.note(f"Stripe's refunds fail ({mode}) for the next {count} attempt(s)")

    def op_merchant_refund(self, index: int, part: int | None = None) -> None:
        c = self.customers[index]
        booking = self.booking(c)
        if booking is None:
            return
        outstanding = max(booking.amount_paid - booking.amount_refunded, 1)
        amount = str(from_minor_units(min(part, outstanding) if part else outstanding, "eur"))
        response = self.world.merchant_clients[self.slot_merchant[booking.slot_id]].post(
            reverse("merchant:booking_refund", args=[booking.pk]), {"amount": amount}
        )
        self.answered(f"merchant refund of {c.name}", response)
        booking.refresh_from_db()
        self.note(f"merchant refunds {amount} to {c.name} ({response.status_code}): booking now {booking.status}")

    def op_cancel_slot(self, slot_index: int) -> None:
        slot = self.slots[slot_index]
        response = self.world.merchant_clients[self.slot_merchant[slot.pk]].post(
            reverse("merchant:slot_cancel", args=[slot.pk]))
        self.answered(f"cancelling slot {slot_index}", response)
        self.note(f"merchant cancels slot {slot_index} ({response.status_code})")

    # -- settling -------------------------------------------------------------------------------

    def settle(self) -> None:
        """Time passes: open sessions expire, late webhooks arrive (lost ones never), refunds
        that fail later fail, and `reconcile` runs as scheduled until nothing is left to do,
        then once more after the refunds it made have had time to fail."""
        self.note("-- settling --")
        for index in sorted(self.sessions):
            try:
                self.control.expire_session(self.sessions[index])
            except ControlError:
                pass
        # An hour passes, the scheduled reconcile running within its first minute.
        self.operation(("wait", 3600, 30))()
        self.check_step("while settling")
        self.step_no += 1
        for c in self.scenario.customers:
            if c.checkout_webhooks != "never":
                self.operation(("deliver", c.index, 1, False, "checkout"))()
        for _ in range(6):
            self.operation(("reconcile",))()
            if not self.work_left():
                break
        self.check_step("while settling")
        # Refunds made while settling fail later too: let that time pass before the last look.
        self.world.clock.advance(3600)
        self.step_no += 1
        for c in self.scenario.customers:
            if c.refund_webhooks != "never":
                self.operation(("deliver", c.index, 1, False, "refund"))()
        self.operation(("reconcile",))()

    def work_left(self) -> bool:
        return (
            Booking.objects.filter(status__in=[BookingStatus.PENDING, BookingStatus.REFUND_DUE]).exists()
            or Refund.objects.filter(status=RefundStatus.REQUESTED).exists()
            or StripeEvent.objects.filter(status=StripeEvent.Status.FAILED).exists()
        )

    # -- invariants -----------------------------------------------------------------------------

    def check_seats(self, when: str, rows: Rows | None = None) -> None:
        """Held + sold never exceed the capacity, counted from the rows themselves (open `Hold`
        rows, confirmed bookings); and the slot's own columns agree: `seats_held` is the sum of
        its open holds, capacity - free - held the seats of its confirmed bookings."""
        rows = rows or self.rows()
        sold, open_holds = Counter(), Counter()
        for booking in rows.bookings:
            if booking["status"] == BookingStatus.CONFIRMED:
                sold[booking["slot_id"]] += booking["quantity"]
        for hold in rows.open_holds():
            open_holds[hold["slot_id"]] += hold["quantity"]
        numbers = {slot.pk: n for n, slot in enumerate(self.slots)}
        for slot in rows.slots:
            n, capacity, seats_left, seats_held = numbers[slot["pk"]], slot["capacity"], slot["seats_left"], slot["seats_held"]
            held, slot_sold = open_holds[slot["pk"]], sold[slot["pk"]]
            if held + slot_sold > capacity:
                self.violation(f"{when}: slot {n} has {held} seats held + {slot_sold} sold > {capacity}")
            if not 0 <= seats_left <= capacity:
                self.violation(f"{when}: slot {n} has {seats_left} seats left of {capacity}")
            if seats_held != held:
                self.violation(f"{when}: slot {n} counts {seats_held} seats held, its open holds {held}")
            if capacity - seats_left - seats_held != slot_sold:
                self.violation(
                    f"{when}: slot {n} sold {capacity - seats_left - seats_held} seats, "
                    f"confirmed bookings hold {slot_sold}"
                )

    def session_ends(self, *, fresh: bool = True) -> dict[str, tuple[str, dt.datetime]]:
        """When each Checkout Session stopped being open, at Stripe (its completed or expired
        event's time on the emulator's clock, the same instant on the site's)."""
        ends = {}
        for event in self.stripe_events(fresh=fresh):
            if event["type"] in ("checkout.session.completed", "checkout.session.expired"):
                at = dt.datetime.fromtimestamp(event["created"], dt.UTC)
                ends.setdefault(event["data"]["object"]["id"], (event["type"].rsplit(".", 1)[1], at))
        return ends

    def expected_fee(self, amount: int) -> int:
        """The platform's fee on a payment of `amount` by the scenario's fee settings: the percent
        of it rounded half up to a whole cent, plus the fixed part, never more than the payment."""
        if amount <= 0:
            return 0
        percent, fixed = self.scenario.fee
        share = (Decimal(amount) * Decimal(percent) / 100).quantize(Decimal(1), rounding=ROUND_HALF_UP)
        return min(amount, int(share) + fixed)

    def connect_facts_from_events(self) -> ConnectFacts:
        """What Stripe has of this scenario's money, from its events (each names the account its
        object lives on; the newest event of an object has its state): read after every step at
        the cost of the events already fetched."""
        events = self.stripe_events()
        facts = self._connect_facts
        for event in events[self._connect_cursor:]:
            kind, obj, account = event["type"], event["data"]["object"], event.get("account") or ""
            if kind.startswith("checkout.session."):
                facts.sessions[obj["id"]] = (account, obj)
            elif kind.startswith("application_fee.") and obj.get("object") == "application_fee":
                facts.fees[obj["id"]] = obj
            elif kind == "charge.succeeded":
                facts.intent_of_charge[obj["id"]] = stripe_api.id_of(obj.get("payment_intent"))
            elif kind.startswith("refund.") or kind == "charge.refund.updated":
                facts.refunds[obj["id"]] = (account, obj)  # first seen first: oldest first
        self._connect_cursor = len(events)
        return facts

    def connect_facts_listed(self, listed: dict[str, tuple[list, list]]) -> ConnectFacts:
        """The same facts listed from Stripe's API on each account (the platform's and both
        merchants': `listed`, their sessions and refunds, newest first), as a platform reads
        them: the last word once everything has settled."""
        api = stripe_api.stripe_client()
        facts = ConnectFacts()
        for account, (sessions, refunds) in listed.items():
            for session in sessions:
                facts.sessions[session.id] = (account, session.to_dict())
            for refund in reversed(refunds):
                facts.refunds[refund.id] = (account, refund.to_dict())
        for fee in api.v1.application_fees.list(params={"limit": 100}).auto_paging_iter():
            facts.fees[fee.id] = fee.to_dict()
        facts.intent_of_charge = dict(self._connect_facts.intent_of_charge)
        return facts

    def check_connect(self, when: str, *, listed: dict[str, tuple[list, list]] | None = None,
                      rows: Rows | None = None) -> None:
        """With Connect, as Stripe has it: every Checkout Session (so every payment) of a booking
        is on the connected account of the merchant whose time was booked, never on the
        platform's own account nor on the other merchant's; every paid session carries one
        application fee, on that account's charge, of the amount the fee settings give for it
        (never more than the payment); a fee is given back only with a refund whose reason
        CONNECT_REFUND_FEE_REASONS lists, and by Stripe's share when one is made; the platform's
        own account takes no payment and makes no refund, so its money is the fees alone. After
        every step from Stripe's events; once settled (`listed`), from its API."""
        settled = listed is not None
        facts = self.connect_facts_listed(listed) if settled else self.connect_facts_from_events()
        api = stripe_api.stripe_client()
        bookings = [b for b in (rows or self.rows()).bookings if b["checkout_session_id"] != ""]
        names = {c.email: c.name for c in self.scenario.customers}
        account_of = {letter: self.world.account_of(letter) for letter in ("A", "B")}
        where = {account: f"merchant {letter}'s account" for letter, account in account_of.items()}
        where[""] = "the platform's own account"
        paid: dict[str, tuple[str, str, dict]] = {}  # payment intent -> (who, merchant, session)
        for b in bookings:
            who = f"{names.get(b['customer_email'], b['customer_email'])} (booking {b['pk']})"
            letter = self.slot_merchant[b["slot_id"]]
            account, session = facts.sessions.get(b["checkout_session_id"], (None, None))
            if session is None:
                if settled:
                    self.violation(f"{when}: {who}'s Checkout Session is on no account of this scenario")
                continue  # open and untouched: no event of it yet
            if account != account_of[letter]:
                self.violation(f"{when}: {who} booked merchant {letter}'s time and pays on {where.get(account, account)}")
            if session.get("payment_intent"):
                paid[stripe_api.id_of(session["payment_intent"])] = (who, letter, session)
        mine = {b["checkout_session_id"] for b in bookings}
        strays = [sid for sid, (account, _) in facts.sessions.items() if account == "" and sid not in mine]
        if strays:
            self.violation(f"{when}: the platform's own account holds {len(strays)} Checkout Session(s)")
        fees: dict[str, list] = {}
        for fee in facts.fees.values():
            intent = facts.intent_of_charge.get(fee["charge"])
            if intent is None:
                try:
                    charge = api.v1.charges.retrieve(fee["charge"], options={"stripe_account": fee["account"]})
                except stripe.InvalidRequestError:
                    self.violation(f"{when}: application fee {fee['id']} of {fee['amount']} is taken from "
                                   f"{where.get(fee['account'], fee['account'])}, which has no charge {fee['charge']}")
                    continue
                intent = facts.intent_of_charge[fee["charge"]] = stripe_api.id_of(charge.payment_intent)
            if intent not in paid:
                if settled:
                    self.violation(f"{when}: application fee {fee['id']} of {fee['amount']} on "
                                   f"{where.get(fee['account'], fee['account'])} is on no booking's payment")
                continue
            who, letter, session = paid[intent]
            fees.setdefault(intent, []).append(fee)
            if fee["account"] != account_of[letter]:
                self.violation(f"{when}: {who}'s fee is taken from {where.get(fee['account'], fee['account'])}, "
                               f"the time booked is merchant {letter}'s")
            expected = self.expected_fee(session["amount_total"])
            if fee["amount"] != expected or fee["amount"] > session["amount_total"]:
                self.violation(f"{when}: {who}'s fee is {fee['amount']} on {session['amount_total']} paid; a fee of "
                               f"{self.scenario.fee[0]}% + {self.scenario.fee[1]} is {expected}")
        refunds: dict[str, list] = {}
        for account, refund in facts.refunds.values():
            refunds.setdefault(stripe_api.id_of(refund.get("payment_intent")), []).append((account, refund))
        reasons = set(self.scenario.fee_refund_reasons)
        for intent, (who, letter, session) in paid.items():
            taken = fees.get(intent, [])
            charged = session["payment_status"] == "paid" and session["amount_total"] > 0
            wanted = 1 if charged and self.expected_fee(session["amount_total"]) else 0
            if len(taken) != wanted:
                self.violation(f"{when}: {who} paid {session['amount_total']} ({session['payment_status']}) "
                               f"with {len(taken)} application fee(s)")
            for account, refund in refunds.get(intent, []):
                if account != account_of[letter]:
                    self.violation(f"{when}: {who}'s refund of {refund['amount']} is made on {where.get(account, account)}")
            if taken:
                self.check_fee_refunds(when, who, taken[0], session["amount_total"],
                                       [refund for _, refund in refunds.get(intent, [])], reasons)
        platform_refunds = sum(1 for account, _ in facts.refunds.values() if account == "")
        if platform_refunds:
            self.violation(f"{when}: the platform's own account made {platform_refunds} refund(s)")
        if settled:
            self.count("connect_scenarios")
            self.count("application_fees", sum(len(taken) for taken in fees.values()))
            self.count("fees_given_back", sum(1 for taken in fees.values() for fee in taken if fee["amount_refunded"]))
            # Each payment, asked for by its id, is found only on its merchant's account.
            for intent, (who, letter, session) in paid.items():
                for account in where:
                    if account == account_of[letter]:
                        continue
                    try:
                        api.v1.payment_intents.retrieve(intent, options={"stripe_account": account} if account else {})
                    except stripe.InvalidRequestError:
                        continue
                    self.violation(f"{when}: {who}'s payment {intent} is also found on {where[account]}")

    def check_fee_refunds(self, when: str, who: str, fee: dict, paid: int, refunds: list[dict], reasons: set[str]) -> None:
        """The fee is given back only by refunds of a listed reason; when none of the payment's
        refunds failed (a failed one leaves Stripe's share of the next one moot), by Stripe's
        share of each: the fee x the refund / the payment (rounded down), all that is left of it
        once the payment is refunded in full."""
        back, amount = fee["amount_refunded"], fee["amount"]
        why = [(refund.get("metadata") or {}).get("reason", "?") for refund in refunds]
        if back > amount:
            self.violation(f"{when}: {who}'s fee {amount}: {back} given back")
        if back and not reasons.intersection(why):
            self.violation(f"{when}: {who}'s fee {amount}: {back} given back with refund(s) for "
                           f"{', '.join(why) or 'nothing'}, a reason CONNECT_REFUND_FEE_REASONS "
                           f"({', '.join(sorted(reasons)) or 'none'}) does not list")
            return
        if any(refund["status"] in ("failed", "canceled") for refund in refunds):
            return
        expected, left, refunded = 0, amount, 0
        for refund, reason in zip(refunds, why):
            refunded += refund["amount"]
            if reason in reasons:
                share = left if refunded >= paid else min(left, amount * refund["amount"] // paid)
                expected, left = expected + share, left - share
        if back != expected:
            made = ", ".join(f"{refund['amount']} ({reason})" for refund, reason in zip(refunds, why)) or "none"
            self.violation(f"{when}: {who}'s fee {amount}: {back} given back; refunds {made} of {paid} paid give "
                           f"back {expected} (CONNECT_REFUND_FEE_REASONS: {', '.join(sorted(reasons)) or 'none'})")

    def check_holds(self, when: str, rows: Rows | None = None) -> None:
        """Every hold ends within a minute of its session's end (the scheduled reconcile runs
        every minute); no customer who paid before their hold's end is refunded as sold out."""
        now = timezone.now()
        rows = rows or self.rows()
        open_holds = rows.open_holds()
        sold_out = [booking for booking in rows.bookings if booking["ended_reason"] == "sold_out"]
        if not open_holds and not sold_out:
            return
        ends = self.session_ends(fresh=not self.scenario.connect)
        names = {f"c{c.index}@sim.example": c.name for c in self.scenario.customers}
        bookings = {booking["pk"]: booking for booking in rows.bookings}
        for hold in open_holds:
            booking = bookings.get(hold["booking_id"])
            if booking is None:  # a waitlist offer: it ends at its own time, swept every minute
                late = (now - hold["expires_at"]).total_seconds()
                if late > HOLD_END_GRACE_SECONDS:
                    entry = WaitlistEntry.objects.filter(offer_hold=hold["pk"]).first()
                    self.violation(
                        f"{when}: {names.get(entry.customer_email if entry else '', '?')}'s waitlist offer of "
                        f"{hold['quantity']} seat(s) is still open {late:.0f} s after its end"
                    )
                continue
            end, ended_at = ends.get(booking["checkout_session_id"] or "", ("time up", hold["expires_at"]))
            if ended_at > hold["expires_at"]:
                end, ended_at = "time up", hold["expires_at"]
            late = (now - ended_at).total_seconds()
            if late > HOLD_END_GRACE_SECONDS:
                self.violation(
                    f"{when}: {names.get(booking['customer_email'], '?')}'s hold of {hold['quantity']} seat(s) is still "
                    f"open {late:.0f} s after its session ended ({end})"
                )
        hold_of_booking = rows.hold_of_booking()
        for booking in sold_out:
            hold = hold_of_booking.get(booking["pk"])
            end, paid_at = ends.get(booking["checkout_session_id"] or "", ("", None))
            if hold is not None and end == "completed" and paid_at < hold["expires_at"]:
                self.violation(
                    f"{when}: {names.get(booking['customer_email'], '?')} paid at {paid_at:%H:%M:%S}, within their hold "
                    f"(until {hold['expires_at']:%H:%M:%S}, ended {hold['end'] or 'never'}), and was refunded as sold out"
                )

    def check_waitlist(self, when: str, rows: Rows | None = None) -> None:
        """No seat offered to two people at once: every open offer hold is the offer of one
        customer in line, nobody holds two, and no seats are held by an offer and its checkout at
        once (held + sold <= capacity is check_seats'). Each offer e-mail is sent once (and every
        open offer's was sent). Nobody still waiting fits the seats free on a time on sale: freed
        seats are offered at once, in the transaction that freed them. (Entries are only made by
        the join view: before anyone asked to join, there is nothing to look at.)"""
        if not self.waitlist_used:
            return
        rows = rows or self.rows()
        entries = rows.entries
        offers = [(hold["pk"], hold["quantity"]) for hold in rows.open_holds() if hold["kind"] == HoldKind.OFFER]
        if not entries and not offers:
            return
        holds = {hold["pk"]: hold for hold in rows.holds}
        hold_of_booking = rows.hold_of_booking()
        names = {c.email: c.name for c in self.scenario.customers}
        numbers = {slot.pk: n for n, slot in enumerate(self.slots)}
        offered_to = {e["offer_hold_id"]: e for e in entries if e["offer_hold_id"]}
        for hold_id, quantity in offers:
            entry = offered_to.get(hold_id)
            if entry is None or entry["status"] != WaitlistStatus.OFFERED:
                who = names.get(entry["customer_email"], "?") if entry else "nobody"
                self.violation(f"{when}: an open offer of {quantity} seat(s) (hold {hold_id}) is held for {who} "
                               f"({entry['status'] if entry else 'no entry'}), not for a customer offered seats")
        open_offers = Counter()
        for e in entries:
            who = names.get(e["customer_email"], e["customer_email"])
            offer_open = e["offer_hold_id"] is not None and holds[e["offer_hold_id"]]["ended_at"] is None
            if offer_open:
                open_offers[(e["slot_id"], e["customer_email"])] += 1
            if e["status"] == WaitlistStatus.OFFERED and not offer_open:
                self.violation(f"{when}: {who} is told seats are offered, but the offer's hold has ended")
            checkout_hold = hold_of_booking.get(e["booking_id"]) if e["booking_id"] is not None else None
            if offer_open and checkout_hold is not None and checkout_hold["ended_at"] is None:
                self.violation(f"{when}: {who}'s {e['quantity']} seat(s) are held by their offer and by their "
                               "checkout at once")
        for (slot_id, email), n in open_offers.items():
            if n > 1:
                self.violation(f"{when}: {names.get(email, email)} holds {n} open offers on slot {numbers[slot_id]}")
        outbox = Counter((m.to[0], m.subject) for m in list(mail.outbox) if len(m.to) == 1)
        for email in {e["customer_email"] for e in entries}:
            mine = [e for e in entries if e["customer_email"] == email]
            who = names.get(email, email)
            sent = outbox[(email, OFFER_SUBJECT)]
            claimed = sum(1 for e in mine if e["offer_email_sent_at"])
            if sent != claimed:
                self.violation(f"{when}: {who} got {sent} offer e-mail(s) for {claimed} offer(s) sent")
            if any(e["status"] == WaitlistStatus.OFFERED and not e["offer_email_sent_at"] for e in mine):
                self.violation(f"{when}: {who} holds an offer whose e-mail was never sent")
            joined = outbox[(email, JOINED_SUBJECT)]
            if joined != sum(1 for e in mine if e["joined_email_sent_at"]) or joined > len(mine):
                self.violation(f"{when}: {who} got {joined} e-mail(s) confirming their place for {len(mine)} entry(ies)")
        waiting = [e for e in entries if e["status"] == WaitlistStatus.WAITING]
        if waiting:
            now = timezone.now()
            slots = {slot["pk"]: slot for slot in rows.slots}
            for e in waiting:
                slot = slots[e["slot_id"]]
                open_for_sale = (slot["is_on_sale"] and slot["cancelled_at"] is None and slot["listing__is_active"]
                                 and slot["starts_at"] > now)
                if open_for_sale and e["quantity"] <= slot["seats_left"]:
                    self.violation(f"{when}: {names.get(e['customer_email'], '?')} still waits for {e['quantity']} "
                                   f"seat(s) while slot {numbers[slot['pk']]} has {slot['seats_left']} free")

    def count_waitlist(self) -> None:
        entries = WaitlistEntry.objects.filter(slot__in=self.slots)
        self.count("offers_made", entries.filter(offered_at__isnull=False).count())
        statuses = Counter(entries.values_list("status", flat=True))
        self.count("offers_booked", statuses[WaitlistStatus.BOOKED])
        self.count("offers_lapsed", statuses[WaitlistStatus.LAPSED])
        self.count("offers_left", statuses[WaitlistStatus.LEFT])
        self.count("offer_emails", sum(1 for m in mail.outbox if m.subject == OFFER_SUBJECT))

    def count_holds(self) -> None:
        ends = Counter(Hold.objects.filter(slot__in=self.slots).values_list("end", flat=True))
        self.count("holds_taken", sum(ends.values()))
        for end in ("converted", "released", "lapsed"):
            self.count(f"holds_{end}", ends[end])
        late = Booking.objects.filter(slot__in=self.slots, confirmed_at__isnull=False, hold__isnull=False).exclude(
            hold__end=HoldEnd.CONVERTED
        )
        self.count("confirmed_after_hold_time", late.count())

    def check_invariants(self) -> None:
        self.check_seats("after settling")
        api = stripe_api.stripe_client()
        outbox = list(mail.outbox)
        sessions, refunds = {}, {}
        listed: dict[str, tuple[list, list]] = {}  # account -> its sessions and refunds (newest first)
        for account in self.accounts():
            options = {"stripe_account": account} if account else {}
            listed[account] = (list(api.v1.checkout.sessions.list(params={"limit": 100}, options=options).auto_paging_iter()),
                               list(api.v1.refunds.list(params={"limit": 100}, options=options).auto_paging_iter()))
            sessions.update({s.id: s for s in listed[account][0]})
            for refund in listed[account][1]:
                refunds.setdefault(refund.payment_intent, []).append(refund)
        if self.scenario.connect:
            self.check_connect("after settling", listed=listed)
        for c in self.scenario.customers:
            self.check_customer(c, sessions, refunds, outbox)
        if self.world.errors.records:
            for record in self.world.errors.records:
                self.violation(f"error logged: {record}")

    def check_customer(self, c: Customer, sessions: dict, refunds: dict, outbox) -> None:
        booking = self.booking(c)
        if booking is None:
            return
        who = f"{c.name} (booking {booking.pk}, {booking.status})"
        if booking.status == BookingStatus.PENDING:
            self.violation(f"{who} is still pending after its session expired and reconcile ran")
        hold = Hold.objects.filter(booking=booking).first()
        if hold is not None and hold.ended_at is None:
            self.violation(f"{who} still holds {hold.quantity} seat(s) after its session expired and reconcile ran")
        # Paid within its hold (the hold open or converted): its seats were kept, never sold out.
        if booking.ended_reason == "sold_out" and (hold is None or hold.end in ("", HoldEnd.CONVERTED)):
            self.violation(f"{who} paid within its hold and was refunded as sold out")
        subjects = Counter(m.subject for m in outbox if m.to == [c.email])
        confirmations = subjects[f"You're booked: {TITLE}"]
        if confirmations != (1 if booking.confirmed_at else 0):
            self.violation(f"{who} got {confirmations} confirmation e-mails")
        refunds_here = list(Refund.objects.filter(booking=booking))
        for reason, subject in (
            ("sold_out", f"Sorry, {TITLE} sold out: your payment is refunded"),
            ("slot_cancelled", f"{TITLE} is cancelled: your payment is refunded"),
        ):
            made = sum(1 for r in refunds_here if r.reason == reason and r.stripe_refund_id)
            if subjects[subject] != made:
                self.violation(f"{who} got {subjects[subject]} e-mails '{subject}' for {made} such refund(s)")
        failed_rows = [r for r in refunds_here if r.status == RefundStatus.FAILED]
        alerts = sum(1 for m in outbox if m.subject == f"Action needed: a refund failed for booking #{booking.pk}")
        if alerts != len(failed_rows):
            self.violation(f"{who}: {alerts} merchant alerts for {len(failed_rows)} failed refund(s)")
        # A refund made (and told, as counted above) that then failed is told to the customer too.
        failed_made = sum(1 for r in failed_rows if r.stripe_refund_id)
        if subjects[REFUND_FAILED_SUBJECT] != failed_made:
            self.violation(f"{who} got {subjects[REFUND_FAILED_SUBJECT]} e-mails '{REFUND_FAILED_SUBJECT}' "
                           f"for {failed_made} refund(s) made that failed")
        promised = self.check_changes(c, booking, refunds_here, outbox)
        self.check_told(c, booking, refunds_here, outbox)
        if not booking.checkout_session_id:
            return
        session = sessions[booking.checkout_session_id]
        stripe_refunds = refunds.get(session.payment_intent, []) if session.payment_intent else []
        self.count("refunds", len(stripe_refunds))
        metadata = [r.metadata.to_dict() if r.metadata else {} for r in stripe_refunds]
        per_reason = Counter((m.get("booking_id"), m.get("reason")) for m in metadata)
        for (booking_id, reason), n in per_reason.items():
            if n > 1:
                self.violation(f"{who}: {n} refunds at Stripe for booking {booking_id}, reason {reason}")
        refunded = sum(r.amount for r in stripe_refunds if r.status in ("succeeded", "pending"))
        failed = [r for r in stripe_refunds if r.status in ("failed", "canceled")]
        if refunded > (session.amount_total or 0):
            self.violation(f"{who}: {refunded} refunded at Stripe of {session.amount_total} paid")
        if booking.amount_refunded != refunded:
            self.violation(f"{who}: the site counts {booking.amount_refunded} refunded, Stripe {refunded}")
        paid = session.status == "complete" and session.payment_status == "paid" and session.amount_total > 0
        free = session.status == "complete" and session.payment_status == "no_payment_required"
        if paid:
            if booking.amount_paid != session.amount_total:
                self.violation(f"{who}: paid {session.amount_total} at Stripe, the site says {booking.amount_paid}")
            if promised is not None:
                # The customer cancelled: what came back is what the policy promised, on top of
                # what the merchant had refunded (check_changes); kept in full, it ends cancelled.
                expected = promised + sum(r.amount for r in refunds_here if r.reason != CUSTOMER_CANCEL
                                          and r.status in (RefundStatus.SUCCEEDED, RefundStatus.PENDING))
                if booking.status == BookingStatus.CANCELLED and (promised or refunded != expected):
                    self.violation(f"{who}: cancelled by its customer with {refunded} refunded, promised {promised}")
                elif booking.status == BookingStatus.REFUNDED and refunded != expected:
                    self.violation(f"{who}: cancelled by its customer, {refunded} refunded at Stripe, expected {expected}")
                elif booking.status == BookingStatus.REFUND_FAILED and (refunded >= expected or not failed):
                    self.violation(f"{who}: cancelled by its customer, refund_failed with {refunded} of {expected} "
                                   f"refunded at Stripe and {len(failed)} failed there")
                elif booking.status not in (BookingStatus.CANCELLED, BookingStatus.REFUNDED, BookingStatus.REFUND_FAILED):
                    self.violation(f"{who}: cancelled by its customer, yet {booking.status}")
            elif booking.status == BookingStatus.CONFIRMED:
                # Only the merchant's refund of a part leaves a booking standing.
                if refunded and (refunded >= session.amount_total
                                 or any(m.get("reason") != "merchant" for m in metadata)):
                    self.violation(f"{who}: confirmed AND refunded {refunded}")
            elif booking.status == BookingStatus.REFUNDED:
                if refunded != session.amount_total:
                    self.violation(f"{who}: refunded {refunded} of {session.amount_total} paid")
            elif booking.status == BookingStatus.REFUND_FAILED:
                if refunded or not failed or c.method != "refund_fails_later":
                    self.violation(f"{who}: refund failed without a failed refund at Stripe ({refunded} refunded)")
            else:
                self.violation(f"{who}: paid {session.amount_total} but neither confirmed nor refunded")
        elif free:
            if booking.status not in (BookingStatus.CONFIRMED, BookingStatus.CANCELLED) or stripe_refunds:
                self.violation(f"{who}: a free order ended {booking.status} with {len(stripe_refunds)} refunds")
        else:
            if booking.status != BookingStatus.EXPIRED or stripe_refunds:
                self.violation(f"{who}: an unpaid session ({session.status}) ended {booking.status}")
            if session.status == "open":
                self.violation(f"{who}: its session is still open after settling")


    def check_changes(self, c: Customer, booking: Booking, refunds: list[Refund], outbox) -> int | None:
        """A customer's own cancellation refunds what the listing's policy promised, worked out
        here from the scenario's policy (not the site's quote): in full until the deadline (the
        start less the free hours), else the payment less floor(payment x kept% / 100), less what
        the merchant had refunded by then; nothing without self-service. One e-mail tells the
        customer (with the refund, or that nothing comes back), one tells the merchant; each move
        the site made is told by one e-mail (quick moves may be told together, never twice).
        Returns what was promised (None when the customer did not cancel)."""
        who = f"{c.name} (booking {booking.pk}, {booking.status})"
        to_customer = [m.subject for m in outbox if m.to == [c.email]]
        cancel_mails = sum(1 for s in to_customer if s == CUSTOMER_CANCELLED or s.startswith(CUSTOMER_CANCELLED + ", refund of "))
        merchant_mails = sum(1 for m in outbox if m.to == [self.merchant_of(booking).support_email]
                             and m.subject == f"Booking #{booking.pk} cancelled by {c.name}")
        moved_mails = to_customer.count(MOVED_SUBJECT)
        moves = self.moves[c.index]
        if booking.reschedules != moves:
            self.violation(f"{who}: the site said it moved the booking {moves} time(s), it counts {booking.reschedules}")
        if moves and not 1 <= moved_mails <= moves or not moves and moved_mails:
            self.violation(f"{who}: {moved_mails} e-mail(s) '{MOVED_SUBJECT}' for {moves} move(s)")
        cancelled_at = booking.cancelled_by_customer_at
        if cancelled_at is None:
            if cancel_mails or merchant_mails or any(r.reason == CUSTOMER_CANCEL for r in refunds):
                self.violation(f"{who}: not cancelled by its customer, yet {cancel_mails} cancellation e-mail(s), "
                               f"{merchant_mails} to the merchant, and a customer cancellation refund")
            return None
        policy, free_hours, keep = self.scenario.policy
        if policy == "none":
            self.violation(f"{who}: cancelled by its customer though sold without self-service")
        free, allowed = self.policy_gives_back(booking)
        paid = booking.amount_paid
        before = [r for r in refunds if r.reason != CUSTOMER_CANCEL and r.created_at <= cancelled_at]
        promised = max(0, allowed - sum(r.amount for r in before if r.status != RefundStatus.FAILED))
        mine = [r for r in refunds if r.reason == CUSTOMER_CANCEL]
        if sum(r.amount for r in mine) > paid - sum(r.amount for r in refunds if r.reason != CUSTOMER_CANCEL
                                                    and r.status != RefundStatus.FAILED):
            self.violation(f"{who}: refunds of {sum(r.amount for r in refunds)} for {paid} paid")
        if any(r.status == RefundStatus.FAILED for r in before):
            # A merchant refund the customer's quote counted failed afterwards: only the bound
            # above; what the policy gives back is owed again (checked with the money).
            pass
        elif [r.amount for r in mine] != ([promised] if promised else []):
            self.violation(f"{who}: cancelled {'within' if free else 'after'} the free window ({keep}% kept late) "
                           f"of {paid} paid: refunds {[r.amount for r in mine]}, the policy promised {promised}")
        # Told once: by the refund's e-mail once it is made, or, with nothing more to refund at the
        # moment of cancelling, by the cancellation's own e-mail.
        told_customer = 1 if not mine or any(r.stripe_refund_id for r in mine) else 0
        if cancel_mails != told_customer:
            self.violation(f"{who}: {cancel_mails} cancellation e-mail(s) to the customer, expected {told_customer}")
        if merchant_mails != 1:
            self.violation(f"{who}: {merchant_mails} e-mail(s) telling the merchant of the cancellation")
        return promised

    def policy_gives_back(self, booking: Booking) -> tuple[bool, int]:
        """Whether a booking its customer cancelled was cancelled within the free window, and what
        the scenario's policy gives back for it in all: the payment, or the payment less
        floor(payment x kept% / 100) after the deadline (the start less the free hours)."""
        _policy, free_hours, keep = self.scenario.policy
        starts_at = next(slot.starts_at for slot in self.slots if slot.pk == booking.slot_id)
        free = keep == 0 or booking.cancelled_by_customer_at <= starts_at - dt.timedelta(hours=free_hours)
        paid = booking.amount_paid
        return free, paid if free else paid - paid * keep // 100

    def check_told(self, c: Customer, booking: Booking, refunds: list[Refund], outbox) -> None:
        """What the customer was told, in every e-mail and on the success page's status panel and
        the booking page, against what is recorded: the reason money came back (and how much),
        and the slot's wall-clock time in the merchant's zone (see told.py)."""
        who = f"{c.name} (booking {booking.pk}, {booking.status})"
        merchant = self.merchant_of(booking)
        zone = self.scenario.zone
        starts_at = next(slot.starts_at for slot in self.slots if slot.pk == booking.slot_id)
        when, time_of_day = told.wall_clock(starts_at, zone)
        facts = dict(when=when, time=time_of_day, zone=zone, merchant=merchant.display_name)
        # A moved booking's e-mails before the move give the time it was at then (the move's own
        # e-mail, the new one).
        earlier = None
        if c.index in self.first_slot:
            first = next(slot.starts_at for slot in self.slots if slot.pk == self.first_slot[c.index])
            earlier = dict(facts, **dict(zip(("when", "time"), told.wall_clock(first, zone))))
        notified = [r for r in refunds if r.customer_notified_at]
        for message in (m for m in outbox if m.to == [c.email]):
            self.count("emails_checked")
            kind, reason = EMAIL_SUBJECTS.get(message.subject, (None, None))
            if message.subject.startswith(CUSTOMER_CANCELLED + ", refund of "):
                kind, reason = "refund", CUSTOMER_CANCEL
            if kind == "signin":
                continue
            if kind == "waitlist":
                # The waitlist's e-mails (counted in check_waitlist) give the time waited for (the
                # booking's own, unless it was moved since), as every e-mail does; an offer's, also
                # until when its seats are held, in the merchant's zone.
                text = told.SPACE.sub(" ", message.body)
                entry = WaitlistEntry.objects.filter(customer_email=c.email).select_related("offer_hold").first()
                waited_for = next((slot.starts_at for slot in self.slots if entry and slot.pk == entry.slot_id), starts_at)
                waited_when = told.wall_clock(waited_for, zone)[0]
                if f"{waited_when} ({zone})" not in text:
                    self.violation(f"{who}: e-mail '{message.subject}' does not give the time as {waited_when} ({zone})")
                if reason == "offer" and entry and entry.offer_hold:
                    until = told.wall_clock(entry.offer_hold.expires_at, zone)[1]
                    if f"held for you until {until}" not in text:
                        self.violation(f"{who}: the offer e-mail does not say the seats are held until {until} ({zone})")
                continue
            if kind == "confirmed":
                expected, allowed = None, set()
            elif kind == "refund":
                mine = [r for r in notified if r.reason == reason]
                if not mine:
                    self.violation(f"{who} got '{message.subject}' with no {reason} refund notified")
                    continue
                # Sent while the booking stood, or once it had ended (its reason then said too).
                ended = booking.ended_reason if booking.status != BookingStatus.CONFIRMED else ""
                sentences = [told.refund_email_sentence(reason=reason, amount=r.amount, paid=booking.amount_paid,
                                                        currency=booking.currency, merchant=merchant.display_name,
                                                        ended_reason=ended_reason)
                             for r in mine for ended_reason in dict.fromkeys(["", ended])]
                expected = next((s for s in sentences if s in message.body), sentences[0])
                allowed = {reason} | ({ended} - {""})
            elif kind == "refund_failed":
                mine = [r for r in refunds if r.status == RefundStatus.FAILED and r.stripe_refund_id]
                if not mine:
                    self.violation(f"{who} got '{message.subject}' with no refund made that failed")
                    continue
                # Failed while the booking stood (only a merchant's refund of a part leaves it
                # standing), or once it had ended.
                ended = booking.ended_reason if booking.status != BookingStatus.CONFIRMED else ""
                sentences = [told.refund_failed_email_sentence(
                    reason=r.reason, amount=r.amount, paid=booking.amount_paid, currency=booking.currency,
                    merchant=merchant.display_name, support_email=merchant.support_email, ended_reason=ended_reason)
                    for r in mine
                    for ended_reason in dict.fromkeys(
                        ["" if r.reason == "merchant" and r.amount < booking.amount_paid else ended, ended])]
                expected = next((s for s in sentences if s in told.SPACE.sub(" ", message.body)), sentences[0])
                allowed = {r.reason for r in mine} | ({ended} - {""})
            elif kind == "cancelled":
                kept = reason == CUSTOMER_CANCEL and booking.amount_paid
                if booking.ended_reason != reason or booking.amount_paid and not kept:
                    self.violation(f"{who} got '{message.subject}'; recorded: {booking.ended_reason or 'no'} reason, "
                                   f"{booking.amount_paid} paid")
                # Kept late: what the merchant had refunded before is what came back; a refund of
                # it that failed since was still counted when the e-mail went.
                before = [r for r in refunds if kept and r.reason != CUSTOMER_CANCEL
                          and r.created_at <= booking.cancelled_by_customer_at]
                sentences = [told.cancelled_email_sentence(reason=reason, merchant=merchant.display_name,
                                                           kept=bool(kept), back_before=back, currency=booking.currency)
                             for back in dict.fromkeys([sum(r.amount for r in before if r.status != RefundStatus.FAILED),
                                                        sum(r.amount for r in before)])]
                expected = next((s for s in sentences if s in message.body), sentences[0])
                allowed = {reason} | ({"merchant"} if before else set())
            elif kind == "moved":
                expected, allowed = None, set()
                problems = told.check_email(message, expected_sentence=expected, allowed_reasons=allowed, **facts)
                for problem in problems:
                    self.violation(f"{who}: {problem}")
                continue
            else:
                self.violation(f"{who} got an e-mail nobody expects: '{message.subject}'")
                continue
            problems = told.check_email(message, expected_sentence=expected, allowed_reasons=allowed, **facts)
            if problems and earlier:
                problems = min(problems, told.check_email(message, expected_sentence=expected,
                                                          allowed_reasons=allowed, **earlier), key=len)
            for problem in problems:
                self.violation(f"{who}: {problem}")
        # The pages, once everything has settled.
        owed = None
        if booking.status == BookingStatus.REFUND_FAILED and booking.ended_reason == CUSTOMER_CANCEL:
            owed = max(0, self.policy_gives_back(booking)[1] - booking.amount_refunded)
        expected = told.page_sentence(booking, refunds, merchant=merchant.display_name,
                                      support_email=merchant.support_email, owed=owed)
        if booking.status == BookingStatus.CONFIRMED:
            stated = {"merchant"} if any(r.status != RefundStatus.FAILED for r in refunds) else set()
        else:
            stated = {booking.ended_reason} - {""}
            if booking.status == BookingStatus.CANCELLED and any(
                r.reason == "merchant" and r.status != RefundStatus.FAILED for r in refunds
            ):
                stated.add("merchant")  # cancelled late: what the merchant had refunded is what came back
        listed = {r.reason for r in refunds if r.stripe_refund_id}  # the booking page lists each refund
        pages = [("booking page", reverse("shop:booking", args=[booking.public_token]), {}, stated | listed, when)]
        if booking.checkout_session_id:
            pages.append(("status panel", reverse("shop:checkout_status", args=[booking.checkout_session_id]),
                          {"HX-Request": "true"}, stated, when if booking.status == BookingStatus.CONFIRMED else None))
        for name, url, headers, allowed, shown_when in pages:
            response = self.client(c).get(url, headers=headers)
            self.count("pages_checked")
            if response.status_code not in (200, 286):
                self.violation(f"{who}: the {name} answered {response.status_code}")
                continue
            problems = told.check_page(f"the {name}", response.content.decode(), expected_sentence=expected,
                                       allowed_reasons=allowed, **{**facts, "when": shown_when})
            for problem in problems:
                self.violation(f"{who}: {problem}")


# Every e-mail a customer can get: (kind, the reason it tells).
EMAIL_SUBJECTS = {
    f"You're booked: {TITLE}": ("confirmed", None),
    f"Sorry, {TITLE} sold out: your payment is refunded": ("refund", "sold_out"),
    f"{TITLE} is cancelled: your payment is refunded": ("refund", "slot_cancelled"),
    f"A refund for your booking: {TITLE}": ("refund", "merchant"),
    f"Sorry, {TITLE} sold out": ("cancelled", "sold_out"),
    f"{TITLE} is cancelled": ("cancelled", "slot_cancelled"),
    f"Your booking was cancelled: {TITLE}": ("cancelled", "merchant"),
}
SIGNIN_SUBJECT = "Your link to Receipts and payment methods"
SIGNIN_TOKEN = re.compile(r"/receipts/sign-in/\?token=([^\s\"&<]+)")
EXPECTED_REFUND = re.compile(r'name="expected_refund" value="(\d+)"')
CUSTOMER_CANCELLED = f"You cancelled your booking: {TITLE}"
MOVED_SUBJECT = f"Your booking is moved: {TITLE}"
EMAIL_SUBJECTS[CUSTOMER_CANCELLED] = ("cancelled", "customer_cancel")
EMAIL_SUBJECTS[MOVED_SUBJECT] = ("moved", None)
REFUND_FAILED_SUBJECT = f"Your refund did not go through: {TITLE}"
EMAIL_SUBJECTS[REFUND_FAILED_SUBJECT] = ("refund_failed", None)
EMAIL_SUBJECTS[SIGNIN_SUBJECT] = ("signin", None)
OFFER_SUBJECT = f"Seats are free for you: {TITLE}"
JOINED_SUBJECT = f"You're on the waitlist: {TITLE}"
EMAIL_SUBJECTS[OFFER_SUBJECT] = ("waitlist", "offer")
EMAIL_SUBJECTS[JOINED_SUBJECT] = ("waitlist", "joined")


def run_seeds(world: World, seeds, *, on_failure=print, progress=None) -> tuple[Totals, list[Outcome]]:
    totals = Totals()
    failures: list[Outcome] = []
    started = time.perf_counter()
    with world.running():
        for n, seed in enumerate(seeds, 1):
            outcome = world.run(seed)
            totals.add(outcome.totals)
            if outcome.violations:
                failures.append(outcome)
                on_failure(outcome.report())
            if progress:
                progress(n, totals)
    totals.seconds = time.perf_counter() - started
    return totals, failures
