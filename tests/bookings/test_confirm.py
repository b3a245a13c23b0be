"""The one confirm-and-decrement transaction, without Stripe: the facts are what Stripe would say."""

import pytest
from django.core import mail

from bookings.models import BookingStatus, Refund
from bookings.services import ConfirmOutcome, PaymentFactsMismatch, booking_confirm
from tests.factories import make_booking, make_slot, paid_facts

pytestmark = pytest.mark.django_db


def confirm(facts, capture):
    with capture(execute=True):
        return booking_confirm(facts=facts)


def test_paid_session_confirms_the_booking_and_takes_its_seats(booking, django_capture_on_commit_callbacks):
    result = confirm(paid_facts(booking), django_capture_on_commit_callbacks)

    booking.refresh_from_db()
    booking.slot.refresh_from_db()
    assert result.outcome == ConfirmOutcome.CONFIRMED
    assert booking.status == BookingStatus.CONFIRMED
    assert booking.amount_paid == booking.amount_total
    assert booking.payment_intent_id == f"pi_factory{booking.pk}"
    assert booking.confirmed_at is not None
    assert booking.slot.seats_left == 4
    assert [m.to for m in mail.outbox] == [[booking.customer_email]]
    assert "You're booked" in mail.outbox[0].subject


def test_second_confirmation_changes_nothing_and_sends_no_second_email(booking, django_capture_on_commit_callbacks):
    confirm(paid_facts(booking), django_capture_on_commit_callbacks)
    again = confirm(paid_facts(booking), django_capture_on_commit_callbacks)

    booking.slot.refresh_from_db()
    assert again.outcome == ConfirmOutcome.ALREADY_DONE
    assert booking.slot.seats_left == 4
    assert len(mail.outbox) == 1


def test_open_unpaid_session_leaves_the_booking_pending(booking):
    result = booking_confirm(facts=paid_facts(booking, status="open", payment_status="unpaid"))

    booking.refresh_from_db()
    assert result.outcome == ConfirmOutcome.NOT_PAID_YET
    assert booking.status == BookingStatus.PENDING


def test_complete_but_unpaid_async_session_is_not_settled(booking):
    result = booking_confirm(facts=paid_facts(booking, payment_status="unpaid"))

    assert result.outcome == ConfirmOutcome.NOT_PAID_YET


def test_expired_session_expires_the_pending_booking_without_taking_seats(booking):
    result = booking_confirm(facts=paid_facts(booking, status="expired", payment_status="unpaid"))

    booking.refresh_from_db()
    booking.slot.refresh_from_db()
    assert result.outcome == ConfirmOutcome.EXPIRED
    assert booking.status == BookingStatus.EXPIRED
    assert booking.slot.seats_left == 5


def test_a_100_percent_promotion_code_confirms_with_nothing_paid(booking, django_capture_on_commit_callbacks):
    facts = paid_facts(booking, payment_status="no_payment_required", amount_total=0, payment_intent_id=None)
    result = confirm(facts, django_capture_on_commit_callbacks)

    booking.refresh_from_db()
    assert result.outcome == ConfirmOutcome.CONFIRMED
    assert booking.amount_paid == 0
    assert booking.payment_intent_id == ""


def test_no_payment_required_with_a_total_left_to_pay_is_not_settled(booking):
    facts = paid_facts(booking, payment_status="no_payment_required", amount_total=100, payment_intent_id=None)

    assert booking_confirm(facts=facts).outcome == ConfirmOutcome.NOT_PAID_YET


def test_a_partial_promotion_code_records_what_was_actually_paid(booking, django_capture_on_commit_callbacks):
    confirm(paid_facts(booking, amount_total=booking.amount_total - 500), django_capture_on_commit_callbacks)

    booking.refresh_from_db()
    assert booking.amount_paid == booking.amount_total - 500


@pytest.mark.parametrize(
    "overrides",
    [
        {"client_reference_id": "booking-999999"},
        {"metadata_booking_id": "999999"},
        {"currency": "usd"},
        {"amount_subtotal": 1},
        {"amount_total": 999999},
        {"amount_total": None},
        {"payment_intent_id": None},
    ],
    ids=["reference", "metadata", "currency", "subtotal", "total_above_price", "no_total", "paid_without_intent"],
)
def test_payment_facts_that_do_not_match_the_booking_are_refused(booking, overrides):
    with pytest.raises(PaymentFactsMismatch):
        booking_confirm(facts=paid_facts(booking, **overrides))

    booking.refresh_from_db()
    booking.slot.refresh_from_db()
    assert booking.status == BookingStatus.PENDING
    assert booking.slot.seats_left == 5


def test_unknown_session_is_reported_and_changes_nothing(booking):
    facts = paid_facts(booking, session_id="cs_test_unknown", client_reference_id="someone-else")

    result = booking_confirm(facts=facts)

    assert result.outcome == ConfirmOutcome.UNKNOWN_SESSION
    assert result.booking is None


def test_a_session_whose_id_was_never_stored_is_found_by_its_reference(slot, django_capture_on_commit_callbacks):
    booking = make_booking(slot=slot, with_session=False)

    result = confirm(paid_facts(booking, session_id="cs_test_lostid"), django_capture_on_commit_callbacks)

    booking.refresh_from_db()
    assert result.outcome == ConfirmOutcome.CONFIRMED
    assert booking.checkout_session_id == "cs_test_lostid"


def test_sold_out_with_nothing_paid_cancels_and_tells_the_customer(django_capture_on_commit_callbacks):
    slot = make_slot(capacity=1)
    first, second = make_booking(slot=slot), make_booking(slot=slot)
    confirm(paid_facts(first), django_capture_on_commit_callbacks)
    free = paid_facts(second, payment_status="no_payment_required", amount_total=0, payment_intent_id=None)

    result = confirm(free, django_capture_on_commit_callbacks)

    second.refresh_from_db()
    slot.refresh_from_db()
    assert result.outcome == ConfirmOutcome.SOLD_OUT_NOTHING_CHARGED
    assert second.status == BookingStatus.CANCELLED
    assert slot.seats_left == 0
    assert not Refund.objects.filter(booking=second).exists()
    assert "sold out" in mail.outbox[-1].subject
    assert mail.outbox[-1].to == [second.customer_email]


def test_a_free_booking_on_a_cancelled_slot_is_cancelled_with_the_cancellation_as_its_reason(
    booking, django_capture_on_commit_callbacks
):
    booking.slot.cancelled_at = booking.slot.starts_at
    booking.slot.save()
    facts = paid_facts(booking, payment_status="no_payment_required", amount_total=0, payment_intent_id=None)

    result = confirm(facts, django_capture_on_commit_callbacks)

    assert result.outcome == ConfirmOutcome.SLOT_CANCELLED_NOTHING_CHARGED
    booking.refresh_from_db()
    assert (booking.status, booking.ended_reason) == ("cancelled", "slot_cancelled")
    assert mail.outbox[-1].subject == f"{booking.slot.listing.title} is cancelled"
    assert "sold out" not in mail.outbox[-1].body.lower()
