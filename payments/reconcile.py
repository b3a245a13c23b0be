"""Finish whatever a lost webhook, a crash or a Stripe outage left undone.

Its promise: every paid Checkout Session ends as a confirmed booking or a refund. With Connect
it asks each booking's own connected account (recorded on the booking) about it, and walks each
connected account with refunds in flight for the refund failures Stripe told of. Safe to run
beside the site and as often as wanted: every step goes through the same idempotent services.
"""

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from bookings.models import Booking, BookingStatus, Refund, RefundStatus
from bookings import tasks as booking_tasks
from bookings.selectors import bookings_owing_email, waitlist_offers_owing_email
from bookings.services import (
    RefundNotCreated,
    booking_checkout_abandon,
    booking_follow_up,
    checkouts_close,
    holds_lapse,
    waitlist_offers_lapse,
    refund_record_update,
    refund_submit,
)
from payments import stripe_api
from payments.checkout import booking_status_refresh
from payments.checkout_queue import queue_take_back_lost_claims, queue_time_out_overdue
from payments.webhooks import (
    EventAccountMismatch,
    EventResult,
    stripe_event_process,
    stripe_event_receive,
    stripe_events_unfinished,
)

log = logging.getLogger("shop.reconcile")


@dataclass
class ReconcileSummary:
    checkouts_closed: int = 0
    holds_lapsed: int = 0
    offers_lapsed: int = 0
    offer_emails_sent: int = 0
    pending_checked: int = 0
    # Pending bookings left for the next run: Stripe's budget had no token to spare for them.
    pending_deferred: int = 0
    confirmed: int = 0
    expired: int = 0
    refunds_due: int = 0
    abandoned: int = 0
    refunds_submitted: int = 0
    refunds_still_failing: int = 0
    refunds_settled: int = 0
    refund_failures_learned: int = 0
    events_replayed: int = 0
    events_still_failing: int = 0
    follow_ups: int = 0
    # Waits in the fair queue past QUEUE_MAX_WAIT_SECONDS ended (their seats freed).
    queue_timed_out: int = 0
    errors: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [
            f"open checkouts of cancelled, stopped or archived times closed: {self.checkouts_closed}",
            f"holds whose time was up, ended (session expired at Stripe): {self.holds_lapsed}",
            f"waitlist offers not taken up in time, passed on: {self.offers_lapsed}",
            f"waitlist offer e-mails sent late: {self.offer_emails_sent}",
            f"pending bookings checked with Stripe: {self.pending_checked} "
            f"(confirmed {self.confirmed}, refund due {self.refunds_due}, expired {self.expired}; "
            f"left for the next run, Stripe's budget being spent: {self.pending_deferred})",
            f"pending bookings that never reached Stripe, expired: {self.abandoned}",
            f"refunds asked for: {self.refunds_submitted} (still failing: {self.refunds_still_failing})",
            f"refunds settled from Stripe: {self.refunds_settled}",
            f"refund failures learned from Stripe's events: {self.refund_failures_learned}",
            f"failed webhook events processed again: {self.events_replayed} (still failing: {self.events_still_failing})",
            f"bookings whose e-mails or follow-ups were finished: {self.follow_ups}",
        ]


def reconcile_run(*, now=None) -> ReconcileSummary:
    now = now or timezone.now()
    summary = ReconcileSummary()
    summary.checkouts_closed = checkouts_close()
    # Without beat's checkout-queue task (the demo), waits whose page was closed end here.
    queue_take_back_lost_claims(now=now)
    summary.queue_timed_out = queue_time_out_overdue(now=now)
    summary.holds_lapsed = holds_lapse(now=now)
    summary.offers_lapsed = waitlist_offers_lapse(now=now)
    _settle_pending(summary)
    _expire_never_opened(summary, now)
    _submit_requested_refunds(summary)
    _settle_pending_refunds(summary)
    _learn_refund_failures(summary, now)
    _replay_failed_events(summary)
    _finish_follow_ups(summary)
    _send_owed_offers(summary)
    return summary


def _settle_pending(summary: ReconcileSummary) -> None:
    # Longest unasked first: when Stripe's budget runs short mid-run (an on-sale holding a
    # thousand open checkouts), the run stops and the next one goes on where this one ended.
    pending = (
        Booking.objects.filter(status=BookingStatus.PENDING, checkout_session_id__isnull=False)
        .select_related("slot__listing__merchant")
        .order_by(F("stripe_checked_at").asc(nulls_first=True), "pk")
    )
    waiting = pending.count()
    for booking in pending.iterator():
        check = booking_status_refresh(booking, throttled=False)
        if check.deferred:
            summary.pending_deferred = waiting - summary.pending_checked
            break
        summary.pending_checked += 1
        if check.problem:
            summary.errors.append(f"booking {booking.pk}: {check.problem}")
        status = check.booking.status
        if status == BookingStatus.CONFIRMED:
            summary.confirmed += 1
        elif status == BookingStatus.EXPIRED:
            summary.expired += 1
        elif status in (BookingStatus.REFUND_DUE, BookingStatus.REFUNDED, BookingStatus.CANCELLED):
            summary.refunds_due += 1


