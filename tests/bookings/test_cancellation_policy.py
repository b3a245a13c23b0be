"""Cancellation policies: the deadline (elapsed hours, inclusive, in the merchant's zone across a
clock change), the refund under each policy (kept share rounded down to a minor unit), which
merchant edits reach bookings already made ("at least as lenient"), and a customer's cancel:
through the state machine, seats back at once, the refund on the merchant refund path, e-mails
once each, every refusal changing nothing."""

import datetime as dt
import zoneinfo

import pytest
from django.core import mail
from django.template.loader import render_to_string
from django.utils import timezone

from bookings import policies
from bookings.models import Booking, BookingStatus, CancellationPolicy, Refund, RefundReason, RefundStatus, Slot
from bookings.policies import CancellationTerms, booking_terms, cancel_quote
from bookings.services import (
    BookingError,
    TermsChanged,
    booking_customer_cancel,
    booking_follow_up,
    booking_refund,
    listing_update,
)
from tests.zoned import _last_sunday_of_march
from tests.factories import make_confirmed_booking, make_listing, make_merchant, make_slot

pytestmark = pytest.mark.django_db

PARIS = zoneinfo.ZoneInfo("Europe/Paris")
T = CancellationTerms


def paris_listing(**policy):
    merchant = make_merchant(timezone_name="Europe/Paris", display_name="Canal Tours")
    return make_listing(merchant=merchant, price_amount=2500, currency="eur", **policy)


def set_policy(listing, *, policy="customer", free_hours=24, keep=100):
    return listing_update(
        listing=listing,
        title=listing.title,
        description=listing.description,
        price_amount=listing.price_amount,
        currency=listing.currency,
        duration_minutes=listing.duration_minutes,
        cancel_policy=policy,
        cancel_free_hours=free_hours,
        cancel_late_keep_percent=keep,
    )


# The deadline


def test_the_deadline_is_elapsed_hours_before_the_start_and_crosses_the_paris_clock_change_inclusively():
    # Sunday 10:00 in Paris on the day clocks go forward (summer time, UTC+2), next year; the
    # slot is made from the wall clock, as a merchant's form makes it.
    year = timezone.now().year + 1
    sunday = _last_sunday_of_march(year)
    starts_at = dt.datetime(year, 3, sunday, 10, 0, tzinfo=PARIS)
    listing = paris_listing(cancel_free_hours=24, cancel_late_keep_percent=100)
    slot = make_slot(listing=listing, starts_at=starts_at)
    booking = make_confirmed_booking(slot=slot)  # paid 25.00

    deadline = booking_terms(booking).deadline(slot.starts_at)

    # 24 real hours before: Saturday 09:00 in Paris (winter time, UTC+1), 08:00 UTC.
    assert deadline == dt.datetime(year, 3, sunday - 1, 8, 0, tzinfo=dt.UTC)
    assert deadline.astimezone(PARIS).strftime("%A %H:%M") == "Saturday 09:00"
    at_deadline = cancel_quote(booking, now=deadline)
    just_after = cancel_quote(booking, now=deadline + dt.timedelta(microseconds=1))
    assert (at_deadline.free, at_deadline.refund) == (True, 2500)
    assert (just_after.free, just_after.refund, just_after.kept) == (False, 0, 2500)
    with timezone.override(PARIS):
        words = render_to_string(
            "common/_cancellation_policy.html",
            {"terms": booking_terms(booking), "deadline": deadline, "zone_name": "Europe/Paris"},
        ).strip()
    assert words == f"Free cancellation until Saturday {sunday - 1} March {year}, 09:00 (Europe/Paris); no refund after that."


def test_the_deadline_across_the_autumn_clock_change_is_an_hour_later_on_the_wall():
    # Sunday 25 October 2026, 10:00 in Paris (winter time again, UTC+1); 48 real hours before is
    # Friday 11:00 (summer time, UTC+2).
    starts_at = dt.datetime(2026, 10, 25, 10, 0, tzinfo=PARIS)  # a Sunday; clocks went back at 03:00
    deadline = T(customer_may_cancel=True, free_hours=48, keep_percent=50).deadline(starts_at)
    assert deadline.astimezone(PARIS).strftime("%A %d %H:%M") == "Friday 23 11:00"


