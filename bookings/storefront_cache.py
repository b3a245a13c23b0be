"""When the storefront's cached fragments must be rendered again.

The public pages keep their expensive parts in Django's cache: the catalog's cards and a
listing's times for at most STOREFRONT_CACHE_SECONDS, the status panel of a final booking for at
most FINAL_STATUS_CACHE_SECONDS. Whatever writes the rows those fragments show renders them
stale, so the next request renders afresh: the catalog and listings by `connect()`, which hears
every write of a Merchant, Listing or Slot (a service, the admin, a shell: save, delete, update,
bulk_create) — a merchant's Connect account state (`account.updated`) included; a booking's status panel by `booking_changed`, called by the booking's and the
refund's transition functions. A booking's seats are shown through its slot's `seats_left`,
written in the same transaction as the booking's status, so bookings need no hook of their own.
The fragments render afresh at once in the process that made the change, and in every process when the cache is
shared (REDIS_URL) within STOREFRONT_VERSION_CHECK_SECONDS (each process keeps copies in front of
Redis: `FrontCopy`, `StatusVersions` and its generation); with the default per-process cache, another process shows
the old fragment until it expires. Within a process one thread at a time renders a fragment
(`fragment_kept`): the others show the copy that has just expired meanwhile. Bookings never depend on these fragments: seats are checked again, in the
database, when a checkout starts and when a payment is confirmed.
"""

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.locmem import LocMemCache
from django.db import transaction
from django.db.models.signals import post_delete, post_save

_VERSION_KEY = "storefront:version"

T = TypeVar("T")


class CheckedValue:
    """A value of the shared cache as this process last read it, read again once older than
    STOREFRONT_VERSION_CHECK_SECONDS; a value this process wrote itself is known at once."""

    def __init__(self, key: str):
        self.key = key
        self._value: object = None
        self._read_at = float("-inf")

    def get(self) -> object:
        now = time.monotonic()
        if now - self._read_at >= settings.STOREFRONT_VERSION_CHECK_SECONDS:
            self._value, self._read_at = cache.get(self.key, 0), now
        return self._value

    def moved(self, value: object) -> None:
        self._value, self._read_at = value, time.monotonic()

    def forget(self) -> None:
        self._value, self._read_at = None, float("-inf")


class FrontCopy:
    """A per-process copy in front of a shared cache (Redis) for the catalog's and listings'
    fragments, which every visitor reads: a page then costs no round trip to Redis at all.

    The copy keeps the shared storefront version it last read, and reads it again at most every
    STOREFRONT_VERSION_CHECK_SECONDS; fragments are kept under keys naming that version, so a
    change made in another process is shown here within that fraction of a second (a change made
    in this process, at once: it moves the copy's version too). Fragments expire as in the shared
    cache, and at most `max_entries` are kept (the least recently used go first)."""

    def __init__(self, *, max_entries: int = 512):
        self.max_entries = max_entries
        self._fragments: OrderedDict[str, tuple[float, object]] = OrderedDict()
        self._version = CheckedValue(_VERSION_KEY)
        self._lock = threading.Lock()

    @staticmethod
    def wanted() -> bool:
        """Only in front of a cache other processes share; a per-process cache needs no copy."""
        return settings.STOREFRONT_VERSION_CHECK_SECONDS > 0 and not isinstance(caches["default"], LocMemCache)

    def version(self) -> object:
        return self._version.get()

    def version_moved(self, version: object) -> None:
        self._version.moved(version)

    def get(self, key: str):
        now = time.monotonic()
        with self._lock:
            kept = self._fragments.get(key)
            if kept is not None and kept[0] > now:
                self._fragments.move_to_end(key)
                return kept[1]
        value = cache.get(key)
        if value is not None:
            # Its time left in the shared cache is not known: kept here for a full period (a
            # fragment carries its own freshness: `fragment_kept`; a panel, its version).
            self._keep(key, value, settings.STOREFRONT_CACHE_SECONDS)
        return value

    def set(self, key: str, value, seconds: int) -> None:
        cache.set(key, value, seconds)
        self._keep(key, value, seconds)

    def _keep(self, key: str, value, seconds: float) -> None:
        with self._lock:
            self._fragments[key] = (time.monotonic() + seconds, value)
            self._fragments.move_to_end(key)
            while len(self._fragments) > self.max_entries:
                self._fragments.popitem(last=False)

    def read(self, key: str):
        """The value kept under `key`: through this copy in front of a shared cache, else (a
        per-process cache) from the cache itself."""
        return self.get(key) if self.wanted() else cache.get(key)

    def write(self, key: str, value, seconds: int) -> None:
        if self.wanted():
            self.set(key, value, seconds)
        else:
            cache.set(key, value, seconds)

    def clear(self) -> None:
        with self._lock:
            self._fragments.clear()
        self._version.forget()


