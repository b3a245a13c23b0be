"""An on-sale: N buyers for one time of M seats, arriving within a few seconds, against
gunicorn + PostgreSQL + the Stripe emulator. Not a test: it prints a table.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/perf python -m benchmarks.onsale
    python -m benchmarks.onsale --buyers 2000 --seats 50          # everyone past the seats: sold out, no Stripe call
    python -m benchmarks.onsale --buyers 500 --seats 300 --think 1 4 --gunicorn-threads 0   # sync workers
    python -m benchmarks.onsale --instances 2 --redis-url redis://127.0.0.1:6379/0      # two instances

The default is item 7 of issue 16: 2,000 buyers for 1,500 seats arriving within 3 s, Stripe's test
pace (latency and 25/s), the Procfile's web tier (3 gthread workers x 8 threads), the fair queue
at 20/s.

Like benchmarks/load.py it makes a scratch database (`<name>_onsale`, dropped at the end),
seeds one listing with one time through the services, and starts gunicorn as the Procfile does
(DEBUG off, persistent connections). The Stripe emulator runs as a process of its own (as
`./run` starts it), forwarding its signed webhooks to the site. Each buyer is a thread with an
address of its own (X-Forwarded-For behind one trusted proxy, as in production, so the
per-address checkout limit counts each buyer alone): it opens the listing, starts a checkout
for one seat, and, when it reaches Stripe's hosted page, thinks for a moment (well within the
hold) and pays there through its HTML form (card 4242), then polls its success page until it is
final. Meanwhile a watcher reads the listing page every 100 ms until the time shows sold out.

gunicorn runs with benchmarks/cpu_by_route.py, so the table ends with the web tier's CPU by
route (each request's handling thread's own CPU); CPU_BY_ROUTE_PROFILE=N also profiles every N-th
request of a route (pstats files in the run's log directory).

Afterwards the database and Stripe (the emulator's API) are compared: seats sold against the
capacity (oversold must be 0), bookings confirmed, refunds (target 0: everyone pays within the
hold), and Stripe Customers and Checkout Sessions created against the buyers who reached
Checkout (a buyer told "sold out" cost no Stripe call). Exits 1 when anything was oversold or
refunded, or a paid session ended neither confirmed nor refunded.

Stripe's pace (issue 16): `--pace stripe-test` (the default; `stripe-live`, or `off` for the
emulator's instant answers) gives the emulator Stripe's latency and rate limits, which
`--write-latency`, `--read-latency`, `--rate-limit` and `--endpoint-rate-limit` override (see
`python -m stripe_emulator --help`). A buyer whose Book press is refused because Stripe said 429
(the site answers 503, "try again in a moment") presses Book again after 1-3 s, up to
`--retries` times: the table counts the 429s Stripe answered and the buyers who got through on
a later press. `--gunicorn-threads N` sets the threads of each gthread worker (default 8, as the
Procfile; 0 runs sync workers, for the comparison).

The site's fair queue (issue 16, item 4) paces its Stripe calls at `--queue N` per second (the
site's STRIPE_REQUESTS_PER_SECOND); a buyer sent to its waiting page polls it after the delay the
page's htmx panel names (1-15 s, longer the further back in line) until it is sent to Checkout or
told the wait ended. As in production, the Procfile's Celery worker and beat run beside gunicorn
(`--broker`, a Redis queue of the run's own): beat's driver gives the turns at the budget's pace
and the waiting pages only read; `--broker ''` runs no Celery, and the pages' polls give the
turns, as in the demo. `--queue 0` turns the queue off, for the comparison: starts then meet
Stripe's 429s and buyers press Book again.

Where the webhooks wait: the table gives the time from each event to the site's 2xx (read from
the emulator's store). The emulator runs ahead of the site's processes (nice -10, as root): Stripe
is not on the site's machine. `--webhooks-apart` sends Stripe's webhooks to a gunicorn of their own
(1 worker x 4 threads, as a proxy routing /stripe/webhook/ would), and `--webhook-workers N` lets
the emulator deliver N at once (its default is 4): on 2026-12-04 events waited 44-95 s at the
median in the web tier's line behind the success pages' polls, and 4-8 s with both.

Two instances, one database (issue 16, item 6): `--instances 2` starts two gunicorns on two ports
sharing PostgreSQL and one Redis (`--redis-url`, default redis://127.0.0.1:6379/0, under a key
prefix of the run's own, removed afterwards), as production's REDIS_URL does; buyers alternate
between them. Before the sale one address asks both instances in turns for places in line that
do not exist, to show the per-address limit counted once across them (the 31st miss is refused,
whichever instance gets it); the watcher reads the listing on every instance, so the table says
when each showed sold out; and the fair queue's budget is one Redis bucket for both, so the
checkouts opened in any one second stay within STRIPE_REQUESTS_PER_SECOND and its burst.
`--redis-url` with one instance shares the cache between its workers the same way.
"""

from __future__ import annotations

import argparse
import html
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Buyers come from addresses of their own, through one proxy the site trusts.
os.environ["TRUSTED_PROXY_COUNT"] = "1"

