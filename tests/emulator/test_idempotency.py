"""Idempotency-Key: replays byte for byte, refuses other parameters, 409 while in flight; and
the refund faults, whose retries only stay safe thanks to it."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import stripe

from .helpers import API_KEY, create_session, sdk_client

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def post(emulator, path, data, key=None, **kwargs):
    headers = dict(AUTH)
    if key:
        headers["Idempotency-Key"] = key
    return requests.post(emulator.url + path, data=data, headers=headers, **kwargs)


def paid_intent(client, control):
    session = create_session(client)
    control.pay_session(session.id)
    return client.v1.checkout.sessions.retrieve(session.id).payment_intent


def test_same_key_same_params_replays_the_first_answer_byte_for_byte(emulator, client):
    first = post(emulator, "/v1/customers", {"email": "once@example.com", "metadata[a]": "1"}, key="key-1")
    second = post(emulator, "/v1/customers", {"metadata[a]": "1", "email": "once@example.com"}, key="key-1")
    assert first.status_code == second.status_code == 200
    assert second.content == first.content
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.headers["Original-Request"] == first.headers["Request-Id"]
    assert second.headers["Request-Id"] != first.headers["Request-Id"]
    assert "Idempotent-Replayed" not in first.headers
    assert len(client.v1.customers.list(params={"email": "once@example.com"}).data) == 1


def test_same_key_other_params_is_an_idempotency_error(emulator):
    post(emulator, "/v1/customers", {"email": "a@example.com"}, key="key-2")
    other = post(emulator, "/v1/customers", {"email": "b@example.com"}, key="key-2")
    assert other.status_code == 400
    error = other.json()["error"]
    assert error["type"] == "idempotency_error"
    assert error["message"] == (
        "Keys for idempotent requests can only be used with the same parameters they were first used with. "
        "Try using a key other than 'key-2' if you meant to execute a different request."
    )
    with pytest.raises(stripe.IdempotencyError):
        sdk_client(emulator.url).v1.customers.create(params={"email": "c@example.com"}, options={"idempotency_key": "key-2"})


def test_refusals_made_by_the_endpoint_are_replayed_but_invalid_parameters_are_not(emulator, client, control):
    intent_id = paid_intent(client, control)
    too_much = post(emulator, "/v1/refunds", {"payment_intent": intent_id, "amount": "999999"}, key="refund-key")
    again = post(emulator, "/v1/refunds", {"payment_intent": intent_id, "amount": "999999"}, key="refund-key")
    assert too_much.status_code == again.status_code == 400
    assert again.content == too_much.content and again.headers["Idempotent-Replayed"] == "true"
    unknown = post(emulator, "/v1/customers", {"emial": "x@example.com"}, key="typo-key")
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "parameter_unknown"
    fixed = post(emulator, "/v1/customers", {"emial": "x@example.com"}, key="typo-key")
    assert fixed.status_code == 400 and "Idempotent-Replayed" not in fixed.headers


def wait_until(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def key_reserved(emulator, key: str) -> bool:
    """Whether a request has claimed `key` and is still running (the emulator's own store: a
    request is in flight a moment before it claims its key)."""
    row = emulator.backend.store.query_one("SELECT state FROM idempotency WHERE key = ?", (key,))
    return row is not None and row["state"] == "in_flight"


def test_same_key_while_the_first_request_runs_is_409(emulator, client, control):
    intent_id = paid_intent(client, control)
    # Long enough for the second request to be answered while the first still hangs, however
    # slow the machine: the first holds the key until its hang ends.
    control.fail_refunds(1, mode="timeout", seconds=3.0)
    outcome = {}

    def first_attempt():
        try:
            post(emulator, "/v1/refunds", {"payment_intent": intent_id}, key="busy-key", timeout=10)
        except requests.ConnectionError as error:
            outcome["first"] = error

    thread = threading.Thread(target=first_attempt)
    thread.start()
    wait_until(lambda: any(r["idempotency_key"] == "busy-key" for r in control.requests_in_flight()))
    # In flight is not yet claimed: the second request must come after the first claims the key,
    # or it claims it itself and meets the first's hang (seen once in CI).
    wait_until(lambda: key_reserved(emulator, "busy-key"))
    concurrent = post(emulator, "/v1/refunds", {"payment_intent": intent_id}, key="busy-key")
    assert concurrent.status_code == 409
    error = concurrent.json()["error"]
    assert (error["type"], error["code"]) == ("idempotency_error", "idempotency_key_in_use")
    thread.join(10)
    assert isinstance(outcome.get("first"), requests.ConnectionError)
    assert client.v1.refunds.list(params={"payment_intent": intent_id}).data == []
    # The hung request did nothing, so the key is free again: the SDK's retry creates the refund once.
    refund = client.v1.refunds.create(params={"payment_intent": intent_id}, options={"idempotency_key": "busy-key"})
    assert refund.status == "succeeded"
    assert len(client.v1.refunds.list(params={"payment_intent": intent_id}).data) == 1


def test_concurrent_requests_with_one_key_create_one_object(emulator):
    client = sdk_client(emulator.url, max_network_retries=10)

    def create(_):
        return client.v1.customers.create(params={"email": "race@example.com"}, options={"idempotency_key": "race-key"}).id

    with ThreadPoolExecutor(max_workers=10) as pool:
        ids = set(pool.map(create, range(20)))
    assert len(ids) == 1
    assert len(client.v1.customers.list(params={"email": "race@example.com"}).data) == 1


def test_refund_fault_error_answers_500_creates_nothing_and_replays_it_to_the_same_key(emulator, client, control):
    intent_id = paid_intent(client, control)
    control.fail_refunds(1, mode="error")
    no_retries = sdk_client(emulator.url, max_network_retries=0)
    with pytest.raises(stripe.APIError) as failed:
        no_retries.v1.refunds.create(params={"payment_intent": intent_id}, options={"idempotency_key": "five-hundred"})
    assert failed.value.http_status == 500 and failed.value.error.type == "api_error"
    assert client.v1.refunds.list(params={"payment_intent": intent_id}).data == []

    # Stripe saves a 500 under its key: the same key gets it again even though the fault is gone.
    replay = post(emulator, "/v1/refunds", {"payment_intent": intent_id}, key="five-hundred")
    assert replay.status_code == 500
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert client.v1.refunds.list(params={"payment_intent": intent_id}).data == []

    refund = client.v1.refunds.create(params={"payment_intent": intent_id}, options={"idempotency_key": "new-key"})
    assert [r.id for r in client.v1.refunds.list(params={"payment_intent": intent_id}).data] == [refund.id]


def test_refund_fault_timeout_hangs_up_and_creates_nothing(emulator, client, control):
    intent_id = paid_intent(client, control)
    control.fail_refunds(1, mode="timeout", seconds=0.2)
    with pytest.raises(stripe.APIConnectionError):
        sdk_client(emulator.url, max_network_retries=0).v1.refunds.create(params={"payment_intent": intent_id})
    assert client.v1.refunds.list(params={"payment_intent": intent_id}).data == []
    control.fail_refunds(1, mode="timeout", seconds=0.2)
    refund = client.v1.refunds.create(params={"payment_intent": intent_id})
    assert [r.id for r in client.v1.refunds.list(params={"payment_intent": intent_id}).data] == [refund.id]


def test_refund_fault_lost_response_is_replayed_on_retry(emulator, client, control):
    intent_id = paid_intent(client, control)
    control.fail_refunds(1, mode="lost_response")
    with pytest.raises(stripe.APIConnectionError):
        sdk_client(emulator.url, max_network_retries=0).v1.refunds.create(
            params={"payment_intent": intent_id, "amount": 100}, options={"idempotency_key": "lost-1"}
        )
    created = client.v1.refunds.list(params={"payment_intent": intent_id}).data
    assert len(created) == 1
    replay = post(emulator, "/v1/refunds", {"payment_intent": intent_id, "amount": "100"}, key="lost-1")
    assert replay.headers["Idempotent-Replayed"] == "true" and replay.json()["id"] == created[0].id

    control.fail_refunds(1, mode="lost_response")
    refund = client.v1.refunds.create(params={"payment_intent": intent_id, "amount": 200})  # SDK retries, same key
    refunds = client.v1.refunds.list(params={"payment_intent": intent_id}).data
    assert len(refunds) == 2 and refund.id == refunds[0].id
    assert client.v1.charges.retrieve(refund.charge).amount_refunded == 300


def test_fault_requests_are_validated(control):
    from stripe_emulator.control import ControlError

    with pytest.raises(ControlError) as bad:
        control.fail_refunds(1, mode="explode")
    assert bad.value.status == 400
