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
from bookings.models import Booking, Refund, RefundReason
from bookings.money import format_money
from bookings.selectors import booking_money_back

log = logging.getLogger("bookings.notifications")


def absolute_url(path: str) -> str:
    return (settings.SITE_URL or "http://localhost:8000") + path


def booking_page_url(booking: Booking) -> str:
    return absolute_url(reverse("shop:booking", args=[booking.public_token]))


def _claim(model: type[Model], pk: int, field: str) -> bool:
    return bool(model.objects.filter(pk=pk, **{f"{field}__isnull": True}).update(**{field: timezone.now()}))


def _release(model: type[Model], pk: int, field: str) -> None:
    model.objects.filter(pk=pk).update(**{field: None})


def _send_claimed(
    *, model: type[Model], pk: int, field: str, template: str, subject: str, to: str, context: dict, reply_to=None
) -> bool:
    if not _claim(model, pk, field):
        return False
    context = {**context, "site_url": absolute_url("")}
    # Every time in an e-mail is the merchant's wall clock: rendered with their zone as the current one.
    with timezone.override(context["merchant"].zone):
        text = render_to_string(f"bookings/email/{template}.txt", context)
        html = render_to_string(f"bookings/email/{template}.html", context)
    message = EmailMultiAlternatives(subject=subject, body=text, to=[to], reply_to=[reply_to] if reply_to else None)
    message.attach_alternative(html, "text/html")
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
    }


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
    """Tell the customer the new time of a booking they moved: once per move (the claim moves
    `reschedules_notified` up to `reschedules`; several quick moves are told in one e-mail of
    the latest time)."""
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
    try:
        message.send()
    except Exception:
        Booking.objects.filter(pk=booking.pk, reschedules_notified=moves).update(reschedules_notified=moves - 1)
        log_event(log, "email_failed", level=logging.ERROR, exc_info=True, template="booking_rescheduled", booking=booking.pk)
        return False
    log_event(log, "email_sent", template="booking_rescheduled", booking=booking.pk)
    return True


def customer_cancelled_merchant_send(*, booking: Booking) -> bool:
    """Tell the merchant a customer cancelled, and what the policy refunds: once."""
    merchant = booking.slot.listing.merchant
    to = merchant.support_email or merchant.user.email
    if not to:
        log_event(log, "customer_cancel_notice_undeliverable", level=logging.ERROR, merchant=merchant.pk, booking=booking.pk)
        return False
    refunded = sum(r.amount for r in booking.refunds.all() if r.reason == RefundReason.CUSTOMER_CANCELLED)
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
