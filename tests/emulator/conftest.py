"""Fixtures for the emulator's own tests: an emulator per test, the official SDK pointed at it,
its control client, a webhook receiver that verifies every signature, and a plain HTTP session
standing in for the customer's visitor."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer

import pytest
import requests
import stripe

from stripe_emulator import Emulator
from stripe_emulator.control import EmulatorControl

from .helpers import FAST, WebhookReceiver, receiver_handler, sdk_client


@pytest.fixture
def receiver():
    hook = WebhookReceiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), receiver_handler(hook))
    server.daemon_threads = True
    hook.server = server
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield hook
    server.shutdown()
    server.server_close()


@pytest.fixture
def emulator(receiver):
    """An in-memory emulator forwarding to the receiver, with fast retries and timers."""
    with Emulator(forward_to=receiver.url, **FAST) as emu:
        receiver.secret = emu.webhook_secret
        yield emu


@pytest.fixture
def client(emulator) -> stripe.StripeClient:
    return sdk_client(emulator.url)


@pytest.fixture
def control(emulator) -> EmulatorControl:
    return EmulatorControl(emulator.url)


@pytest.fixture
def visitor() -> requests.Session:
    session = requests.Session()
    yield session
    session.close()


