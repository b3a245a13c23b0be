"""The waitlist: who is offered freed seats (the first whose count fits), that an offer holds
seats in the one count, passing on when it lapses or is left, and every way seats free up."""

import datetime as dt

import pytest
from django.core import mail
from django.utils import timezone

from bookings import selectors
from bookings.models import BookingStatus, Hold, HoldEnd, HoldKind, Slot, WaitlistEntry, WaitlistStatus
from bookings.services import (
    BookingError,
    booking_expire,
    booking_refund,
    booking_start,
    booking_start_from_offer,
    slot_cancel,
    slot_capacity_change,
    slot_selling_set,
    waitlist_join,
    waitlist_leave,
    waitlist_offers_lapse,
)
from tests.factories import make_confirmed_booking, make_listing, make_merchant, make_slot

pytestmark = pytest.mark.django_db(transaction=True)  # e-mails go after commit

W = WaitlistStatus


def join(slot, name: str, quantity: int = 1) -> WaitlistEntry:
    return waitlist_join(slot=slot, quantity=quantity, customer_email=f"{name.lower()}@example.com", customer_name=name)


def counts(slot: Slot) -> tuple[int, int, int]:
    slot.refresh_from_db()
    return slot.seats_sold, slot.seats_held, slot.seats_left


def status(entry: WaitlistEntry) -> str:
    entry.refresh_from_db()
    return entry.status


def offer_emails(to: str | None = None) -> list:
    return [m for m in mail.outbox if m.subject.startswith("Seats are free for you") and (to is None or m.to == [to])]


def held_seat(slot: Slot, name: str = "Holder", quantity: int = 1):
    return booking_start(slot=slot, quantity=quantity, customer_email=f"{name.lower()}@example.com", customer_name=name)


def test_a_time_with_seats_free_has_no_waitlist_to_join():
    slot = make_slot(capacity=2)
    with pytest.raises(BookingError, match="2 seats are free at this time: book them now"):
        join(slot, "Ada")
    held_seat(slot)
    with pytest.raises(BookingError, match="1 seat is free"):
        join(slot, "Ada")
    # Wanting more seats than are free: the waitlist is the way.
    assert join(slot, "Ada", quantity=2).status == W.WAITING
    assert not WaitlistEntry.objects.exclude(customer_email="ada@example.com").exists()


def test_joining_twice_with_one_address_is_refused_and_the_join_is_confirmed_by_one_email():
    slot = make_slot(capacity=1)
    held_seat(slot)
    join(slot, "Ada")
    with pytest.raises(BookingError, match="already on the waitlist for this time \\(1 seat\\)"):
        waitlist_join(slot=slot, quantity=2, customer_email=" ADA@example.com ", customer_name="Ada")
    joined = [m for m in mail.outbox if m.subject == f"You're on the waitlist: {slot.listing.title}"]
    assert len(joined) == 1 and "/waitlist/leave/" in joined[0].body


def test_a_cancelled_or_stopped_time_has_no_waitlist():
    slot = make_slot(capacity=1, seats_left=0)
    slot_selling_set(slot=slot, on_sale=False)
    with pytest.raises(BookingError, match="no longer on sale"):
        join(slot, "Ada")


def test_a_freed_seat_goes_to_the_first_in_line_whose_count_fits():
    slot = make_slot(capacity=3)
    holds = [held_seat(slot, "Holder", quantity=3)]
    big = join(slot, "Grace", quantity=2)
    small = join(slot, "Ada", quantity=1)
    later = join(slot, "Linus", quantity=1)

    booking_expire(booking=holds[0])  # 3 seats free: Grace's 2, then Ada's 1; Linus waits

    assert [status(big), status(small), status(later)] == [W.OFFERED, W.OFFERED, W.WAITING]
    assert counts(slot) == (0, 3, 0)
    assert {tuple(m.to) for m in offer_emails()} == {("grace@example.com",), ("ada@example.com",)}


