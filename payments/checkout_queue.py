"""The fair queue of checkout starts when Stripe is the limit: its rows and their transitions.

A checkout start that finds Stripe's budget spent (payments/budget.py), or that Stripe answered
429, keeps its booking and the seats it holds, and gets a row here; its primary key is its place
in line. Turns are given in that order: whoever drives the queue (a waiting page's poll, or the
`checkout_queue_drive` task) first takes a token of the budget, then claims the earliest waiting
row with a conditional update (waiting -> opening), so two drivers never claim one row and no
row is passed over by a later one. The Stripe call is made after the claim, under no lock; the
row then becomes `opened` (with the Checkout URL) or goes back to `waiting` in its own place (a
429, Stripe unreachable). A claim older than CLAIM_LEASE (the process died mid-call) is taken
back; opening again uses the booking's own idempotency key, so Stripe returns the same session.

Nobody waits forever: a row waiting longer than QUEUE_MAX_WAIT_SECONDS times out, its booking
expires and its seats are free at once. Opening the Checkout itself lives in payments.checkout.
"""

import datetime as dt
import logging
import math
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from bookings.models import Booking
from bookings.services import booking_checkout_abandon, booking_expire
from common.logs import log_event
from common.signed_ids import signed_id, signed_id_read
from payments.models import CheckoutQueueEntry

log = logging.getLogger("shop.checkout")

Q_ = CheckoutQueueEntry.Status
# A claimed turn whose Stripe call has not ended after this long was lost with its process: the
# SDK gives up on a call after STRIPE_TIMEOUT_SECONDS (20 s) times its retries.
CLAIM_LEASE = dt.timedelta(seconds=90)
_TOKEN_SALT = "payments.checkout_queue"
# How long a waiting page's address keeps working (the page itself ends much sooner).
TOKEN_MAX_AGE = dt.timedelta(days=1)


def queue_token(entry: CheckoutQueueEntry) -> str:
    """The waiting page's unguessable address part (signed with SECRET_KEY)."""
    return signed_id(entry.pk, salt=_TOKEN_SALT)


def queue_entry_by_token(token: str) -> CheckoutQueueEntry | None:
    entry_id = signed_id_read(token, salt=_TOKEN_SALT, max_age=TOKEN_MAX_AGE)
    if entry_id is None:
        return None
    return (
        CheckoutQueueEntry.objects.select_related("booking__slot__listing__merchant").filter(pk=entry_id).first()
    )


def queue_join(*, booking: Booking, success_url: str, cancel_url: str, proven_email: str) -> CheckoutQueueEntry:
    """Put a pending booking (holding its seats, no session yet) in line for a Checkout Session."""
    entry = CheckoutQueueEntry.objects.create(
        booking=booking, success_url=success_url, cancel_url=cancel_url, proven_email=proven_email
    )
    log_event(log, "checkout_queued", booking=booking.pk, entry=entry.pk)
    return entry


def queue_has_waiting() -> bool:
    """Whether anyone is in line: a newcomer then queues behind them even if a token is free."""
    return CheckoutQueueEntry.objects.filter(status=Q_.WAITING).exists()


def queue_claim_next(*, now: dt.datetime | None = None) -> CheckoutQueueEntry | None:
    """Claim the turn of the earliest waiting row (waiting -> opening, conditional), or None when
    nobody waits. The caller has taken a token of the budget first. A row claimed by someone else
    meanwhile is skipped for the next."""
    claimed = queue_claim_next_id(now=now)
    return queue_claimed_entry(claimed) if claimed is not None else None


def queue_claim_next_id(*, now: dt.datetime | None = None) -> int | None:
    """`queue_claim_next`, giving the claimed row's id alone: two statements, so that beat's
    driver, which claims every turn in one thread, leaves reading the row to the thread that
    opens it."""
    now = now or timezone.now()
    for _ in range(20):
        head = CheckoutQueueEntry.objects.filter(status=Q_.WAITING).order_by("pk").values_list("pk", flat=True).first()
        if head is None:
            return None
        if CheckoutQueueEntry.objects.filter(pk=head, status=Q_.WAITING).update(status=Q_.OPENING, claimed_at=now):
            return head
    return None


