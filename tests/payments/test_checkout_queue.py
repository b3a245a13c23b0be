"""The fair queue when Stripe is the limit: the shared budget (database and Redis, real threads
and processes), turns in arrival order, the waiting page (htmx and without JavaScript), the
bound, a time sold out while waiting, a 429 putting the buyer back in line, and one session per
booking with several drivers at once."""

import os
import subprocess
import sys
import threading
import time

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from bookings.models import Booking, BookingStatus, Hold, HoldEnd, Slot
from payments import budget, stripe_api
from payments.checkout import checkout_queue_drive, checkout_queue_drive_for
from payments.checkout_queue import queue_token
from payments.models import CheckoutQueueEntry, StripeBudget
from tests.concurrency import run_concurrently
from tests.factories import make_slot

pytestmark = pytest.mark.django_db(transaction=True)

W = CheckoutQueueEntry.Status
MINUTE_US = 60 * 1_000_000
REDIS_TEST_URL = os.environ.get("QUEUE_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")


def spend_budget() -> None:
    """The budget spent for the next hour: nothing opens until a test gives it back."""
    budget.budget_take()  # makes the row
    StripeBudget.objects.filter(name=budget.STRIPE_BUDGET).update(tat_us=time.time_ns() // 1000 + 3600 * 10**6)


def start(client, slot, i: int, quantity: int = 1):
    return client.post(
        reverse("shop:checkout_create", args=[slot.listing.slug]),
        {"slot": slot.pk, "quantity": quantity, "customer_email": f"buyer{i}@example.com", "customer_name": f"Buyer {i}"},
    )


def queue_page(response) -> str:
    assert response.status_code == 303
    location = response["Location"]
    assert location.startswith("/checkout/queue/"), location
    return location


@pytest.fixture
def opened_for(monkeypatch):
    """The bookings Stripe was asked to open a Checkout for, in the order the calls were made."""
    calls: list[int] = []
    real = stripe_api.checkout_open

    def spy(*, booking, **kwargs):
        calls.append(booking.pk)
        return real(booking=booking, **kwargs)

    monkeypatch.setattr(stripe_api, "checkout_open", spy)
    return calls


@pytest.fixture
def paced(settings, monkeypatch):
    """Two checkout starts a second, as pages tell it. The bucket gives one second's worth of
    tokens at once, as it does in the site, but the next only a minute later, so time stands
    still for the test: the budget refills only when a test resets it, however slow the machine
    (a refill every half second let a slow run open a third session where the test counts two)."""
    settings.STRIPE_REQUESTS_PER_SECOND = 2
    settings.STRIPE_BUDGET_REDIS_URL = ""
    monkeypatch.setattr(budget, "_interval_and_burst", lambda rate: (MINUTE_US, (max(1, int(rate)) - 1) * MINUTE_US))
    budget.budget_reset()
    return settings


# The budget


@pytest.mark.parametrize("store", ["database", "redis"])
def test_twenty_threads_at_once_take_exactly_one_seconds_worth_of_tokens_then_one_per_interval(store, settings):
    settings.STRIPE_BUDGET_REDIS_URL = _redis_or_skip() if store == "redis" else ""
    budget.budget_reset()
    # Five at once, then one a minute: no token comes back while the test runs, however slow the machine.
    pace = {"interval_us": MINUTE_US, "burst_us": 4 * MINUTE_US}

    def take():
        return budget.budget_take_paced(budget.STRIPE_BUDGET, **pace)

    taken = run_concurrently([_connected_then(take, gate) for gate in [threading.Barrier(20)] for _ in range(20)])

    assert [t for t in taken if isinstance(t, BaseException)] == []
    assert taken.count(True) == 5 and taken.count(False) == 15  # one burst, shared by all threads
    # A bucket with exactly one token left (set in the store, not waited for): one thread gets it.
    _leave_one_token(store, burst=4 * MINUTE_US)
    assert run_concurrently([take for _ in range(10)]).count(True) == 1
    # And the pace the setting gives: one second's worth at once.
    assert budget._interval_and_burst(5) == (200_000, 800_000)


def test_a_take_in_the_database_is_one_statement_whether_it_makes_the_row_takes_or_is_refused(
    settings, django_assert_num_queries
):
    """The success pages of an on-sale ask for a spare token on nearly every poll and are refused:
    a refusal that cost three statements on the budget's one row (the row read, made, taken
    again) held up the line's own takes behind it."""
    settings.STRIPE_BUDGET_REDIS_URL = ""
    budget.budget_reset()
    pace = {"interval_us": MINUTE_US, "burst_us": MINUTE_US}  # two at once, then one a minute
    outcomes = []
    for _ in range(3):
        with django_assert_num_queries(1):
            outcomes.append(budget.budget_take_paced(budget.STRIPE_BUDGET, **pace))
    assert outcomes == [True, True, False]  # the first made the row
    now_us = time.time_ns() // 1000
    tat_us = StripeBudget.objects.get(name=budget.STRIPE_BUDGET).tat_us
    # Two tokens taken from an empty bucket: full again two intervals from now, not three.
    assert now_us + MINUTE_US < tat_us <= now_us + 2 * MINUTE_US + 5_000_000


def _connected_then(function, gate):
    """`function` run once every thread has its database connection open, so that all of them
    take at the same moment (opening 20 connections on a busy machine takes longer than a token)."""

    def run():
        connection.ensure_connection()
        gate.wait()
        return function()

    return run


def _leave_one_token(store: str, *, burst: int) -> None:
    """`tat` = now + burst: one take fits, the next would run past the burst (for the next 1/rate s)."""
    if store == "database":
        StripeBudget.objects.filter(name=budget.STRIPE_BUDGET).update(tat_us=time.time_ns() // 1000 + burst)
        return
    import redis

    client = redis.Redis.from_url(REDIS_TEST_URL)
    seconds, microseconds = client.time()
    client.set(budget._redis_key(budget.STRIPE_BUDGET), seconds * 1_000_000 + microseconds + burst, px=10_000)


def _redis_or_skip() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=0.5).ping()
    except redis.RedisError:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no Redis at {REDIS_TEST_URL}: the Redis budget is tested where Redis runs (always on CI)")
    return REDIS_TEST_URL


TAKER = """
import os, sys, time
import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
django.setup()
from django.conf import settings
from payments import budget
settings.STRIPE_BUDGET_REDIS_URL = sys.argv[1]
start_at = float(sys.argv[2])
time.sleep(max(0.0, start_at - time.time()))  # both processes start taking at the same moment
# Six at once, then one a minute: no token comes back while the processes run.
print(sum(budget.budget_take_paced("stripe", interval_us=60_000_000, burst_us=300_000_000) for _ in range(10)))
"""


@pytest.mark.parametrize("store", ["database", "redis"])
def test_two_processes_share_one_budget(store, settings):
    """Two OS processes (as two gunicorn workers) taking 10 tokens each at the same moment get 6
    between them: one budget, not one per process."""
    url = _redis_or_skip() if store == "redis" else ""
    database = django_settings.DATABASES["default"]
    if store == "database" and database["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("the SQLite test database is in memory: processes share it on PostgreSQL only")
    settings.STRIPE_BUDGET_REDIS_URL = url
    budget.budget_reset()
    env = {**os.environ, "DJANGO_SECRET_KEY": "x" * 50}
    if store == "database":
        env["DATABASE_URL"] = (
            f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}"
        )
    start_at = f"{time.time() + 3:.3f}"
    processes = [
        subprocess.Popen([sys.executable, "-c", TAKER, url, start_at], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    counts = [int(process.communicate(timeout=60)[0].strip().splitlines()[-1]) for process in processes]
    assert sum(counts) == 6, counts


# Turns in arrival order


def test_ten_starts_at_two_per_second_open_their_sessions_in_arrival_order(paced, stripe_emulator, opened_for):
    slot = make_slot(capacity=20)
    responses = [start(Client(), slot, i) for i in range(2)]
    spend_budget()
    responses += [start(Client(), slot, i) for i in range(2, 10)]
    bookings = list(Booking.objects.filter(slot=slot).order_by("pk"))

    # The first two (one second's worth) went straight to Stripe; the other eight wait, holding seats.
    assert [r["Location"].startswith(stripe_emulator.base_url) for r in responses[:2]] == [True, True]
    for response in responses[2:]:
        queue_page(response)
    assert opened_for == [b.pk for b in bookings[:2]]
    slot.refresh_from_db()
    assert (slot.seats_held, slot.seats_left) == (10, 10)
    assert list(CheckoutQueueEntry.objects.values_list("booking_id", flat=True)) == [b.pk for b in bookings[2:]]

    for _ in range(4):
        assert checkout_queue_drive(max_opens=10) == 0  # the budget is spent: nobody jumps the line
        budget.budget_reset()  # the next second's worth (2 tokens), without sleeping a second
        assert checkout_queue_drive(max_opens=10) == 2
        spend_budget()

    assert opened_for == [b.pk for b in bookings]
    assert set(CheckoutQueueEntry.objects.values_list("status", flat=True)) == {W.OPENED}
    assert Booking.objects.filter(slot=slot, checkout_session_id__startswith="cs_").count() == 10


def test_a_newcomer_queues_behind_people_already_waiting_even_with_a_token_free(paced, stripe_emulator, opened_for):
    slot = make_slot(capacity=5)
    spend_budget()
    queue_page(start(Client(), slot, 1))
    budget.budget_reset()

    queue_page(start(Client(), slot, 2))

    assert opened_for == []
    assert CheckoutQueueEntry.objects.filter(status=W.WAITING).count() == 2


# The waiting page


def test_the_waiting_page_tells_place_and_estimate_with_htmx_and_without(paced, stripe_emulator, opened_for):
    paced.STRIPE_REQUESTS_PER_SECOND = 1
    slot = make_slot(capacity=5)
    spend_budget()
    first = queue_page(start(Client(), slot, 1, quantity=2))
    client = Client()
    second = queue_page(start(client, slot, 2))

    page = client.get(second)
    html = page.content.decode()
    assert page.status_code == 200
    assert "You are number 2 in line" in html
    assert "about 2 seconds" in html  # two turns at one per second
    assert '<meta http-equiv="refresh" content="2">' in html  # without JavaScript: it reloads itself
    assert f'hx-get="{second}"' in html and 'hx-trigger="load delay:2s"' in html  # its turn is 2 s away
    assert page["Cache-Control"] == "private, no-store"

    panel = Client().get(first, HTTP_HX_REQUEST="true")
    html = panel.content.decode()
    assert panel.status_code == 200 and "<html" not in html
    assert "You are number 1 in line" in html and "about 1 second." in html
    assert 'hx-trigger="load delay:1s"' in html
    assert "Your seats are held for you while you wait" in html
    assert opened_for == []


def test_when_the_turn_comes_the_page_goes_to_checkout_by_hx_redirect_or_303(paced, stripe_emulator, opened_for):
    slot = make_slot(capacity=5)
    spend_budget()
    first = queue_page(start(Client(), slot, 1))
    second = queue_page(start(Client(), slot, 2))
    budget.budget_reset()

    # The second customer's poll gives the first turn in line: the first customer's checkout.
    still_waiting = Client().get(second, HTTP_HX_REQUEST="true")
    assert "You are number 1 in line" in still_waiting.content.decode()
    first_booking, second_booking = Booking.objects.filter(slot=slot).order_by("pk")
    assert opened_for == [first_booking.pk]

    hx = Client().get(first, HTTP_HX_REQUEST="true")
    first_booking.refresh_from_db()
    assert hx.status_code == 200
    assert hx["HX-Redirect"].startswith(stripe_emulator.base_url) and first_booking.checkout_session_id in hx["HX-Redirect"]

    plain = Client().get(second)
    second_booking.refresh_from_db()
    assert plain.status_code == 303 and second_booking.checkout_session_id in plain["Location"]
    assert opened_for == [first_booking.pk, second_booking.pk]
    # The page again later (back from Stripe) goes to the same checkout, without another session.
    assert Client().get(second)["Location"] == plain["Location"]
    assert opened_for == [first_booking.pk, second_booking.pk]


def test_a_forged_or_unknown_queue_address_is_a_404(paced):
    response = Client().get(reverse("shop:checkout_queue", args=["1:forged:signature"]))
    assert response.status_code == 404


# The bound


def test_past_the_bound_the_hold_is_released_and_the_page_says_stripe_is_too_busy(paced, stripe_emulator, opened_for):
    paced.QUEUE_MAX_WAIT_SECONDS = 30
    slot = make_slot(capacity=5)
    spend_budget()
    page = queue_page(start(Client(), slot, 1, quantity=3))
    entry = CheckoutQueueEntry.objects.get()
    CheckoutQueueEntry.objects.filter(pk=entry.pk).update(queued_at=timezone.now() - timezone.timedelta(seconds=31))

    panel = Client().get(page, HTTP_HX_REQUEST="true")

    html = panel.content.decode()
    assert panel.status_code == 286  # htmx stops polling
    assert "Our payment provider is too busy right now" in html
    assert "could not open your checkout within 30 seconds" in html and "Nothing was charged" in html
    # The form is kept: the same choices, to send again.
    for field in ('name="slot" value="%d"' % slot.pk, 'name="quantity" value="3"', 'value="buyer1@example.com"', 'value="Buyer 1"'):
        assert field in html
    entry.refresh_from_db()
    booking = entry.booking
    booking.refresh_from_db()
    assert entry.status == W.TIMED_OUT and booking.status == BookingStatus.EXPIRED
    assert Hold.objects.get(booking=booking).end == HoldEnd.RELEASED
    slot.refresh_from_db()
    assert (slot.seats_held, slot.seats_left) == (0, 5)
    assert opened_for == []
    # Without JavaScript the same page, no longer refreshing itself.
    plain = Client().get(page).content.decode()
    assert "too busy right now" in plain and 'http-equiv="refresh"' not in plain


def test_the_driver_task_ends_the_wait_of_someone_who_left_the_page(paced, stripe_emulator):
    from payments.tasks import checkout_queue_drive as drive_task

    paced.QUEUE_MAX_WAIT_SECONDS = 30
    slot = make_slot(capacity=2)
    spend_budget()
    queue_page(start(Client(), slot, 1, quantity=2))
    CheckoutQueueEntry.objects.update(queued_at=timezone.now() - timezone.timedelta(seconds=31))

    drive_task()

    slot.refresh_from_db()
    assert CheckoutQueueEntry.objects.get().status == W.TIMED_OUT
    assert (slot.seats_held, slot.seats_left) == (0, 2)


def test_reconcile_ends_overdue_waits_too_when_no_beat_runs(paced, stripe_emulator):
    from payments.reconcile import reconcile_run

    paced.QUEUE_MAX_WAIT_SECONDS = 30
    slot = make_slot(capacity=3)
    spend_budget()
    queue_page(start(Client(), slot, 1, quantity=3))
    queue_page(start(Client(), make_slot(capacity=1), 2))  # waiting 10 s only: stays in line
    CheckoutQueueEntry.objects.filter(booking__slot=slot).update(queued_at=timezone.now() - timezone.timedelta(seconds=31))
    CheckoutQueueEntry.objects.exclude(booking__slot=slot).update(queued_at=timezone.now() - timezone.timedelta(seconds=10))

    summary = reconcile_run()

    assert summary.queue_timed_out == 1
    assert sorted(CheckoutQueueEntry.objects.values_list("status", flat=True)) == [W.TIMED_OUT, W.WAITING]
    slot.refresh_from_db()
    assert (slot.seats_held, slot.seats_left) == (0, 3)


# Sold out while waiting


def test_a_time_sold_out_when_the_turn_comes_offers_the_waitlist(paced, stripe_emulator, opened_for):
    from django.db import transaction

    from bookings.services.holds import hold_release

    slot = make_slot(capacity=2)
    spend_budget()
    page = queue_page(start(Client(), slot, 1, quantity=2))
    waiting = Booking.objects.get(slot=slot)
    # Its hold ended while it waited (lapsed) and someone else took the two seats meanwhile.
    with transaction.atomic():
        hold_release(booking=waiting, pass_on=False)
    Slot.objects.filter(pk=slot.pk).update(seats_left=0)  # sold to others
    slot.refresh_from_db()
    assert slot.seats_left == 0
    budget.budget_reset()

    panel = Client().get(page, HTTP_HX_REQUEST="true")

    html = panel.content.decode()
    assert panel.status_code == 286
    assert "This time sold out while you waited" in html
    assert 'data-testid="waitlist-offered"' in html
    assert 'value="buyer1@example.com"' in html and reverse("shop:waitlist_join", args=[slot.listing.slug]) in html
    waiting.refresh_from_db()
    assert waiting.status == BookingStatus.EXPIRED
    assert CheckoutQueueEntry.objects.get().status == W.SOLD_OUT
    assert opened_for == []  # no Stripe call for a time sold out


# Stripe's 429


def test_a_429_from_stripe_puts_the_buyer_in_line_and_then_back_in_their_place(paced, stripe_emulator, monkeypatch):
    slot = make_slot(capacity=5)
    real = stripe_api.checkout_open
    answers = ["429", "429", "ok", "ok"]
    calls: list[int] = []

    def rate_limited_then_real(*, booking, **kwargs):
        calls.append(booking.pk)
        if answers.pop(0) == "429":
            raise stripe_api.StripeRateLimited(stripe_api.BUSY_MESSAGE)
        return real(booking=booking, **kwargs)

    monkeypatch.setattr(stripe_api, "checkout_open", rate_limited_then_real)

    first_page = queue_page(start(Client(), slot, 1))  # room in the budget, but Stripe said 429
    first = Booking.objects.get(slot=slot)
    assert first.status == BookingStatus.PENDING and Hold.objects.get(booking=first).ended_at is None
    spend_budget()
    queue_page(start(Client(), slot, 2))
    second = Booking.objects.exclude(pk=first.pk).get(slot=slot)
    budget.budget_reset()

    assert checkout_queue_drive(max_opens=5) == 0  # 429 again: back in line, in first place
    assert list(CheckoutQueueEntry.objects.values_list("booking_id", "status")) == [
        (first.pk, W.WAITING), (second.pk, W.WAITING)
    ]
    budget.budget_reset()
    assert checkout_queue_drive(max_opens=5) == 2
    assert calls == [first.pk, first.pk, first.pk, second.pk]
    assert Client().get(first_page)["Location"].startswith(stripe_emulator.base_url)


def test_the_emulators_429_is_told_apart_from_stripe_being_unreachable(stripe_emulator, slot):
    from bookings.services import booking_start

    stripe_emulator.set_pace(rate_limit=1)
    try:
        bookings = [booking_start(slot=slot, quantity=1, customer_email=f"r{i}@example.com", customer_name="R") for i in range(3)]
        errors = []
        for booking in bookings:
            try:
                stripe_api.checkout_open(booking=booking, customer_id="", success_url="http://x/?s={CHECKOUT_SESSION_ID}", cancel_url="http://x/")
            except stripe_api.PaymentsUnavailable as error:
                errors.append(error)
    finally:
        stripe_emulator.set_pace(rate_limit=0)
    assert errors and all(isinstance(error, stripe_api.StripeRateLimited) for error in errors)
    assert str(errors[0]) == "Our payment provider is busy right now. Please try again in a moment."


# Several drivers at once


def test_five_pollers_at_once_open_exactly_one_session_per_waiting_booking(paced, stripe_emulator, opened_for):
    paced.STRIPE_REQUESTS_PER_SECOND = 20
    slot = make_slot(capacity=5)
    spend_budget()
    pages = [queue_page(start(Client(), slot, i)) for i in range(2)]
    budget.budget_reset()

    answers = run_concurrently([lambda page=pages[i % 2]: Client().get(page) for i in range(5)])

    assert [a for a in answers if isinstance(a, BaseException)] == []
    bookings = list(Booking.objects.filter(slot=slot).order_by("pk"))
    assert sorted(opened_for) == [b.pk for b in bookings]  # one call each, never two
    assert all(b.checkout_session_id for b in bookings)
    assert set(CheckoutQueueEntry.objects.values_list("status", flat=True)) == {W.OPENED}
    for answer in answers:
        assert answer.status_code in (200, 303)


def test_queue_off_sends_every_start_to_stripe(settings, stripe_emulator, opened_for):
    settings.STRIPE_REQUESTS_PER_SECOND = 0
    slot = make_slot(capacity=30)
    responses = [start(Client(REMOTE_ADDR=f"10.0.0.{i}"), slot, i) for i in range(25)]
    assert all(r["Location"].startswith(stripe_emulator.base_url) for r in responses)
    assert not CheckoutQueueEntry.objects.exists()


def test_queue_token_is_signed_and_names_the_entry(paced, stripe_emulator):
    slot = make_slot(capacity=5)
    spend_budget()
    page = queue_page(start(Client(), slot, 1))
    entry = CheckoutQueueEntry.objects.get()
    assert page == reverse("shop:checkout_queue", args=[queue_token(entry)])


@pytest.mark.parametrize("place, seconds", [(1, 1), (20, 1), (21, 2), (200, 10), (290, 15), (1000, 15)])
def test_the_further_back_the_less_often_the_page_polls(settings, place, seconds):
    """At 20 turns a second: every second for the next second's turns, then as often as turns
    can come, at most every 15 s, so a thousand people waiting do not swamp the web tier."""
    from shop.views import queue_poll_seconds

    settings.STRIPE_REQUESTS_PER_SECOND = 20
    assert queue_poll_seconds(place) == seconds


# The background driver (beat's task, with a broker)


class StandingClock:
    """Time that moves only when the driver pauses for the budget: the run ends after `seconds`
    of pauses, however long the machine takes over each step."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def pause(self, seconds: float) -> None:
        self.now += seconds


def test_the_driver_opens_the_line_in_order_with_calls_in_flight_at_once_until_the_budget_is_spent(
    paced, stripe_emulator, monkeypatch
):
    slot = make_slot(capacity=10)
    spend_budget()
    pages = [queue_page(start(Client(), slot, i)) for i in range(6)]
    bookings = list(Booking.objects.filter(slot=slot).order_by("pk"))
    # Four tokens at once, then one a minute: the run gets exactly four.
    monkeypatch.setattr(budget, "_interval_and_burst", lambda rate: (MINUTE_US, 3 * MINUTE_US))
    budget.budget_reset()
    # Each of the four calls waits until all four are in flight: the driver does not wait for one
    # Stripe call to end before making the next.
    all_in_flight = threading.Barrier(4, timeout=30)
    real, calls = stripe_api.checkout_open, []

    def slow_stripe(*, booking, **kwargs):
        calls.append(booking.pk)
        all_in_flight.wait()
        return real(booking=booking, **kwargs)

    monkeypatch.setattr(stripe_api, "checkout_open", slow_stripe)
    clock = StandingClock()

    turns = checkout_queue_drive_for(seconds=2, openers=8, clock=clock, pause=clock.pause)

    assert turns == 4
    assert sorted(calls) == [b.pk for b in bookings[:4]]  # the first four in line, one call each
    assert list(CheckoutQueueEntry.objects.order_by("pk").values_list("status", flat=True)) == [W.OPENED] * 4 + [W.WAITING] * 2
    assert clock.now >= 2  # it waited for the budget until its time was up, not longer
    assert Client().get(pages[0])["Location"].startswith(stripe_emulator.base_url)
    assert "You are number 1 in line" in Client().get(pages[4]).content.decode()


def test_the_driver_gives_each_turn_with_three_statements_and_leaves_reading_the_row_to_its_opener(
    paced, stripe_emulator, monkeypatch, opened_for
):
    """beat's driver claims every turn in one thread: in an on-sale its statements per turn, each
    a round trip to a busy database, bound the pace of the whole line. Per turn: the budget's take
    and the claim's two; the row with its booking is read by the thread that opens it."""
    from django.test.utils import CaptureQueriesContext

    slot = make_slot(capacity=10)
    spend_budget()
    for i in range(5):
        queue_page(start(Client(), slot, i))
    monkeypatch.setattr(budget, "_interval_and_burst", lambda rate: (MINUTE_US, 4 * MINUTE_US))  # five at once
    budget.budget_reset()
    clock = StandingClock()

    with CaptureQueriesContext(connection) as queries:
        turns = checkout_queue_drive_for(seconds=2, openers=2, clock=clock, pause=clock.pause)

    assert turns == 5 and len(opened_for) == 5
    # Before the turns: lost claims taken back, overdue waits ended, whether anyone waits (3);
    # after the fifth, the budget refuses and the line is found empty (2).
    per_turn = [q["sql"] for q in queries.captured_queries[3:-2]]
    assert len(per_turn) == 5 * 3, per_turn
    assert not [sql for sql in per_turn if 'FROM "bookings_booking"' in sql]


def test_the_driver_stops_at_a_429_and_the_row_keeps_its_place(paced, stripe_emulator, monkeypatch):
    slot = make_slot(capacity=5)
    spend_budget()
    for i in range(3):
        queue_page(start(Client(), slot, i))
    first = Booking.objects.filter(slot=slot).order_by("pk").first()
    budget.budget_reset()

    def busy(**kwargs):
        raise stripe_api.StripeRateLimited(stripe_api.BUSY_MESSAGE)

    monkeypatch.setattr(stripe_api, "checkout_open", busy)
    clock = StandingClock()

    assert checkout_queue_drive_for(seconds=2, openers=1, clock=clock, pause=clock.pause) == 0

    rows = list(CheckoutQueueEntry.objects.order_by("pk").values_list("booking_id", "status"))
    assert rows[0] == (first.pk, W.WAITING) and [status for _, status in rows] == [W.WAITING] * 3


def test_the_driver_ends_at_once_when_nobody_waits(paced, stripe_emulator, opened_for):
    clock = StandingClock()
    assert checkout_queue_drive_for(seconds=2, clock=clock, pause=clock.pause) == 0
    assert clock.now == 0 and opened_for == []


def test_with_a_broker_the_waiting_page_only_reads_and_beats_driver_gives_the_turn(paced, stripe_emulator, opened_for):
    paced.CELERY_BROKER_URL = "redis://127.0.0.1:6379/15"  # nothing is published in this test
    slot = make_slot(capacity=5)
    spend_budget()
    page = queue_page(start(Client(), slot, 1))
    budget.budget_reset()

    polled = Client().get(page, HTTP_HX_REQUEST="true")

    assert "You are number 1 in line" in polled.content.decode() and opened_for == []
    clock = StandingClock()
    assert checkout_queue_drive_for(seconds=2, clock=clock, pause=clock.pause) == 1
    turned = Client().get(page, HTTP_HX_REQUEST="true")
    assert turned["HX-Redirect"].startswith(stripe_emulator.base_url)
    assert opened_for == [Booking.objects.get(slot=slot).pk]


# Calls that can wait yield to the line


def test_reads_that_can_wait_take_only_from_the_spare_half_of_the_budget(settings, monkeypatch):
    settings.STRIPE_BUDGET_REDIS_URL = ""
    monkeypatch.setattr(budget, "_interval_and_burst", lambda rate: (MINUTE_US, 4 * MINUTE_US))
    budget.budget_reset()

    spare = [budget.budget_take(spare_only=True) for _ in range(4)]
    after = [budget.budget_take() for _ in range(3)]

    # Five tokens at once: a read takes one while at most half the burst is spent (three), and
    # a checkout start may still take the rest.
    assert spare == [True, True, True, False]
    assert after == [True, True, False]


def test_the_success_page_waits_for_the_webhook_while_the_line_has_the_budget(paced, stripe_emulator, client):
    from tests.payments.stripe_flow import deliver_events, open_checkout, poll, stripe_session_reads

    paced.STRIPE_STATUS_CHECK_SECONDS = 0
    booking, _ = open_checkout(client, make_slot(capacity=3))
    stripe_emulator.pay_session(booking.checkout_session_id, "4242424242424242")
    spend_budget()

    waiting = poll(client, booking)

    # Not asked, and not told anything is wrong: the page keeps polling.
    html = waiting.content.decode()
    assert waiting.status_code == 200 and 'data-status="pending"' in html and "hx-trigger" in html
    assert "still checking your payment" not in html
    assert stripe_session_reads(stripe_emulator, booking.checkout_session_id) == 0
    deliver_events(client, stripe_emulator)
    confirmed = poll(client, booking)
    assert confirmed.status_code == 286 and 'data-status="confirmed"' in confirmed.content.decode()


def test_reconcile_leaves_what_the_budget_cannot_spare_to_its_next_run_longest_unasked_first(
    paced, stripe_emulator, client, monkeypatch
):
    from payments.reconcile import reconcile_run
    from tests.payments.stripe_flow import open_checkout, stripe_session_reads

    paced.STRIPE_REQUESTS_PER_SECOND = 20
    slot = make_slot(capacity=5)
    opened = [open_checkout(client, slot, email=f"r{i}@example.com")[0] for i in range(3)]
    for booking in opened:
        stripe_emulator.pay_session(booking.checkout_session_id, "4242424242424242")
    # One token at a time, the next a minute later: each run has room for one read.
    monkeypatch.setattr(budget, "_interval_and_burst", lambda rate: (MINUTE_US, 0))
    StripeBudget.objects.update(tat_us=0)

    first = reconcile_run()

    assert (first.pending_checked, first.confirmed, first.pending_deferred) == (1, 1, 2)
    assert "left for the next run, Stripe's budget being spent: 2" in "\n".join(first.lines())
    assert first.errors == []
    StripeBudget.objects.update(tat_us=0)
    second = reconcile_run()
    assert (second.pending_checked, second.confirmed, second.pending_deferred) == (1, 1, 1)
    StripeBudget.objects.update(tat_us=0)
    third = reconcile_run()
    assert (third.pending_checked, third.confirmed, third.pending_deferred) == (1, 1, 0)
    assert all(stripe_session_reads(stripe_emulator, b.checkout_session_id) == 1 for b in opened)
    assert set(Booking.objects.filter(slot=slot).values_list("status", flat=True)) == {BookingStatus.CONFIRMED}


def test_a_turn_failing_unexpectedly_puts_its_row_back_and_ends_the_run(paced, stripe_emulator, monkeypatch, caplog):
    slot = make_slot(capacity=5)
    spend_budget()
    for i in range(2):
        queue_page(start(Client(), slot, i))
    budget.budget_reset()

    def broken(**kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(stripe_api, "checkout_open", broken)
    clock = StandingClock()

    assert checkout_queue_drive_for(seconds=2, openers=1, clock=clock, pause=clock.pause) == 0

    assert list(CheckoutQueueEntry.objects.values_list("status", flat=True)) == [W.WAITING, W.WAITING]
    assert "checkout_queue_turn_failed" in caplog.text and "RuntimeError" in caplog.text