def test_one_freed_seat_skips_a_party_too_big_and_goes_to_the_next_that_fits():
    slot = make_slot(capacity=2)
    first, second = held_seat(slot, "One"), held_seat(slot, "Two")
    big = join(slot, "Grace", quantity=2)
    small = join(slot, "Ada", quantity=1)

    booking_expire(booking=first)

    assert (status(big), status(small)) == (W.WAITING, W.OFFERED)
    assert counts(slot) == (0, 2, 0)
    booking_expire(booking=second)  # one seat is not enough for Grace: it stays free for anyone
    assert status(big) == W.WAITING and counts(slot) == (0, 1, 1)


def test_an_offer_holds_its_seats_for_waitlist_offer_minutes_and_is_emailed_once(settings):
    settings.WAITLIST_OFFER_MINUTES = 45
    merchant = make_merchant(timezone_name="Asia/Kolkata")
    slot = make_slot(listing=make_listing(merchant=merchant, title="Tea tasting", price_amount=1500), capacity=1)
    booking = held_seat(slot)
    entry = join(slot, "Ada")
    before = timezone.now()

    booking_expire(booking=booking)

    entry.refresh_from_db()
    hold = entry.offer_hold
    assert hold.kind == HoldKind.OFFER and hold.quantity == 1 and hold.booking is None
    assert before + dt.timedelta(minutes=45) <= hold.expires_at <= timezone.now() + dt.timedelta(minutes=45)
    [email] = offer_emails()
    local = timezone.localtime(hold.expires_at, merchant.zone)
    assert f"held for you until {local:%H:%M} on {local:%A} {local.day} {local:%B} (Asia/Kolkata)" in email.body
    assert "/waitlist/offer/" in email.body and "/waitlist/leave/" in email.body
    assert entry.offer_email_sent_at is not None
    # The task delivered again sends nothing more.
    from bookings import tasks

    tasks.waitlist_offer_send(entry_id=entry.pk)
    assert len(offer_emails()) == 1


def test_an_offer_not_taken_up_lapses_and_passes_to_the_next_in_line(settings):
    slot = make_slot(capacity=1)
    booking = held_seat(slot)
    ada, grace = join(slot, "Ada"), join(slot, "Grace")
    booking_expire(booking=booking)
    ada.refresh_from_db()

    assert waitlist_offers_lapse(now=ada.offer_hold.expires_at - dt.timedelta(seconds=1)) == 0
    assert waitlist_offers_lapse(now=ada.offer_hold.expires_at) == 1

    ada.refresh_from_db()
    assert ada.status == W.LAPSED and ada.offer_hold.end == HoldEnd.LAPSED
    assert status(grace) == W.OFFERED
    assert counts(slot) == (0, 1, 0)
    assert [m.to for m in offer_emails()] == [["ada@example.com"], ["grace@example.com"]]
    assert waitlist_offers_lapse(now=ada.offer_hold.expires_at) == 0  # the next sweep changes nothing


def test_leaving_with_an_offer_passes_the_seats_on_at_once_and_leaving_again_changes_nothing():
    slot = make_slot(capacity=1)
    booking = held_seat(slot)
    ada, grace = join(slot, "Ada"), join(slot, "Grace")
    booking_expire(booking=booking)

    assert waitlist_leave(entry=ada) is True
    assert (status(ada), status(grace)) == (W.LEFT, W.OFFERED)
    assert waitlist_leave(entry=ada) is False
    assert counts(slot) == (0, 1, 0)


def test_leaving_while_waiting_is_never_offered_seats():
    slot = make_slot(capacity=1)
    booking = held_seat(slot)
    ada = join(slot, "Ada")
    waitlist_leave(entry=ada)
    booking_expire(booking=booking)
    assert status(ada) == W.LEFT and counts(slot) == (0, 0, 1) and offer_emails() == []


def test_a_refund_returning_seats_offers_them():
    slot = make_slot(capacity=1)
    booking = make_confirmed_booking(slot=slot)
    ada = join(slot, "Ada")
    booking_refund(booking=booking)
    assert status(ada) == W.OFFERED and counts(slot) == (0, 1, 0)