from benchmarks.cpu_by_route import cpu_by_route_read  # noqa: E402
from benchmarks.load import (  # noqa: E402
    WEBHOOK_SECRET,
    broker_clean,
    broker_for_run,
    free_port,
    limit_across_instances,
    limit_shared_note,
    redis_clean,
    redis_for_run,
    site_environment,
    start_gunicorn,
)

from django.conf import settings  # noqa: E402
from django.db import connection, connections  # noqa: E402

CARD = "4242 4242 4242 4242"
# One CSRF secret for every buyer: Django accepts the unmasked secret as the form's token.
CSRF_SECRET = "onsalebenchcsrfsecret".ljust(32, "0")


class NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


OPENER = urllib.request.build_opener(NoRedirects)


@dataclass
class Answer:
    status: int
    body: str
    location: str = ""
    hx_redirect: str = ""


def http(url: str, *, data: dict | None = None, headers: dict | None = None, timeout: float = 120) -> Answer:
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body, method="POST" if data is not None else "GET")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with OPENER.open(request, timeout=timeout) as answer:
            return Answer(answer.status, answer.read().decode(errors="replace"), answer.headers.get("Location", ""),
                          answer.headers.get("HX-Redirect", ""))
    except urllib.error.HTTPError as error:
        return Answer(error.code, error.read().decode(errors="replace"), error.headers.get("Location", ""))
    except (TimeoutError, OSError) as error:  # no answer within `timeout`: the buyer gave up
        return Answer(0, f"no answer: {error}")


# The processes


def emulator_command(*, port: int, forward_to: str, db_path: Path, pace: dict[str, str] | None = None) -> list[str]:
    """The Stripe emulator's command line; `pace` maps its pace options (pace, write_latency,
    read_latency, rate_limit, endpoint_rate_limit, pace_seed, webhook_workers) to their values. The endpoint gets
    the event types the site handles, as its Dashboard endpoint is configured (README,
    "Production"), not all twelve a payment causes."""
    from payments.webhooks import HANDLED_EVENTS

    command = [
        sys.executable, "-m", "stripe_emulator", "--port", str(port), "--db", str(db_path),
        "--forward-to", forward_to, "--webhook-secret", WEBHOOK_SECRET, "--log-level", "WARNING",
        "--forward-events", ",".join(sorted(HANDLED_EVENTS)),
    ]
    for name, value in (pace or {}).items():
        if value is not None:
            command += ["--" + name.replace("_", "-"), str(value)]
    return command


def emulator_pace(emulator_url: str) -> dict:
    import json

    return json.loads(http(f"{emulator_url}/_emulator/pace").body)


def emulator_pace_off(emulator_url: str) -> None:
    """After the sale: the counting below reads Stripe without its pace."""
    request = urllib.request.Request(f"{emulator_url}/_emulator/pace", data=b'{"preset": "off"}', method="POST",
                                     headers={"Content-Type": "application/json"})
    with OPENER.open(request, timeout=30):
        pass


def workers_peak_memory_mb(master_pid: int) -> tuple[float, int]:
    """The largest peak resident memory (VmHWM) of the gunicorn master's workers, and how many."""
    peaks = []
    try:
        children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    except OSError:
        return 0.0, 0
    for pid in children:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
        except OSError:
            continue
    return (max(peaks) if peaks else 0.0), len(peaks)


def process_tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its live descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total


def machine_cpu_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _ahead_of_the_site() -> None:
    """Stripe is not on the site's machine: its answers must not wait for the site's CPU. The
    emulator runs ahead of the site's processes (nice -10) where the benchmark may ask for it."""
    try:
        os.nice(-10)
    except PermissionError:
        pass


def start_emulator(command: list[str], *, port: int, log_path: Path) -> subprocess.Popen:
    process = subprocess.Popen(command, cwd=ROOT, stdout=log_path.open("w"), stderr=subprocess.STDOUT,
                               preexec_fn=_ahead_of_the_site)
    deadline = time.time() + 30
    while time.time() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the emulator exited with {process.returncode}; see {log_path}")
        try:
            if http(f"http://127.0.0.1:{port}/_emulator/clock", timeout=2).status == 200:
                return process
        except OSError:
            time.sleep(0.2)
    process.terminate()
    raise SystemExit(f"the emulator did not answer within 30 s; see {log_path}")


def start_celery(*, environment: dict, work: Path) -> list[subprocess.Popen]:
    """The Procfile's `worker` and `beat` on the run's own queue: beat starts the fair queue's
    driver every QUEUE_DRIVE_SECONDS and the worker runs it (and the confirmation e-mails)."""
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--loglevel=INFO", "--concurrency", "2"],
        cwd=ROOT, env=environment, stdout=(work / "celery-worker.log").open("w"), stderr=subprocess.STDOUT,
    )
    beat = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel=INFO",
         "--schedule", str(work / "celerybeat-schedule")],
        cwd=ROOT, env=environment, stdout=(work / "celery-beat.log").open("w"), stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 60
    while "ready." not in (work / "celery-worker.log").read_text():
        if worker.poll() is not None or beat.poll() is not None or time.time() > deadline:
            for process in (worker, beat):
                process.terminate()
            raise SystemExit(f"the Celery worker or beat did not start; see {work}")
        time.sleep(0.2)
    return [worker, beat]


