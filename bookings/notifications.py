"""E-mails to customers and merchants, each sent at most once.

Every e-mail is claimed first by a conditional update of its "sent at" column; only the process
whose update changed a row sends it, so two racing confirmations cannot both write to the
customer. If sending fails the claim is released, and the next follow-up sends it.
"""

import logging

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db.models import Model
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from common.logs import log_event
from bookings.calendar import booking_calendar_file, booking_online_url
from bookings.links import absolute_url, booking_page_url
from bookings.models import AttendeeMessageDelivery, Booking, BookingStatus, Refund, RefundReason, RefundStatus, WaitlistEntry
from bookings.money import format_money
from bookings.waitlist_links import waitlist_leave_token, waitlist_offer_token
from bookings.selectors import booking_money_back

log = logging.getLogger("bookings.notifications")


def _claim(model: type[Model], pk: int, field: str, **conditions) -> bool:
    return bool(
        model.objects.filter(pk=pk, **{f"{field}__isnull": True}, **conditions).update(**{field: timezone.now()})
    )


def _release(model: type[Model], pk: int, field: str) -> None:
    model.objects.filter(pk=pk).update(**{field: None})


def _send_claimed(
    *,
    model: type[Model],
    pk: int,
    field: str,
    template: str,
    subject: str,
    to: str,
    context: dict,
    reply_to=None,
    calendar: tuple[Booking, str] | None = None,
    claim_conditions: dict | None = None,
) -> bool:
    """Send one e-mail once, claimed by `field` (and only while the row still meets
    `claim_conditions`); `calendar` (a booking and a method) attaches that booking's .ics."""
    if not _claim(model, pk, field, **(claim_conditions or {})):
        return False
    context = {**context, "site_url": absolute_url("")}
    # Every time in an e-mail is the merchant's wall clock: rendered with their zone as the current one.
    with timezone.override(context["merchant"].zone):
        text = render_to_string(f"bookings/email/{template}.txt", context)
        html = render_to_string(f"bookings/email/{template}.html", context)
    message = EmailMultiAlternatives(subject=subject, body=text, to=[to], reply_to=[reply_to] if reply_to else None)
    message.attach_alternative(html, "text/html")
    if calendar is not None:
        booking, method = calendar
        message.attach(booking_calendar_file(booking=booking, method=method).as_mime())
    try:
        message.send()
    except Exception:
        _release(model, pk, field)
        log_event(log, "email_failed", level=logging.ERROR, exc_info=True, template=template, **{model.__name__.lower(): pk})
        return False
    log_event(log, "email_sent", template=template, **{model.__name__.lower(): pk})
    return True


def _booking_context(booking: Booking) -> dict:
    merchant = booking.slot.listing.merchant
    return {
        "booking": booking,
        "slot": booking.slot,
        "listing": booking.slot.listing,
        "merchant": merchant,
        "starts_at": booking.slot.starts_at,
        "booking_url": booking_page_url(booking),
        "online_url": booking_online_url(booking),
    }


def _calendar_cancel(booking: Booking) -> tuple[Booking, str] | None:
    """A CANCEL for the calendar entry of a booking that was confirmed (so its customer may have
    the entry) and has ended; nothing for one that never was, or is still confirmed."""
    if booking.confirmed_at is not None and booking.status != BookingStatus.CONFIRMED:
        return (booking, "CANCEL")
    return None


def booking_confirmation_send(*, booking: Booking) -> bool:
    listing = booking.slot.listing
    return _send_claimed(
        model=Booking,
        pk=booking.pk,
        field="confirmation_email_sent_at",
        template="booking_confirmed",
        subject=f"You're booked: {listing.title}",
        to=booking.customer_email,
        context=_booking_context(booking),
        reply_to=listing.merchant.support_email or None,
        calendar=(booking, "REQUEST"),
    )


def booking_reminder_send(*, booking: Booking) -> bool:
    """The reminder before the booking's time. Claimed by `reminder_sent_at`, and only while the
    booking is still confirmed for the same time (see `services.reminders_send`)."""
    listing = booking.slot.listing
    return _send_claimed(
        claim_conditions={"status": BookingStatus.CONFIRMED, "slot_id": booking.slot_id},
        model=Booking,
        pk=booking.pk,
        field="reminder_sent_at",
        template="booking_reminder",
        subject=f"Reminder: {listing.title}",
        to=booking.customer_email,
        context=_booking_context(booking),
        reply_to=listing.merchant.support_email or None,
    )


CANCELLED_SUBJECTS = {
    RefundReason.SOLD_OUT: "Sorry, {title} sold out",
    RefundReason.SLOT_CANCELLED: "{title} is cancelled",
    RefundReason.MERCHANT: "Your booking was cancelled: {title}",
    RefundReason.CUSTOMER_CANCELLED: "You cancelled your booking: {title}",
}


