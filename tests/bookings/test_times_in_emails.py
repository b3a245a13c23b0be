"""Every e-mail states a slot's time as the merchant's clock shows it, and names the zone, for
merchants whose zone is not the server's TIME_ZONE (see tests/zoned.py): no other time of day
appears in it."""

import re

import pytest
from django.core import mail

from bookings.models import Refund, RefundReason
from bookings.notifications import (
    booking_cancelled_send,
    booking_confirmation_send,
    booking_reminder_send,
    refund_failed_alert_send,
    refund_notice_send,
)
from tests.factories import make_booking, make_confirmed_booking
from tests.zoned import CLOCKS, zoned_slot

pytestmark = pytest.mark.django_db

TIME_OF_DAY = re.compile(r"\b\d\d:\d\d\b")


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
    for text in (message.body, html):
        assert f"{clock.long} ({clock.zone})" in text
        assert set(TIME_OF_DAY.findall(text)) == {clock.hhmm}