def queue_claimed_entry(entry_id: int) -> CheckoutQueueEntry:
    """A row this caller claimed, with its booking, time, listing and merchant."""
    return CheckoutQueueEntry.objects.select_related("booking__slot__listing__merchant").get(pk=entry_id)


def queue_put_back(*, entry: CheckoutQueueEntry) -> bool:
    """A claimed turn that could not open (Stripe said 429 or could not be reached): the row waits
    again in its own place, ahead of everyone who came later."""
    return bool(
        CheckoutQueueEntry.objects.filter(pk=entry.pk, status=Q_.OPENING, claimed_at=entry.claimed_at).update(
            status=Q_.WAITING, claimed_at=None
        )
    )


def queue_opened(*, entry: CheckoutQueueEntry, checkout_url: str) -> None:
    CheckoutQueueEntry.objects.filter(pk=entry.pk, status=Q_.OPENING).update(
        status=Q_.OPENED, checkout_url=checkout_url, ended_at=timezone.now()
    )
    log_event(log, "checkout_queue_opened", booking=entry.booking_id, entry=entry.pk)


def queue_end(*, entry: CheckoutQueueEntry, status: str) -> None:
    """The turn came, but there is no checkout to open: the time sold out (`sold_out`), or it can
    no longer be booked (`ended`). The booking expires and anything it held is free at once."""
    CheckoutQueueEntry.objects.filter(pk=entry.pk, status=Q_.OPENING).update(status=status, ended_at=timezone.now())
    booking_expire(booking=entry.booking)
    log_event(log, "checkout_queue_ended", booking=entry.booking_id, entry=entry.pk, end=status)


def queue_time_out_overdue(*, now: dt.datetime | None = None, limit: int = 100) -> int:
    """End every row that has waited past QUEUE_MAX_WAIT_SECONDS: claimed (waiting -> timed_out)
    one by one, then its booking expires and its seats are free at once. Returns how many."""
    now = now or timezone.now()
    overdue_since = now - dt.timedelta(seconds=settings.QUEUE_MAX_WAIT_SECONDS)
    timed_out = 0
    overdue = CheckoutQueueEntry.objects.filter(status=Q_.WAITING, queued_at__lte=overdue_since)
    for entry in overdue.select_related("booking")[:limit]:
        if CheckoutQueueEntry.objects.filter(pk=entry.pk, status=Q_.WAITING).update(status=Q_.TIMED_OUT, ended_at=now):
            booking_checkout_abandon(booking=entry.booking)
            log_event(log, "checkout_queue_timed_out", level=logging.WARNING, booking=entry.booking_id, entry=entry.pk)
            timed_out += 1
    return timed_out


def queue_take_back_lost_claims(*, now: dt.datetime | None = None) -> int:
    """Claims older than CLAIM_LEASE wait again in their own place (their process died mid-call)."""
    now = now or timezone.now()
    return CheckoutQueueEntry.objects.filter(status=Q_.OPENING, claimed_at__lte=now - CLAIM_LEASE).update(
        status=Q_.WAITING, claimed_at=None
    )


@dataclass(frozen=True)
class QueuePlace:
    """What the waiting page tells: the place in line (1 = next) and about how long until then."""

    place: int
    seconds: int
    waited_seconds: int
    max_wait_seconds: int


def queue_place(entry: CheckoutQueueEntry, *, now: dt.datetime | None = None) -> QueuePlace:
    """The entry's place among the rows still waiting or being opened ahead of it, and an estimate
    from the budget's pace: everyone ahead and this one, one token each."""
    now = now or timezone.now()
    ahead = CheckoutQueueEntry.objects.filter(Q(status=Q_.WAITING) | Q(status=Q_.OPENING), pk__lt=entry.pk).count()
    place = ahead + 1
    rate = settings.STRIPE_REQUESTS_PER_SECOND or 1.0
    waited = max(0, int((now - entry.queued_at).total_seconds()))
    left = max(0, settings.QUEUE_MAX_WAIT_SECONDS - waited)
    return QueuePlace(
        place=place,
        seconds=max(1, min(math.ceil(place / rate), left or 1)),
        waited_seconds=waited,
        max_wait_seconds=settings.QUEUE_MAX_WAIT_SECONDS,
    )
