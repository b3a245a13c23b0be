"""SQLite persistence: Stripe objects, events, webhook deliveries, idempotency records, timers.

One connection is shared by every thread (a ``:memory:`` database exists only inside its
connection) and serialised by a re-entrant lock; every write runs in one transaction, so an
API call either happens completely or not at all.
"""

from __future__ import annotations

import contextvars
import json
import sqlite3
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    created INTEGER NOT NULL,
    data TEXT NOT NULL,
    internal TEXT NOT NULL DEFAULT '{}',
    account TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS objects_by_type ON objects(type, seq);
CREATE INDEX IF NOT EXISTS objects_by_type_created ON objects(type, created, seq);
CREATE INDEX IF NOT EXISTS objects_by_customer ON objects(type, json_extract(data, '$.customer'), seq);
CREATE INDEX IF NOT EXISTS objects_by_payment_intent ON objects(type, json_extract(data, '$.payment_intent'), seq);
CREATE INDEX IF NOT EXISTS objects_by_charge ON objects(type, json_extract(data, '$.charge'), seq);
CREATE INDEX IF NOT EXISTS objects_by_email ON objects(type, json_extract(data, '$.email'), seq);
CREATE INDEX IF NOT EXISTS objects_by_event_type ON objects(type, json_extract(data, '$.type'), seq);
CREATE INDEX IF NOT EXISTS objects_by_code ON objects(type, json_extract(data, '$.code'), seq);
CREATE INDEX IF NOT EXISTS objects_by_product ON objects(type, json_extract(data, '$.product'), seq);
CREATE INDEX IF NOT EXISTS objects_by_status ON objects(type, json_extract(data, '$.status'), seq);

CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL,
    created_at REAL NOT NULL,
    last_status INTEGER,
    last_error TEXT,
    target TEXT NOT NULL DEFAULT 'platform'
);
CREATE INDEX IF NOT EXISTS deliveries_by_state ON deliveries(state, next_attempt_at);
CREATE INDEX IF NOT EXISTS deliveries_by_event ON deliveries(event_id);

CREATE TABLE IF NOT EXISTS delivery_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    status INTEGER,
    error TEXT,
    duration_ms REAL NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS delivery_attempts_by_event ON delivery_attempts(event_id);

CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL,
    status INTEGER,
    headers TEXT,
    body BLOB,
    request_id TEXT,
    created REAL NOT NULL,
    endpoint TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS idempotency_by_created ON idempotency(created);

CREATE TABLE IF NOT EXISTS timers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    due REAL NOT NULL,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    UNIQUE(kind, target)
);
CREATE INDEX IF NOT EXISTS timers_by_due ON timers(due);

CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

# Columns added after the first release, for database files made before them.
_ADDED_COLUMNS = (
    ("objects", "account", "TEXT NOT NULL DEFAULT ''"),
    ("idempotency", "endpoint", "TEXT NOT NULL DEFAULT ''"),
    ("deliveries", "target", "TEXT NOT NULL DEFAULT 'platform'"),
)

ANY_ACCOUNT = None
"""The scope of the emulator's own work (hosted pages, timers, the control API): reads see
every account's objects. API requests are scoped to the platform (``""``) or to the connected
account of their ``Stripe-Account`` header, as Stripe scopes them."""

_scope: contextvars.ContextVar[str | None] = contextvars.ContextVar("stripe_emulator_account", default=ANY_ACCOUNT)

STATE_TABLES = ("objects", "deliveries", "delivery_attempts", "idempotency", "timers")