def booking_cancelled_send(*, booking: Booking) -> bool:
    """A booking cancelled with nothing to refund (a 100% code), told with its recorded reason."""
    listing = booking.slot.listing
    return _send_claimed(
        model=Booking,
        pk=booking.pk,
        field="cancellation_email_sent_at",
        template="booking_cancelled",
        subject=CANCELLED_SUBJECTS[booking.ended_reason].format(title=listing.title),
        to=booking.customer_email,
        context={**_booking_context(booking), "money_back": booking_money_back(booking)},
        reply_to=listing.merchant.support_email or None,
        calendar=_calendar_cancel(booking),
    )


REFUND_SUBJECTS = {
    RefundReason.SOLD_OUT: "Sorry, {title} sold out: your payment is refunded",
    RefundReason.SLOT_CANCELLED: "{title} is cancelled: your payment is refunded",
    RefundReason.MERCHANT: "A refund for your booking: {title}",
    RefundReason.CUSTOMER_CANCELLED: "You cancelled your booking: {title}, refund of {amount}",
}


def refund_notice_send(*, refund: Refund, booking: Booking) -> bool:
    listing = booking.slot.listing
    return _send_claimed(
        model=Refund,
        pk=refund.pk,
        field="customer_notified_at",
        template="refund_notice",
        subject=REFUND_SUBJECTS[refund.reason].format(
            title=listing.title, amount=format_money(refund.amount, booking.currency)
        ),
        to=booking.customer_email,
        context={**_booking_context(booking), "refund": refund, "money_back": booking_money_back(booking, refund=refund)},
        reply_to=listing.merchant.support_email or None,
        calendar=_calendar_cancel(booking),
    )


REFUND_FAILED_SUBJECT = "Your refund did not go through: {title}"


def refund_failed_customer_send(*, refund: Refund, booking: Booking) -> bool:
    """Tell the customer that a refund they were told of failed at their bank, and that the
    merchant (alerted at the same moment) will refund them: the refund's e-mail said it was made."""
    listing = booking.slot.listing
    return _send_claimed(
        claim_conditions={"customer_notified_at__isnull": False},
        model=Refund,
        pk=refund.pk,
        field="customer_told_failed_at",
        template="refund_notice",
        subject=REFUND_FAILED_SUBJECT.format(title=listing.title),
        to=booking.customer_email,
        context={**_booking_context(booking), "refund": refund, "money_back": booking_money_back(booking, refund=refund)},
        reply_to=listing.merchant.support_email or None,
    )


def refund_failed_alert_send(*, refund: Refund, booking: Booking) -> bool:
    merchant = booking.slot.listing.merchant
    to = merchant.support_email or merchant.user.email
    if not to:
        log_event(log, "refund_failed_alert_undeliverable", level=logging.ERROR, merchant=merchant.pk, refund=refund.pk)
        return False
    return _send_claimed(
        model=Refund,
        pk=refund.pk,
        field="merchant_alerted_at",
        template="refund_failed_merchant",
        subject=f"Action needed: a refund failed for booking #{booking.pk}",
        to=to,
        context={
            **_booking_context(booking),
            "refund": refund,
            "booking_admin_url": absolute_url(reverse("merchant:booking_detail", args=[booking.pk])),
        },
    )


def booking_rescheduled_send(*, booking: Booking) -> bool:
    """Tell the customer the new time of a booking they moved, with its calendar entry (REQUEST,
    same UID, the higher SEQUENCE): once per move (the claim moves `reschedules_notified` up to
    `reschedules`; several quick moves are told in one e-mail of the latest time)."""
    moves = booking.reschedules
    claimed = Booking.objects.filter(pk=booking.pk, reschedules_notified__lt=moves).update(reschedules_notified=moves)
    if not claimed:
        return False
    listing = booking.slot.listing
    context = {**_booking_context(booking), "site_url": absolute_url("")}
    with timezone.override(listing.merchant.zone):
        text = render_to_string("bookings/email/booking_rescheduled.txt", context)
        html = render_to_string("bookings/email/booking_rescheduled.html", context)
    message = EmailMultiAlternatives(
        subject=f"Your booking is moved: {listing.title}",
        body=text,
        to=[booking.customer_email],
        reply_to=[listing.merchant.support_email] if listing.merchant.support_email else None,
    )
    message.attach_alternative(html, "text/html")
    # The same entry (UID) at its new time, with the SEQUENCE the move raised: calendars replace it.
    message.attach(booking_calendar_file(booking=booking, method="REQUEST").as_mime())
    try:
        message.send()
    except Exception:
        Booking.objects.filter(pk=booking.pk, reschedules_notified=moves).update(reschedules_notified=moves - 1)
        log_event(log, "email_failed", level=logging.ERROR, exc_info=True, template="booking_rescheduled", booking=booking.pk)
        return False
    log_event(log, "email_sent", template="booking_rescheduled", booking=booking.pk)
    return True


