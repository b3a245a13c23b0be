"""``python -m stripe_emulator.bench``: how fast the emulator answers the official SDK, and how
soon a webhook reaches a local receiver after its event is created.

Starts an in-memory emulator and a receiver in this process, makes a few hundred typical SDK
calls, and prints median and 95th percentile latencies.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from .control import EmulatorControl
from .emulator import Emulator


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return statistics.median(ordered), p95


class _Receiver:
    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                arrived = time.time()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                import json

                event_id = json.loads(body)["id"]
                with receiver.lock:
                    receiver.arrivals.setdefault(event_id, arrived)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/webhook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _time(calls: int, function: Callable[[int], Any]) -> list[float]:
    samples = []
    for index in range(calls):
        started = time.perf_counter()
        function(index)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def run(calls: int = 300, db: str = ":memory:") -> dict[str, tuple[float, float]]:
    import stripe

    receiver = _Receiver()
    results: dict[str, tuple[float, float]] = {}
    try:
        with Emulator(db=db, forward_to=receiver.url) as emulator:
            client = stripe.StripeClient(
                "sk_test_bench",
                base_addresses={"api": emulator.url, "connect": emulator.url, "files": emulator.url,
                                "meter_events": emulator.url},
            )
            control = EmulatorControl(emulator.url)
            line_items = [{"price_data": {"currency": "eur", "unit_amount": 2500, "product_data": {"name": "Slot"}},
                           "quantity": 1}]

            def create_session(index: int) -> Any:
                return client.v1.checkout.sessions.create(params={
                    "mode": "payment", "success_url": "https://shop.example/ok?id={CHECKOUT_SESSION_ID}",
                    "line_items": line_items, "metadata": {"booking": str(index)},
                })

            # Warm the connection pool and the code paths before measuring.
            for index in range(10):
                create_session(index)
            sessions: list[Any] = []
            results["create checkout session"] = _percentiles(_time(calls, lambda i: sessions.append(create_session(i))))
            results["retrieve checkout session"] = _percentiles(
                _time(calls, lambda i: client.v1.checkout.sessions.retrieve(sessions[i].id)))
            results["create customer"] = _percentiles(
                _time(calls, lambda i: client.v1.customers.create(params={"email": f"bench{i}@example.com"})))
            intents = []
            for session in sessions:
                intents.append(control.pay_session(session.id, email="payer@example.com")["payment_intent"])
            results["create refund"] = _percentiles(
                _time(calls, lambda i: client.v1.refunds.create(params={"payment_intent": intents[i], "amount": 500})))
            state = control.wait_for_webhooks(timeout=120)
            delays = []
            for attempt in control.deliveries(limit=100_000):
                arrived = receiver.arrivals.get(attempt["event_id"])
                if attempt["attempt"] == 1 and arrived is not None:
                    delays.append((arrived - attempt["queued_at"]) * 1000)
            results["webhook: event created -> received"] = _percentiles(delays)
            results["_deliveries"] = (float(len(delays)), float(state["failed"]))
    finally:
        receiver.close()
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stripe_emulator.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="Calls per measured operation (default 300).")
    parser.add_argument("--db", default=":memory:", help="Database to use (default :memory:; a file path measures disk).")
    args = parser.parse_args(argv)
    results = run(args.calls, args.db)
    delivered, failed = results.pop("_deliveries")
    where = "in-memory database" if args.db == ":memory:" else f"database file {args.db}"
    print(f"Stripe emulator benchmark: {args.calls} calls per operation, official SDK, {where}")
    print(f"{'operation':<40}{'median':>10}{'p95':>10}")
    for name, (median, p95) in results.items():
        print(f"{name:<40}{median:>8.1f}ms{p95:>8.1f}ms")
    print(f"({int(delivered)} webhooks delivered, {int(failed)} given up)")


if __name__ == "__main__":
    main()