def log_events(work: Path, event: str) -> int:
    """How many times the site's processes logged `event` (their JSON log lines)."""
    marker = f'"event": "{event}"'
    return sum(path.read_text(errors="replace").count(marker) for path in work.glob("*.log"))


@dataclass
class SiteInstance:
    """One gunicorn serving the site; `--instances 2` runs two behind the buyers."""

    base: str
    process: subprocess.Popen


# The buyers


@dataclass
class Buyer:
    number: int
    site: str
    outcome: str = "not started"  # reached / sold_out / rate_limited / stripe_busy / queue_timed_out / queue_sold_out / error
    paid: bool = False
    first_sent: float = 0.0
    busy_answers: int = 0  # Book presses answered 503 (Stripe refused or could not be reached)
    final_status: str = ""
    start_sent: float = 0.0
    start_answered: float = 0.0
    queued_seconds: float | None = None  # how long the fair queue's page kept them waiting
    paid_at: float = 0.0  # Stripe's page answered the payment
    confirmed_seconds: float | None = None  # from paying to the success page saying so
    detail: str = ""

    @property
    def headers(self) -> dict:
        n = self.number
        return {
            "X-Forwarded-Proto": "https",
            "X-Forwarded-For": f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256 + 1}",
            "Cookie": f"csrftoken={CSRF_SECRET}",
        }


def buy(buyer: Buyer, *, slug: str, slot_id: int, at: float, think: tuple[float, float], rng: random.Random,
        retries: int = 3) -> None:
    time.sleep(max(0.0, at - time.perf_counter()))
    host = urllib.parse.urlsplit(buyer.site).netloc
    headers = buyer.headers
    http(f"{buyer.site}/l/{slug}/", headers=headers)
    for attempt in range(retries + 1):
        buyer.start_sent = time.perf_counter()
        buyer.first_sent = buyer.first_sent or buyer.start_sent
        started = http(
            f"{buyer.site}/l/{slug}/book/",
            data={"slot": slot_id, "quantity": 1, "customer_email": f"buyer{buyer.number}@onsale.example",
                  "customer_name": f"Buyer {buyer.number}", "csrfmiddlewaretoken": CSRF_SECRET},
            headers={**headers, "Origin": f"https://{host}"},
        )
        buyer.start_answered = time.perf_counter()
        if started.status != 503:
            break
        # "We could not reach our payment provider. Please try again in a moment." A person
        # presses Book again a moment later.
        buyer.busy_answers += 1
        if attempt < retries:
            time.sleep(rng.uniform(1.0, 3.0))
    if started.status == 503:
        buyer.outcome = "stripe_busy"
        return
    if started.status == 303 and "/checkout/queue/" in started.location:
        started = wait_in_line(buyer, started.location)
        if not started.location:
            return
        buyer.start_answered = time.perf_counter()
    if started.status == 303 and "/c/pay/" in started.location:
        buyer.outcome = "reached"
    elif started.status == 409 and "sold out" in started.body.lower():
        buyer.outcome = "sold_out"
        return
    elif started.status == 429:
        buyer.outcome = "rate_limited"
        return
    else:
        buyer.outcome, buyer.detail = "error", f"checkout start answered {started.status}"
        return
    # On Stripe's page: a moment to type the card, then Pay.
    time.sleep(rng.uniform(*think))
    page = http(started.location)
    session_id = started.location.rstrip("/").rsplit("/", 1)[1]
    paid = http(
        started.location.split("/c/pay/")[0] + f"/c/pay/{session_id}",
        data={"action": "pay", "email": f"buyer{buyer.number}@onsale.example", "billingName": f"Buyer {buyer.number}",
              "cardNumber": CARD, "cardExpiry": "12 / 34", "cardCvc": "123"},
    )
    if page.status != 200 or paid.status not in (302, 303) or "session_id=" not in paid.location:
        buyer.detail = f"Stripe's page answered {page.status}, paying {paid.status}"
        return
    buyer.paid, buyer.paid_at = True, time.perf_counter()
    # Back on the site: Stripe sends the buyer to the success page, whose htmx panel then polls
    # the address and after the delay it names (quickly at first, then backing off) until final.
    success = urllib.parse.urlsplit(paid.location)  # https://…, as behind the TLS proxy: asked here on its port
    answer = http(f"{buyer.site}{success.path}?{success.query}", headers=headers)
    for _ in range(60):
        if answer.status == 286 or (answer.status == 200 and not POLL_DELAY.search(answer.body)):
            buyer.final_status = "final"
            buyer.confirmed_seconds = time.perf_counter() - buyer.paid_at
            return
        poll, delay = POLL_URL.search(answer.body), POLL_DELAY.search(answer.body)
        if answer.status != 200 or poll is None or delay is None:
            buyer.final_status = f"success page answered {answer.status}"
            return
        time.sleep(float(delay.group(1)))
        answer = http(urllib.parse.urljoin(buyer.site, html.unescape(poll.group(1))),
                      headers={**headers, "HX-Request": "true"})
    buyer.final_status = "still pending"


