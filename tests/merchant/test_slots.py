"""Adding slots one by one and as a recurring series, capacity changes, stopping sales."""

import datetime as dt
import zoneinfo

import pytest
from django.urls import reverse
from django.utils import timezone

from bookings.models import Slot
from bookings.selectors import PlannedState, slot_series_plan
from bookings.services import BookingError, booking_start, slot_capacity_change, slot_selling_set
from tests.factories import make_booking, make_confirmed_booking, make_listing, make_merchant, make_slot, paid_facts

pytestmark = pytest.mark.django_db

LONDON = zoneinfo.ZoneInfo("Europe/London")


@pytest.fixture
def merchant():
    return make_merchant(timezone_name="Europe/London")


@pytest.fixture
def signed_in(client, merchant):
    client.force_login(merchant.user)
    return client


def local_today(merchant) -> dt.date:
    return timezone.now().astimezone(merchant.zone).date()


def series_data(first_day: dt.date, last_day: dt.date, *, weekdays=range(7), times="10:00", capacity=6, action="preview"):
    return {
        "weekdays": [str(day) for day in weekdays],
        "start_times": times,
        "first_day": first_day.isoformat(),
        "last_day": last_day.isoformat(),
        "capacity": str(capacity),
        "action": action,
    }


# One slot


def test_a_slot_is_entered_in_the_merchant_s_timezone_and_stored_aware(signed_in, listing, merchant):
    merchant.timezone = "America/New_York"
    merchant.save()
    day = local_today(merchant) + dt.timedelta(days=20)

    response = signed_in.post(
        reverse("merchant:slot_create", args=[listing.pk]), {"starts_at": f"{day}T18:30", "capacity": "12"}
    )

    assert response.status_code == 302
    slot = listing.slots.get()
    assert slot.starts_at.astimezone(merchant.zone).replace(tzinfo=None) == dt.datetime.combine(day, dt.time(18, 30))
    assert slot.capacity == slot.seats_left == 12
    page = signed_in.get(reverse("merchant:listing_detail", args=[listing.pk])).content.decode()
    assert "18:30" in page


@pytest.mark.parametrize(
    "starts_at,capacity,error",
    [
        ("2020-01-01T10:00", "5", "Choose a time in the future."),
        ("tomorrow at ten", "5", "Enter a day and time such as"),
        ("", "5", "Enter the day and time it starts."),
        ("{future}", "0", "A time needs at least 1 seat."),
        ("{future}", "10001", "A time can have at most 10,000 seats."),
        ("{future}", "99999999999999999999999", "A time can have at most 10,000 seats."),
        ("{future}", "2.5", "Enter the number of seats as a whole number"),
        ("{far}", "5", "Choose a time within the next two years."),
        ("0001-01-01T00:00", "5", "Enter a date between 1970 and 2100."),
    ],
)
def test_a_slot_that_is_not_right_is_refused_with_a_sentence_beside_the_field(
    signed_in, listing, merchant, starts_at, capacity, error
):
    future = (timezone.now() + dt.timedelta(days=5)).astimezone(merchant.zone).strftime("%Y-%m-%dT%H:%M")
    far = (timezone.now() + dt.timedelta(days=900)).astimezone(merchant.zone).strftime("%Y-%m-%dT%H:%M")
    data = {"starts_at": starts_at.format(future=future, far=far), "capacity": capacity}

    response = signed_in.post(reverse("merchant:slot_create", args=[listing.pk]), data)

    assert response.status_code == 400
    assert error in response.content.decode()
    assert not listing.slots.exists()


def test_a_wall_clock_time_the_clocks_skip_is_refused(signed_in, listing, merchant):
    spring = next_clock_change(merchant, month=3, at_least_days=2)

    response = signed_in.post(
        reverse("merchant:slot_create", args=[listing.pk]), {"starts_at": f"{spring}T01:30", "capacity": "4"}
    )

    assert response.status_code == 400
    assert "because the clocks change then" in response.content.decode()


def test_a_time_the_listing_already_has_is_refused(signed_in, listing, merchant):
    existing = make_slot(listing=listing)
    local = existing.starts_at.astimezone(merchant.zone).replace(second=0, microsecond=0)
    Slot.objects.filter(pk=existing.pk).update(starts_at=local)

    response = signed_in.post(
        reverse("merchant:slot_create", args=[listing.pk]), {"starts_at": local.strftime("%Y-%m-%dT%H:%M"), "capacity": "4"}
    )

    assert response.status_code == 400
    assert "already has a time then" in response.content.decode()
    assert listing.slots.count() == 1


