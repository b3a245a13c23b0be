"""Reminders: one e-mail per confirmed booking, its listing's chosen number of hours before the start.

Run every minute by Celery beat (`slotbook.reminders_send`; by `manage.py demo` without a broker),
and safe to run from any number of workers at once.
"""

import datetime as dt
import logging

from django.utils import timezone

from bookings import notifications, selectors
from common.logs import log_event

log = logging.getLogger("bookings.reminders")


def reminders_send(*, now: dt.datetime | None = None) -> int:
    """Send every reminder due at `now` and not sent yet; returns how many this call sent.

    Due: the booking is confirmed, its time (not cancelled) starts within its listing's
    `reminder_hours` and has not started, and it was confirmed no later than that reminder
    time; a booking confirmed after it gets none (its confirmation was the reminder). Never for
    a booking pending, cancelled or refunded: the claim re-checks the status.

    At most once per booking, by choice: each reminder is claimed by a conditional UPDATE of
    `reminder_sent_at` (while still confirmed, for the same time) before it is sent, so of two
    workers, or a run retried, only the one whose UPDATE changed the row sends. A worker that
    dies between the claim and the mail server loses that reminder rather than risk a second
    one: the confirmation e-mail and its calendar entry already carry everything it says. When
    the mail server refuses (an error is raised) the claim is released and the next run, a
    minute later, tries again while the time has not started.
    """
    now = now or timezone.now()
    sent = 0
    for booking in selectors.bookings_due_reminder(now=now):
        if notifications.booking_reminder_send(booking=booking):
            sent += 1
    if sent:
        log_event(log, "reminders_sent", count=sent)
    return sent
