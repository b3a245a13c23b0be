"""Webhook delivery the way Stripe does it: signed, at least once, retried with backoff.

Every event gets a delivery row when a ``forward_to`` endpoint is configured. A small pool of
worker threads claims due deliveries from SQLite (so a restart resumes them), POSTs the event,
records each attempt, and on a non-2xx answer or a timeout schedules the next attempt after an
exponentially growing delay. Tests steer delivery through hold/release, drop, duplicate and
reorder, and wait for quiet with ``wait_idle`` instead of sleeping.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .backend import Backend

log = logging.getLogger("stripe_emulator.webhooks")

USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    """The ``Stripe-Signature`` header: HMAC-SHA256 of ``"{t}.{payload}"`` keyed by the secret."""
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


@dataclass
class DeliveryFaults:
    held: bool = False
    drop: int = 0
    duplicate: int = 0
    reorder: bool = False


class Dispatcher:
    def __init__(self, backend: Backend):
        self.backend = backend
        self.store = backend.store
        self.faults = DeliveryFaults()
        self._faults_lock = threading.Lock()
        # Only for waking sleepers; never held while the store lock is taken (no lock-order cycle).
        self._wakeup = threading.Condition()
        self._generation = 0
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._connections = _Connections()

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        with self.store.transaction():
            # Attempts cut short by a stop or a crash are made again: at least once.
            self.store.execute("UPDATE deliveries SET state = 'queued', next_attempt_at = ? WHERE state = 'in_flight'", (time.time(),))
        self._stopping.clear()
        for index in range(max(1, self.backend.tuning.webhook_workers)):
            thread = threading.Thread(target=self._work, name=f"webhook-worker-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stopping.set()
        self.wake()
        for thread in self._threads:
            thread.join(timeout=self.backend.tuning.webhook_timeout + 5)
        self._threads = []

    def wake(self) -> None:
        with self._wakeup:
            self._generation += 1
            self._wakeup.notify_all()

    def reset(self) -> None:
        with self._faults_lock:
            self.faults = DeliveryFaults()
        self.wake()

    # -- control ------------------------------------------------------------------------

    def hold(self) -> None:
        with self._faults_lock:
            self.faults.held = True

    def release(self) -> None:
        with self._faults_lock:
            self.faults.held = False
        self.wake()

    def drop_next(self, count: int) -> None:
        with self._faults_lock:
            self.faults.drop += count

    def duplicate_next(self, count: int) -> None:
        with self._faults_lock:
            self.faults.duplicate += count

    def set_reorder(self, enabled: bool) -> None:
        with self._faults_lock:
            self.faults.reorder = enabled

    def fault_state(self) -> dict[str, Any]:
        with self._faults_lock:
            return {
                "held": self.faults.held,
                "drop_remaining": self.faults.drop,
                "duplicate_remaining": self.faults.duplicate,
                "reorder": self.faults.reorder,
            }

    # -- queueing -----------------------------------------------------------------------

    def enqueue(self, event: dict[str, Any]) -> None:
        """Queue deliveries of a just-recorded event; runs inside the event's transaction. A
        connected account's event (``event.account``) goes to the Connect endpoint only; the
        platform's own events to the platform endpoint only; a type not among the forwarded
        events (``forward_events``, when set) to neither."""
        target = "connect" if event.get("account") else "platform"
        endpoint = self.backend.endpoint_for(event.get("account") or "")[0]
        if not endpoint or not self.backend.endpoint_count(event.get("account") or "", event["type"]):
            return
        with self._faults_lock:
            dropped = self.faults.drop > 0
            if dropped:
                self.faults.drop -= 1
            copies = 1
            if not dropped and self.faults.duplicate > 0:
                self.faults.duplicate -= 1
                copies = 2
        if dropped or copies == 2:
            # An event that is rolled back never existed: it must not use up a fault.
            self.store.on_rollback(lambda: self._give_back(dropped, copies == 2))
        now = time.time()
        if dropped:
            cursor = self.store.execute(
                "INSERT INTO deliveries (event_id, event_type, endpoint, state, attempts, created_at, last_error, target) "
                "VALUES (?, ?, ?, 'dropped', 0, ?, 'dropped on request of /_emulator/webhooks/drop', ?)",
                (event["id"], event["type"], endpoint, now, target),
            )
            self.store.execute(
                "INSERT INTO delivery_attempts (delivery_id, event_id, event_type, attempt, status, error, duration_ms, at) "
                "VALUES (?, ?, ?, 0, NULL, 'dropped: never sent', 0, ?)",
                (cursor.lastrowid, event["id"], event["type"], now),
            )
            return
        for _ in range(copies):
            self.store.execute(
                "INSERT INTO deliveries (event_id, event_type, endpoint, state, attempts, next_attempt_at, created_at, target) "
                "VALUES (?, ?, ?, 'queued', 0, ?, ?, ?)",
                (event["id"], event["type"], endpoint, now, now, target),
            )
        self.store.after_commit(self.wake)

    def _give_back(self, drop: bool, duplicate: bool) -> None:
        with self._faults_lock:
            self.faults.drop += int(drop)
            self.faults.duplicate += int(duplicate)

    # -- workers ------------------------------------------------------------------------

    def _work(self) -> None:
        while not self._stopping.is_set():
            with self._wakeup:
                generation = self._generation
            try:
                claimed = self._claim()
            except Exception:  # a closed database during shutdown, or a bug: never kill the pool
                log.exception("webhook worker could not claim a delivery")
                claimed = None
                self._stopping.wait(0.5)
            if claimed is None:
                pause = self._idle_wait()
                with self._wakeup:
                    # A wake-up that came while claiming was not missed: the generation moved.
                    if self._generation == generation:
                        self._wakeup.wait(timeout=pause)
                continue
            self._deliver(claimed)

    def _idle_wait(self) -> float:
        row = self.store.query_one("SELECT MIN(next_attempt_at) AS due FROM deliveries WHERE state = 'queued'")
        if row is None or row["due"] is None:
            return 1.0
        return min(1.0, max(0.005, row["due"] - time.time()))

    def _claim(self) -> dict[str, Any] | None:
        with self._faults_lock:
            held, reorder = self.faults.held, self.faults.reorder
        if held:
            return None
        with self.store.transaction():
            # Reordered: newest first, so whatever queued up (while held) leaves backwards.
            order = "id DESC" if reorder else "id ASC"
            row = self.store.query_one(
                "SELECT id, event_id, event_type, endpoint, attempts, target FROM deliveries "
                f"WHERE state = 'queued' AND next_attempt_at <= ? ORDER BY {order} LIMIT 1",
                (time.time(),),
            )
            if row is None:
                return None
            self.store.execute("UPDATE deliveries SET state = 'in_flight' WHERE id = ?", (row["id"],))
            event = self.store.get(row["event_id"], "event")
        if event is None:
            with self.store.transaction():
                self.store.execute("UPDATE deliveries SET state = 'failed', last_error = 'event no longer exists' WHERE id = ?", (row["id"],))
            return None
        return {**dict(row), "event": event}

    def _secret(self, target: str) -> str:
        return self.backend.connect_webhook_secret if target == "connect" else self.backend.webhook_secret

    def _deliver(self, claimed: dict[str, Any]) -> None:
        tuning = self.backend.tuning
        attempt = claimed["attempts"] + 1
        payload = json.dumps(claimed["event"], indent=2).encode()
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            "Accept": "*/*; q=0.5, application/xml",
            "Cache-Control": "no-cache",
            "Stripe-Signature": sign(payload, self._secret(claimed["target"]), timestamp),
        }
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        try:
            status = self._connections.post(claimed["endpoint"], payload, headers, tuning.webhook_timeout)
        except TimeoutError:
            error = f"timed out after {tuning.webhook_timeout:g} s"
        except (OSError, http.client.HTTPException, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        duration_ms = (time.monotonic() - started) * 1000
        delivered = status is not None and 200 <= status < 300
        now = time.time()
        with self.store.transaction():
            if self.store.query_one("SELECT 1 FROM deliveries WHERE id = ?", (claimed["id"],)) is None:
                return  # the emulator was reset while this attempt was under way
            self.store.execute(
                "INSERT INTO delivery_attempts (delivery_id, event_id, event_type, attempt, status, error, duration_ms, at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (claimed["id"], claimed["event_id"], claimed["event_type"], attempt, status, error, duration_ms, now),
            )
            if delivered:
                self.store.execute(
                    "UPDATE deliveries SET state = 'succeeded', attempts = ?, last_status = ?, last_error = NULL, next_attempt_at = NULL WHERE id = ?",
                    (attempt, status, claimed["id"]),
                )
                event = self.store.get(claimed["event_id"], "event")
                if event is not None and event["pending_webhooks"]:
                    event["pending_webhooks"] = 0
                    self.store.save(event)
            elif attempt >= tuning.webhook_max_attempts:
                self.store.execute(
                    "UPDATE deliveries SET state = 'failed', attempts = ?, last_status = ?, last_error = ?, next_attempt_at = NULL WHERE id = ?",
                    (attempt, status, error, claimed["id"]),
                )
            else:
                delay = min(
                    tuning.webhook_retry_base * tuning.webhook_retry_factor ** (attempt - 1),
                    tuning.webhook_retry_max_delay,
                )
                self.store.execute(
                    "UPDATE deliveries SET state = 'queued', attempts = ?, last_status = ?, last_error = ?, next_attempt_at = ? WHERE id = ?",
                    (attempt, status, error, now + delay, claimed["id"]),
                )
        outcome = str(status) if status is not None else error
        log.info(
            "webhook %s %s attempt %d -> %s (%.0f ms)",
            claimed["event_id"],
            claimed["event_type"],
            attempt,
            outcome,
            duration_ms,
        )
        self.wake()

    # -- observation --------------------------------------------------------------------

    def counts(self) -> dict[str, Any]:
        # One statement, so one snapshot: read apart, a worker could take the queued deliveries
        # in between, and `wait_idle` would see some queued with none of them ever due.
        rows = self.store.query(
            "SELECT state, COUNT(*) AS n, MIN(next_attempt_at) AS due FROM deliveries GROUP BY state"
        )
        counts = {row["state"]: row["n"] for row in rows}
        due = next((row for row in rows if row["state"] == "queued"), None)
        return {
            "queued": counts.get("queued", 0),
            "in_flight": counts.get("in_flight", 0),
            "succeeded": counts.get("succeeded", 0),
            "failed": counts.get("failed", 0),
            "dropped": counts.get("dropped", 0),
            "next_attempt_at": due["due"] if due else None,
        }

    def wait_idle(self, timeout: float) -> dict[str, Any]:
        """Block until nothing is queued or in flight, except what is not due before the
        deadline (a retry far away) or cannot move (held). Timers of the emulator (a refund that
        fails a moment after it was made) count as pending work when they fall due in time."""
        deadline = time.monotonic() + timeout
        while True:
            with self._wakeup:
                generation = self._generation
            counts = self.counts()
            held = self.fault_state()["held"]
            remaining = deadline - time.monotonic()
            next_due = counts["next_attempt_at"]
            retry_soon = next_due is not None and next_due - time.time() <= remaining
            timer_soon = self.backend.timers is not None and self.backend.timers.due_within(remaining)
            busy = counts["in_flight"] > 0 or (counts["queued"] > 0 and not held and retry_soon) or timer_soon
            if not busy or remaining <= 0:
                return {
                    "idle": counts["queued"] == 0 and counts["in_flight"] == 0 and not timer_soon,
                    "held": held,
                    "timed_out": busy,
                    **counts,
                }
            with self._wakeup:
                if self._generation == generation:
                    self._wakeup.wait(timeout=min(0.05, max(remaining, 0.001)))


class _Connections(threading.local):
    """Each worker keeps its connection to the endpoint alive between deliveries, as Stripe's
    senders do; a connection the receiver closed meanwhile is replaced once, transparently."""

    def __init__(self) -> None:
        self.open: dict[tuple[str, str, int | None], http.client.HTTPConnection] = {}

    def post(self, url: str, payload: bytes, headers: dict[str, str], timeout: float) -> int:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url}")
        key = (parts.scheme, parts.hostname, parts.port)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        reused = key in self.open
        connection = self.open.get(key) or self._connect(key, timeout)
        try:
            return self._send(connection, path, payload, headers, timeout)
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError, http.client.CannotSendRequest):
            self.close(key)
            if not reused:
                raise
            # The kept-alive connection had gone stale before this request reached the receiver.
            return self._send(self._connect(key, timeout), path, payload, headers, timeout)
        except BaseException:
            self.close(key)
            raise

    def _connect(self, key: tuple[str, str, int | None], timeout: float) -> http.client.HTTPConnection:
        scheme, host, port = key
        connection_class = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
        connection = connection_class(host, port, timeout=timeout)
        self.open[key] = connection
        return connection

    def _send(self, connection: http.client.HTTPConnection, path: str, payload: bytes, headers: dict[str, str],
              timeout: float) -> int:
        connection.timeout = timeout
        if connection.sock is not None:
            connection.sock.settimeout(timeout)
        connection.request("POST", path, body=payload, headers=headers)
        response = connection.getresponse()
        response.read(1_000_000)
        if response.will_close:
            connection.close()
        return response.status

    def close(self, key: tuple[str, str, int | None]) -> None:
        connection = self.open.pop(key, None)
        if connection is not None:
            connection.close()
