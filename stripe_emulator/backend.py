"""What every part of the emulator shares: storage, clock, spec, configuration, tuning, faults.

API handlers, hosted pages, the control API and the background threads all act through one
``Backend``; an ``Action`` says who is acting (an API request, a browser, a timer), which the
events it causes record (``request.id``, ``request.idempotency_key``, ``api_version``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields
from typing import Any

from .clock import Clock
from .errors import InvalidRequestError
from .pace import Pace
from .params import Coercer
from .spec import Spec, load_spec
from .store import Store


def sdk_api_version() -> str:
    """The API version of the installed official SDK: what an SDK request without a
    ``Stripe-Version`` header would mean."""
    try:
        import stripe

        return str(stripe.api_version)
    except ImportError:  # the emulator also runs without the SDK installed
        return "2026-10-28.endive"


@dataclass
class Tuning:
    """Knobs for tests and simulations; defaults suit a developer clicking through the site."""

    webhook_retry_base: float = 1.0
    webhook_retry_factor: float = 2.0
    webhook_retry_max_delay: float = 300.0
    webhook_max_attempts: int = 10
    webhook_timeout: float = 10.0
    webhook_workers: int = 4
    refund_failure_delay: float = 2.0
    refund_pending_delay: float = 2.0
    portal_session_unused_lifetime: int = 300
    portal_session_lifetime: int = 3600
    timer_poll_interval: float = 1.0
    idempotency_key_lifetime: int = 24 * 3600
    account_name: str = "Test merchant"
    account_api_version: str = ""
    account_link_lifetime: int = 300

    @staticmethod
    def describe(name: str) -> str:
        return TUNING_HELP[name]

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> "Tuning":
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise TypeError(f"Unknown emulator tuning option(s): {', '.join(unknown)}")
        tuning = cls()
        for name, value in options.items():
            setattr(tuning, name, type(getattr(tuning, name))(value))
        return tuning


TUNING_HELP = {
    "webhook_retry_base": "seconds before the first retry of a failed webhook",
    "webhook_retry_factor": "each further retry waits this many times longer",
    "webhook_retry_max_delay": "longest wait between two attempts, in seconds",
    "webhook_max_attempts": "attempts before a delivery is given up",
    "webhook_timeout": "seconds to wait for the receiver's answer",
    "webhook_workers": "deliveries made at the same time",
    "refund_failure_delay": "seconds (emulator clock) until a refund of 4000 0000 0000 5126 fails",
    "refund_pending_delay": "seconds (emulator clock) until a pending refund of 4000 0000 0000 7726 succeeds",
    "portal_session_unused_lifetime": "seconds a portal session link stays valid if nobody opens it",
    "portal_session_lifetime": "seconds a portal session stays usable after it is first opened",
    "timer_poll_interval": "longest pause of the timer thread, in seconds",
    "idempotency_key_lifetime": "seconds (emulator clock) an Idempotency-Key is remembered",
    "account_name": "business name shown on the hosted pages",
    "account_api_version": "the platform account's API version, in which events are rendered (default: the SDK's)",
    "account_link_lifetime": "seconds (emulator clock) an Account Link stays usable",
}


@dataclass
class RefundFault:
    mode: str
    seconds: float


@dataclass
class Faults:
    """Failures tests ask for through the control API; they live in memory only."""

    refund_faults: list[RefundFault] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_refund_faults(self, count: int, mode: str, seconds: float) -> None:
        with self.lock:
            self.refund_faults.extend(RefundFault(mode, seconds) for _ in range(count))

    def take_refund_fault(self) -> RefundFault | None:
        with self.lock:
            return self.refund_faults.pop(0) if self.refund_faults else None

    def clear(self) -> None:
        with self.lock:
            self.refund_faults.clear()


@dataclass
class Action:
    """Who causes a change: an API request (with its id and idempotency key) or the emulator
    itself on behalf of a customer's browser or a timer (``request_id`` None)."""

    api_version: str
    request_id: str | None = None
    idempotency_key: str | None = None
    key_hint: str | None = None  # the API key as Stripe shows it in errors (``sk_test_****1234``)