POLL_DELAY = re.compile(r'hx-trigger="load delay:(\d+)s"')
POLL_URL = re.compile(r'hx-get="([^"]+)"')


def wait_in_line(buyer: Buyer, queue_path: str) -> Answer:
    """The fair queue's waiting page, polled as its htmx panel does (after the delay the panel
    names: the further back in line, the longer, 1-15 s) until it sends the buyer to Checkout
    (HX-Redirect: returned as a 303 to it) or ends (286)."""
    queued_at = time.perf_counter()
    url = f"{buyer.site}{queue_path}"
    for _ in range(1000):
        answer = http(url, headers={**buyer.headers, "HX-Request": "true"})
        if answer.hx_redirect:
            buyer.queued_seconds = time.perf_counter() - queued_at
            return Answer(303, "", answer.hx_redirect)
        if answer.status == 286:
            buyer.queued_seconds = time.perf_counter() - queued_at
            buyer.outcome = "queue_sold_out" if "sold out" in answer.body else "queue_timed_out"
            return Answer(286, answer.body)
        if answer.status != 200:
            buyer.outcome, buyer.detail = "error", f"waiting page answered {answer.status}"
            return Answer(answer.status, answer.body)
        delay = POLL_DELAY.search(answer.body)
        time.sleep(float(delay.group(1)) if delay else 1.0)
    buyer.outcome, buyer.detail = "error", "waiting page never ended"
    return Answer(0, "")


def watch_connections(stop: threading.Event, seen: dict) -> None:
    """The most connections to the scratch database at once, sampled every 200 ms (the web
    workers' threads each keep one for DATABASE_CONN_MAX_AGE)."""
    try:
        while not stop.is_set():
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
                seen["connections"] = max(seen.get("connections", 0), cursor.fetchone()[0] - 1)
            time.sleep(0.2)
    finally:
        connection.close()


def watch_listing(site: str, slug: str, slot_id: int, started: float, stop: threading.Event, seen: dict) -> None:
    """Read the listing page every 100 ms until the time shows sold out (for now or for good);
    `seen[site]` is then the seconds since `started`."""
    marker = re.compile(rf'data-slot-seats="{slot_id}">Sold out')
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "10.255.255.254"}
    while not stop.is_set():
        answer = http(f"{site}/l/{slug}/", headers=headers)
        if answer.status == 200 and marker.search(answer.body):
            seen[site] = time.perf_counter() - started
            return
        time.sleep(0.1)


# Seeding and counting


def seed(*, seats: int):
    import datetime as dt

    from django.utils import timezone

    from bookings.services import listing_create, merchant_create, slot_create

    merchant = merchant_create(username="onsale", email="onsale@example.com", password=None,
                               display_name="On-sale Tours", timezone_name="Europe/Paris")
    listing = listing_create(merchant=merchant, title="Opening night", description="One night, one time.",
                             price_amount=4500, currency="eur", duration_minutes=120)
    slot = slot_create(listing=listing, starts_at=timezone.now() + dt.timedelta(days=1, hours=2), capacity=seats)
    return listing, slot


def stripe_counts(emulator_url: str) -> dict:
    import stripe

    client = stripe.StripeClient(os.environ["STRIPE_SECRET_KEY"], base_addresses={"api": emulator_url})
    sessions = list(client.v1.checkout.sessions.list(params={"limit": 100}).auto_paging_iter())
    customers = list(client.v1.customers.list(params={"limit": 100}).auto_paging_iter())
    refunds = list(client.v1.refunds.list(params={"limit": 100}).auto_paging_iter())
    return {
        "sessions": len(sessions),
        "paid": sum(1 for s in sessions if s.payment_status == "paid"),
        "customers": len(customers),
        "refunds": len(refunds),
        "paid_sessions": {s.id for s in sessions if s.payment_status == "paid"},
        # Stripe's own clock: the most sessions created in one second, against the site's budget.
        "most_created_in_one_second": max(Counter(s.created for s in sessions).values(), default=0),
        "created_at": sorted(s.created for s in sessions),
    }


