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
shared (REDIS_URL); with the default per-process cache, another process shows the old fragment
until it expires. Bookings never depend on these fragments: seats are checked again, in the
database, when a checkout starts and when a payment is confirmed.
"""

import hashlib
import time

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import post_delete, post_save

_VERSION_KEY = "storefront:version"


def storefront_version() -> str:
    """Part of the key of every catalog and listing fragment; changes with what they show.

    Whether merchants sell through Connect is in it too: with Connect on, a listing of a merchant
    whose account cannot charge says "not taking bookings yet" instead of offering checkout, and
    that merchant's state is a Merchant row (kept by `account.updated`), so its changes move the
    version like any other write of a merchant."""
    return f"{cache.get(_VERSION_KEY, 0)}-{'c' if settings.CONNECT_ENABLED else 'p'}"


def _bump_version() -> None:
    cache.set(_VERSION_KEY, time.time_ns(), None)


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


def _status_version_key(session_id: str) -> str:
    return "storefront:status-version:" + hashlib.sha256(session_id.encode()).hexdigest()[:40]


def final_status_key(session_id: str) -> str:
    """The key of a booking's kept status panel. It holds the booking's panel version, which
    moves with every change of the booking: read it before the booking, and a panel rendered
    from rows read before a change is kept under a key that nobody reads after it."""
    key = _status_version_key(session_id)
    version = cache.get(key)
    if version is None:
        cache.add(key, time.time_ns(), _STATUS_VERSION_SECONDS)
        version = cache.get(key, 0)
    return f"storefront:status:{key.rsplit(':', 1)[1]}:{version}"


def _bump_status_version(key: str) -> None:
    cache.set(key, time.time_ns(), _STATUS_VERSION_SECONDS)


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
