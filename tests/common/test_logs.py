"""Logs of a full booking run: structured, with the ids that matter, and free of secrets."""

import io
import json
import logging
import re

import pytest
from django.urls import reverse

from common.logs import JsonLogFormatter, log_event
from tests.conftest import TEST_SECRET_KEY, TEST_WEBHOOK_SECRET
from tests.factories import make_slot
from tests.shop.customer_signin import prove_email, signin_token_sent_to
from tests.payments.stripe_flow import deliver_events, lose_hold, open_checkout

pytestmark = pytest.mark.django_db(transaction=True)

CARDS = ["4242424242424242", "4000000000005126"]


@pytest.fixture
def every_log_line():
    """Every record from every logger, at DEBUG, in both formats."""
    stream = io.StringIO()
    plain, structured = logging.StreamHandler(stream), logging.StreamHandler(stream)
    plain.setFormatter(logging.Formatter("%(name)s %(message)s"))
    structured.setFormatter(JsonLogFormatter())
    root = logging.getLogger()
    loggers = [root] + [logging.getLogger(name) for name in ("bookings", "shop", "stripe", "django", "stripe_emulator")]
    saved = [(logger, logger.level) for logger in loggers]
    for handler in (plain, structured):
        root.addHandler(handler)
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    yield stream
    for handler in (plain, structured):
        root.removeHandler(handler)
    for logger, level in saved:
        logger.setLevel(level)


def test_a_full_run_logs_every_transition_and_no_secret_signature_or_card(client, stripe_emulator, every_log_line, settings):
    settings.STRIPE_STATUS_CHECK_SECONDS = 0
    slot = make_slot(capacity=1)
    loser, _ = open_checkout(client, slot, email="lose@example.com")
    lose_hold(loser)  # its payment comes after its hold ended: the seat goes to the winner
    winner, _ = open_checkout(client, slot, email="win@example.com")
    stripe_emulator.pay_session(winner.checkout_session_id, CARDS[0], cvc="123")
    stripe_emulator.pay_session(loser.checkout_session_id, CARDS[1], cvc="987")
    deliver_events(client, stripe_emulator)
    prove_email(client, "win@example.com")
    signin_token = signin_token_sent_to("win@example.com")
    assert client.post(reverse("shop:booking_portal", args=[winner.public_token])).status_code == 303
    client.post(reverse("payments:stripe_webhook"), data=b"{}", content_type="application/json", HTTP_STRIPE_SIGNATURE="t=1,v1=" + "ab" * 32)

    logs = every_log_line.getvalue()

    winner.refresh_from_db()
    loser.refresh_from_db()
    transitions = [json.loads(line) for line in logs.splitlines() if '"event": "booking_transition"' in line]
    assert {(t["booking"], t["to_status"]) for t in transitions} >= {
        (winner.pk, "confirmed"),
        (loser.pk, "refund_due"),
        (loser.pk, "refunded"),
    }
    confirmed = next(t for t in transitions if t["booking"] == winner.pk and t["to_status"] == "confirmed")
    assert confirmed["checkout_session"] == winner.checkout_session_id
    assert confirmed["payment_intent"] == winner.payment_intent_id
    assert TEST_SECRET_KEY not in logs
    assert TEST_WEBHOOK_SECRET not in logs
    assert "whsec_" not in logs
    assert signin_token not in logs and signin_token.rsplit(":", 1)[1] not in logs
    assert not re.search(r"v1=[0-9a-f]{64}", logs), "a full webhook signature was logged"
    for card in CARDS:
        assert card not in logs
        assert " ".join(card[i : i + 4] for i in range(0, 16, 4)) not in logs
    # As a word: Stripe's random ids (evt_1cmgcvc8t9…) contain the letters now and then.
    assert not re.search(r"(?<![a-z0-9])cvc(?![a-z0-9])", logs.lower())


def test_json_log_lines_carry_the_event_and_its_fields():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLogFormatter())
    logger = logging.getLogger("tests.structured")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        log_event(logger, "booking_transition", booking=7, to_status="confirmed", refund="")
    finally:
        logger.removeHandler(handler)

    entry = json.loads(stream.getvalue())
    assert entry["event"] == "booking_transition"
    assert entry["booking"] == 7
    assert entry["to_status"] == "confirmed"
    assert entry["level"] == "INFO"
    assert entry["time"].endswith("+00:00")
