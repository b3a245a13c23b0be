"""Helpers for the emulator's tests: the SDK pointed at an emulator, a webhook receiver that
verifies every signature, and form posts the way a visitor makes them."""

from __future__ import annotations

import html
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import requests
import stripe


API_KEY = "sk_test_emulator_tests"
# Small delays so retries and timers happen within a test's time.
FAST = {
    "webhook_retry_base": 0.05,
    "webhook_retry_factor": 2.0,
    "webhook_retry_max_delay": 0.4,
    "webhook_max_attempts": 4,
    "webhook_timeout": 2.0,
    "refund_failure_delay": 0.2,
    "refund_pending_delay": 0.2,
    "timer_poll_interval": 0.05,
}


class QuickRetries(stripe.RequestsClient):
    """The SDK's own HTTP client and retry decisions, with short pauses between retries."""

    def _sleep_time_seconds(self, num_retries: int) -> float:
        return 0.05


def sdk_client(url: str, *, max_network_retries: int = 2, stripe_version: str | None = None) -> stripe.StripeClient:
    """The official SDK with every base address pointed at the emulator."""
    return stripe.StripeClient(
        API_KEY,
        base_addresses={"api": url, "connect": url, "files": url, "meter_events": url},
        max_network_retries=max_network_retries,
        stripe_version=stripe_version,
        http_client=QuickRetries(),
    )


@dataclass
class Delivery:
    event: stripe.Event
    payload: bytes
    signature: str
    received_at: float


@dataclass
class WebhookReceiver:
    """A local endpoint that verifies each webhook with ``stripe.Webhook.construct_event``."""

    secret: str = ""
    deliveries: list[Delivery] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    decide: Callable[[stripe.Event, int], int] = lambda event, attempt: 200
    lock: threading.Lock = field(default_factory=threading.Lock)
    arrived: threading.Condition = field(default_factory=threading.Condition)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/webhook"

    def attempts_for(self, event_id: str) -> int:
        with self.lock:
            return sum(1 for d in self.deliveries if d.event.id == event_id)

    def events(self, type: str | None = None) -> list[stripe.Event]:
        with self.lock:
            return [d.event for d in self.deliveries if type is None or d.event.type == type]

    def types(self) -> list[str]:
        return [event.type for event in self.events()]

    def wait_for(self, predicate: Callable[["WebhookReceiver"], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self.arrived:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"Condition not met within {timeout} s; received {self.types()}")
                self.arrived.wait(remaining)


def receiver_handler(receiver: WebhookReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            payload = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            signature = self.headers.get("Stripe-Signature", "")
            try:
                event = stripe.Webhook.construct_event(payload, signature, receiver.secret)
            except (ValueError, stripe.SignatureVerificationError) as error:
                with receiver.lock:
                    receiver.rejected.append(str(error))
                self._answer(400)
                return
            with receiver.lock:
                attempt = sum(1 for d in receiver.deliveries if d.event.id == event.id) + 1
                receiver.deliveries.append(Delivery(event, payload, signature, time.time()))
            status = receiver.decide(event, attempt)
            self._answer(status)
            with receiver.arrived:
                receiver.arrived.notify_all()

        def _answer(self, status: int) -> None:
            body = json.dumps({"received": status < 300}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def line_item(name: str = "Harbour tour, 10:00", amount: int = 2500, quantity: int = 1, currency: str = "eur") -> dict[str, Any]:
    return {"price_data": {"currency": currency, "unit_amount": amount, "product_data": {"name": name}}, "quantity": quantity}


def create_session(client: stripe.StripeClient, **overrides: Any) -> stripe.checkout.Session:
    params: dict[str, Any] = {
        "mode": "payment",
        "success_url": "https://shop.example/success?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://shop.example/cancel",
        "line_items": [line_item()],
    }
    params.update(overrides)
    return client.v1.checkout.sessions.create(params=params)


def hosted_form(visitor: requests.Session, url: str) -> str:
    page = visitor.get(url)
    assert page.status_code == 200, page.text
    return page.text


def submit_card(
    visitor: requests.Session,
    session: stripe.checkout.Session,
    card: str = "4242 4242 4242 4242",
    *,
    expiry: str = "12 / 34",
    cvc: str = "123",
    email: str = "jenny@example.com",
    name: str = "Jenny Rosen",
    extra: dict[str, str] | None = None,
) -> requests.Response:
    """Post the hosted Checkout form the way a visitor does (no redirects followed)."""
    form = {"email": email, "cardNumber": card, "cardExpiry": expiry, "cardCvc": cvc, "billingName": name, "action": "pay"}
    form.update(extra or {})
    return visitor.post(session.url, data=form, allow_redirects=False)


def error_text(page: str) -> list[str]:
    """The messages the page shows in its alerts, as a reader sees them."""
    return [html.unescape(re.sub(r"\s+", " ", m)).strip() for m in re.findall(r'role="alert"[^>]*>([^<]*)<', page)]
