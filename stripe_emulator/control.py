"""A thin client for the emulator's control API, for tests and simulations.

    control = EmulatorControl(emu.url)
    control.hold_webhooks()
    ...
    control.release_webhooks()
    assert control.wait_for_webhooks(timeout=5)["idle"]
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class ControlError(Exception):
    """The control API refused a call; ``status`` and ``body`` are its answer."""

    def __init__(self, status: int, body: Any):
        error = body.get("error", {}) if isinstance(body, dict) else {}
        super().__init__(f"{status}: {error.get('message', body)}")
        self.status = status
        self.body = body
        self.error: dict[str, Any] = error


class PaymentDeclined(ControlError):
    """Paying through the control API failed as a card payment fails (HTTP 402): ``error`` holds
    Stripe's card error (``code``, ``decline_code``, ``message``, ``payment_intent``, ...)."""


class EmulatorControl:
    def __init__(self, base_url: str, *, timeout: float = 60.0):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None,
              query: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        url = f"{self.base_url}/_emulator{path}"
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = json.dumps(body).encode() if body is not None else (b"{}" if method == "POST" else None)
        request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = raw.decode(errors="replace")
            if error.code == 402:
                raise PaymentDeclined(error.code, payload) from None
            raise ControlError(error.code, payload) from None

    # -- state ----------------------------------------------------------------------------

    def reset(self) -> dict[str, Any]:
        """Forget every object, event, delivery, idempotency key, timer and fault; the pace goes
        back to the one the emulator was started with."""
        return self._call("POST", "/reset")

    def config(self) -> dict[str, Any]:
        return self._call("GET", "/config")

    def set_forward_to(self, url: str | None) -> dict[str, Any]:
        return self._call("POST", "/config", {"forward_to": url})

    @property
    def webhook_secret(self) -> str:
        return self.config()["webhook_secret"]

    # -- Stripe's pace -------------------------------------------------------------------------

    def pace(self) -> dict[str, Any]:
        """Latency (median, p99 and the log-normal's mu/sigma), rate limits and counters."""
        return self._call("GET", "/pace")

    def set_pace(self, **settings: Any) -> dict[str, Any]:
        """E.g. ``set_pace(preset="stripe-test")``, ``set_pace(write_latency="250:900", rate_limit=25)``,
        ``set_pace(preset="off")``."""
        return self._call("POST", "/pace", settings)

    # -- webhooks -----------------------------------------------------------------------------

    def set_connect_forward_to(self, url: str | None) -> dict[str, Any]:
        """Where connected accounts' events go (the Connect endpoint)."""
        return self._call("POST", "/config", {"connect_forward_to": url})

    def set_account_api_version(self, version: str) -> dict[str, Any]:
        """The platform account's API version, in which events are rendered."""
        return self._call("POST", "/config", {"account_api_version": version})

    @property
    def connect_webhook_secret(self) -> str:
        return self.config()["connect_webhook_secret"]

    def deauthorize_account(self, account_id: str) -> dict[str, Any]:
        """The merchant disconnects their account: answers the ``account.application.deauthorized`` event."""
        return self._call("POST", f"/accounts/{account_id}/deauthorize", {})

    def webhook_state(self) -> dict[str, Any]:
        return self._call("GET", "/webhooks")

    def hold_webhooks(self) -> dict[str, Any]:
        return self._call("POST", "/webhooks/hold")

    def release_webhooks(self) -> dict[str, Any]:
        return self._call("POST", "/webhooks/release")

    def drop_webhooks(self, count: int = 1) -> dict[str, Any]:
        """The next ``count`` deliveries are recorded as dropped and never sent."""
        return self._call("POST", "/webhooks/drop", {"count": count})

    def duplicate_webhooks(self, count: int = 1) -> dict[str, Any]:
        """The next ``count`` events are each delivered twice, concurrently."""
        return self._call("POST", "/webhooks/duplicate", {"count": count})

    def reorder_webhooks(self, enabled: bool = True) -> dict[str, Any]:
        return self._call("POST", "/webhooks/reorder", {"enabled": enabled})

    def wait_for_webhooks(self, timeout: float = 10.0) -> dict[str, Any]:
        """Block until no delivery is queued or in flight (retries due later than ``timeout``
        and held deliveries do not count); the answer's ``idle`` says whether all is delivered."""
        return self._call("POST", "/webhooks/wait", {"timeout": timeout}, timeout=timeout + 30)

    def deliveries(self, *, event_id: str | None = None, type: str | None = None, target: str | None = None,
                   limit: int = 1000) -> list[dict[str, Any]]:
        """Delivery attempts, newest first; ``target`` "platform" or "connect" picks one endpoint's."""
        return self._call("GET", "/deliveries", query={"event_id": event_id, "type": type, "target": target,
                                                        "limit": limit})["data"]

    def events(self, *, type: str | None = None, limit: int = 1000, after: str | None = None) -> list[dict[str, Any]]:
        """Events, newest first; with ``after`` (an event's id), only the events made after it,
        oldest first (up to ``limit``: ask again after the last one for more)."""
        return self._call("GET", "/events", query={"type": type, "limit": limit, "after": after})["data"]

    def requests(self) -> list[dict[str, Any]]:
        """The last API requests the emulator answered, newest first."""
        return self._call("GET", "/requests")["data"]

    def requests_in_flight(self) -> list[dict[str, Any]]:
        """API requests being handled right now (method, path, idempotency_key, since)."""
        return self._call("GET", "/requests")["in_flight"]

    # -- faults -------------------------------------------------------------------------------

    def fail_refunds(self, count: int = 1, mode: str = "error", seconds: float | None = None) -> dict[str, Any]:
        """The next ``count`` refund creations fail: ``error`` (500, nothing created),
        ``timeout`` (hang ``seconds``, hang up, nothing created) or ``lost_response`` (created,
        then hang up; a retry with the same Idempotency-Key gets the replay)."""
        body: dict[str, Any] = {"count": count, "mode": mode}
        if seconds is not None:
            body["seconds"] = seconds
        return self._call("POST", "/refunds/fail", body)

    # -- checkout -------------------------------------------------------------------------------

    def expire_session(self, session_id: str) -> dict[str, Any]:
        return self._call("POST", f"/checkout/sessions/{session_id}/expire")

    def pay_session(
        self,
        session_id: str,
        card: str = "4242424242424242",
        *,
        email: str | None = None,
        name: str | None = None,
        promotion_code: str | None = None,
        three_d_secure: str | None = None,
        exp: str | None = None,
        cvc: str | None = None,
    ) -> dict[str, Any]:
        """Pay as the hosted page does; returns the completed session, raises ``PaymentDeclined``
        (402) for declines and failed 3-D Secure, ``ControlError`` for form errors."""
        body = {"card": card, "email": email, "name": name, "promotion_code": promotion_code,
                "three_d_secure": three_d_secure, "exp": exp, "cvc": cvc}
        return self._call("POST", f"/checkout/sessions/{session_id}/pay", {k: v for k, v in body.items() if v is not None})

    # -- clock ----------------------------------------------------------------------------------

    def advance_clock(self, seconds: float) -> dict[str, Any]:
        """Move the emulator's clock forward; whatever falls due (session expiry) fires first."""
        return self._call("POST", "/clock/advance", {"seconds": seconds})

    def clock(self) -> dict[str, Any]:
        return self._call("GET", "/clock")