def test_an_archived_listing_gets_no_new_slots(signed_in, merchant):
    archived = make_listing(merchant=merchant, is_active=False)
    future = (timezone.now() + dt.timedelta(days=5)).astimezone(merchant.zone).strftime("%Y-%m-%dT%H:%M")

    response = signed_in.post(reverse("merchant:slot_create", args=[archived.pk]), {"starts_at": future, "capacity": "4"})

    assert response.status_code == 400
    assert "Restore it before adding times" in response.content.decode()


# Recurring series


def next_clock_change(merchant, *, month: int, at_least_days: int) -> dt.date:
    """The next last Sunday of `month` (Europe's clock change) at least `at_least_days` away."""
    today = local_today(merchant)
    for year in (today.year, today.year + 1, today.year + 2):
        last = dt.date(year, month + 1, 1) - dt.timedelta(days=1)
        sunday = last - dt.timedelta(days=(last.weekday() - 6) % 7)
        if (sunday - today).days >= at_least_days:
            return sunday
    raise AssertionError("no clock change found")


@pytest.mark.parametrize("month,utc_before,utc_after", [(3, 10, 9), (10, 9, 10)], ids=["march", "october"])
def test_a_weekly_series_across_a_clock_change_keeps_its_local_time(signed_in, listing, merchant, month, utc_before, utc_after):
    change = next_clock_change(merchant, month=month, at_least_days=16)
    data = series_data(change - dt.timedelta(days=14), change + dt.timedelta(days=14), weekdays=[6], times="10:00")

    response = signed_in.post(reverse("merchant:slot_series", args=[listing.pk]), {**data, "action": "create"})

    assert response.status_code == 302
    slots = list(listing.slots.order_by("starts_at"))
    assert len(slots) == 5
    assert {slot.starts_at.astimezone(LONDON).time() for slot in slots} == {dt.time(10, 0)}
    assert [slot.starts_at.astimezone(LONDON).date() for slot in slots] == [
        change + dt.timedelta(days=7 * n) for n in range(-2, 3)
    ]
    utc_hours = [slot.starts_at.astimezone(dt.UTC).hour for slot in slots]
    assert utc_hours == [utc_before, utc_before, utc_after, utc_after, utc_after]


def test_the_preview_lists_the_slots_without_saving_any(signed_in, listing, merchant):
    first = local_today(merchant) + dt.timedelta(days=1)
    data = series_data(first, first + dt.timedelta(days=6), times="09:30, 14:00")

    response = signed_in.post(reverse("merchant:slot_series", args=[listing.pk]), data)

    html = response.content.decode()
    assert response.status_code == 200
    assert "14 new times" in html
    assert html.count("09:30") >= 7 and html.count("14:00") >= 7
    assert "<html" in html  # without JavaScript the whole page comes back, with the preview
    assert not listing.slots.exists()


def test_the_htmx_preview_answers_with_the_preview_partial_only(signed_in, listing, merchant):
    first = local_today(merchant) + dt.timedelta(days=1)
    data = series_data(first, first + dt.timedelta(days=13), weekdays=[0, 2], times="18:00")

    response = signed_in.post(reverse("merchant:slot_series", args=[listing.pk]), data, headers={"HX-Request": "true"})

    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html
    assert "4 new times" in html
    assert not listing.slots.exists()


def test_the_htmx_preview_of_an_invalid_form_says_what_to_correct(signed_in, listing, merchant):
    first = local_today(merchant) + dt.timedelta(days=1)
    data = series_data(first, first - dt.timedelta(days=3), times="25:00")

    response = signed_in.post(reverse("merchant:slot_series", args=[listing.pk]), data, headers={"HX-Request": "true"})

    assert response.status_code == 200
    assert "Correct what is marked in the form" in response.content.decode()


def test_a_series_skips_times_that_already_exist(signed_in, listing, merchant):
    first = local_today(merchant) + dt.timedelta(days=1)
    existing = dt.datetime.combine(first + dt.timedelta(days=2), dt.time(10, 0), tzinfo=merchant.zone)
    make_slot(listing=listing, starts_at=existing)
    data = series_data(first, first + dt.timedelta(days=6))

    preview = signed_in.post(reverse("merchant:slot_series", args=[listing.pk]), data).content.decode()
    created = signed_in.post(reverse("merchant:slot_series", args=[listing.pk]), {**data, "action": "create"})

    assert "6 new times" in preview and "1 already exists" in preview
    assert created.status_code == 302
    assert listing.slots.count() == 7
    assert listing.slots.filter(starts_at=existing).count() == 1


