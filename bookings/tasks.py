"""The booking domain's side effects as Celery tasks, enqueued with `enqueue_after_commit`.

Each takes ids, reads the committed rows and does what they still ask for, claiming each e-mail
and refund before acting (the services' own claims and leases), so a task delivered twice or
retried never sends or refunds twice. On a worker, a Stripe or SMTP failure is retried with
backoff (`retry_later`); called in-process (no broker) a task is the plain service call it wraps.
"""

from celery import shared_task

from bookings import customers, notifications, selectors, services
from bookings.background import on_worker, retry_later
from bookings.models import AttendeeMessageDelivery, Booking, CustomerSignInLink, WaitlistEntry, WaitlistStatus


class EmailNotSent(Exception):
    """An e-mail the booking owes could not be sent this time (the mail server failed)."""


class CheckoutsStillOpen(Exception):
    """The provider could not be asked to close some checkouts this time."""


@shared_task(bind=True, name="slotbook.booking_follow_up")
def booking_follow_up(self, *, booking_id: int, raise_refund_errors: bool = True) -> None:
    """`services.booking_follow_up`: the refunds to ask for and the e-mails to send. On a worker it
    is retried until nothing is owed; in-process a refund not created is raised as it always was
    (when `raise_refund_errors`), so that a webhook answers 500 and Stripe tries again."""
    worker = on_worker(self)
    try:
        services.booking_follow_up(booking_id=booking_id, raise_refund_errors=raise_refund_errors or worker)
    except services.RefundNotCreated as error:
        if not worker:
            raise
        raise retry_later(self, error) from error
    if worker and selectors.bookings_owing_email().filter(pk=booking_id).exists():
        raise retry_later(self, EmailNotSent(f"Booking {booking_id} still owes an e-mail."))


@shared_task(bind=True, name="slotbook.booking_confirmation_send")
def booking_confirmation_send(self, *, booking_id: int) -> None:
    """The confirmation e-mail of a booking just confirmed (claimed: sent once)."""
    # With the merchant's user: the calendar's organizer is their e-mail when no support e-mail is set.
    booking = Booking.objects.select_related("slot__listing__merchant__user").get(pk=booking_id)
    if notifications.booking_confirmation_send(booking=booking):
        return
    if on_worker(self) and selectors.bookings_owing_email().filter(pk=booking_id).exists():
        raise retry_later(self, EmailNotSent(f"Booking {booking_id}'s confirmation was not sent."))


@shared_task(bind=True, name="slotbook.checkouts_close")
def checkouts_close(self, *, slot_id: int | None = None, listing_id: int | None = None) -> None:
    """`services.checkouts_close` for a slot or listing that can no longer be sold."""
    services.checkouts_close(slot_id=slot_id, listing_id=listing_id)
    if on_worker(self) and selectors.pending_checkouts_unsellable(slot_id=slot_id, listing_id=listing_id).exists():
        raise retry_later(self, CheckoutsStillOpen(f"Checkouts of slot {slot_id} / listing {listing_id} still open."))


@shared_task(bind=True, name="slotbook.customer_signin_link_send")
def customer_signin_link_send(self, *, link_id: int) -> None:
    """E-mail a sign-in link. Its token is made here, from the row, and never passed as an argument."""
    link = CustomerSignInLink.objects.get(pk=link_id)
    if link.sent_at is not None or link.used_at is not None:
        return
    if not notifications.customer_signin_link_send(link=link, token=customers.customer_signin_token(link)):
        link.refresh_from_db(fields=["sent_at"])
        if on_worker(self) and link.sent_at is None:
            raise retry_later(self, EmailNotSent(f"Sign-in link {link_id} was not sent."))


@shared_task(bind=True, name="slotbook.waitlist_offer_send")
def waitlist_offer_send(self, *, entry_id: int) -> None:
    """The e-mail offering seats to a waitlist entry, once (claimed by `offer_email_sent_at`);
    not sent when the offer ended before it went out."""
    entry = WaitlistEntry.objects.select_related("slot__listing__merchant", "offer_hold").get(pk=entry_id)
    if entry.status != WaitlistStatus.OFFERED or entry.offer_email_sent_at is not None:
        return
    if not notifications.waitlist_offer_send(entry=entry) and on_worker(self):
        if selectors.waitlist_offers_owing_email().filter(pk=entry_id).exists():
            raise retry_later(self, EmailNotSent(f"Waitlist entry {entry_id}'s offer was not sent."))


@shared_task(bind=True, name="slotbook.waitlist_joined_send")
def waitlist_joined_send(self, *, entry_id: int) -> None:
    """The e-mail confirming a place on a waitlist, with its leave link, once."""
    entry = WaitlistEntry.objects.select_related("slot__listing__merchant").get(pk=entry_id)
    if entry.joined_email_sent_at is not None or entry.status != WaitlistStatus.WAITING:
        return
    if not notifications.waitlist_joined_send(entry=entry) and on_worker(self):
        entry.refresh_from_db(fields=["joined_email_sent_at"])
        if entry.joined_email_sent_at is None:
            raise retry_later(self, EmailNotSent(f"Waitlist entry {entry_id}'s confirmation was not sent."))


@shared_task(name="slotbook.reminders_send")
def reminders_send() -> None:
    """`services.reminders_send`, every minute on beat: the reminders due now. Each is claimed
    before it is sent, so overlapping runs and several workers send each one once."""
    services.reminders_send()


@shared_task(bind=True, name="slotbook.attendee_message_deliver")
def attendee_message_deliver(self, *, message_id: int) -> None:
    """E-mail a merchant's message to each of its recipients not yet sent it, each delivery
    claimed first (so a retried or duplicated task sends nobody twice)."""
    deliveries = AttendeeMessageDelivery.objects.filter(message_id=message_id, sent_at__isnull=True).select_related(
        "message__slot__listing__merchant", "booking"
    )
    for delivery in deliveries:
        notifications.attendee_message_send(delivery=delivery)
    if on_worker(self) and AttendeeMessageDelivery.objects.filter(message_id=message_id, sent_at__isnull=True).exists():
        raise retry_later(self, EmailNotSent(f"Message {message_id} is not sent to everyone yet."))


@shared_task(name="slotbook.operator_alert_send")
def operator_alert_send(*, subject: str, message: str) -> None:
    """E-mail the operator (ADMINS) about something a person must act on; nothing when no ADMINS
    are configured (the ERROR log line written when it happened is the alert then)."""
    import logging

    from django.core.mail import mail_admins

    from common.logs import log_event

    try:
        mail_admins(subject, message)
    except Exception as error:  # noqa: BLE001 - a mail server down must not undo what was recorded
        log_event(logging.getLogger("bookings.tasks"), "operator_alert_not_sent", level=logging.ERROR, error=str(error)[:200])
