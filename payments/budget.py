"""The budget of Stripe requests shared by every web process and worker: a token bucket.

Stripe limits requests per second per secret key (25 in test mode, 100 live) and answers 429
beyond. The site's Stripe calls in volume spend at most STRIPE_REQUESTS_PER_SECOND of it, with a
burst of one second's worth: checkout starts (`budget_take`), and reads that can wait
(`budget_take(spare_only=True)`: the success page's and reconcile's reads of a session, which the
webhook makes unneeded), which only go while half the burst is unspent, so a line of checkout
starts is never slowed by them. The bucket is kept as a single number, the GCRA's "theoretical
arrival time" (`tat`): the moment the bucket would be full again. A take succeeds when `tat - now` is within
the burst, and moves `tat` to `max(tat, now) + 1/rate`; otherwise nothing changes. That is one
compare-and-set, so it is one atomic operation in either store:

- with REDIS_URL set, a Lua script (Redis runs a script alone, so two processes never take the
  same token) reading Redis's own clock, so every web host agrees on "now";
- without Redis, one statement on one row (`payments.StripeBudget`), an insert that becomes a
  conditional update once the row exists: PostgreSQL checks the update's WHERE against the row as
  the last writer left it, after any wait for its lock, and SQLite runs one writer at a time, so
  no token is taken twice. "Now" is the database's clock read by that statement, not a time the
  process read before waiting for the lock: a take that waited behind others would otherwise
  compare the bucket as they left it with a moment already past, and be refused a token that
  was there.

No counter lives in a process: two web processes share one budget. A Redis that does not answer
falls back to the database, so a start is never refused because the budget could not be read.
"""

import logging
from functools import cache

from django.conf import settings
from django.db import connection

from common.logs import log_event
from payments.models import StripeBudget

log = logging.getLogger("shop.payments")

STRIPE_BUDGET = "stripe"
MICROSECONDS = 1_000_000

# KEYS[1] the bucket; ARGV[1] microseconds per token; ARGV[2] burst (microseconds ahead allowed).
# Returns 1 when a token was taken, 0 otherwise. Redis numbers in Lua are doubles: microseconds
# since the epoch (about 1.8e15) are exact below 2^53.
_TAKE_SCRIPT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
if tat - now > burst then return 0 end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return 1
"""


def _interval_and_burst(rate: float) -> tuple[int, int]:
    """Microseconds per token, and how far ahead of now `tat` may run: one second's worth of
    requests may go at once (as Stripe's own buckets allow), then one every interval."""
    interval = max(1, round(MICROSECONDS / rate))
    capacity = max(1, int(rate))
    return interval, (capacity - 1) * interval


def budget_is_limited() -> bool:
    """Whether checkout starts are paced at all (STRIPE_REQUESTS_PER_SECOND > 0)."""
    return settings.STRIPE_REQUESTS_PER_SECOND > 0


def budget_take(name: str = STRIPE_BUDGET, *, spare_only: bool = False) -> bool:
    """Take one token of the named budget, shared by every process; False, taking nothing, when it
    is spent. `spare_only`: take one only while at least half the burst is unspent (for a call
    that can be left for later), so those calls never hold up a call that cannot wait. Always
    True when pacing is off."""
    rate = settings.STRIPE_REQUESTS_PER_SECOND
    if rate <= 0:
        return True
    interval, burst = _interval_and_burst(rate)
    return budget_take_paced(name, interval_us=interval, burst_us=burst // 2 if spare_only else burst)


def budget_take_paced(name: str, *, interval_us: int, burst_us: int) -> bool:
    """`budget_take` with the pace given: one token per `interval_us`, `tat` allowed `burst_us`
    ahead of now (burst_us / interval_us + 1 tokens at once)."""
    interval, burst = interval_us, burst_us
    url = settings.STRIPE_BUDGET_REDIS_URL
    if url:
        try:
            return _redis_take(url, name, interval, burst)
        except Exception as error:  # noqa: BLE001 - any Redis failure: the database keeps the budget
            log_event(log, "stripe_budget_redis_unavailable", level=logging.WARNING, error=type(error).__name__)
    return _database_take(name, interval, burst)


# The database's clock in microseconds since the epoch, read when the statement runs: on
# PostgreSQL when the row is (re-)checked after any wait for its lock (clock_timestamp(), not the
# transaction's start); SQLite's clock has milliseconds, and a token here lasts tens of them.
_NOW_US = {
    "postgresql": "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)",
    "sqlite": "CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)",
}
_GREATEST = {"postgresql": "GREATEST", "sqlite": "MAX"}


def _database_take(name: str, interval: int, burst: int) -> bool:
    """One statement: the first take ever makes the row (a take from an empty bucket); any other
    moves `tat` only when it is within the burst. PostgreSQL's ON CONFLICT DO UPDATE locks the
    row and checks the WHERE against it as the last writer left it, and SQLite runs one writer at
    a time, so no token is taken twice; a refused take is one statement too (it was three)."""
    table = StripeBudget._meta.db_table
    now = _NOW_US[connection.vendor]
    sql = (
        f"INSERT INTO {table} (name, tat_us) VALUES (%s, {now} + %s) "
        f"ON CONFLICT (name) DO UPDATE SET tat_us = {_GREATEST[connection.vendor]}({table}.tat_us, {now}) + %s "
        f"WHERE {table}.tat_us <= {now} + %s RETURNING 1"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [name, interval, interval, burst])
        return cursor.fetchone() is not None


@cache
def _redis_script(url: str):
    import redis

    client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
    return client.register_script(_TAKE_SCRIPT)


def _redis_key(name: str) -> str:
    prefix = settings.STRIPE_BUDGET_KEY_PREFIX
    return f"{prefix}:slotbook:stripe-budget:{name}" if prefix else f"slotbook:stripe-budget:{name}"


def _redis_take(url: str, name: str, interval: int, burst: int) -> bool:
    return bool(_redis_script(url)(keys=[_redis_key(name)], args=[interval, burst]))


def budget_reset(name: str = STRIPE_BUDGET) -> None:
    """Make the budget full again, in whichever store holds it (for tests and benchmarks)."""
    StripeBudget.objects.filter(name=name).delete()
    url = settings.STRIPE_BUDGET_REDIS_URL
    if url:
        import redis

        redis.Redis.from_url(url).delete(_redis_key(name))