def customer_cancelled_merchant_send(*, booking: Booking) -> bool:
    """Tell the merchant a customer cancelled, what the policy refunds and what the merchant had
    already refunded (which the cancellation counted): once."""
    merchant = booking.slot.listing.merchant
    to = merchant.support_email or merchant.user.email
    if not to:
        log_event(log, "customer_cancel_notice_undeliverable", level=logging.ERROR, merchant=merchant.pk, booking=booking.pk)
        return False
    refunds = [r for r in booking.refunds.all() if r.status != RefundStatus.FAILED]
    refunded = sum(r.amount for r in refunds if r.reason == RefundReason.CUSTOMER_CANCELLED)
    # Refunded by the merchant while the booking stood: the cancellation counted it.
    refunded_before = sum(r.amount for r in refunds if r.reason != RefundReason.CUSTOMER_CANCELLED)
    return _send_claimed(
        model=Booking,
        pk=booking.pk,
        field="merchant_cancel_notice_sent_at",
        template="customer_cancelled_merchant",
        subject=f"Booking #{booking.pk} cancelled by {booking.customer_name}",
        to=to,
        context={
            **_booking_context(booking),
            "refund_amount": refunded,
            "refunded_before": refunded_before,
            "booking_admin_url": absolute_url(reverse("merchant:booking_detail", args=[booking.pk])),
        },
    )


def customer_signin_link_send(*, link, token: str) -> bool:
    """E-mail a sign-in link to its address, once (claimed by its `sent_at`). The token is in the
    e-mail only: never logged."""
    if not _claim(type(link), link.pk, "sent_at"):
        return False
    url = absolute_url(reverse("shop:receipts_signin") + "?token=" + token)
    # Every name the templates look up is given: a failed lookup is logged with the whole context.
    context = {
        "email": link.email,
        "url": url,
        "minutes": settings.CUSTOMER_SIGNIN_LINK_MINUTES,
        "site_url": absolute_url(""),
        "merchant": {"display_name": "Slotbook", "support_email": ""},
    }
    message = EmailMultiAlternatives(
        subject="Your link to Receipts and payment methods",
        body=render_to_string("bookings/email/customer_signin_link.txt", context),
        to=[link.email],
    )
    message.attach_alternative(render_to_string("bookings/email/customer_signin_link.html", context), "text/html")
    try:
        message.send()
    except Exception:
        _release(type(link), link.pk, "sent_at")
        log_event(log, "email_failed", level=logging.ERROR, template="customer_signin_link", link=link.pk)
        return False
    log_event(log, "email_sent", template="customer_signin_link", link=link.pk)
    return True


def _waitlist_context(entry: WaitlistEntry) -> dict:
    listing = entry.slot.listing
    return {
        "entry": entry,
        "slot": entry.slot,
        "listing": listing,
        "merchant": listing.merchant,
        "starts_at": entry.slot.starts_at,
        "leave_url": absolute_url(reverse("shop:waitlist_leave", args=[waitlist_leave_token(entry)])),
        "listing_url": absolute_url(reverse("shop:listing", args=[listing.slug])),
    }


def waitlist_joined_send(*, entry: WaitlistEntry) -> bool:
    """Confirms a place on a waitlist, with the link to leave it (claimed: sent once)."""
    listing = entry.slot.listing
    return _send_claimed(
        model=WaitlistEntry,
        pk=entry.pk,
        field="joined_email_sent_at",
        template="waitlist_joined",
        subject=f"You're on the waitlist: {listing.title}",
        to=entry.customer_email,
        context=_waitlist_context(entry),
        reply_to=listing.merchant.support_email or None,
    )


def waitlist_offer_send(*, entry: WaitlistEntry) -> bool:
    """Seats offered to a waitlist entry: the link to pay for them, and until when they are held
    (claimed: sent once). The link is in the e-mail only: never logged."""
    listing = entry.slot.listing
    context = {
        **_waitlist_context(entry),
        "offer_url": absolute_url(reverse("shop:waitlist_offer", args=[waitlist_offer_token(entry)])),
        "held_until": entry.offer_hold.expires_at,
        "amount_total": listing.price_amount * entry.quantity,
    }
    return _send_claimed(
        model=WaitlistEntry,
        pk=entry.pk,
        field="offer_email_sent_at",
        template="waitlist_offer",
        subject=f"Seats are free for you: {listing.title}",
        to=entry.customer_email,
        context=context,
        reply_to=listing.merchant.support_email or None,
    )


def attendee_message_send(*, delivery: AttendeeMessageDelivery) -> bool:
    """A merchant's message to one attendee, replies going to the merchant's support address."""
    message, booking = delivery.message, delivery.booking
    merchant = message.slot.listing.merchant
    booking.slot = message.slot
    return _send_claimed(
        model=AttendeeMessageDelivery,
        pk=delivery.pk,
        field="sent_at",
        template="attendee_message",
        subject=message.subject,
        to=booking.customer_email,
        context={**_booking_context(booking), "message": message},
        reply_to=merchant.support_email or None,
    )