def _expire_never_opened(summary: ReconcileSummary, now) -> None:
    """A booking whose session id was never stored (a crash, or Stripe refused) can no longer
    be paid once any session opened for it has expired; if its payment is reported after all,
    confirming finds it by reference and still settles it."""
    cutoff = now - timedelta(minutes=2 * max(settings.CHECKOUT_SESSION_MINUTES, 30) + 10)
    stale = Booking.objects.filter(status=BookingStatus.PENDING, checkout_session_id__isnull=True, created_at__lt=cutoff)
    for booking in stale.iterator():
        summary.abandoned += booking_checkout_abandon(booking=booking)


def _submit_requested_refunds(summary: ReconcileSummary) -> None:
    now = timezone.now()
    due = Refund.objects.filter(status=RefundStatus.REQUESTED).filter(
        Q(submit_lease_until__isnull=True) | Q(submit_lease_until__lt=now)
    )
    for refund_id in due.values_list("pk", flat=True):
        try:
            refund_submit(refund_id=refund_id)
            summary.refunds_submitted += 1
        except RefundNotCreated as error:
            summary.refunds_still_failing += 1
            summary.errors.append(f"refund {refund_id}: {error}")


def _settle_pending_refunds(summary: ReconcileSummary) -> None:
    pending = Refund.objects.filter(status=RefundStatus.PENDING, stripe_refund_id__isnull=False)
    for refund_id, stripe_refund_id, account in pending.values_list("pk", "stripe_refund_id", "booking__stripe_account_id"):
        try:
            receipt = stripe_api.refund_retrieve(stripe_refund_id, stripe_account=account)
        except stripe_api.PaymentsUnavailable as error:
            summary.errors.append(f"refund {refund_id}: {error}")
            continue
        before = Refund.objects.values_list("status", flat=True).get(pk=refund_id)
        after = refund_record_update(refund_id=refund_id, status=receipt.status, failure_reason=receipt.failure_reason)
        summary.refunds_settled += after.status != before


# Stripe keeps events for 30 days; a refund can fail long after it was created as succeeded.
REFUND_FAILURE_LOOKBACK = timedelta(days=30)


def _learn_refund_failures(summary: ReconcileSummary, now) -> None:
    """A refund Stripe created (even as succeeded) can fail days later; when the webhook saying
    so was lost, Stripe's own events still tell. Each is received like a webhook: once by id."""
    since = now - REFUND_FAILURE_LOOKBACK
    for account in _accounts_with_refunds_in_flight(since):
        try:
            events = stripe_api.refund_failure_events(since=since, stripe_account=account)
        except stripe_api.PaymentsUnavailable as error:
            summary.errors.append(f"refund events of {account or 'the platform'}: {error}")
            continue
        _receive_listed(summary, events, account)


def _accounts_with_refunds_in_flight(since) -> list[str]:
    """The platform ("") and each connected account with refunds made in the lookback window:
    with Connect a direct charge's refund and its events live on the merchant's account."""
    accounts = (
        Refund.objects.filter(created_at__gte=since)
        .exclude(booking__stripe_account_id="")
        .values_list("booking__stripe_account_id", flat=True)
        .distinct()
        .order_by("booking__stripe_account_id")
    )
    return ["", *accounts]


def _receive_listed(summary: ReconcileSummary, events: list[dict], account: str) -> None:
    for event in events:
        try:
            result = stripe_event_receive(event, account=account)
        except EventAccountMismatch as error:
            summary.errors.append(f"event {event.get('id')}: {error}")
            continue
        if result == EventResult.PROCESSED:
            summary.refund_failures_learned += 1
        elif result in (EventResult.FAILED_RETRY, EventResult.FAILED_FINAL):
            summary.errors.append(f"event {event.get('id')}: not processed")


def _replay_failed_events(summary: ReconcileSummary) -> None:
    for row in stripe_events_unfinished().order_by("received_at").iterator():
        result = stripe_event_process(row)
        if result in (EventResult.IN_PROGRESS, EventResult.DUPLICATE):
            continue  # a delivery took it meanwhile
        if result in (EventResult.FAILED_RETRY, EventResult.FAILED_FINAL):
            summary.events_still_failing += 1
        else:
            summary.events_replayed += 1


def _finish_follow_ups(summary: ReconcileSummary) -> None:
    for booking_id in bookings_owing_email().values_list("pk", flat=True):
        booking_follow_up(booking_id=booking_id, raise_refund_errors=False)
        summary.follow_ups += 1


def _send_owed_offers(summary: ReconcileSummary) -> None:
    """Offers whose e-mail never went out (a crash after commit, a mail server down): each is
    claimed before it is sent, so one a worker sends meanwhile is not sent twice."""
    for entry_id in waitlist_offers_owing_email().values_list("pk", flat=True):
        booking_tasks.waitlist_offer_send(entry_id=entry_id)
        summary.offer_emails_sent += 1