class Store:
    def __init__(self, path: str):
        self.path = path
        self.lock = threading.RLock()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._depth = 0
        self._after_commit: list[Callable[[], None]] = []
        self._on_rollback: list[Callable[[], None]] = []
        with self.lock:
            if path != ":memory:":
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
            for table, column, declaration in _ADDED_COLUMNS:
                columns = {row[1] for row in self._conn.execute(f"PRAGMA table_info({table})")}
                if columns and column not in columns:
                    self._conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
            self._conn.executescript(SCHEMA)
            self._conn.execute("CREATE INDEX IF NOT EXISTS objects_by_account ON objects(account, type, seq)")

    # -- account scope ------------------------------------------------------------------

    @contextmanager
    def scoped(self, account: str | None) -> Iterator[None]:
        """Reads and writes inside see only ``account``'s objects (``""``: the platform's);
        ``None`` lifts the scope (reads see everything; writes go to the platform)."""
        token = _scope.set(account)
        try:
            yield
        finally:
            _scope.reset(token)

    @staticmethod
    def current_account() -> str | None:
        return _scope.get()

    def account_of(self, object_id: str) -> str | None:
        """The account an object lives on (``""`` for the platform), whatever the scope."""
        row = self.query_one("SELECT account FROM objects WHERE id = ?", (object_id,))
        return row["account"] if row else None

    @contextmanager
    def scoped_to_object(self, object_id: str | None) -> Iterator[None]:
        """Act on the account that owns ``object_id`` (a hosted page, a timer, the control API
        acting on a session): what it creates lands on that account. Unknown ids lift the scope."""
        with self.scoped(self.account_of(object_id) if object_id else ANY_ACCOUNT):
            yield

    def _scope_sql(self) -> tuple[str, list[Any]]:
        account = _scope.get()
        if account is ANY_ACCOUNT:
            return "", []
        return " AND account = ?", [account]

    def close(self) -> None:
        with self.lock:
            self._conn.close()

    # -- transactions -------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator["Store"]:
        """Everything inside happens atomically; callbacks registered with ``after_commit`` run
        once the outermost transaction has committed."""
        with self.lock:
            outer = self._depth == 0
            if outer:
                self._conn.execute("BEGIN IMMEDIATE")
                self._after_commit = []
                self._on_rollback = []
            self._depth += 1
            try:
                yield self
            except BaseException:
                self._depth -= 1
                if outer:
                    self._conn.execute("ROLLBACK")
                    self._after_commit = []
                    undo, self._on_rollback = self._on_rollback, []
                    for callback in undo:
                        callback()
                raise
            self._depth -= 1
            if outer:
                self._conn.execute("COMMIT")
                self._on_rollback = []
                callbacks, self._after_commit = self._after_commit, []
                for callback in callbacks:
                    callback()

    def after_commit(self, callback: Callable[[], None]) -> None:
        with self.lock:
            if self._depth == 0:
                callback()
            else:
                self._after_commit.append(callback)

    def on_rollback(self, callback: Callable[[], None]) -> None:
        """Undo something kept outside the database if the transaction does not commit."""
        with self.lock:
            if self._depth > 0:
                self._on_rollback.append(callback)

    def execute(self, sql: str, args: Iterable[Any] = ()) -> sqlite3.Cursor:
        with self.lock:
            return self._conn.execute(sql, tuple(args))

    def query(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self.lock:
            return self._conn.execute(sql, tuple(args)).fetchall()

    def query_one(self, sql: str, args: Iterable[Any] = ()) -> sqlite3.Row | None:
        with self.lock:
            return self._conn.execute(sql, tuple(args)).fetchone()

    # -- objects ------------------------------------------------------------------------

    def insert(self, obj: dict[str, Any], internal: dict[str, Any] | None = None, *,
               account: str | None = None) -> dict[str, Any]:
        """Store a new object on ``account``, by default the account of the current scope."""
        owner = account if account is not None else (_scope.get() or "")
        self.execute(
            "INSERT INTO objects (id, type, created, data, internal, account) VALUES (?, ?, ?, ?, ?, ?)",
            (obj["id"], obj["object"], obj.get("created", 0), json.dumps(obj), json.dumps(internal or {}), owner),
        )
        return obj

    def save(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.execute("UPDATE objects SET data = ? WHERE id = ?", (json.dumps(obj), obj["id"]))
        return obj

    def get(self, object_id: str, object_type: str | None = None) -> dict[str, Any] | None:
        scope_sql, scope_args = self._scope_sql()
        row = self.query_one(f"SELECT type, data FROM objects WHERE id = ?{scope_sql}", (object_id, *scope_args))
        if row is None or (object_type is not None and row["type"] != object_type):
            return None
        return json.loads(row["data"])

    def get_internal(self, object_id: str) -> dict[str, Any]:
        row = self.query_one("SELECT internal FROM objects WHERE id = ?", (object_id,))
        return json.loads(row["internal"]) if row else {}

    def set_internal(self, object_id: str, internal: dict[str, Any]) -> None:
        self.execute("UPDATE objects SET internal = ? WHERE id = ?", (json.dumps(internal), object_id))

    def seq_of(self, object_id: str, object_type: str) -> int | None:
        scope_sql, scope_args = self._scope_sql()
        row = self.query_one(f"SELECT seq FROM objects WHERE id = ? AND type = ?{scope_sql}",
                             (object_id, object_type, *scope_args))
        return row["seq"] if row else None

    def list(
        self,
        object_type: str,
        *,
        equals: dict[str, Any] | None = None,
        created: dict[str, int] | None = None,
        extra_sql: str = "",
        extra_args: Iterable[Any] = (),
        limit: int = 10,
        after_seq: int | None = None,
        before_seq: int | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        """Newest first, as Stripe lists are. ``equals`` maps a JSON path (``$.customer``) to a
        value; ``after_seq``/``before_seq`` implement ``starting_after``/``ending_before``."""
        where = ["type = ?"]
        args: list[Any] = [object_type]
        if _scope.get() is not ANY_ACCOUNT:
            where.append("account = ?")
            args.append(_scope.get())
        for path, value in (equals or {}).items():
            where.append(f"json_extract(data, '{path}') = ?")
            args.append(value)
        for op, value in (created or {}).items():
            where.append(f"created {_CREATED_OPS[op]} ?")
            args.append(value)
        if extra_sql:
            where.append(extra_sql)
            args.extend(extra_args)
        if before_seq is not None:
            # ending_before: the page just newer than the cursor, still shown newest first.
            where.append("seq > ?")
            args.append(before_seq)
            rows = self.query(
                f"SELECT data FROM objects WHERE {' AND '.join(where)} ORDER BY seq ASC LIMIT ?",
                [*args, limit + 1],
            )
            has_more = len(rows) > limit
            rows = list(reversed(rows[:limit]))
        else:
            if after_seq is not None:
                where.append("seq < ?")
                args.append(after_seq)
            rows = self.query(
                f"SELECT data FROM objects WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?",
                [*args, limit + 1],
            )
            has_more = len(rows) > limit
            rows = rows[:limit]
        return [json.loads(row["data"]) for row in rows], has_more

    # -- meta ---------------------------------------------------------------------------

    def meta_get(self, key: str, default: str | None = None) -> str | None:
        row = self.query_one("SELECT value FROM meta WHERE key = ?", (key,))
        return row["value"] if row else default

    def meta_set(self, key: str, value: str) -> None:
        self.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def meta_delete(self, key: str) -> None:
        self.execute("DELETE FROM meta WHERE key = ?", (key,))

    # -- timers -------------------------------------------------------------------------

    def timer_set(self, kind: str, target: str, due: float) -> None:
        self.execute(
            "INSERT INTO timers (due, kind, target) VALUES (?, ?, ?) "
            "ON CONFLICT(kind, target) DO UPDATE SET due = excluded.due",
            (due, kind, target),
        )

    def timer_cancel(self, kind: str, target: str) -> None:
        self.execute("DELETE FROM timers WHERE kind = ? AND target = ?", (kind, target))

    def timers_due(self, now: float) -> list[sqlite3.Row]:
        return self.query("SELECT id, due, kind, target FROM timers WHERE due <= ? ORDER BY due, id", (now,))

    def next_timer_due(self) -> float | None:
        row = self.query_one("SELECT MIN(due) AS due FROM timers")
        return row["due"] if row and row["due"] is not None else None

    def timer_delete(self, timer_id: int) -> None:
        self.execute("DELETE FROM timers WHERE id = ?", (timer_id,))

    # -- reset --------------------------------------------------------------------------

    def reset(self) -> None:
        with self.transaction():
            for table in STATE_TABLES:
                self.execute(f"DELETE FROM {table}")
            self.execute("DELETE FROM sqlite_sequence WHERE name IN ('objects', 'deliveries', 'delivery_attempts')")
            self.meta_delete("clock_offset")
            self.execute("DELETE FROM meta WHERE key LIKE 'account_link:%' OR key LIKE 'login_link:%' "
                         "OR key LIKE 'onboarding:%' OR key LIKE 'express_session:%'")


_CREATED_OPS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "eq": "="}
