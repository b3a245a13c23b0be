"""The simulation reads the rows its checks need in one round trip: the same rows, in the same
order and with the same Python values, as reading each queryset on its own."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bookings.models import Booking, Slot
from tests.factories import make_booking, make_confirmed_booking, make_listing, make_slot
from tests.simulation.runner import ReadTogether

pytestmark = pytest.mark.django_db


def test_each_querysets_rows_are_those_it_gives_on_its_own():
    listing = make_listing()
    slots = [make_slot(listing=listing, capacity=4), make_slot(listing=listing, capacity=2, is_on_sale=False)]
    make_confirmed_booking(slot=slots[0], quantity=2)
    make_booking(slot=slots[1], with_session=False)
    querysets = [
        Slot.objects.filter(pk__in=[slot.pk for slot in slots]).values("pk", "capacity", "starts_at", "cancelled_at",
                                                                      "listing__is_active", "is_on_sale"),
        Booking.objects.filter(slot__in=slots).values("pk", "status", "checkout_session_id", "confirmed_at", "slot_id"),
        Booking.objects.filter(slot__in=slots, quantity=99).values("pk"),
    ]
    alone = [list(queryset.all()) for queryset in querysets]  # copies: each queryset unread

    with CaptureQueriesContext(connection) as queries:
        together = ReadTogether(querysets)()

    assert together == alone
    assert [len(rows) for rows in together] == [2, 2, 0]
    assert together[0][0]["starts_at"].tzinfo is not None
    assert [booking["confirmed_at"] is not None for booking in together[1]] == [False, True]  # newest first
    assert len(queries) == (1 if connection.vendor == "postgresql" else 3)


def test_each_call_reads_the_rows_again():
    slot = make_slot(capacity=4)
    read = ReadTogether([Slot.objects.filter(pk=slot.pk).values("seats_left"), Booking.objects.values("status")])
    assert read() == [[{"seats_left": 4}], []]

    make_confirmed_booking(slot=slot, quantity=3)

    assert read() == [[{"seats_left": 1}], [{"status": "confirmed"}]]