# The refund under each policy


@pytest.mark.parametrize(
    ("paid", "currency", "terms", "late", "refund", "kept"),
    [
        (2500, "eur", T(True, 24, 100), False, 2500, 0),  # free window: everything
        (2500, "eur", T(True, 24, 100), True, 0, 2500),  # late, no refund
        (999, "eur", T(True, 24, 15), True, 850, 149),  # 15% of 9.99 is 1.4985: keeps 1.49, refunds 8.50
        (1001, "jpy", T(True, 24, 33), True, 671, 330),  # zero-decimal: 330.33 yen kept becomes 330
        (2500, "eur", T(True, 0, 0), True, 2500, 0),  # keeps nothing: free until the start
        (1, "eur", T(True, 24, 50), True, 1, 0),  # half a cent kept rounds down to nothing
    ],
)
def test_the_refund_under_each_policy_keeps_the_share_rounded_down_to_a_minor_unit(paid, currency, terms, late, refund, kept):
    listing = make_listing(
        price_amount=paid,
        currency=currency,
        cancel_free_hours=terms.free_hours,
        cancel_late_keep_percent=terms.keep_percent,
    )
    slot = make_slot(listing=listing, starts_in=dt.timedelta(days=3))
    booking = make_confirmed_booking(slot=slot)
    deadline = booking_terms(booking).deadline(slot.starts_at)
    now = deadline + dt.timedelta(minutes=1) if late else deadline - dt.timedelta(minutes=1)
    if terms.keep_percent == 0:
        now = slot.starts_at - dt.timedelta(minutes=1)

    quote = cancel_quote(booking, now=now)

    assert (quote.allowed, quote.refund, quote.kept) == (True, refund, kept)
    assert quote.refund + quote.kept == paid


def test_no_self_service_and_a_started_time_refuse_with_a_sentence():
    none = make_listing(cancel_policy=CancellationPolicy.NO_SELF_SERVICE)
    booking = make_confirmed_booking(slot=make_slot(listing=none))
    assert cancel_quote(booking).refusal == "This booking cannot be cancelled or moved online: please write to the host."
    started = make_confirmed_booking(slot=make_slot(starts_in=dt.timedelta(hours=1)))
    assert cancel_quote(started, now=started.slot.starts_at).refusal.startswith("This booking's time has started")


def test_a_booking_sold_before_policies_existed_has_no_self_service():
    booking = make_confirmed_booking()
    Booking.objects.filter(pk=booking.pk).update(policy_cancel="", policy_free_hours=None, policy_keep_percent=None)
    booking.refresh_from_db()
    assert booking_terms(booking) == T(customer_may_cancel=False)


# "More lenient"


@pytest.mark.parametrize(
    ("new", "old", "lenient"),
    [
        (T(True, 24, 100), T(False), True),  # any self-service beats none
        (T(False), T(True, 24, 100), False),
        (T(True, 12, 100), T(True, 24, 100), True),  # a later deadline
        (T(True, 48, 100), T(True, 24, 100), False),  # an earlier deadline
        (T(True, 24, 50), T(True, 24, 100), True),  # keeps less after it
        (T(True, 24, 100), T(True, 24, 50), False),
        (T(True, 12, 60), T(True, 24, 50), False),  # later deadline but keeps more: not comparable
        (T(True, 48, 0), T(True, 24, 100), True),  # keeps nothing: free until the start
        (T(True, 24, 100), T(True, 24, 100), True),  # the same terms
    ],
)
def test_at_least_as_lenient_means_never_less_back_at_any_moment(new, old, lenient):
    new, old = T.of(new.policy, new.free_hours, new.keep_percent), T.of(old.policy, old.free_hours, old.keep_percent)
    assert new.at_least_as_lenient_as(old) is lenient
    # Checked against the definition, hour by hour before a start: the percentage back (-1: no
    # self-service) is never lower under the new terms exactly when they count as lenient.
    start = dt.datetime(2030, 1, 10, 12, tzinfo=dt.UTC)

    def back(terms, now):
        if not terms.customer_may_cancel:
            return -1
        return 100 if now <= terms.deadline(start) else 100 - terms.keep_percent

    moments = [start - dt.timedelta(hours=h) for h in range(100)]
    never_less = all(back(new, now) >= back(old, now) for now in moments)
    assert never_less is lenient


