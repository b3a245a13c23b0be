"""The periodic work of the Stripe side, run by Celery beat (CELERY_BEAT_SCHEDULE)."""

import logging
from dataclasses import asdict

from celery import shared_task
from django.conf import settings

from common.logs import log_event
from payments import checkout
from payments.reconcile import reconcile_run

log = logging.getLogger("shop.reconcile")


@shared_task(name="slotbook.reconcile")
def reconcile() -> None:
    """`reconcile_run` every minute: finishes whatever a lost webhook, a crash between commit and
    enqueue, or a Stripe outage left undone. Idempotent, so an overlapping run repeats nothing."""
    summary = reconcile_run()
    counts = {name: value for name, value in asdict(summary).items() if name != "errors"}
    log_event(log, "reconciled", **counts, not_settled=len(summary.errors))


@shared_task(name="slotbook.checkout_queue_drive")
def checkout_queue_drive() -> None:
    """The fair queue's driver, run by beat every QUEUE_DRIVE_SECONDS: for that long (less when
    nobody waits) it ends the rows that waited past QUEUE_MAX_WAIT_SECONDS, so a customer who
    left the page frees their seats, and opens the waiting checkouts in order at the budget's
    pace, several Stripe calls in flight at once."""
    turns = checkout.checkout_queue_drive_for(seconds=settings.QUEUE_DRIVE_SECONDS)
    if turns:
        log_event(log, "checkout_queue_driven", turns=turns)
