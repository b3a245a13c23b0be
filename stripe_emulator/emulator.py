"""``Emulator``: the whole emulator in one object, for the command line and for tests."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from .api.dispatch import ApiApp
from .backend import Backend, Tuning
from .control_routes import ControlApp
from .hosted import HostedApp
from .ids import new_webhook_secret
from .pace import Pace
from .server import EmulatorHTTPServer, serve_in_thread
from .timers import Timers
from .web import Request, Response
from .webhooks import Dispatcher

log = logging.getLogger("stripe_emulator")

WEBHOOK_SECRET_KEY = "webhook_secret"
CONNECT_WEBHOOK_SECRET_KEY = "connect_webhook_secret"


class Emulator:
    """A running Stripe emulator.

    ``Emulator(db=":memory:", port=0, forward_to=None, webhook_secret=None, host="127.0.0.1",
    public_url=None, pace=None, forward_events=None, **tuning)``; ``port=0`` picks a free port;
    ``pace`` sets Stripe's latency and rate limits (see ``pace.Pace.configure``; off by default);
    ``forward_events`` limits the event types sent to the endpoints (default: every type). Use ``start()``/``stop()`` or
    ``with Emulator() as emu:``; then ``emu.url`` is the base for the SDK and ``emu.webhook_secret``
    verifies webhooks. ``tuning`` takes the fields of ``Tuning`` (webhook retry delays, timeouts,
    worker count, refund failure delay, ...).
    """

    def __init__(
        self,
        db: str = ":memory:",
        port: int = 0,
        forward_to: str | None = None,
        webhook_secret: str | None = None,
        *,
        host: str = "127.0.0.1",
        public_url: str | None = None,
        connect_forward_to: str | None = None,
        connect_webhook_secret: str | None = None,
        pace: dict[str, Any] | None = None,
        forward_events: Iterable[str] | None = None,
        **tuning: Any,
    ):
        self.db = db
        self.host = host
        self.requested_port = port
        self.forward_to = forward_to
        self.tuning = Tuning.from_options(tuning)
        # Stripe's latency and rate limits (``pace.py``): e.g. ``pace={"preset": "stripe-test"}``.
        self.pace = Pace()
        self.pace.configure(pace or {})
        self.pace.remember_as_initial()
        self._given_secret = webhook_secret
        self.connect_forward_to = connect_forward_to
        # Only these event types are forwarded (None: every type), as an endpoint's enabled events.
        self.forward_events = frozenset(forward_events) if forward_events is not None else None
        self._given_connect_secret = connect_webhook_secret
        self._given_public_url = public_url
        self.webhook_secret_generated = False
        self.backend: Backend | None = None
        self._server: EmulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> "Emulator":
        if self._server is not None:
            return self
        self._server = EmulatorHTTPServer((self.host, self.requested_port), self._route)
        port = self._server.server_address[1]
        public_url = self._given_public_url or f"http://{self.host}:{port}"
        backend = Backend(
            db=self.db,
            public_url=public_url,
            webhook_secret="",
            forward_to=self.forward_to,
            tuning=self.tuning,
            pace=self.pace,
            connect_forward_to=self.connect_forward_to,
            forward_events=self.forward_events,
        )
        backend.webhook_secret = self._resolve_secret(backend)
        backend.connect_webhook_secret = self._resolve_connect_secret(backend)
        backend.dispatcher = Dispatcher(backend)
        backend.timers = Timers(backend)
        with backend.store.transaction():
            # Requests cut off by a stop never committed: their keys are free again.
            backend.store.execute("DELETE FROM idempotency WHERE state = 'in_flight'")
        self.backend = backend
        self.api = ApiApp(backend)
        self.control = ControlApp(backend, self.api)
        self.hosted = HostedApp(backend)
        backend.dispatcher.start()
        backend.timers.start()
        self._thread = serve_in_thread(self._server)
        log.info("Stripe emulator listening on %s (state in %s)", self.url, self.db)
        return self

    def _resolve_secret(self, backend: Backend) -> str:
        if self._given_secret:
            return self._given_secret
        stored = backend.store.meta_get(WEBHOOK_SECRET_KEY)
        if stored:
            return stored
        secret = new_webhook_secret()
        with backend.store.transaction():
            backend.store.meta_set(WEBHOOK_SECRET_KEY, secret)
        self.webhook_secret_generated = True
        return secret

    def _resolve_connect_secret(self, backend: Backend) -> str:
        """The Connect endpoint signs with a secret of its own, as Stripe's does."""
        if self._given_connect_secret:
            return self._given_connect_secret
        stored = backend.store.meta_get(CONNECT_WEBHOOK_SECRET_KEY)
        if stored:
            return stored
        secret = new_webhook_secret()
        with backend.store.transaction():
            backend.store.meta_set(CONNECT_WEBHOOK_SECRET_KEY, secret)
        return secret

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.stopping.set()
        if self.backend is not None:
            self.backend.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._server.close_connections()
        if self.backend is not None:
            self.backend.timers.stop()
            self.backend.dispatcher.stop()
            self.backend.store.close()
        self._server = None
        self._thread = None
        self.backend = None

    def __enter__(self) -> "Emulator":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- facts ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("The emulator is not running.")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def public_url(self) -> str:
        assert self.backend is not None
        return self.backend.public_url

    @property
    def connect_webhook_secret(self) -> str:
        if self.backend is None:
            raise RuntimeError("The emulator is not running.")
        return self.backend.connect_webhook_secret

    @property
    def webhook_secret(self) -> str:
        if self.backend is None:
            raise RuntimeError("The emulator is not running.")
        return self.backend.webhook_secret

    # -- routing ------------------------------------------------------------------------------

    def _route(self, request: Request) -> Response:
        path = request.path
        if path.startswith("/v1/") or path == "/v1":
            return self.api.handle(request)
        if path == "/_emulator" or path.startswith("/_emulator/"):
            return self.control.handle(request)
        return self.hosted.handle(request)
