"""The emulator's clock: wall-clock time plus an offset that tests can advance.

Object timestamps (``created``, ``expires_at``) and timers follow this clock; webhook
signatures and delivery retries follow real time, as a receiver checks them against its own.
"""

from __future__ import annotations

import threading
import time

from .store import Store


class Clock:
    def __init__(self, store: Store):
        self._store = store
        self._lock = threading.Lock()
        self._offset = float(store.meta_get("clock_offset", "0") or 0)

    @property
    def offset(self) -> float:
        return self._offset

    def now(self) -> float:
        return time.time() + self._offset

    def now_int(self) -> int:
        return int(self.now())

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._offset += seconds
            self._store.meta_set("clock_offset", repr(self._offset))
            return self._offset

    def reload(self) -> None:
        with self._lock:
            self._offset = float(self._store.meta_get("clock_offset", "0") or 0)
