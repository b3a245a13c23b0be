"""The rules of a time's start, capacity and series live in the services; the dashboard's forms
call them, so a form and a direct service call refuse the same input with the same sentence."""

import datetime as dt

import pytest
from django.utils import timezone

from merchant.forms import CapacityForm, SeriesForm, SlotForm
from bookings.services import BookingError, slot_capacity_change, slot_create, slot_series_create
from tests.factories import make_confirmed_booking, make_slot

pytestmark = pytest.mark.django_db


def refusal(call) -> tuple[str | None, str]:
    with pytest.raises(BookingError) as caught:
        call()
    return caught.value.field, str(caught.value)


def test_a_series_starting_yesterday_is_refused_by_the_service_itself(listing):
    today = timezone.localtime(timezone.now(), listing.merchant.zone).date()
    arguments = dict(listing=listing, weekdays=frozenset(range(7)), start_times=(dt.time(10),), capacity=4)

    assert refusal(
        lambda: slot_series_create(first_day=today - dt.timedelta(days=1), last_day=today, **arguments)
    ) == ("first_day", "Start the series today or later.")
    assert refusal(
        lambda: slot_series_create(first_day=today, last_day=today + dt.timedelta(days=366), **arguments)
    ) == ("last_day", "A series can cover at most 366 days. Choose an earlier end.")
    assert refusal(lambda: slot_series_create(first_day=today, last_day=today, **{**arguments, "start_times": ()})) == (
        "start_times",
        "Enter at least one start time, such as 10:00.",
    )


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"first_day": "2020-01-01", "last_day": "2020-01-02"}, "first_day"),
        ({"capacity": "0"}, "capacity"),
        ({"capacity": "10001"}, "capacity"),
    ],
)
def test_the_series_form_says_what_the_service_says(listing, data, field):
    today = timezone.localtime(timezone.now(), listing.merchant.zone).date()
    values = {"weekdays": ["0", "1"], "start_times": "10:00", "first_day": today.isoformat(), "last_day": today.isoformat(), "capacity": "4", **data}
    form = SeriesForm(values, merchant=listing.merchant)

    assert not form.is_valid()
    service_field, sentence = refusal(
        lambda: slot_series_create(
            listing=listing,
            weekdays=frozenset({0, 1}),
            start_times=(dt.time(10),),
            first_day=dt.date.fromisoformat(values["first_day"]),
            last_day=dt.date.fromisoformat(values["last_day"]),
            capacity=int(values["capacity"]),
        )
    )
    assert (service_field, form.errors[field]) == (field, [sentence])


def test_the_slot_form_and_slot_create_refuse_a_past_time_alike(listing):
    past = timezone.now() - dt.timedelta(hours=1)
    form = SlotForm(
        {"starts_at": timezone.localtime(past, listing.merchant.zone).strftime("%Y-%m-%dT%H:%M"), "capacity": "4"},
        merchant=listing.merchant,
    )

    assert not form.is_valid()
    assert refusal(lambda: slot_create(listing=listing, starts_at=past, capacity=4)) == (
        "starts_at",
        form.errors["starts_at"][0],
    )


def test_the_capacity_form_and_the_service_refuse_a_capacity_below_the_seats_sold(listing):
    slot = make_slot(listing=listing, capacity=5)
    make_confirmed_booking(slot=slot, quantity=1)
    slot.refresh_from_db()
    form = CapacityForm({"capacity": "0"}, slot=slot)

    assert not form.is_valid()
    assert form.errors["capacity"] == ["A time needs at least 1 seat."]
    assert form.fields["capacity"].help_text == "1 seat is already sold, so capacity cannot go below 1."
    assert refusal(lambda: slot_capacity_change(slot=slot, capacity=0)) == ("capacity", "A time needs at least 1 seat.")