def test_a_series_skips_a_wall_clock_time_the_clocks_skip(listing, merchant):
    spring = next_clock_change(merchant, month=3, at_least_days=2)

    plan = slot_series_plan(
        listing=listing, weekdays=frozenset({6}), start_times=(dt.time(1, 30), dt.time(10, 0)), first_day=spring, last_day=spring
    )

    assert [(item.start, item.state) for item in plan.items] == [
        (dt.time(1, 30), PlannedState.SKIPPED_BY_CLOCK_CHANGE),
        (dt.time(10, 0), PlannedState.NEW),
    ]


def test_today_s_times_already_past_are_skipped(listing, merchant):
    today = local_today(merchant)
    now = dt.datetime.combine(today, dt.time(12, 0), tzinfo=merchant.zone)

    plan = slot_series_plan(
        listing=listing, weekdays=frozenset(range(7)), start_times=(dt.time(9, 0), dt.time(15, 0)),
        first_day=today, last_day=today, now=now,
    )

    assert [item.state for item in plan.items] == [PlannedState.PAST, PlannedState.NEW]


def test_a_series_of_more_than_500_slots_is_refused(signed_in, listing, merchant):
    first = local_today(merchant) + dt.timedelta(days=1)
    data = series_data(first, first + dt.timedelta(days=100), times="08:00, 10:00, 12:00, 14:00, 16:00, 18:00")

    response = signed_in.post(reverse("merchant:slot_series", args=[listing.pk]), {**data, "action": "create"})

    assert response.status_code == 400
    assert "one series can make at most 500" in response.content.decode()
    assert not listing.slots.exists()


def test_a_series_of_exactly_500_slots_is_made(signed_in, listing, merchant):
    first = local_today(merchant) + dt.timedelta(days=1)
    data = series_data(first, first + dt.timedelta(days=99), times="08:00, 10:00, 12:00, 14:00, 16:00")

    response = signed_in.post(reverse("merchant:slot_series", args=[listing.pk]), {**data, "action": "create"})

    assert response.status_code == 302
    assert listing.slots.count() == 500


def test_a_series_that_makes_nothing_says_so(signed_in, listing, merchant):
    monday = local_today(merchant) + dt.timedelta(days=7 - local_today(merchant).weekday())
    data = series_data(monday, monday, weekdays=[3])

    response = signed_in.post(reverse("merchant:slot_series", args=[listing.pk]), {**data, "action": "create"})

    assert response.status_code == 400
    assert "There is nothing to add" in response.content.decode()


@pytest.mark.parametrize(
    "overrides,error",
    [
        ({"weekdays": []}, "Tick at least one day of the week."),
        ({"weekdays": ["9"]}, "Tick days from the list."),
        ({"start_times": "noon"}, "is not a time. Write times like 09:30 or 14:00."),
        ({"start_times": "24:00"}, "is not a time."),
        ({"start_times": ", ,"}, "Enter at least one start time"),
        ({"first_day": "2020-01-01"}, "Start the series today or later."),
        ({"first_day": "31/02/2027"}, "Enter a date such as"),
        ({"last_day": "{before}"}, "End the series on or after its first day."),
        ({"last_day": "{year_later}"}, "A series can cover at most 366 days."),
        ({"capacity": "0"}, "A time needs at least 1 seat."),
        ({"capacity": "10001"}, "A time can have at most 10,000 seats."),
    ],
)
def test_a_series_form_that_is_not_right_is_refused_beside_its_field(signed_in, listing, merchant, overrides, error):
    first = local_today(merchant) + dt.timedelta(days=2)
    data = series_data(first, first + dt.timedelta(days=7), action="create")
    fill = {"before": (first - dt.timedelta(days=1)).isoformat(), "year_later": (first + dt.timedelta(days=400)).isoformat()}
    data.update({key: value.format(**fill) if isinstance(value, str) else value for key, value in overrides.items()})

    response = signed_in.post(reverse("merchant:slot_series", args=[listing.pk]), data)

    assert response.status_code == 400
    assert error in response.content.decode()
    assert not listing.slots.exists()


# Capacity


@pytest.fixture
def three_sold(listing):
    slot = make_slot(listing=listing, capacity=5)
    make_confirmed_booking(slot=slot, quantity=2)
    make_confirmed_booking(slot=slot, quantity=1)
    slot.refresh_from_db()
    assert slot.seats_sold == 3
    return slot


def test_the_capacity_form_says_how_many_seats_are_sold(signed_in, three_sold):
    html = signed_in.get(reverse("merchant:slot_capacity", args=[three_sold.pk])).content.decode()

    assert "3 seats are already sold, so capacity cannot go below 3." in html


def test_capacity_cannot_go_below_the_seats_sold(signed_in, three_sold):
    response = signed_in.post(reverse("merchant:slot_capacity", args=[three_sold.pk]), {"capacity": "2"})

    three_sold.refresh_from_db()
    assert response.status_code == 400
    assert response.content.decode().count("3 seats are already sold, so capacity cannot go below 3.") >= 1
    assert (three_sold.capacity, three_sold.seats_left) == (5, 2)


