"""Every e-mail states a slot's time as the merchant's clock shows it, and names the zone, for
merchants whose zone is not the server's TIME_ZONE (see tests/zoned.py): no other time of day
appears in it, but for the cancellation policy's deadline, itself on the merchant's clock."""

import datetime as dt
import re
import zoneinfo

import pytest
from django.db.models import F
from django.core import mail

from bookings.models import Booking, Refund, RefundReason
from bookings.notifications import (
    booking_cancelled_send,
    booking_confirmation_send,
    booking_reminder_send,
    booking_rescheduled_send,
    customer_cancelled_merchant_send,
    refund_failed_alert_send,
    refund_notice_send,
)
from tests.factories import make_booking, make_confirmed_booking
from tests.zoned import CLOCKS, zoned_slot

pytestmark = pytest.mark.django_db

TIME_OF_DAY = re.compile(r"\b\d\d:\d\d\b")
POLICY_DEADLINE = re.compile(r"Free cancellation until ([^()]+) \(([^)]+)\)")


def _rescheduled(booking):
    Booking.objects.filter(pk=booking.pk).update(reschedules=F("reschedules") + 1)
    booking.refresh_from_db()
    return booking_rescheduled_send(booking=booking)


def _refund(booking, reason, **fields):
    refund = Refund.objects.create(booking=booking, amount=booking.amount_paid, reason=reason, **fields)
    return refund_notice_send(refund=refund, booking=booking)


def _ended(booking, reason):
    """As the service that cancels a booking leaves it (only such a booking gets this e-mail)."""
    booking.status, booking.ended_reason = "cancelled", reason
    return booking


SENDS = {
    "booking_confirmed": lambda booking: booking_confirmation_send(booking=booking),
    "booking_reminder": lambda booking: booking_reminder_send(booking=booking),
    "booking_cancelled": lambda booking: booking_cancelled_send(booking=_ended(booking, RefundReason.MERCHANT)),
    "booking_sold_out_free": lambda booking: booking_cancelled_send(
        booking=_ended(make_booking(slot=booking.slot), RefundReason.SOLD_OUT)
    ),
    "refund_sold_out": lambda booking: _refund(booking, RefundReason.SOLD_OUT),
    "refund_slot_cancelled": lambda booking: _refund(booking, RefundReason.SLOT_CANCELLED),
    "refund_merchant": lambda booking: _refund(booking, RefundReason.MERCHANT),
    "refund_customer_cancelled": lambda booking: _refund(_ended(booking, RefundReason.CUSTOMER_CANCELLED), RefundReason.CUSTOMER_CANCELLED),
    "booking_rescheduled": _rescheduled,
    "customer_cancelled_merchant": lambda booking: customer_cancelled_merchant_send(
        booking=_ended(booking, RefundReason.CUSTOMER_CANCELLED)
    ),
    "refund_failed_merchant": lambda booking: refund_failed_alert_send(
        refund=Refund.objects.create(
            booking=booking, amount=booking.amount_paid, reason=RefundReason.MERCHANT, failure_reason="card expired"
        ),
        booking=booking,
    ),
}


@pytest.mark.parametrize("clock_name", sorted(CLOCKS))
@pytest.mark.parametrize("email", sorted(SENDS))
def test_every_email_states_the_merchants_wall_clock_and_names_the_zone(email, clock_name, stripe_settings_unset):
    clock = CLOCKS[clock_name]
    booking = make_confirmed_booking(slot=zoned_slot(clock), customer_name="Ada")
    mail.outbox.clear()

    assert SENDS[email](booking)

    (message,) = mail.outbox
    html = message.alternatives[0][0]
    # The factory's listing: free cancellation until 24 elapsed hours before the start.
    deadline = (clock.starts_at.astimezone(dt.UTC) - dt.timedelta(hours=24)).astimezone(zoneinfo.ZoneInfo(clock.zone))
    deadline_text = f"{deadline:%A} {deadline.day} {deadline:%B} {deadline.year}, {deadline:%H:%M}"
    for text in (message.body, html):
        assert f"{clock.long} ({clock.zone})" in text
        for when, zone in POLICY_DEADLINE.findall(text):
            assert (when, zone) == (deadline_text, clock.zone)
        assert set(TIME_OF_DAY.findall(POLICY_DEADLINE.sub("", text))) == {clock.hhmm}
