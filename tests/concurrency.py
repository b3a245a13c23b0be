"""Run a function from many real threads at once, each with its own database connection."""

import threading
from collections.abc import Callable
from typing import Any

from django.db import connection


def run_concurrently(functions: list[Callable[[], Any]], *, timeout: float = 60) -> list[Any]:
    """Start every function at the same moment (a barrier) and return their results in order.
    An exception in a thread is returned in its place, so the caller can assert on it."""
    barrier = threading.Barrier(len(functions))
    results: list[Any] = [None] * len(functions)

    def worker(index: int, function: Callable[[], Any]) -> None:
        try:
            barrier.wait()
            results[index] = function()
        except BaseException as error:  # noqa: BLE001 - handed back to the test
            results[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i, f)) for i, f in enumerate(functions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
        if thread.is_alive():
            raise TimeoutError("a worker thread did not finish")
    return results


def sessions_waiting_on_a_lock() -> int:
    """How many database sessions of this test database wait for a lock now (PostgreSQL only)."""
    with connection.cursor() as cursor:
        # A transaction sees one snapshot of the activity unless told to take a new one.
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        return cursor.fetchone()[0]