class Backend:
    def __init__(
        self,
        *,
        db: str,
        public_url: str,
        webhook_secret: str,
        forward_to: str | None,
        tuning: Tuning,
        connect_forward_to: str | None = None,
        connect_webhook_secret: str = "",
        pace: Pace | None = None,
        forward_events: frozenset[str] | None = None,
    ):
        self.store = Store(db)
        self.clock = Clock(self.store)
        self.spec: Spec = load_spec()
        self.coercer = Coercer(self.spec.schemas)
        self.public_url = public_url.rstrip("/")
        self.webhook_secret = webhook_secret
        self.forward_to = forward_to
        # The Connect endpoint: events of connected accounts, signed with its own secret.
        self.connect_forward_to = connect_forward_to
        self.connect_webhook_secret = connect_webhook_secret
        # The event types the endpoints are sent (a Dashboard endpoint's enabled events, or
        # `stripe listen --events`); None sends every type, as `stripe listen` does by default.
        self.forward_events = forward_events
        self.tuning = tuning
        self.faults = Faults()
        # Stripe's latency and rate limits, off unless asked for (``pace.py``).
        self.pace = pace or Pace()
        # Set when the emulator stops, to cut short anything waiting (a simulated hang).
        self.stopping = threading.Event()
        self.default_api_version = sdk_api_version()
        self.account_api_version = tuning.account_api_version or self.default_api_version
        # Set by the Emulator once the webhook dispatcher and the timer thread exist.
        self.dispatcher: Any = None
        self.timers: Any = None

    def endpoint_for(self, account: str) -> tuple[str | None, str]:
        """Where an account's events go and the secret that signs them: the platform's own
        endpoint for the platform's events, the Connect endpoint for connected accounts'."""
        if account:
            return self.connect_forward_to, self.connect_webhook_secret
        return self.forward_to, self.webhook_secret

    def endpoint_count(self, account: str, event_type: str) -> int:
        """The endpoints an event of this account and type is sent to (its `pending_webhooks`)."""
        if self.forward_events is not None and event_type not in self.forward_events:
            return 0
        return 1 if self.endpoint_for(account)[0] else 0

    def business_name(self) -> str:
        """The name the hosted pages show: the connected account's business name for what lives
        on a connected account, else the platform's ``account_name``."""
        account_id = self.store.current_account()
        if account_id:
            with self.store.scoped(""):
                account = self.store.get(account_id, "account")
            if account is not None:
                name = (account.get("business_profile") or {}).get("name") or account["settings"]["dashboard"]["display_name"]
                if name:
                    return name
        return self.tuning.account_name

    def now(self) -> int:
        return self.clock.now_int()

    def system_action(self, api_version: str | None = None) -> Action:
        return Action(api_version=api_version or self.default_api_version)

    def coerce(self, params: dict[str, Any], method: str, spec_path: str) -> dict[str, Any]:
        return self.coercer.coerce(params, self.spec.request_schema(method, spec_path))

    def load(self, object_id: str, object_type: str, object_name: str, *, param: str = "id") -> dict[str, Any]:
        from .errors import ResourceMissing

        obj = self.store.get(object_id, object_type)
        if obj is None:
            raise ResourceMissing(object_name, object_id, param=param)
        return obj

    def require_nonempty(self, params: dict[str, Any], name: str) -> None:
        from .params import empty_string_error

        if params.get(name) == "":
            raise empty_string_error(name)

    def reset(self) -> None:
        self.store.reset()
        self.clock.reload()
        self.faults.clear()
        self.pace.restore()  # the pace the emulator was started with; counters start afresh
        if self.dispatcher is not None:
            self.dispatcher.reset()


def missing_param(name: str) -> InvalidRequestError:
    return InvalidRequestError(f"Missing required param: {name}.", param=name, code="parameter_missing")