front_copy = FrontCopy()


def storefront_version() -> str:
    """Part of the key of every catalog and listing fragment; changes with what they show.

    Whether merchants sell through Connect is in it too: with Connect on, a listing of a merchant
    whose account cannot charge says "not taking bookings yet" instead of offering checkout, and
    that merchant's state is a Merchant row (kept by `account.updated`), so its changes move the
    version like any other write of a merchant."""
    version = front_copy.version() if FrontCopy.wanted() else cache.get(_VERSION_KEY, 0)
    return f"{version}-{'c' if settings.CONNECT_ENABLED else 'p'}"


class RenderTurns:
    """Per key, one thread of this process at a time. A gthread worker's threads that find a
    fragment missing or expired together would otherwise all render it at once, each as slow
    as all of them under the GIL (a listing with 500 times: p99 0.6-0.8 s instead of 50 ms)."""

    def __init__(self):
        self._guard = threading.Lock()
        self._turns: dict[str, tuple[threading.Lock, int]] = {}

    @contextmanager
    def turn(self, key: str, *, wait: bool) -> Iterator[bool]:
        """Whether this thread has the key's turn: waited for when `wait`, else only if free."""
        with self._guard:
            lock, users = self._turns.get(key) or (threading.Lock(), 0)
            self._turns[key] = (lock, users + 1)
        mine = lock.acquire(blocking=wait)
        try:
            yield mine
        finally:
            if mine:
                lock.release()
            with self._guard:
                lock, users = self._turns[key]
                if users == 1:
                    del self._turns[key]
                else:
                    self._turns[key] = (lock, users - 1)

    def waiting(self, key: str) -> int:
        """Threads holding or waiting for the key's turn."""
        with self._guard:
            return self._turns.get(key, (None, 0))[1]


render_turns = RenderTurns()


def fragment_kept(key: str, seconds: int, make: Callable[[], T | None]) -> T | None:
    """`make()`, kept under `key` (which must name the storefront version) and made again once
    it is `seconds` old (0: made every time; None is never kept).

    One thread of this process makes it at a time. Meanwhile the others show the copy that has
    just expired, kept one more period for this, or wait for the new one when there is none: a
    fragment is shown at most one render's time past `seconds`, and never of an old version."""
    if seconds <= 0:
        return make()
    kept = front_copy.read(key)
    if kept is not None and kept[0] > time.time():
        return kept[1]
    with render_turns.turn(key, wait=kept is None) as mine:
        if not mine:
            return kept[1]
        kept = front_copy.read(key)  # made by the thread this one waited for
        if kept is not None and kept[0] > time.time():
            return kept[1]
        value = make()
        if value is not None:
            front_copy.write(key, (time.time() + seconds, value), 2 * seconds)
        return value


def _bump_version() -> None:
    version = time.time_ns()
    cache.set(_VERSION_KEY, version, None)
    front_copy.version_moved(version)


def storefront_changed() -> None:
    """Seats, slots, listings or merchants changed: catalog and listing fragments are stale.

    Called inside the writing transaction. The version moves now and again after commit, so a
    request that rendered the old rows in between cannot keep them cached."""
    _bump_version()
    transaction.on_commit(_bump_version)


def _rows_changed(sender, **kwargs) -> None:
    storefront_changed()


def connect() -> None:
    """Make every write of a row the storefront shows invalidate its fragments (once, at start)."""
    from bookings.models import Listing, Merchant, Slot, rows_written_in_bulk

    for model in (Merchant, Listing, Slot):
        for signal in (post_save, post_delete, rows_written_in_bulk):
            signal.connect(_rows_changed, sender=model, dispatch_uid=f"storefront-{model.__name__}")


