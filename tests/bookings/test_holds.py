"""Seats held while a customer pays: taken at checkout start, and each way a hold ends."""

import datetime as dt
from urllib.parse import urlsplit

import pytest
from django.utils import timezone

from bookings.models import BookingStatus, Hold, HoldEnd, Refund, Slot
from bookings.services import (
    BookingError,
    ConfirmOutcome,
    booking_confirm,
    booking_expire,
    slot_cancel,
    slot_selling_set,
)
from payments import stripe_api
from payments.checkout import checkout_start
from payments.reconcile import reconcile_run
from tests.connect_mode import checkout_sessions_everywhere, on_account
from tests.factories import make_slot
from tests.payments.stripe_flow import deliver_events, open_checkout

pytestmark = pytest.mark.django_db


def start(slot, *, quantity: int = 1, email: str = "ada@example.com"):
    return checkout_start(
        slot=slot,
        quantity=quantity,
        customer_email=email,
        customer_name="Ada Lovelace",
        success_url="http://testserver/checkout/success/?session_id={CHECKOUT_SESSION_ID}",
        cancel_url="http://testserver/",
    ).booking


def seats(slot) -> tuple[int, int, int]:
    """(sold, held, free) of a slot as stored now."""
    slot = Slot.objects.get(pk=slot.pk)
    return slot.seats_sold, slot.seats_held, slot.seats_left


def sessions_created(control) -> int:
    """Checkout Sessions the (freshly reset) emulator holds, on whichever accounts they were made."""
    return checkout_sessions_everywhere()


def pay(control, booking):
    control.pay_session(booking.checkout_session_id, "4242424242424242")
    return stripe_api.checkout_facts(booking.checkout_session_id, stripe_account=booking.stripe_account_id)


def test_opening_a_checkout_holds_its_seats_until_its_session_ends(stripe_emulator):
    slot = make_slot(capacity=3)
    before = timezone.now()

    booking = start(slot, quantity=2)

    hold = Hold.objects.get(booking=booking)
    assert seats(slot) == (0, 2, 1)
    assert hold.is_open and hold.quantity == 2
    assert hold.expires_at == booking.checkout_expires_at
    session = stripe_api.stripe_client().v1.checkout.sessions.retrieve(booking.checkout_session_id, options=on_account(booking))
    assert dt.datetime.fromtimestamp(session.expires_at, dt.UTC) == hold.expires_at
    assert dt.timedelta(minutes=30, seconds=-1) <= hold.expires_at - before < dt.timedelta(minutes=31)


def test_hold_minutes_of_a_listing_make_the_hold_and_the_session_longer(stripe_emulator, settings):
    settings.HOLD_MINUTES = 30
    slot = make_slot(capacity=3)
    slot.listing.hold_minutes = 90
    slot.listing.save()
    before = timezone.now()

    booking = start(slot)

    expires_at = Hold.objects.get(booking=booking).expires_at
    assert dt.timedelta(minutes=90, seconds=-1) <= expires_at - before < dt.timedelta(minutes=91)
    assert expires_at == booking.checkout_expires_at


def test_held_seats_count_as_taken_so_a_second_checkout_never_reaches_stripe(stripe_emulator):
    slot = make_slot(capacity=1)
    before = sessions_created(stripe_emulator)
    start(slot, email="first@example.com")

    with pytest.raises(BookingError) as refused:
        start(slot, email="second@example.com")

    assert "held by people paying" in str(refused.value)
    assert "within 30 minutes" in str(refused.value)
    assert sessions_created(stripe_emulator) - before == 1
    assert seats(slot) == (0, 1, 0)


def test_paying_within_the_hold_converts_it_into_the_sale(stripe_emulator):
    slot = make_slot(capacity=2)
    booking = start(slot, quantity=2)

    result = booking_confirm(facts=pay(stripe_emulator, booking))

    assert result.outcome == ConfirmOutcome.CONFIRMED
    assert Hold.objects.get(booking=booking).end == HoldEnd.CONVERTED
    assert seats(slot) == (2, 0, 0)
    assert not Refund.objects.exists()