def test_a_merchant_edit_reaches_existing_bookings_only_when_it_is_at_least_as_lenient():
    listing = paris_listing(cancel_free_hours=24, cancel_late_keep_percent=100)
    booking = make_confirmed_booking(slot=make_slot(listing=listing))
    past = make_confirmed_booking(slot=make_slot(listing=listing, starts_in=dt.timedelta(days=3)))
    Slot.objects.filter(pk=past.slot_id).update(starts_at=timezone.now() - dt.timedelta(hours=2))

    set_policy(listing, free_hours=48, keep=100)  # stricter: new bookings only
    booking.refresh_from_db()
    assert booking_terms(booking) == T(True, 24, 100)

    set_policy(listing, free_hours=12, keep=50)  # more lenient than what it was sold under
    booking.refresh_from_db()
    past.refresh_from_db()
    assert booking_terms(booking) == T(True, 12, 50)
    assert booking_terms(past) == T(True, 24, 100)  # a started booking is left as it was

    set_policy(listing, free_hours=6, keep=80)  # later deadline, larger share: not comparable
    booking.refresh_from_db()
    assert booking_terms(booking) == T(True, 12, 50)

    set_policy(listing, policy="none")  # stricter
    booking.refresh_from_db()
    assert booking_terms(booking) == T(True, 12, 50)
    listing.refresh_from_db()
    assert listing.cancel_policy == "none"


def test_a_bad_policy_is_refused_with_a_sentence_and_changes_nothing():
    listing = make_listing()
    for kwargs, sentence in [
        ({"keep": 101}, "The share you keep is a percentage from 0 to 100."),
        ({"free_hours": 24 * 366}, "Free cancellation can end at most 8760 hours"),
        ({"policy": "sometimes"}, "Choose one of the cancellation policies in the list."),
    ]:
        with pytest.raises(BookingError, match=sentence):
            set_policy(listing, **kwargs)
    listing.refresh_from_db()
    assert (listing.cancel_policy, listing.cancel_free_hours, listing.cancel_late_keep_percent) == ("customer", 24, 100)


def test_a_checkout_start_keeps_the_policy_the_listing_shows(stripe_settings_unset):
    from bookings.services import booking_start

    listing = make_listing(cancel_free_hours=36, cancel_late_keep_percent=25)
    booking = booking_start(slot=make_slot(listing=listing), quantity=1, customer_email="a@example.com", customer_name="A")
    set_policy(listing, free_hours=72, keep=100)
    booking.refresh_from_db()
    assert booking_terms(booking) == T(True, 36, 25)


# The customer's cancel


def test_a_free_cancel_returns_the_seats_at_once_and_refunds_everything_on_the_merchant_refund_path(
    stripe_settings_unset, django_capture_on_commit_callbacks
):
    listing = paris_listing()
    slot = make_slot(listing=listing, capacity=4)
    booking = make_confirmed_booking(slot=slot, quantity=2)  # paid 50.00
    slot.refresh_from_db()
    assert slot.seats_left == 2

    with django_capture_on_commit_callbacks(execute=True):
        quote = booking_customer_cancel(booking=booking, expected_refund=5000)

    booking.refresh_from_db()
    slot.refresh_from_db()
    assert quote.free and quote.refund == 5000
    assert slot.seats_left == 4
    assert (booking.status, booking.ended_reason) == (BookingStatus.REFUND_DUE, RefundReason.CUSTOMER_CANCELLED)
    refund = booking.refunds.get()
    assert (refund.amount, refund.reason, refund.status) == (5000, RefundReason.CUSTOMER_CANCELLED, RefundStatus.REQUESTED)
    # Stripe unreachable here: the refund waits for reconcile; the merchant is told at once, once.
    to_merchant = [m for m in mail.outbox if m.to == [listing.merchant.support_email]]
    assert len(to_merchant) == 1
    assert to_merchant[0].subject == f"Booking #{booking.pk} cancelled by {booking.customer_name}"
    assert "Refunded to the customer: €50.00 of €50.00 paid." in to_merchant[0].body
    booking_follow_up(booking_id=booking.pk, raise_refund_errors=False)
    assert len([m for m in mail.outbox if m.to == [listing.merchant.support_email]]) == 1


