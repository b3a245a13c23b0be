"""Identical deliveries of one event at once, with real threads on the real database: the event
is processed exactly once. A checkout's payment is settled in the transaction that records it, so
the other deliveries wait for its commit and find it done; every other event is claimed, and a
delivery turned away while it is processed is sent again."""

import threading
import time
from unittest import mock

import pytest
from django.conf import settings
from django.core import mail
from django.test import Client
from django.urls import reverse

from bookings.models import BookingStatus
from payments.models import StripeEvent
from payments import stripe_api, webhooks
from tests.concurrency import run_concurrently, sessions_waiting_on_a_lock
from tests.factories import make_booking, make_slot
from tests.payments.webhook_signing import event_payload, session_object, stripe_signature

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "whsec_webhook_concurrency"
DELIVERIES = 20


@pytest.fixture(autouse=True)
def webhook_secret(settings):
    settings.STRIPE_WEBHOOK_SECRETS = [SECRET]


def deliver(payload: bytes):
    response = Client().post(
        reverse("payments:stripe_webhook"),
        data=payload,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=stripe_signature(payload, SECRET),
    )
    return response.status_code, response.content.decode()


class HeldDispatch:
    """Counts how many times an event is processed, and holds the first processing until every
    other delivery has been answered (or, with `until_others_wait`, waits for the first one's
    lock): the widest window two processings could overlap in. With a claim that works, the other
    deliveries are answered at once."""

    def __init__(self, others: int, fail_first_with: Exception | None = None, until_others_wait: bool = False):
        self.runs = 0
        self.lock = threading.Lock()
        self.others = others
        self.answered = 0
        self.all_answered = threading.Event()
        self.fail_first_with = fail_first_with
        self.until_others_wait = until_others_wait
        self.others_waited = False
        self.real = webhooks._dispatch

    def __call__(self, event, **options):
        with self.lock:
            self.runs += 1
            first = self.runs == 1
        if first and self.until_others_wait:
            self.others_waited = self._others_wait_for_the_lock()
        elif first:
            # Not a sleep: released as soon as the others are answered (the timeout only bounds a
            # broken build in which the others are processing too).
            self.all_answered.wait(timeout=15)
            if self.fail_first_with is not None:
                raise self.fail_first_with
        return self.real(event, **options)

    def _others_wait_for_the_lock(self) -> bool:
        """Whether every other delivery came to wait for this one's lock (within 15 s). SQLite's
        writers wait for each other before any statement, where this cannot be seen: True."""
        if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
            return True
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if sessions_waiting_on_a_lock() >= self.others:
                return True
            time.sleep(0.01)
        return False

    def deliver(self, payload: bytes):
        try:
            return deliver(payload)
        finally:
            with self.lock:
                self.answered += 1
                if self.answered == self.others:
                    self.all_answered.set()


def test_20_identical_deliveries_of_a_payment_at_once_settle_it_once_and_the_others_find_it_done():
    slot = make_slot(capacity=5)
    booking = make_booking(slot=slot, quantity=2)
    payload = event_payload("checkout.session.completed", session_object(booking), event_id="evt_race_0")
    held = HeldDispatch(others=DELIVERIES - 1, until_others_wait=True)

    with mock.patch.object(webhooks, "_dispatch", held):
        answers = run_concurrently([lambda: held.deliver(payload)] * DELIVERIES)

    booking.refresh_from_db()
    slot.refresh_from_db()
    # The first settled it while all the others waited for its commit (none was turned away to
    # come back later), and then each found it done.
    assert held.others_waited and held.runs == 1
    assert sorted(answers) == [(200, "duplicate")] * (DELIVERIES - 1) + [(200, "processed")]
    assert booking.status == BookingStatus.CONFIRMED
    assert slot.seats_left == 3
    assert len(mail.outbox) == 1
    event = StripeEvent.objects.get(event_id="evt_race_0")
    assert (event.status, event.attempts) == (StripeEvent.Status.PROCESSED, 1)


# The claim every other event goes through (refunds, accounts, a checkout event that must ask
# Stripe for a refund still owed, a retry of one that failed), shown here with a payment's event.


@pytest.fixture
def claimed_events(monkeypatch):
    monkeypatch.setattr(webhooks, "ONE_TRANSACTION_EVENTS", frozenset())


def test_20_identical_deliveries_at_once_process_the_event_exactly_once(claimed_events):
    slot = make_slot(capacity=5)
    booking = make_booking(slot=slot, quantity=2)
    payload = event_payload("checkout.session.completed", session_object(booking), event_id="evt_race_1")
    held = HeldDispatch(others=DELIVERIES - 1)

    with mock.patch.object(webhooks, "_dispatch", held):
        answers = run_concurrently([lambda: held.deliver(payload)] * DELIVERIES)

    booking.refresh_from_db()
    slot.refresh_from_db()
    assert held.runs == 1
    assert answers.count((200, "processed")) == 1
    assert answers.count((500, "Not processed yet; please retry.")) == DELIVERIES - 1
    assert booking.status == BookingStatus.CONFIRMED
    assert slot.seats_left == 3
    assert len(mail.outbox) == 1
    event = StripeEvent.objects.get(event_id="evt_race_1")
    assert (event.status, event.attempts) == (StripeEvent.Status.PROCESSED, 1)
    # Stripe sends the turned-away deliveries again: the event is done by then.
    assert deliver(payload) == (200, "duplicate")


def test_a_delivery_turned_away_while_the_first_fails_is_processed_when_stripe_sends_it_again(claimed_events):
    slot = make_slot(capacity=5)
    booking = make_booking(slot=slot, quantity=1)
    payload = event_payload("checkout.session.completed", session_object(booking), event_id="evt_race_2")
    held = HeldDispatch(others=DELIVERIES - 1, fail_first_with=stripe_api.PaymentsUnavailable("Stripe timed out"))

    with mock.patch.object(webhooks, "_dispatch", held):
        answers = run_concurrently([lambda: held.deliver(payload)] * DELIVERIES)
        assert held.runs == 1
        assert set(answers) == {(500, "Not processed yet; please retry.")}
        assert StripeEvent.objects.get(event_id="evt_race_2").status == StripeEvent.Status.FAILED

        retried = deliver(payload)

    booking.refresh_from_db()
    assert retried == (200, "processed")
    assert held.runs == 2
    assert booking.status == BookingStatus.CONFIRMED
    assert len(mail.outbox) == 1


def test_an_event_whose_processing_died_with_its_process_is_taken_over_after_the_lease():
    from django.utils import timezone

    booking = make_booking(slot=make_slot(capacity=5))
    payload = event_payload("checkout.session.completed", session_object(booking), event_id="evt_race_3")
    event = stripe_api.webhook_event(payload=payload, signature_header=stripe_signature(payload, SECRET))
    StripeEvent.objects.create(
        event_id="evt_race_3", type=event["type"], payload=event, attempts=1,
        status=StripeEvent.Status.PROCESSING, claimed_at=timezone.now(),
    )
    assert deliver(payload) == (500, "Not processed yet; please retry.")

    StripeEvent.objects.filter(event_id="evt_race_3").update(
        claimed_at=timezone.now() - webhooks.EVENT_CLAIM_LEASE - timezone.timedelta(seconds=1)
    )
    assert list(webhooks.stripe_events_unfinished().values_list("event_id", flat=True)) == ["evt_race_3"]

    assert deliver(payload) == (200, "processed")
    booking.refresh_from_db()
    assert booking.status == BookingStatus.CONFIRMED