def test_cancelling_on_checkout_expires_the_session_and_frees_the_seats_at_once(client, stripe_emulator):
    slot = make_slot(capacity=1)
    booking, _ = open_checkout(client, slot, email="ada@example.com", name="Ada Lovelace")
    cancel_url = stripe_api.stripe_client().v1.checkout.sessions.retrieve(booking.checkout_session_id, options=on_account(booking)).cancel_url
    assert seats(slot) == (0, 1, 0)

    page = client.get(urlsplit(cancel_url).path + "?" + urlsplit(cancel_url).query)

    html = page.content.decode()
    booking.refresh_from_db()
    assert page.status_code == 200
    assert "the seats you held are free again" in html
    assert 'value="ada@example.com"' in html  # the choices are kept
    assert booking.status == BookingStatus.EXPIRED
    assert Hold.objects.get(booking=booking).end == HoldEnd.RELEASED
    assert seats(slot) == (0, 0, 1)
    assert stripe_api.checkout_facts(booking.checkout_session_id, stripe_account=booking.stripe_account_id).status == "expired"
    assert start(slot, email="second@example.com").status == BookingStatus.PENDING


def test_the_session_expired_webhook_releases_the_hold(client, stripe_emulator):
    slot = make_slot(capacity=2)
    booking = start(slot, quantity=2)
    stripe_emulator.expire_session(booking.checkout_session_id)

    deliver_events(client, stripe_emulator, types={"checkout.session.expired"})

    booking.refresh_from_db()
    assert booking.status == BookingStatus.EXPIRED
    assert Hold.objects.get(booking=booking).end == HoldEnd.RELEASED
    assert seats(slot) == (0, 0, 2)


def test_stopping_sales_releases_the_holds_and_expires_their_sessions(stripe_emulator, django_capture_on_commit_callbacks):
    slot = make_slot(capacity=3)
    booking = start(slot)

    with django_capture_on_commit_callbacks(execute=True):
        slot_selling_set(slot=slot, on_sale=False)

    booking.refresh_from_db()
    assert booking.status == BookingStatus.EXPIRED
    assert Hold.objects.get(booking=booking).end == HoldEnd.RELEASED
    assert seats(slot) == (0, 0, 3)
    assert stripe_api.checkout_facts(booking.checkout_session_id, stripe_account=booking.stripe_account_id).status == "expired"


def test_cancelling_the_time_releases_the_holds(stripe_emulator, django_capture_on_commit_callbacks):
    slot = make_slot(capacity=3)
    booking = start(slot, quantity=2)

    with django_capture_on_commit_callbacks(execute=True):
        slot_cancel(slot=slot)

    booking.refresh_from_db()
    assert booking.status == BookingStatus.EXPIRED
    assert Hold.objects.get(booking=booking).end == HoldEnd.RELEASED
    assert Slot.objects.get(pk=slot.pk).seats_held == 0
    assert stripe_api.checkout_facts(booking.checkout_session_id, stripe_account=booking.stripe_account_id).status == "expired"


def test_a_checkout_stripe_cannot_open_releases_its_hold(stripe_emulator, settings):
    slot = make_slot(capacity=1)
    settings.STRIPE_SECRET_KEY = ""

    with pytest.raises(stripe_api.PaymentsUnavailable):
        start(slot)

    hold = Hold.objects.get()
    assert hold.booking.status == BookingStatus.EXPIRED
    assert hold.end == HoldEnd.RELEASED
    assert seats(slot) == (0, 0, 1)


@pytest.fixture
def clock(monkeypatch):
    """The site's clock, moved by hand only (Django's timezone.now, which every service reads):
    stopped, so that a test's "one second before the hold ends" stays one second before it
    however long the machine takes between two steps (a busy CI machine took longer than that)."""

    class Clock:
        offset = dt.timedelta()

        def advance(self, **delta):
            self.offset += dt.timedelta(**delta)

    fake = Clock()
    stopped_at = timezone.now()
    monkeypatch.setattr(timezone, "now", lambda: stopped_at + fake.offset)
    return fake