def test_cancelling_twice_refuses_the_second_and_changes_nothing(stripe_settings_unset):
    slot = make_slot(capacity=3)
    booking = make_confirmed_booking(slot=slot)
    booking_customer_cancel(booking=booking, expected_refund=2500)

    with pytest.raises(BookingError, match="This booking is already cancelled, or was never paid"):
        booking_customer_cancel(booking=booking, expected_refund=2500)

    slot.refresh_from_db()
    assert slot.seats_left == 3  # returned once
    assert Refund.objects.filter(booking=booking).count() == 1


def test_a_late_cancel_with_no_refund_cancels_tells_the_customer_the_policy_kept_it(django_capture_on_commit_callbacks):
    listing = paris_listing(cancel_free_hours=48, cancel_late_keep_percent=100)
    booking = make_confirmed_booking(slot=make_slot(listing=listing, starts_in=dt.timedelta(hours=30)))

    with django_capture_on_commit_callbacks(execute=True):
        quote = booking_customer_cancel(booking=booking, expected_refund=0)

    booking.refresh_from_db()
    assert (quote.free, quote.refund, quote.kept) == (False, 0, 2500)
    assert (booking.status, booking.ended_reason) == (BookingStatus.CANCELLED, RefundReason.CUSTOMER_CANCELLED)
    assert not booking.refunds.exists()
    to_customer = [m for m in mail.outbox if m.to == [booking.customer_email]]
    assert [m.subject for m in to_customer] == [f"You cancelled your booking: {listing.title}"]
    assert "You cancelled this booking, so it holds no seats." in to_customer[0].body
    assert "after the free cancellation deadline, so under Canal Tours's cancellation policy nothing is refunded" in to_customer[0].body


def test_a_late_cancel_refunds_the_payment_less_the_kept_share():
    listing = make_listing(price_amount=999, cancel_free_hours=24, cancel_late_keep_percent=15)
    booking = make_confirmed_booking(slot=make_slot(listing=listing, starts_in=dt.timedelta(hours=5)))
    booking_customer_cancel(booking=booking, expected_refund=850)
    assert booking.refunds.get().amount == 850


def test_a_policy_edited_since_the_customer_looked_refuses_with_the_new_amount_and_changes_nothing():
    listing = make_listing(cancel_free_hours=24, cancel_late_keep_percent=100)
    slot = make_slot(listing=listing, starts_in=dt.timedelta(hours=10), capacity=3)
    booking = make_confirmed_booking(slot=slot)
    assert cancel_quote(booking).refund == 0  # what the customer was shown

    set_policy(listing, free_hours=24, keep=40)  # more lenient: reaches the booking

    with pytest.raises(TermsChanged, match=r"it is now €15\.00\. Nothing was cancelled"):
        booking_customer_cancel(booking=booking, expected_refund=0)
    booking.refresh_from_db()
    slot.refresh_from_db()
    assert booking.status == BookingStatus.CONFIRMED and slot.seats_left == 2 and not booking.refunds.exists()
    booking_customer_cancel(booking=booking, expected_refund=1500)
    assert booking.refunds.get().amount == 1500


def test_a_cancel_while_a_merchant_partial_refund_is_in_flight_refunds_only_the_rest(stripe_settings_unset):
    booking = make_confirmed_booking()  # paid 25.00
    booking_refund(booking=booking, amount=1000)  # asked of Stripe, not created yet
    booking.refresh_from_db()
    quote = cancel_quote(booking)
    assert (quote.already_back, quote.refund) == (1000, 1500)

    booking_customer_cancel(booking=booking, expected_refund=1500)

    amounts = sorted((r.reason, r.amount) for r in booking.refunds.all())
    assert amounts == [(RefundReason.CUSTOMER_CANCELLED, 1500), (RefundReason.MERCHANT, 1000)]
    assert sum(a for _, a in amounts) == booking.amount_paid


