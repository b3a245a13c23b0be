"""Webhooks: signed like Stripe's, delivered at least once, retried, and steerable by tests."""

from __future__ import annotations

import logging
import threading
import time

import pytest
import requests
import stripe

from stripe_emulator import Emulator
from stripe_emulator.control import ControlError, EmulatorControl
from stripe_emulator.webhooks import sign

from .helpers import FAST, create_session, sdk_client, submit_card

PAYMENT_EVENTS = [
    "payment_intent.created",
    "customer.created",
    "payment_method.attached",
    "charge.succeeded",
    "payment_intent.succeeded",
    "checkout.session.completed",
]


def test_signature_is_stripes_scheme():
    payload = b'{"id": "evt_1"}'
    header = sign(payload, "whsec_test", 1700000000)
    event = stripe.Webhook.construct_event(payload, header, "whsec_test", tolerance=None)
    assert event.id == "evt_1"
    assert header.startswith("t=1700000000,v1=")


def test_payment_events_are_verified_and_emitted_in_stripes_order(client, control, receiver, visitor):
    session = create_session(client, customer_creation="always")
    submit_card(visitor, session)
    assert control.wait_for_webhooks(timeout=10)["idle"]
    emitted = [event["type"] for event in reversed(control.events())]
    payment = emitted[emitted.index("payment_intent.created"):]
    assert payment == PAYMENT_EVENTS
    assert sorted(receiver.types()) == sorted(emitted)
    assert receiver.rejected == []
    completed = receiver.events("checkout.session.completed")[0]
    assert completed.data.object.id == session.id
    assert completed.data.object.payment_status == "paid"
    assert completed.request.id is None
    assert completed.api_version == stripe.api_version
    assert client.v1.events.retrieve(completed.id).pending_webhooks == 0


def test_the_events_after_one_are_the_later_ones_oldest_first_a_page_at_a_time(client, control):
    for n in range(5):
        client.v1.customers.create(params={"email": f"c{n}@example.com"})
    newest_first = [event["id"] for event in control.events(type="customer.created")]
    first, *later = reversed(newest_first)

    assert [event["id"] for event in control.events(type="customer.created", after=first)] == later
    assert [event["id"] for event in control.events(type="customer.created", after=first, limit=2)] == later[:2]
    assert [event["id"] for event in control.events(type="customer.created", after=later[1], limit=2)] == later[2:]
    assert control.events(after=newest_first[0], type="customer.created") == []
    with pytest.raises(ControlError) as unknown:
        control.events(after="evt_unknown")
    assert unknown.value.status == 404


def test_api_caused_events_carry_the_request_and_its_idempotency_key(client, control, receiver):
    customer = client.v1.customers.create(params={"email": "a@example.com"}, options={"idempotency_key": "cust-1"})
    assert control.wait_for_webhooks(timeout=10)["idle"]
    event = receiver.events("customer.created")[0]
    assert event.data.object.id == customer.id
    assert event.request.id.startswith("req_")
    assert event.request.idempotency_key == "cust-1"


def test_events_carry_the_accounts_api_version_not_the_requests(emulator, control, receiver, visitor):
    # Stripe renders events in the account's (or the endpoint's) API version, whatever version
    # the request that caused them asked for.
    old = sdk_client(emulator.url, stripe_version="2024-06-20")
    session = create_session(old)
    assert old.v1.checkout.sessions.retrieve(session.id).last_response.headers["Stripe-Version"] == "2024-06-20"
    submit_card(visitor, session)
    assert control.wait_for_webhooks(timeout=10)["idle"]
    account_version = control.config()["account_api_version"]
    assert account_version != "2024-06-20"
    assert {event.api_version for event in receiver.events()} == {account_version}
    control.set_account_api_version("2025-03-31.basil")
    old.v1.customers.create(params={"email": "later@example.com"})
    assert control.wait_for_webhooks(timeout=10)["idle"]
    assert receiver.events()[-1].type == "customer.created"
    assert receiver.events()[-1].api_version == "2025-03-31.basil"


def test_receiver_errors_are_retried_with_backoff_until_answered(client, control, receiver):
    receiver.decide = lambda event, attempt: 500 if attempt < 3 else 200
    customer = client.v1.customers.create(params={"email": "retry@example.com"})
    assert control.wait_for_webhooks(timeout=10)["idle"]
    event = receiver.events("customer.created")[0]
    assert event.data.object.id == customer.id
    attempts = sorted(control.deliveries(event_id=event.id), key=lambda a: a["attempt"])
    assert [(a["attempt"], a["status"]) for a in attempts] == [(1, 500), (2, 500), (3, 200)]
    gaps = [later["at"] - earlier["at"] for earlier, later in zip(attempts, attempts[1:])]
    assert gaps[0] >= FAST["webhook_retry_base"] * 0.9
    assert gaps[1] >= FAST["webhook_retry_base"] * FAST["webhook_retry_factor"] * 0.9
    assert all(a["duration_ms"] >= 0 and a["event_type"] == "customer.created" for a in attempts)