def test_a_capacity_increase_offers_the_new_seats():
    slot = make_slot(capacity=1)
    make_confirmed_booking(slot=slot)
    ada, grace, linus = join(slot, "Ada", 2), join(slot, "Grace"), join(slot, "Linus")
    slot_capacity_change(slot=slot, capacity=3)
    assert [status(ada), status(grace), status(linus)] == [W.OFFERED, W.WAITING, W.WAITING]
    assert counts(slot) == (1, 2, 0)
    assert slot.seats_held == 2


def test_seats_freed_while_sales_were_stopped_go_to_the_waitlist_when_they_resume():
    slot = make_slot(capacity=1)
    booking = held_seat(slot)
    ada = join(slot, "Ada")
    slot_selling_set(slot=slot, on_sale=False)
    booking_expire(booking=booking)
    assert status(ada) == W.WAITING and counts(slot) == (0, 0, 1)
    slot_selling_set(slot=slot, on_sale=True)
    assert status(ada) == W.OFFERED and counts(slot) == (0, 1, 0)


def test_cancelling_the_time_closes_its_waitlist_and_ends_its_offers():
    slot = make_slot(capacity=2)
    booking = held_seat(slot, quantity=2)
    ada, grace = join(slot, "Ada"), join(slot, "Grace", 2)
    booking_expire(booking=booking)
    assert (status(ada), status(grace)) == (W.OFFERED, W.WAITING)
    slot_cancel(slot=slot)
    assert (status(ada), status(grace)) == (W.CLOSED, W.CLOSED)
    assert not selectors.open_offers(slot_id=slot.pk).exists()
    assert counts(slot)[1] == 0


def test_taking_up_an_offer_turns_its_hold_into_the_checkout_hold_without_freeing_a_seat():
    slot = make_slot(capacity=2)
    booking = held_seat(slot, quantity=2)
    ada = join(slot, "Ada", 2)
    booking_expire(booking=booking)
    ada.refresh_from_db()
    offer = ada.offer_hold

    taken = booking_start_from_offer(entry=ada, customer_name="Ada L.")

    assert counts(slot) == (0, 2, 0)
    offer.refresh_from_db()
    assert offer.end == HoldEnd.CONVERTED
    hold = Hold.objects.get(booking=taken, ended_at__isnull=True)
    assert hold.kind == HoldKind.CHECKOUT and hold.quantity == 2
    assert (taken.customer_email, taken.customer_name, taken.quantity, taken.status) == (
        "ada@example.com", "Ada L.", 2, BookingStatus.PENDING,
    )
    assert taken.amount_total == slot.listing.price_amount * 2
    assert status(ada) == W.BOOKED
    with pytest.raises(BookingError, match="already used this offer"):
        booking_start_from_offer(entry=ada, customer_name="Ada")
    # Cancelled on Checkout: the seats pass to whoever is next.
    grace = join(slot, "Grace", 2)
    booking_expire(booking=taken)
    assert status(grace) == W.OFFERED and counts(slot) == (0, 2, 0)


def test_an_offer_past_its_time_cannot_be_taken_up_and_passes_on_at_once():
    slot = make_slot(capacity=1)
    booking = held_seat(slot)
    ada, grace = join(slot, "Ada"), join(slot, "Grace")
    booking_expire(booking=booking)
    ada.refresh_from_db()
    Hold.objects.filter(pk=ada.offer_hold_id).update(expires_at=timezone.now() - dt.timedelta(seconds=1))

    with pytest.raises(BookingError, match="This offer has expired"):
        booking_start_from_offer(entry=ada, customer_name="Ada")

    assert (status(ada), status(grace)) == (W.LAPSED, W.OFFERED)
    assert counts(slot) == (0, 1, 0)


def test_selectors_for_invariants_see_one_open_offer_per_entry_and_held_seats_match_open_holds():
    slot = make_slot(capacity=3)
    booking = held_seat(slot, quantity=3)
    join(slot, "Ada"), join(slot, "Grace")
    booking_expire(booking=booking)
    held_seat(slot)
    assert selectors.seats_offered_per_slot() == {slot.pk: 2}
    assert selectors.seats_held_per_slot() == {slot.pk: 3}
    assert counts(slot) == (0, 3, 0)
    assert not selectors.waitlist_entries_offered_twice().exists()