@dataclass
class Figures:
    rows: list[tuple[str, str]] = field(default_factory=list)

    def add(self, name: str, value) -> None:
        self.rows.append((name, str(value)))

    def print(self) -> None:
        width = max(len(name) for name, _ in self.rows)
        print()
        for name, value in self.rows:
            print(f"  {name.ljust(width)}  {value}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.onsale", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--buyers", type=int, default=2000, help="buyers (default 2,000)")
    parser.add_argument("--seats", type=int, default=1500, help="seats of the one time on sale (default 1,500)")
    parser.add_argument("--arrival-seconds", type=float, default=3.0,
                        help="buyers arrive spread evenly at random over this many seconds (default 3)")
    parser.add_argument("--think", type=float, nargs=2, default=(1.0, 8.0), metavar=("MIN", "MAX"),
                        help="seconds a buyer spends on Stripe's page before paying (default 1 8; the hold is 30 minutes)")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers, as the Procfile's default (3)")
    parser.add_argument("--settle-seconds", type=float, default=60,
                        help="how long to wait for webhooks to settle every payment (default 60)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of arrivals and think times")
    parser.add_argument("--retries", type=int, default=3,
                        help="times a buyer presses Book again after a 503 (Stripe busy), 1-3 s apart (default 3)")
    parser.add_argument("--queue", type=float, default=20.0, metavar="N",
                        help="the site's fair queue: checkout starts per second (STRIPE_REQUESTS_PER_SECOND, "
                             "default 20, the site's own); 0 turns it off, for a comparison")
    parser.add_argument("--gunicorn-threads", type=int, default=8,
                        help="threads per gthread worker, as the Procfile's WEB_THREADS (default 8); 0 runs sync workers")
    parser.add_argument("--instances", type=int, default=1,
                        help="gunicorn instances on ports of their own, sharing PostgreSQL and Redis (default 1)")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/0",
                        help="run the Procfile's Celery worker and beat on this Redis broker (a queue of the run's own), "
                             "as production does: beat's driver gives the fair queue's turns (default "
                             "redis://127.0.0.1:6379/0); '' runs none, and the waiting pages' polls give the turns, "
                             "as in the demo")
    parser.add_argument("--webhooks-apart", action="store_true",
                        help="Stripe's webhooks go to a gunicorn of their own (1 worker x 4 threads, on its own port, "
                             "as a proxy routing /stripe/webhook/ would send them) instead of waiting in the web "
                             "tier's line behind the pages' polls")
    parser.add_argument("--redis-url", default="",
                        help="share cache, rate limits and the queue's budget through this Redis (default: none with "
                             "one instance, redis://127.0.0.1:6379/0 with several)")
    pace = parser.add_argument_group("Stripe's pace in the emulator")
    pace.add_argument("--pace", default="stripe-test", choices=["off", "stripe-test", "stripe-live"],
                      help="latency and rate limits (default stripe-test: writes 250:900 ms, reads 120:450 ms, 25/s per key)")
    pace.add_argument("--write-latency", metavar="MEDIAN:P99", help="override: latency of writes in ms, or off")
    pace.add_argument("--read-latency", metavar="MEDIAN:P99", help="override: latency of reads in ms, or off")
    pace.add_argument("--rate-limit", metavar="N", help="override: requests/s per key (test, live, N, off)")
    pace.add_argument("--endpoint-rate-limit", metavar="N", help="override: requests/s per key and endpoint, or off")
    pace.add_argument("--webhook-workers", type=int, metavar="N",
                      help="webhook deliveries the emulator makes at once (default: its own, 4)")
    args = parser.parse_args(argv)
    if args.think[1] >= 25 * 60:
        parser.error("--think must stay well within the 30-minute hold")
    if args.instances < 1:
        parser.error("--instances must be at least 1")
    redis_url = args.redis_url or ("redis://127.0.0.1:6379/0" if args.instances > 1 else "")

    if connection.vendor != "postgresql":
        raise SystemExit("Set DATABASE_URL to a PostgreSQL server: the benchmark runs against PostgreSQL.")
    settings.DATABASES["default"].setdefault("TEST", {})["NAME"] = settings.DATABASES["default"]["NAME"] + "_onsale"
    database = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    work = Path(tempfile.mkdtemp(prefix="slotbook-onsale-"))
    processes: list[subprocess.Popen] = []
    rng = random.Random(args.seed)
    redis_env, redis_client = redis_for_run(redis_url) if redis_url else ({"REDIS_URL": ""}, None)
    broker_env = broker_for_run(args.broker)
    if args.instances > 1 and redis_client is None:
        raise SystemExit(f"--instances {args.instances} needs a Redis to share (--redis-url): {redis_url} did not answer")
    try:
        listing, slot = seed(seats=args.seats)
        subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
                       cwd=ROOT, check=True, env={**os.environ, "DJANGO_DEBUG": "false"})
        connections.close_all()
        site_ports = [free_port() for _ in range(args.instances)]
        site_port, emulator_port = site_ports[0], free_port()
        webhook_port = free_port() if args.webhooks_apart else site_port
        emulator_url = f"http://127.0.0.1:{emulator_port}"
        processes.append(start_emulator(
            emulator_command(port=emulator_port, forward_to=f"http://127.0.0.1:{webhook_port}/stripe/webhook/",
                             db_path=work / "emulator.sqlite3",
                             pace={"pace": args.pace, "write_latency": args.write_latency,
                                   "read_latency": args.read_latency, "rate_limit": args.rate_limit,
                                   "endpoint_rate_limit": args.endpoint_rate_limit, "pace_seed": str(args.seed),
                                   "webhook_workers": args.webhook_workers}),
            port=emulator_port, log_path=work / "emulator.log",
        ))
        os.environ["STRIPE_REQUESTS_PER_SECOND"] = f"{args.queue:g}"
        # The emulator posts its webhooks straight to gunicorn over HTTP, where production's TLS
        # proxy would say https: without this every webhook would be redirected (301) unread.
        os.environ["DJANGO_SECURE_SSL_REDIRECT"] = "false"
        celery = start_celery(
            environment=site_environment(emulator_url=emulator_url, database_name=database, pool=False,
                                         redis=redis_env, broker=broker_env),
            work=work,
        ) if args.broker else []
        processes.extend(celery)
        (work / "cpu").mkdir()
        os.environ["CPU_BY_ROUTE_DIR"] = str(work / "cpu")
        if args.gunicorn_threads:
            os.environ["GUNICORN_CMD_ARGS"] = f"--threads {args.gunicorn_threads} --worker-class gthread"
        sites = []
        for number, port in enumerate(site_ports, start=1):
            gunicorn = start_gunicorn(port=port, workers=args.workers, emulator_url=emulator_url,
                                      database_name=database, pool=False, redis=redis_env, broker=broker_env,
                                      log_path=work / f"gunicorn-{number}.log",
                                      extra_args=("--config", str(ROOT / "benchmarks" / "cpu_by_route.py")))
            processes.append(gunicorn)
            sites.append(SiteInstance(f"http://127.0.0.1:{port}", gunicorn))
        webhook_pids = []
        if args.webhooks_apart:
            os.environ["GUNICORN_CMD_ARGS"] = "--threads 4 --worker-class gthread"
            processes.append(start_gunicorn(port=webhook_port, workers=1, emulator_url=emulator_url,
                                            database_name=database, pool=False, redis=redis_env, broker=broker_env,
                                            log_path=work / "gunicorn-webhooks.log",
                                            extra_args=("--config", str(ROOT / "benchmarks" / "cpu_by_route.py"))))
            webhook_pids.append(processes[-1].pid)
        misses = limit_across_instances([site.base for site in sites]) if args.instances > 1 else []
        paced = emulator_pace(emulator_url)
        bound = min([r for r in (paced["rate_limit"], paced["endpoint_rate_limit"]) if r] or [0])
        print(f"Stripe's pace: writes {paced['write_latency']}, reads {paced['read_latency']}, "
              f"{paced['rate_limit']}/s per key, {paced['endpoint_rate_limit']}/s per endpoint")
        print(f"scratch database {database}; {args.instances} gunicorn instance(s) "
              f"({', '.join(site.base for site in sites)}; cache "
              f"{'in Redis ' + redis_url if redis_client else 'in each worker'}), each with {args.workers} workers"
              f"{f' x {args.gunicorn_threads} threads' if args.gunicorn_threads else ' (sync)'}; emulator at {emulator_url}; "
              f"{args.buyers} buyers for {args.seats} seats over {args.arrival_seconds:g} s, paying after "
              f"{args.think[0]:g}-{args.think[1]:g} s; webhooks to "
              f"{f'a gunicorn of their own (port {webhook_port})' if args.webhooks_apart else 'the web tier'}; fair queue "
              f"{f'{args.queue:g} starts/s' if args.queue else 'off'}, driven by "
              f"{'beat (Celery worker and beat on ' + args.broker + ')' if args.broker else 'the waiting pages'}; "
              f"logs in {work}")

        buyers = [Buyer(n, sites[n % len(sites)].base) for n in range(1, args.buyers + 1)]
        begin = time.perf_counter() + 0.5
        arrivals = sorted(begin + rng.uniform(0, args.arrival_seconds) for _ in buyers)
        stop, seen = threading.Event(), {}
        watchers = [threading.Thread(target=watch_listing,
                                     args=(site.base, listing.slug, slot.pk, arrivals[0], stop, seen), daemon=True)
                    for site in sites]
        threads = [
            threading.Thread(target=buy, args=(buyer,),
                             kwargs=dict(slug=listing.slug, slot_id=slot.pk, at=at, think=tuple(args.think),
                                         rng=random.Random(rng.random()), retries=args.retries),
                             daemon=True)
            for buyer, at in zip(buyers, arrivals)
        ]
        watchers.append(threading.Thread(target=watch_connections, args=(stop, seen), daemon=True))
        for watcher in watchers:
            watcher.start()
        parts = {
            "the site's web tier": [site.process.pid for site in sites] + webhook_pids,
            "its Celery worker and beat": [process.pid for process in celery],
            "the Stripe emulator": [processes[0].pid],
        }

        def cpu_now() -> dict[str, float]:
            seconds = {name: sum(process_tree_cpu_seconds(pid) for pid in pids) for name, pids in parts.items()}
            own = os.times()  # this process alone: its children are the parts above
            return {**seconds, "the buyers (this process)": own.user + own.system}

        cpu_before, machine_before, sale_began = cpu_now(), machine_cpu_seconds(), time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        machine_busy = machine_cpu_seconds() - machine_before
        sale_seconds = time.perf_counter() - sale_began
        cpu_by_part = {name: seconds - cpu_before[name] for name, seconds in cpu_now().items()}
        stop.set()
        for watcher in watchers:
            watcher.join(timeout=30)

        # Webhooks still on their way: wait until every paid session is settled on the site.
        from bookings.models import Booking, BookingStatus, Refund, Slot

        with connection.cursor() as cursor:
            cursor.execute("SHOW max_connections")
            max_connections = cursor.fetchone()[0]
        peaks = [workers_peak_memory_mb(site.process.pid) for site in sites]
        peak_mb, worker_count = max(peak for peak, _ in peaks), sum(count for _, count in peaks)
        paced = emulator_pace(emulator_url)
        emulator_pace_off(emulator_url)
        stripe = stripe_counts(emulator_url)
        deadline = time.time() + args.settle_seconds
        while time.time() < deadline:
            unsettled = Booking.objects.filter(checkout_session_id__in=stripe["paid_sessions"],
                                               status=BookingStatus.PENDING).count()
            if not unsettled:
                break
            time.sleep(0.5)
        stripe = stripe_counts(emulator_url)
        statuses = Counter(Booking.objects.filter(slot=slot).values_list("status", flat=True))
        fresh = Slot.objects.get(pk=slot.pk)
        sold = statuses[BookingStatus.CONFIRMED]
        outcomes = Counter(b.outcome for b in buyers)
        starts = [b for b in buyers if b.start_answered]
        span = max(b.start_answered for b in starts) - min(b.start_sent for b in starts)
        reached = [b for b in buyers if b.outcome == "reached"]
        opened_span = (max(b.start_answered for b in reached) - min(b.first_sent for b in reached)) if reached else 0
        refunded = Refund.objects.filter(booking__slot=slot).count()
        oversold = max(0, sold - args.seats)
        unsettled = sum(1 for s in stripe["paid_sessions"]
                        if not Booking.objects.filter(checkout_session_id=s, status__in=[
                            BookingStatus.CONFIRMED, BookingStatus.REFUND_DUE, BookingStatus.REFUNDED]).exists())

        figures = Figures()
        figures.add("buyers", args.buyers)
        figures.add("seats", args.seats)
        figures.add("reached Checkout", outcomes["reached"])
        figures.add("told sold out, no Stripe call", outcomes["sold_out"])
        figures.add("site rate limit / Stripe busy to the end / errors",
                    f"{outcomes['rate_limited']} / {outcomes['stripe_busy']} / {outcomes['error']}")
        figures.add("Stripe 429s seen (global / endpoint)", f"{paced['counts']['rate_limited']} "
                    f"({paced['counts']['rate_limited_global']} / {paced['counts']['rate_limited_endpoint']})")
        queued = [b.queued_seconds for b in buyers if b.queued_seconds is not None]
        figures.add("waited in the fair queue / then reached Checkout / timed out / sold out meanwhile",
                    f"{len(queued)} / {sum(1 for b in reached if b.queued_seconds is not None)} / "
                    f"{outcomes['queue_timed_out']} / {outcomes['queue_sold_out']}")
        if queued:
            figures.add("time in the queue p50 / p95 / p99 / max",
                        " / ".join(f"{v * 1000:.0f} ms" for v in _percentiles(queued)))
        figures.add("buyers refused then through on a later press",
                    sum(1 for b in reached if b.busy_answers))
        figures.add("paid on Stripe's page", sum(b.paid for b in buyers))
        figures.add("success page turned final while the buyer watched (its htmx polling)",
                    f"{sum(1 for b in buyers if b.final_status == 'final')} of {sum(b.paid for b in buyers)}"
                    + "".join(f"; {n} {status}" for status, n in Counter(
                        b.final_status for b in buyers if b.paid and b.final_status != "final").items()))
        shown = [b.confirmed_seconds for b in buyers if b.confirmed_seconds is not None]
        if shown:
            figures.add("paid to the success page saying so p50 / p95 / p99 / max",
                        " / ".join(f"{v * 1000:.0f} ms" for v in _percentiles(shown)))
        figures.add("confirmed", sold)
        figures.add("refunded (target 0)", refunded)
        figures.add("oversold (must be 0)", oversold)
        figures.add("paid, not settled", unsettled)
        for number, site in enumerate(sites, start=1):
            shown = seen.get(site.base)
            figures.add("sold out shown on the listing after" + (f" (instance {number})" if len(sites) > 1 else ""),
                        f"{shown:.2f} s from the first arrival" if shown is not None else "never")
        figures.add("checkout starts answered/s", f"{len(starts) / span:.1f} ({len(starts)} in {span:.2f} s)")
        if reached and opened_span:
            rate = len(reached) / opened_span
            figures.add("checkouts opened/s vs Stripe's bound",
                        f"{rate:.1f} of {bound}/s ({rate / bound:.2f})" if bound else f"{rate:.1f} (no bound set)")
            created = stripe["created_at"]
            first_30 = sum(1 for t in created if t < created[0] + 30) / 30
            whole = len(created) / max(1, created[-1] - created[0] + 1)
            figures.add("Checkout Sessions created/s on Stripe's clock: first 30 s / whole sale",
                        f"{first_30:.1f} ({first_30 / bound:.2f}) / {whole:.1f} ({whole / bound:.2f})" if bound
                        else f"{first_30:.1f} / {whole:.1f}")
            most = stripe["most_created_in_one_second"]
            figures.add("most Checkout Sessions created in one second (Stripe's clock)",
                        f"{most} (fair queue {args.queue:g}/s over all instances, a burst of one second's worth)"
                        if args.queue else f"{most} (fair queue off)")
            figures.add("Book to Stripe's page p50 / p95 / p99 / max", " / ".join(
                f"{v * 1000:.0f} ms" for v in _percentiles([b.start_answered - b.first_sent for b in reached])))
        figures.add("start answer p50 / p95 / p99 / max (all)",
                    " / ".join(f"{v * 1000:.0f} ms" for v in _percentiles([b.start_answered - b.start_sent for b in starts])))
        figures.add("Stripe: Sessions created / Customers made",
                    f"{stripe['sessions']} / {stripe['customers']} (one session per buyer who reached Checkout; "
                    f"Checkout makes the Customer on payment)")
        import json

        deliveries = json.loads(http(f"{emulator_url}/_emulator/webhooks").body)
        figures.add("webhooks delivered / answered 2xx / still queued or failed",
                    f"{deliveries['succeeded'] + deliveries['failed'] + deliveries['queued'] + deliveries['in_flight']} / "
                    f"{deliveries['succeeded']} / {deliveries['queued'] + deliveries['in_flight'] + deliveries['failed']}")
        lags = webhook_lags(work / "emulator.sqlite3")
        if lags:
            figures.add("webhooks: event made to answered 2xx p50 / p95 / p99 / max",
                        " / ".join(f"{v * 1000:.0f} ms" for v in _percentiles(lags)))
        figures.add("success pages' reads of Stripe left for later (budget spent)",
                    f"{log_events(work, 'status_check_deferred')} (the page waited for the webhook)")
        figures.add("Stripe calls delayed by the pace", f"{paced['counts']['delayed']} "
                    f"(mean {paced['counts']['delayed_ms_total'] / max(1, paced['counts']['delayed']):.0f} ms)")
        figures.add("database connections at most (the sale's database)",
                    f"{seen.get('connections', 0)} of max_connections {max_connections}")
        figures.add("web workers' peak memory", f"{peak_mb:.0f} MB (largest of {worker_count} workers' VmHWM)")
        if len(sites) > 1:
            figures.add("reached Checkout per instance", " / ".join(
                str(sum(1 for b in reached if b.site == site.base)) for site in sites))
            note, _ = limit_shared_note(misses)
            figures.add("rate limit across instances", note)
        parts = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in cpu_by_part.items())
        figures.add("CPU while the buyers ran (2 cores)",
                    f"{machine_busy:.0f} of {sale_seconds * (os.cpu_count() or 1):.0f} core-seconds busy: {parts}, "
                    f"PostgreSQL, Redis and the rest {max(0.0, machine_busy - sum(cpu_by_part.values())):.0f} s")
        figures.add("slot afterwards: sold / held / free", f"{fresh.seats_sold} / {fresh.seats_held} / {fresh.seats_left}")
        figures.print()
        print_cpu_by_route(work / "cpu")
        errors =  [b.detail for b in buyers if b.detail]
        if errors:
            print(f"\n  first problems: {Counter(errors).most_common(3)}")
        bad = (oversold or refunded or (misses and 429 not in misses) or unsettled or stripe["sessions"] != outcomes["reached"]
               or stripe["customers"] != stripe["paid"])
        return 1 if bad else 0
    finally:
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        if redis_client is not None:
            redis_clean(redis_client, redis_env["CACHE_KEY_PREFIX"])
        broker_clean(broker_env)
        connections.close_all()
        connection.creation.destroy_test_db(database, verbosity=0)