def test_a_late_cancel_after_a_merchant_refund_never_refunds_beyond_the_policy(stripe_settings_unset):
    listing = make_listing(cancel_free_hours=24, cancel_late_keep_percent=50)
    booking = make_confirmed_booking(slot=make_slot(listing=listing, starts_in=dt.timedelta(hours=3)))
    booking_refund(booking=booking, amount=2000)  # the merchant gave back 20.00 of 25.00
    booking.refresh_from_db()
    quote = cancel_quote(booking)
    assert (quote.kept, quote.refund) == (1250, 0)  # 12.50 back is already exceeded
    booking_customer_cancel(booking=booking, expected_refund=0)
    booking.refresh_from_db()
    assert booking.status == BookingStatus.CANCELLED and booking.refunds.count() == 1


def test_a_cancel_after_a_merchant_full_refund_in_flight_is_refused(stripe_settings_unset):
    slot = make_slot(capacity=2)
    booking = make_confirmed_booking(slot=slot)
    booking_refund(booking=booking)
    with pytest.raises(BookingError, match="already cancelled"):
        booking_customer_cancel(booking=booking, expected_refund=2500)
    slot.refresh_from_db()
    assert slot.seats_left == 2 and booking.refunds.count() == 1


def test_a_customer_refund_is_created_at_stripe_once_and_told_truly(
    stripe_emulator, django_capture_on_commit_callbacks
):
    from payments import stripe_api

    listing = paris_listing()
    slot = make_slot(listing=listing, capacity=3)
    from payments.checkout import checkout_start

    started = checkout_start(
        slot=slot,
        quantity=1,
        customer_email="ines@example.com",
        customer_name="Ines",
        success_url="http://testserver/s?session_id={CHECKOUT_SESSION_ID}",
        cancel_url="http://testserver/",
    )
    stripe_emulator.pay_session(started.booking.checkout_session_id, card="4242424242424242")
    from bookings.services import booking_confirm

    with django_capture_on_commit_callbacks(execute=True):
        booking_confirm(facts=stripe_api.checkout_facts(started.booking.checkout_session_id, stripe_account=started.booking.stripe_account_id))
    booking = Booking.objects.get(pk=started.booking.pk)
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        booking_customer_cancel(booking=booking, expected_refund=2500)
    booking_follow_up(booking_id=booking.pk)  # run again: nothing more at Stripe, no e-mail twice

    booking.refresh_from_db()
    at_stripe = stripe_api.refunds_of_payment(booking.payment_intent_id, stripe_account=booking.stripe_account_id)
    assert [(r["amount"], r["metadata"]["reason"]) for r in at_stripe] == [(2500, "customer_cancel")]
    assert booking.status == BookingStatus.REFUNDED and booking.amount_refunded == 2500
    subjects = sorted(m.subject for m in mail.outbox)
    assert subjects == sorted(
        [f"You cancelled your booking: {listing.title}, refund of €25.00", f"Booking #{booking.pk} cancelled by Ines"]
    )
    to_customer = next(m for m in mail.outbox if m.to == ["ines@example.com"])
    assert "You cancelled this booking, so it holds no seats." in to_customer.body
    assert "Your payment of €25.00 has been refunded in full" in to_customer.body


# Lock and re-read: a policy edit and a cancellation racing (real threads, PostgreSQL)


def _waiting_on_a_lock() -> bool:
    from tests.concurrency import sessions_waiting_on_a_lock

    return sessions_waiting_on_a_lock() > 0