def test_delivery_gives_up_after_the_last_attempt(client, control, receiver):
    receiver.decide = lambda event, attempt: 503
    client.v1.customers.create(params={"email": "never@example.com"})
    state = control.wait_for_webhooks(timeout=10)
    assert state["idle"] and state["failed"] == 1
    event_id = control.events(type="customer.created")[0]["id"]
    assert receiver.attempts_for(event_id) == FAST["webhook_max_attempts"]
    assert client.v1.events.retrieve(event_id).pending_webhooks == 1
    assert {a["delivery_state"] for a in control.deliveries(event_id=event_id)} == {"failed"}


def test_slow_receivers_time_out_and_are_retried(receiver):
    released = threading.Event()

    def slow_first(event, attempt):
        if attempt == 1:
            released.wait(2)  # longer than the emulator's timeout below
        return 200

    receiver.decide = slow_first
    with Emulator(forward_to=receiver.url, **{**FAST, "webhook_timeout": 0.2}) as emu:
        receiver.secret = emu.webhook_secret
        control = EmulatorControl(emu.url)
        sdk_client(emu.url).v1.customers.create(params={"email": "slow@example.com"})
        assert control.wait_for_webhooks(timeout=10)["idle"]
        attempts = sorted(control.deliveries(type="customer.created"), key=lambda a: a["attempt"])
        released.set()
        assert attempts[0]["status"] is None and "timed out" in attempts[0]["error"]
        assert attempts[-1]["status"] == 200


def test_hold_and_release(client, control, receiver, visitor):
    control.hold_webhooks()
    session = create_session(client)
    submit_card(visitor, session)
    state = control.wait_for_webhooks(timeout=5)
    assert state["held"] and not state["idle"] and state["queued"] > 0
    assert receiver.deliveries == []
    control.release_webhooks()
    assert control.wait_for_webhooks(timeout=10)["idle"]
    assert "checkout.session.completed" in receiver.types()


def test_dropped_deliveries_are_recorded_and_never_sent(client, control, receiver):
    control.drop_webhooks(1)
    first = client.v1.customers.create(params={"email": "lost@example.com"})
    second = client.v1.customers.create(params={"email": "kept@example.com"})
    assert control.wait_for_webhooks(timeout=10)["idle"]
    received = {event.data.object.id for event in receiver.events("customer.created")}
    assert received == {second.id}
    lost_event = next(e for e in control.events(type="customer.created") if e["data"]["object"]["id"] == first.id)
    attempts = control.deliveries(event_id=lost_event["id"])
    assert len(attempts) == 1 and attempts[0]["delivery_state"] == "dropped" and attempts[0]["status"] is None


def test_duplicated_events_arrive_twice_concurrently(client, control, receiver):
    both_in = threading.Barrier(2, timeout=5)

    def meet_the_twin(event, attempt):
        if event.type == "customer.created":
            both_in.wait()  # only passes if the two copies are in flight at the same time
        return 200

    receiver.decide = meet_the_twin
    control.duplicate_webhooks(1)
    customer = client.v1.customers.create(params={"email": "twice@example.com"})
    assert control.wait_for_webhooks(timeout=10)["idle"]
    copies = receiver.events("customer.created")
    assert len(copies) == 2 and {c.id for c in copies} == {copies[0].id}
    assert copies[0].data.object.id == customer.id


def test_reordered_deliveries_go_out_newest_first(receiver):
    with Emulator(forward_to=receiver.url, webhook_workers=1, **FAST) as emu:
        receiver.secret = emu.webhook_secret
        control = EmulatorControl(emu.url)
        client = sdk_client(emu.url)
        control.hold_webhooks()
        created = [client.v1.customers.create(params={"email": f"c{i}@example.com"}).id for i in range(5)]
        control.reorder_webhooks(True)
        control.release_webhooks()
        assert control.wait_for_webhooks(timeout=10)["idle"]
        arrived = [event.data.object.id for event in receiver.events("customer.created")]
        assert arrived == list(reversed(created))


def test_wait_does_not_block_on_a_retry_due_later(receiver):
    receiver.decide = lambda event, attempt: 500
    with Emulator(forward_to=receiver.url, **{**FAST, "webhook_retry_base": 120, "webhook_retry_max_delay": 300}) as emu:
        receiver.secret = emu.webhook_secret
        control = EmulatorControl(emu.url)
        sdk_client(emu.url).v1.customers.create(params={"email": "later@example.com"})
        started = time.monotonic()
        state = control.wait_for_webhooks(timeout=5)
        assert time.monotonic() - started < 4
        assert not state["idle"] and state["queued"] == 1 and state["in_flight"] == 0