@pytest.mark.parametrize("capacity,seats_left", [(3, 0), (4, 1), (12, 9)])
def test_seats_left_move_by_the_same_difference_as_capacity(signed_in, three_sold, capacity, seats_left):
    response = signed_in.post(reverse("merchant:slot_capacity", args=[three_sold.pk]), {"capacity": str(capacity)})

    three_sold.refresh_from_db()
    assert response.status_code == 302
    assert (three_sold.capacity, three_sold.seats_left) == (capacity, seats_left)


def test_the_conditional_update_sees_seats_sold_since_the_slot_was_read(three_sold):
    stale = Slot.objects.get(pk=three_sold.pk)  # read with 3 sold
    make_confirmed_booking(slot=three_sold, quantity=1)  # a fourth seat sold meanwhile

    with pytest.raises(BookingError, match="4 seats are already sold, so capacity cannot go below 4."):
        slot_capacity_change(slot=stale, capacity=3)

    three_sold.refresh_from_db()
    assert (three_sold.capacity, three_sold.seats_left) == (5, 1)


def test_a_confirmation_after_a_capacity_change_takes_from_the_new_seats_left(three_sold):
    pending = make_booking(slot=three_sold, quantity=2)
    slot_capacity_change(slot=three_sold, capacity=4)

    from bookings.services import booking_confirm

    result = booking_confirm(facts=paid_facts(pending))

    three_sold.refresh_from_db()
    assert result.outcome == "sold_out_refund_due"  # 4 - 3 sold = 1 left, 2 wanted
    assert (three_sold.capacity, three_sold.seats_left) == (4, 1)


def test_inline_capacity_edit_with_htmx_swaps_the_row(signed_in, three_sold):
    url = reverse("merchant:slot_capacity", args=[three_sold.pk])

    form_row = signed_in.get(url, headers={"HX-Request": "true"}).content.decode()
    refused = signed_in.post(url, {"capacity": "1"}, headers={"HX-Request": "true"})
    saved = signed_in.post(url, {"capacity": "8"}, headers={"HX-Request": "true"}).content.decode()

    assert form_row.startswith(f'<tr id="slot-{three_sold.pk}"') and 'name="capacity"' in form_row
    assert refused.status_code == 200  # htmx swaps only 2xx answers
    assert "capacity cannot go below 3" in refused.content.decode()
    assert saved.startswith(f'<tr id="slot-{three_sold.pk}"') and 'name="capacity"' not in saved
    assert "3/8" in saved


def test_a_cancelled_slot_s_capacity_cannot_change(three_sold):
    Slot.objects.filter(pk=three_sold.pk).update(cancelled_at=timezone.now())

    with pytest.raises(BookingError, match="cancelled"):
        slot_capacity_change(slot=three_sold, capacity=9)


# Selling


def test_stopping_sales_keeps_customers_from_starting_a_booking(signed_in, slot):
    response = signed_in.post(reverse("merchant:slot_selling", args=[slot.pk]), {"on_sale": "0"})

    slot.refresh_from_db()
    assert response.status_code == 302
    assert not slot.is_on_sale
    with pytest.raises(BookingError, match="no longer on sale"):
        booking_start(slot=slot, quantity=1, customer_email="a@example.com", customer_name="A")


def test_resuming_sales_puts_the_slot_back_on_sale_and_htmx_gets_the_row(signed_in, slot):
    Slot.objects.filter(pk=slot.pk).update(is_on_sale=False)

    response = signed_in.post(
        reverse("merchant:slot_selling", args=[slot.pk]), {"on_sale": "1"}, headers={"HX-Request": "true"}
    )

    slot.refresh_from_db()
    assert slot.is_on_sale
    assert response.content.decode().startswith(f'<tr id="slot-{slot.pk}"')
    assert "Stop selling" in response.content.decode()


def test_a_cancelled_slot_cannot_be_put_back_on_sale(slot):
    Slot.objects.filter(pk=slot.pk).update(cancelled_at=timezone.now(), is_on_sale=False)
    slot.refresh_from_db()

    with pytest.raises(BookingError, match="cannot be sold again"):
        slot_selling_set(slot=slot, on_sale=True)


def test_the_listing_page_shows_each_slot_with_its_occupancy_as_an_svg_bar(signed_in, listing, three_sold):
    html = signed_in.get(reverse("merchant:listing_detail", args=[listing.pk])).content.decode()

    assert 'aria-label="3 of 5 seats sold"' in html
    assert 'width="60.0%"' in html
    assert "style=" not in html