def test_a_hold_left_to_lapse_is_ended_by_reconcile_which_expires_its_session_at_stripe(stripe_emulator, clock):
    slot = make_slot(capacity=1)
    booking = start(slot)
    clock.advance(minutes=29, seconds=59)
    assert reconcile_run().holds_lapsed == 0
    assert seats(slot) == (0, 1, 0)

    clock.advance(minutes=1, seconds=1)  # past the hold's end; Stripe has not expired the session yet
    assert stripe_api.checkout_facts(booking.checkout_session_id, stripe_account=booking.stripe_account_id).status == "open"
    summary = reconcile_run()

    booking.refresh_from_db()
    assert summary.holds_lapsed == 1
    assert booking.status == BookingStatus.EXPIRED
    assert Hold.objects.get(booking=booking).end == HoldEnd.LAPSED
    assert seats(slot) == (0, 0, 1)
    assert stripe_api.checkout_facts(booking.checkout_session_id, stripe_account=booking.stripe_account_id).status == "expired"


def test_a_hold_whose_payment_arrived_just_in_time_is_converted_by_the_lapse_sweep(stripe_emulator, clock):
    slot = make_slot(capacity=1)
    booking = start(slot)
    stripe_emulator.pay_session(booking.checkout_session_id, "4242424242424242")  # webhook lost
    clock.advance(minutes=31)

    assert reconcile_run().holds_lapsed == 1

    booking.refresh_from_db()
    assert booking.status == BookingStatus.CONFIRMED
    assert Hold.objects.get(booking=booking).end == HoldEnd.CONVERTED
    assert seats(slot) == (1, 0, 0)


def test_a_payment_after_its_hold_ended_takes_a_free_seat_without_a_refund(stripe_emulator):
    slot = make_slot(capacity=2)
    booking = start(slot)
    booking_expire(booking=booking)  # its hold ended; the payment is heard of only afterwards
    assert seats(slot) == (0, 0, 2)

    result = booking_confirm(facts=pay(stripe_emulator, booking))

    assert result.outcome == ConfirmOutcome.CONFIRMED
    assert seats(slot) == (1, 0, 1)
    assert not Refund.objects.exists()


def test_a_payment_after_its_hold_ended_with_every_seat_gone_is_refunded_as_sold_out(stripe_emulator):
    slot = make_slot(capacity=1)
    late = start(slot, email="late@example.com")
    booking_expire(booking=late)
    holder = start(slot, email="holder@example.com")
    late_facts, holder_facts = pay(stripe_emulator, late), pay(stripe_emulator, holder)

    assert booking_confirm(facts=holder_facts).outcome == ConfirmOutcome.CONFIRMED
    assert booking_confirm(facts=late_facts).outcome == ConfirmOutcome.SOLD_OUT_REFUND_DUE

    late.refresh_from_db()
    assert late.status == BookingStatus.REFUND_DUE and late.ended_reason == "sold_out"
    assert seats(slot) == (1, 0, 0)
    assert Refund.objects.get().booking == late


def test_the_capacity_cannot_go_below_the_seats_sold_and_held(stripe_emulator):
    from bookings.services import slot_capacity_change

    slot = make_slot(capacity=5)
    start(slot, quantity=3)

    with pytest.raises(BookingError) as refused:
        slot_capacity_change(slot=slot, capacity=2)

    assert str(refused.value) == "3 seats are sold or held by people paying now, so capacity cannot go below 3."


def test_the_pending_success_page_says_until_when_the_seats_are_held_on_the_merchants_clock(client, stripe_emulator):
    from zoneinfo import ZoneInfo

    from django.urls import reverse

    from tests.factories import make_listing, make_merchant

    kolkata = make_merchant(timezone_name="Asia/Kolkata")
    slot = make_slot(listing=make_listing(merchant=kolkata), capacity=3)
    booking = start(slot, quantity=2)
    until = Hold.objects.get(booking=booking).expires_at.astimezone(ZoneInfo("Asia/Kolkata")).strftime("%H:%M")

    page = client.get(reverse("shop:checkout_success") + f"?session_id={booking.checkout_session_id}")

    assert f"Your seats are held for you until {until} <small class=\"muted\">(Asia/Kolkata)</small>." in page.content.decode()