def _wait_until(predicate, seconds=20.0):
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("first", ["cancel", "edit"])
def test_a_policy_edit_and_a_cancellation_in_flight_wait_for_each_other(first, monkeypatch):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("row locks are proven on PostgreSQL")
    import threading

    from bookings.services import catalog, customer_changes
    from tests.concurrency import run_concurrently

    listing = make_listing(cancel_free_hours=24, cancel_late_keep_percent=100)
    slot = make_slot(listing=listing, starts_in=dt.timedelta(hours=10), capacity=3)
    booking = make_confirmed_booking(slot=slot)
    first_holds_its_lock = threading.Event()
    release = threading.Event()

    if first == "cancel":
        real_quote = customer_changes.cancel_quote

        def cancel_quote_then_wait(locked, **kwargs):
            quote = real_quote(locked, **kwargs)
            first_holds_its_lock.set()
            release.wait(20)
            return quote

        monkeypatch.setattr(customer_changes, "cancel_quote", cancel_quote_then_wait)
    else:
        real_upgrade = catalog.bookings_terms_upgrade

        def upgrade_then_wait(**kwargs):
            changed = real_upgrade(**kwargs)
            first_holds_its_lock.set()
            release.wait(20)
            return changed

        monkeypatch.setattr(catalog, "bookings_terms_upgrade", upgrade_then_wait)

    def cancel():
        if first == "edit":
            first_holds_its_lock.wait(20)
        return booking_customer_cancel(booking=booking, expected_refund=0)

    def edit():
        if first == "cancel":
            first_holds_its_lock.wait(20)
        return set_policy(Listing_fresh(listing), free_hours=24, keep=40)

    def referee():
        first_holds_its_lock.wait(20)
        assert _wait_until(_waiting_on_a_lock), "the second writer never waited for the first one's lock"
        release.set()

    cancelled, edited, refereed = run_concurrently([cancel, edit, referee])

    booking.refresh_from_db()
    assert refereed is None and not isinstance(edited, Exception)
    if first == "cancel":
        # The cancel finished under the terms it read; the edit then found the booking ended.
        assert cancelled.refund == 0 and booking.status == BookingStatus.CANCELLED
        assert booking_terms(booking) == T(True, 24, 100)
    else:
        # The cancel waited, re-read the more lenient terms and refused: nothing changed.
        assert isinstance(cancelled, TermsChanged) and "€15.00" in str(cancelled)
        assert booking.status == BookingStatus.CONFIRMED and booking_terms(booking) == T(True, 24, 40)
        slot.refresh_from_db()
        assert slot.seats_left == 2


def Listing_fresh(listing):  # noqa: N802 - reads like the model it returns
    from bookings.models import Listing

    return Listing.objects.get(pk=listing.pk)


def test_terms_of_is_normalised():
    assert policies.CancellationTerms.of("customer", 48, 0) == T(True, 0, 0)
    assert policies.CancellationTerms.of("none", 48, 50) == T(False)


def test_a_late_cancel_keeping_a_share_ends_refunded_once_its_partial_refund_is_made(
    stripe_emulator, django_capture_on_commit_callbacks
):
    from bookings.services import booking_confirm
    from payments import stripe_api
    from payments.checkout import checkout_start

    listing = paris_listing(cancel_free_hours=48, cancel_late_keep_percent=50)
    started = checkout_start(
        slot=make_slot(listing=listing, starts_in=dt.timedelta(hours=20)),
        quantity=1,
        customer_email="late@example.com",
        customer_name="Late",
        success_url="http://testserver/s?session_id={CHECKOUT_SESSION_ID}",
        cancel_url="http://testserver/",
    )
    stripe_emulator.pay_session(started.booking.checkout_session_id, card="4242424242424242")
    with django_capture_on_commit_callbacks(execute=True):
        booking_confirm(facts=stripe_api.checkout_facts(started.booking.checkout_session_id, stripe_account=started.booking.stripe_account_id))
    booking = Booking.objects.get(pk=started.booking.pk)

    with django_capture_on_commit_callbacks(execute=True):
        booking_customer_cancel(booking=booking, expected_refund=1250)

    booking.refresh_from_db()
    assert (booking.status, booking.amount_refunded, booking.amount_paid) == (BookingStatus.REFUNDED, 1250, 2500)
    to_customer = [m for m in mail.outbox if m.subject.startswith("You cancelled your booking")]
    assert [m.subject for m in to_customer] == [f"You cancelled your booking: {listing.title}, refund of €12.50"]
    assert "A refund of €12.50 has been made" in to_customer[0].body
