"""Bugs the race-and-fault simulation (tests/simulation) found, each pinned by a plain test."""

import pytest
from django.core import mail

from bookings.models import BookingStatus, Refund, RefundStatus
from payments import stripe_api
from payments.reconcile import reconcile_run
from tests.factories import make_slot
from tests.payments.stripe_flow import deliver_events, lose_hold, open_checkout, poll
from tests.connect_mode import on_account

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _stripe(stripe_emulator):
    return stripe_emulator


def sold_out_booking(client, stripe_emulator, *, card="4242424242424242"):
    slot = make_slot(capacity=1)
    loser, _ = open_checkout(client, slot, email="second@example.com")
    lose_hold(loser)  # its payment comes after its hold ended: the seat goes to the first
    winner, _ = open_checkout(client, slot, email="first@example.com")
    stripe_emulator.pay_session(winner.checkout_session_id, "4242424242424242")
    stripe_emulator.pay_session(loser.checkout_session_id, card)
    deliver_events(client, stripe_emulator, types={"checkout.session.completed"})
    loser.refresh_from_db()
    return loser


def test_reconcile_asks_stripe_even_when_the_success_page_just_did(client, slot, stripe_emulator, settings):
    settings.STRIPE_STATUS_CHECK_SECONDS = 60
    booking, _ = open_checkout(client, slot)
    poll(client, booking)  # the success page asked a moment ago, before the payment went through
    stripe_emulator.pay_session(booking.checkout_session_id)

    summary = reconcile_run()

    booking.refresh_from_db()
    assert summary.confirmed == 1
    assert booking.status == BookingStatus.CONFIRMED


def test_a_retried_webhook_asks_again_for_a_sold_out_refund_that_was_not_made(
    client, stripe_emulator, settings, monkeypatch
):
    from django.db import connection

    from bookings.services import refunds as refund_services

    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    stripe_emulator.fail_refunds(1, mode="error")
    loser = sold_out_booking(client, stripe_emulator)
    assert loser.status == BookingStatus.REFUND_DUE
    real_submit, asked_in_a_transaction = refund_services.refund_submit, []

    def submit(**kwargs):
        asked_in_a_transaction.append(connection.in_atomic_block)
        return real_submit(**kwargs)

    monkeypatch.setattr(refund_services, "refund_submit", submit)

    # Stripe sends the event that answered 500 again: this time the refund must be asked for,
    # and not inside the transaction that records the event (it waits for no call to Stripe).
    retried = deliver_events(client, stripe_emulator, types={"checkout.session.completed"})

    loser.refresh_from_db()
    assert [r.status_code for r in retried] == [200, 200]
    assert asked_in_a_transaction == [False]
    assert loser.status == BookingStatus.REFUNDED
    refunds = stripe_api.stripe_client().v1.refunds.list(params={"payment_intent": loser.payment_intent_id}, options=on_account(loser)).data
    assert len(refunds) == 1


def test_reconcile_learns_of_a_refund_that_failed_later_when_its_webhook_never_came(
    client, stripe_emulator, settings
):
    loser = sold_out_booking(client, stripe_emulator, card="4000000000005126")
    assert loser.status == BookingStatus.REFUNDED
    stripe_emulator.advance_clock(60)  # the refund fails at Stripe; its webhooks are lost
    assert stripe_emulator.events(type="refund.failed")

    reconcile_run()
    reconcile_run()  # a second run changes nothing and alerts nobody twice

    loser.refresh_from_db()
    refund = Refund.objects.get(booking=loser)
    assert loser.status == BookingStatus.REFUND_FAILED
    assert loser.amount_refunded == 0
    assert refund.status == RefundStatus.FAILED
    alerts = [m for m in mail.outbox if "refund failed" in m.subject]
    assert len(alerts) == 1


def test_a_status_panel_rendered_while_its_booking_changed_is_not_kept(client, stripe_emulator, settings, monkeypatch):
    """Simulation seed 100343: a poll read a sold-out booking as refund due and, while it was
    rendering, the refund was made (dropping the kept panel); the poll then kept its stale panel,
    so for FINAL_STATUS_CACHE_SECONDS it said the payment "is being refunded" after it had been."""
    from shop import views

    settings.FINAL_STATUS_CACHE_SECONDS = 60
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    stripe_emulator.fail_refunds(1, mode="error")
    loser = sold_out_booking(client, stripe_emulator)
    assert loser.status == BookingStatus.REFUND_DUE
    real_render = views.render_to_string

    def render_while_the_refund_is_made(*args, **kwargs):
        html = real_render(*args, **kwargs)
        monkeypatch.setattr(views, "render_to_string", real_render)
        reconcile_run()  # another process makes the refund meanwhile
        return html

    monkeypatch.setattr(views, "render_to_string", render_while_the_refund_is_made)
    during = poll(client, loser).content.decode()
    loser.refresh_from_db()
    after = poll(client, loser).content.decode()

    assert loser.status == BookingStatus.REFUNDED
    assert "Your payment of €25.00 is being refunded in full" in during
    assert "Your payment of €25.00 has been refunded in full" in after
