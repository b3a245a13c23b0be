"""The control API (reset, config, clock) and a restart on the same database file."""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import stripe

from stripe_emulator import Emulator
from stripe_emulator.control import ControlError, EmulatorControl

from .helpers import FAST, create_session, sdk_client


def test_reset_forgets_everything(client, control):
    session = create_session(client)
    control.hold_webhooks()
    control.advance_clock(100)
    control.reset()
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.checkout.sessions.retrieve(session.id)
    assert control.events() == [] and control.deliveries() == []
    assert control.clock()["offset"] == 0
    assert control.webhook_state()["held"] is False


def test_config_reads_the_secret_and_changes_forward_to(emulator, control, receiver):
    config = control.config()
    assert config["webhook_secret"] == emulator.webhook_secret and config["forward_to"] == receiver.url
    assert control.set_forward_to(None)["forward_to"] is None
    with pytest.raises(ControlError) as bad:
        control.set_forward_to("ftp://nowhere")
    assert bad.value.status == 400
    refused = requests.post(f"{emulator.url}/_emulator/config", json={"webhook_secret": "whsec_x"})
    assert refused.status_code == 400 and "Only forward_to, connect_forward_to and account_api_version can be changed" in refused.json()["error"]["message"]


def test_clock_advances_object_timestamps(client, control):
    before = control.clock()["now"]
    advanced = control.advance_clock(7200)
    assert advanced["now"] >= before + 7200 and advanced["offset"] == 7200
    customer = client.v1.customers.create(params={"email": "later@example.com"})
    assert customer.created >= before + 7200


def test_restart_keeps_sessions_payments_events_and_the_secret(tmp_path, receiver):
    db = str(tmp_path / "emulator.sqlite3")
    with Emulator(db=db, forward_to=receiver.url, **FAST) as first:
        receiver.secret = first.webhook_secret
        secret = first.webhook_secret
        client = sdk_client(first.url)
        control = EmulatorControl(first.url)
        paid = create_session(client)
        control.pay_session(paid.id)
        waiting = create_session(client)
        control.advance_clock(60)
        assert control.wait_for_webhooks(timeout=10)["idle"]
        events_before = {event["id"] for event in control.events()}
        control.hold_webhooks()
        late_customer = client.v1.customers.create(params={"email": "queued@example.com"})
        assert control.webhook_state()["queued"] == 1
    with Emulator(db=db, forward_to=receiver.url, **FAST) as second:
        assert second.webhook_secret == secret
        client = sdk_client(second.url)
        control = EmulatorControl(second.url)
        again = client.v1.checkout.sessions.retrieve(paid.id, params={"expand": ["payment_intent"]})
        assert again.status == "complete" and again.payment_intent.status == "succeeded"
        assert client.v1.checkout.sessions.retrieve(waiting.id).status == "open"
        assert events_before <= {event["id"] for event in control.events()}
        assert control.clock()["offset"] == 60
        # The delivery queued before the stop goes out after the restart.
        assert control.wait_for_webhooks(timeout=10)["idle"]
        assert late_customer.id in {event.data.object.id for event in receiver.events("customer.created")}
        # The session's expiry timer survived the restart too.
        control.advance_clock(24 * 3600)
        assert client.v1.checkout.sessions.retrieve(waiting.id).status == "expired"


def test_command_line_starts_and_prints_the_generated_secret(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "stripe_emulator", "--port", "0", "--db", str(tmp_path / "cli.sqlite3"), "--log-level", "WARNING"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            lines.append(line)
            if "webhook signing secret" in line or not line:
                break
        banner = "".join(lines)
        assert "Ready! Your webhook signing secret is whsec_" in banner, banner
        url = banner.split("Stripe emulator on ")[1].split(" ")[0]
        assert requests.get(f"{url}/_emulator/clock").status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert process.returncode == 0


def test_many_concurrent_checkouts(emulator, control):
    client = sdk_client(emulator.url, max_network_retries=5)

    def checkout(index):
        session = create_session(client, client_reference_id=f"sim-{index}")
        card = "4000000000000002" if index % 5 == 0 else "4242424242424242"
        try:
            control.pay_session(session.id, card)
        except ControlError:
            return session.id, "declined"
        return session.id, "paid"

    with ThreadPoolExecutor(max_workers=12) as pool:
        outcomes = list(pool.map(checkout, range(60)))
    assert sum(1 for _, result in outcomes if result == "paid") == 48
    assert control.wait_for_webhooks(timeout=20)["idle"]
    completed = {event["data"]["object"]["id"] for event in control.events(type="checkout.session.completed")}
    assert completed == {session_id for session_id, result in outcomes if result == "paid"}