def test_signature_time_is_wall_clock_even_when_the_emulator_clock_moved(client, control, receiver):
    control.advance_clock(3 * 86400)
    client.v1.customers.create(params={"email": "future@example.com"})
    assert control.wait_for_webhooks(timeout=10)["idle"]
    delivery = receiver.deliveries[-1]
    signed_at = int(delivery.signature.split(",")[0][2:])
    assert abs(signed_at - time.time()) < 60
    assert delivery.event.created > time.time() + 2 * 86400


def test_no_forward_to_means_events_without_deliveries(receiver):
    with Emulator(**FAST) as emu:
        control = EmulatorControl(emu.url)
        customer = sdk_client(emu.url).v1.customers.create(params={"email": "quiet@example.com"})
        event = control.events(type="customer.created")[0]
        assert event["data"]["object"]["id"] == customer.id and event["pending_webhooks"] == 0
        assert control.deliveries() == []
        control.set_forward_to(receiver.url)
        receiver.secret = emu.webhook_secret
        sdk_client(emu.url).v1.customers.create(params={"email": "loud@example.com"})
        assert control.wait_for_webhooks(timeout=10)["idle"]
        assert len(receiver.events("customer.created")) == 1


def test_overview_page_lists_attempts_without_secrets(client, control, emulator, receiver, caplog):
    caplog.set_level(logging.DEBUG, logger="stripe_emulator")
    client.v1.customers.create(params={"email": "page@example.com"})
    assert control.wait_for_webhooks(timeout=10)["idle"]
    page = requests.get(f"{emulator.url}/_emulator/")
    assert page.status_code == 200 and "customer.created" in page.text and "Webhook delivery attempts" in page.text
    signature = receiver.deliveries[0].signature
    for secret in (emulator.webhook_secret, signature.split("v1=")[1], "sk_test_emulator_tests"):
        assert secret not in page.text
        assert secret not in caplog.text
    assert "customer.created" in caplog.text


@pytest.mark.parametrize("path", ["/_emulator/webhooks/hold", "/_emulator/webhooks/release"])
def test_control_routes_answer_json(emulator, path):
    response = requests.post(emulator.url + path)
    assert response.status_code == 200 and "queued" in response.json()


def test_a_refused_call_does_not_use_up_a_webhook_fault(client, control, receiver):
    control.drop_webhooks(1)
    with pytest.raises(stripe.InvalidRequestError):
        # The first line item's product and price are made, then the second one is refused:
        # nothing of the call remains, its events included.
        create_session(client, line_items=[
            {"price_data": {"currency": "eur", "unit_amount": 100, "product_data": {"name": "kept?"}}, "quantity": 1},
            {"price": "price_missing", "quantity": 1},
        ])
    assert control.events() == []
    lost = client.v1.customers.create(params={"email": "dropped@example.com"})
    assert control.wait_for_webhooks(timeout=10)["idle"]
    assert receiver.events() == []
    assert control.deliveries(event_id=control.events(type="customer.created")[0]["id"])[0]["delivery_state"] == "dropped"
    assert lost.id


def test_delivery_counts_are_one_snapshot_even_while_workers_take_deliveries(emulator, client, control):
    # `wait_for_webhooks` once answered "not idle" with deliveries queued but none due, because
    # a worker took them between the two reads of its counts.
    control.hold_webhooks()
    client.v1.customers.create(params={"email": "jenny@example.com"})
    store = emulator.backend.store
    read = store.query

    def read_then_a_worker_takes_everything(sql, args=()):
        rows = read(sql, args)
        store.execute("UPDATE deliveries SET state = 'in_flight' WHERE state = 'queued'")
        return rows

    store.query = read_then_a_worker_takes_everything
    try:
        counts = emulator.backend.dispatcher.counts()
    finally:
        store.query = read
        store.execute("UPDATE deliveries SET state = 'queued' WHERE state = 'in_flight'")

    assert counts["queued"] == 1 and counts["next_attempt_at"] is not None


def test_only_the_forwarded_event_types_are_sent_as_an_endpoints_enabled_events(receiver, visitor):
    with Emulator(forward_to=receiver.url, forward_events=["checkout.session.completed"], **FAST) as emu:
        receiver.secret = emu.webhook_secret
        client, control = sdk_client(emu.url), EmulatorControl(emu.url)
        session = create_session(client, customer_creation="always")
        submit_card(visitor, session)
        assert control.wait_for_webhooks(timeout=10)["idle"]

        emitted = [event["type"] for event in control.events()]
        assert set(PAYMENT_EVENTS) <= set(emitted)  # every event still happens at Stripe
        assert receiver.types() == ["checkout.session.completed"]
        assert receiver.events("checkout.session.completed")[0].data.object.id == session.id
        others = client.v1.events.list(params={"type": "charge.succeeded"}).data
        assert [event.pending_webhooks for event in others] == [0]
        assert control.config()["forward_events"] == ["checkout.session.completed"]
