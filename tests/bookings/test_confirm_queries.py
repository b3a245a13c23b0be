"""What one confirmation costs the database: the statements of the confirm transaction and of
its e-mail, counted, so that a read nobody needs cannot creep back in. The guarantees themselves
(the lock, the conditional decrements, once only) are tested in test_confirm*.py."""

import re

import pytest
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bookings.models import BookingStatus, Hold, HoldEnd
from bookings.services import ConfirmOutcome, booking_checkout_attach, booking_confirm, booking_start
from tests.factories import make_booking, make_listing, make_merchant, make_slot, paid_facts

pytestmark = pytest.mark.django_db

DATA_STATEMENT = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE)\b")


def data_statements(queries) -> list[str]:
    """The statements that read or write rows (not BEGIN, SAVEPOINT, COMMIT and the like)."""
    return [query["sql"] for query in queries.captured_queries if DATA_STATEMENT.match(query["sql"])]


def locked(table: str) -> str:
    # SQLite has no row locks (it locks the whole database): Django leaves FOR UPDATE out there.
    return f"SELECT {table}{' FOR UPDATE' if connection.features.has_select_for_update else ''}"


def shape(sql: str) -> str:
    verb = sql.split(None, 1)[0]
    table = re.search(r'(?:FROM|UPDATE|INTO) "(\w+)"', sql).group(1)
    return f"{verb} {table}{' FOR UPDATE' if sql.rstrip().endswith('FOR UPDATE') else ''}"


def test_a_payment_within_its_hold_is_confirmed_in_five_statements(slot):
    booking = booking_start(slot=slot, quantity=2, customer_email="ada@example.com", customer_name="Ada")
    booking_checkout_attach(booking=booking, session_id="cs_test_held", expires_at=slot.starts_at, customer_id="")

    with CaptureQueriesContext(connection) as queries:
        result = booking_confirm(facts=paid_facts(booking))

    statements = data_statements(queries)
    assert [shape(sql) for sql in statements] == [
        locked("bookings_booking"),  # the booking alone, locked
        "SELECT bookings_hold",  # its open hold, read once
        "UPDATE bookings_slot",  # held seats become sold
        "UPDATE bookings_hold",  # the hold ends converted
        "UPDATE bookings_booking",  # pending to confirmed, conditional on the status seen
    ]
    assert " JOIN " not in statements[0]
    slot.refresh_from_db()
    assert result.outcome == ConfirmOutcome.CONFIRMED
    assert (slot.seats_left, slot.seats_held) == (3, 0)
    assert Hold.objects.get(booking=booking).end == HoldEnd.CONVERTED
    booking.refresh_from_db()
    assert booking.status == BookingStatus.CONFIRMED and booking.amount_paid == 2 * slot.listing.price_amount


def test_a_payment_without_a_hold_takes_free_seats_in_four_statements(slot):
    booking = make_booking(slot=slot)  # no hold: a late payment, as in benchmarks/confirm.py

    with CaptureQueriesContext(connection) as queries:
        result = booking_confirm(facts=paid_facts(booking))

    assert [shape(sql) for sql in data_statements(queries)] == [
        locked("bookings_booking"),
        "SELECT bookings_hold",
        "UPDATE bookings_slot",  # the conditional decrement of free seats
        "UPDATE bookings_booking",
    ]
    slot.refresh_from_db()
    assert result.outcome == ConfirmOutcome.CONFIRMED
    assert slot.seats_left == 4


def test_the_confirmation_email_reads_the_booking_once_and_claims_it(django_capture_on_commit_callbacks):
    # No support e-mail: the calendar's organizer is the merchant's own address, read with the booking.
    merchant = make_merchant(username="harbour", support_email="")
    booking = make_booking(slot=make_slot(listing=make_listing(merchant=merchant)))

    with CaptureQueriesContext(connection) as queries:
        with django_capture_on_commit_callbacks(execute=True):
            booking_confirm(facts=paid_facts(booking))

    after_commit = [shape(sql) for sql in data_statements(queries)][4:]
    assert after_commit == ["SELECT bookings_booking", "UPDATE bookings_booking"]  # the read, then the claim
    assert len(mail.outbox) == 1
    calendar = mail.outbox[0].attachments[0]
    assert "ORGANIZER;CN=" in calendar.get_payload(decode=True).decode()
    assert "mailto:harbour@example.com" in calendar.get_payload(decode=True).decode()
