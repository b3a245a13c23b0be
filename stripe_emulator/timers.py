"""Things that happen later on the emulator's clock: sessions expiring at ``expires_at``, a refund
of the 5126 test card failing a moment after it was made, stale idempotency keys being pruned.

Timers are rows in SQLite, so they survive a restart; one thread fires them when due, and
``POST /_emulator/clock/advance`` fires the ones the jump made due before it answers.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from .backend import Backend

log = logging.getLogger("stripe_emulator.timers")

TimerHandler = Callable[[Backend, str], None]

_HANDLERS: dict[str, TimerHandler] = {}


def timer_handler(kind: str) -> Callable[[TimerHandler], TimerHandler]:
    def register(function: TimerHandler) -> TimerHandler:
        _HANDLERS[kind] = function
        return function

    return register


class Timers:
    def __init__(self, backend: Backend):
        self.backend = backend
        self._fire_lock = threading.Lock()
        self._wakeup = threading.Condition()
        self._generation = 0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="emulator-timers", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def wake(self) -> None:
        with self._wakeup:
            self._generation += 1
            self._wakeup.notify_all()

    def schedule(self, kind: str, target: str, due: float) -> None:
        """Call inside the transaction that makes the timer necessary."""
        self.backend.store.timer_set(kind, target, due)
        self.backend.store.after_commit(self.wake)

    def cancel(self, kind: str, target: str) -> None:
        self.backend.store.timer_cancel(kind, target)

    def due_within(self, seconds: float) -> bool:
        due = self.backend.store.next_timer_due()
        return due is not None and due - self.backend.clock.now() <= seconds

    def fire_due(self) -> int:
        """Run every timer due now, each in its own transaction; returns how many ran."""
        fired = 0
        with self._fire_lock:
            store = self.backend.store
            for row in store.timers_due(self.backend.clock.now()):
                handler = _HANDLERS.get(row["kind"])
                try:
                    with store.transaction():
                        if store.query_one("SELECT 1 FROM timers WHERE id = ?", (row["id"],)) is None:
                            continue
                        store.timer_delete(row["id"])
                        if handler is not None:
                            with store.scoped_to_object(row["target"]):
                                handler(self.backend, row["target"])
                        fired += 1
                except Exception:
                    log.exception("timer %s for %s failed; it is dropped", row["kind"], row["target"])
                    with store.transaction():
                        store.timer_delete(row["id"])
            self._prune_idempotency_keys()
        if fired and self.backend.dispatcher is not None:
            self.backend.dispatcher.wake()
        return fired

    def _prune_idempotency_keys(self) -> None:
        cutoff = self.backend.clock.now() - self.backend.tuning.idempotency_key_lifetime
        with self.backend.store.transaction():
            self.backend.store.execute("DELETE FROM idempotency WHERE created < ? AND state = 'done'", (cutoff,))

    def _run(self) -> None:
        while not self._stopping.is_set():
            with self._wakeup:
                generation = self._generation
            try:
                self.fire_due()
                due = self.backend.store.next_timer_due()
            except Exception:
                log.exception("timer thread failed; retrying")
                due = None
            pause = self.backend.tuning.timer_poll_interval
            if due is not None:
                pause = max(0.001, min(pause, due - self.backend.clock.now()))
            with self._wakeup:
                if self._generation == generation:
                    self._wakeup.wait(timeout=pause)