def print_cpu_by_route(directory: Path) -> None:
    """The web tier's CPU by route (the handling threads' own CPU, benchmarks/cpu_by_route.py)."""
    routes = cpu_by_route_read(directory)
    total = sum(seconds for _, seconds in routes.values()) or 1.0
    print(f"\n  web tier's CPU by route (handling threads' own, {total:.1f} s in all, the whole run)")
    for route, (count, seconds) in sorted(routes.items(), key=lambda item: -item[1][1])[:12]:
        print(f"  {route[:60]:60} {count:6} requests {seconds:7.1f} s {seconds * 1000 / count:7.2f} ms each "
              f"{seconds / total:6.1%}")


def webhook_lags(db_path: Path) -> list[float]:
    """Seconds from each event's delivery being queued to the site answering it 2xx (the end of
    that attempt), read from the emulator's own store after the sale."""
    import sqlite3

    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as store:
        return [row[0] for row in store.execute(
            "SELECT MIN(a.at) - d.created_at FROM deliveries d JOIN delivery_attempts a ON a.delivery_id = d.id "
            "WHERE a.status BETWEEN 200 AND 299 GROUP BY d.id")]


def _percentiles(values: list[float]) -> list[float]:
    ordered = sorted(values)
    return [ordered[min(len(ordered) - 1, int(len(ordered) * p))] for p in (0.5, 0.95, 0.99)] + [ordered[-1]]


if __name__ == "__main__":
    sys.exit(main())