# How long a booking's panel version is kept: well beyond any kept panel. A version evicted or
# expired early only makes a new one, under which no panel is kept yet.
_STATUS_VERSION_SECONDS = 24 * 3600


_STATUS_GENERATION_KEY = "storefront:status-generation"


def _status_version_key(session_id: str) -> str:
    return "storefront:status-version:" + hashlib.sha256(session_id.encode()).hexdigest()[:40]


class StatusVersions:
    """A per-process copy of bookings' panel versions in front of a shared cache (Redis), so that
    a kept panel, kept in `status_panels`, costs no round trip to Redis. Every change of any
    booking's version also moves one shared *generation*; each process reads the generation at
    most every STOREFRONT_VERSION_CHECK_SECONDS, and a booking's version it read under the
    generation still current is used as it is, however long ago it was read (no booking changed
    anywhere since). A booking changed in another process therefore shows its new panel here
    within that fraction of a second, one changed in this process at once; while bookings keep
    changing (an on-sale) each version is read again, as it would be without the generation. At
    most `max_entries` are kept, the least recently used going first."""

    def __init__(self, *, max_entries: int = 4096):
        self.max_entries = max_entries
        self._versions: OrderedDict[str, tuple[object, object]] = OrderedDict()
        self._generation = CheckedValue(_STATUS_GENERATION_KEY)
        self._lock = threading.Lock()

    def generation(self) -> object:
        """The shared generation, as last read (read again when older than the check)."""
        return self._generation.get()

    def fresh(self, key: str, generation: object) -> object | None:
        with self._lock:
            kept = self._versions.get(key)
            if kept is None or kept[0] != generation:
                return None
            self._versions.move_to_end(key)
            return kept[1]

    def remember(self, key: str, version: object, generation: object) -> None:
        """A version read from the shared cache under `generation` (read before the version)."""
        with self._lock:
            self._versions[key] = (generation, version)
            self._versions.move_to_end(key)
            while len(self._versions) > self.max_entries:
                self._versions.popitem(last=False)

    def moved(self, key: str, version: object, generation: object) -> None:
        """This process moved a booking's version, and then the generation."""
        self._generation.moved(generation)
        self.remember(key, version, generation)


status_versions = StatusVersions()
# Kept panels in this process, under keys naming their version (as the fragments in front_copy).
status_panels = FrontCopy(max_entries=2048)


def final_status_key(session_id: str) -> str:
    """The key of a booking's kept status panel. It holds the booking's panel version, which
    moves with every change of the booking: read it before the booking, and a panel rendered
    from rows read before a change is kept under a key that nobody reads after it."""
    key = _status_version_key(session_id)
    shared = FrontCopy.wanted()
    generation = status_versions.generation() if shared else None
    version = status_versions.fresh(key, generation) if shared else None
    if version is None:
        version = cache.get(key)
        if version is None:
            cache.add(key, time.time_ns(), _STATUS_VERSION_SECONDS)
            version = cache.get(key, 0)
        if shared:
            status_versions.remember(key, version, generation)
    return f"storefront:status:{key.rsplit(':', 1)[1]}:{version}"


def status_panel_get(key: str):
    """A kept status panel (under a key from `final_status_key`), or None."""
    return status_panels.read(key)


def status_panel_set(key: str, pieces, seconds: int) -> None:
    status_panels.write(key, pieces, seconds)


def _bump_status_version(key: str) -> None:
    version = time.time_ns()
    cache.set(key, version, _STATUS_VERSION_SECONDS)
    if FrontCopy.wanted():
        # After the version: a process that sees the new generation reads the new version.
        generation = time.time_ns()
        cache.set(_STATUS_GENERATION_KEY, generation, None)
        status_versions.moved(key, version, generation)


def booking_changed(session_id: str | None) -> None:
    """A booking's status changed: its kept status panel (if any) is no longer read.

    Called inside the writing transaction. The panel version moves now and again after commit
    (as the storefront's does), so a poll that read the booking before the commit cannot keep
    its panel for later polls: deleting the panel instead would lose to a poll that stores it
    after the delete."""
    if not session_id:
        return
    key = _status_version_key(session_id)
    _bump_status_version(key)
    transaction.on_commit(lambda: _bump_status_version(key))
