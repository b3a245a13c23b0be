"""The control API under ``/_emulator/`` (JSON in and out, no API key): what tests use to steer
the emulator (reset, clock, webhook faults, refund faults, paying without a browser) and to
observe it (events, deliveries, requests), plus a plain HTML overview at ``/_emulator/``."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any, Callable

from . import connect, payments
from .api.dispatch import ApiApp
from .backend import Backend
from .errors import InvalidRequestError, ResourceMissing, StripeError
from .html import date, e, page
from .money import format_amount
from .pace import PaceError
from .web import Request, Response

REFUND_FAULT_MODES = ("error", "timeout", "lost_response")


class ControlError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


Handler = Callable[..., Response]


class ControlApp:
    def __init__(self, backend: Backend, api: ApiApp):
        self.backend = backend
        self.api = api
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = [
            ("GET", re.compile(r"^/_emulator/?$"), self.overview),
            ("POST", re.compile(r"^/_emulator/reset$"), self.reset),
            ("GET", re.compile(r"^/_emulator/config$"), self.get_config),
            ("POST", re.compile(r"^/_emulator/config$"), self.set_config),
            ("GET", re.compile(r"^/_emulator/pace$"), self.get_pace),
            ("POST", re.compile(r"^/_emulator/pace$"), self.set_pace),
            ("GET", re.compile(r"^/_emulator/webhooks$"), self.webhook_state),
            ("POST", re.compile(r"^/_emulator/webhooks/hold$"), self.hold),
            ("POST", re.compile(r"^/_emulator/webhooks/release$"), self.release),
            ("POST", re.compile(r"^/_emulator/webhooks/drop$"), self.drop),
            ("POST", re.compile(r"^/_emulator/webhooks/duplicate$"), self.duplicate),
            ("POST", re.compile(r"^/_emulator/webhooks/reorder$"), self.reorder),
            ("POST", re.compile(r"^/_emulator/webhooks/wait$"), self.wait),
            ("GET", re.compile(r"^/_emulator/deliveries$"), self.deliveries),
            ("GET", re.compile(r"^/_emulator/events$"), self.events),
            ("GET", re.compile(r"^/_emulator/requests$"), self.requests),
            ("GET", re.compile(r"^/_emulator/requests/(?P<request_id>req_[A-Za-z0-9]+)$"), self.request_detail),
            ("POST", re.compile(r"^/_emulator/refunds/fail$"), self.fail_refunds),
            ("POST", re.compile(r"^/_emulator/checkout/sessions/(?P<session_id>[^/]+)/expire$"), self.expire),
            ("POST", re.compile(r"^/_emulator/checkout/sessions/(?P<session_id>[^/]+)/pay$"), self.pay),
            ("POST", re.compile(r"^/_emulator/accounts/(?P<account_id>acct_[A-Za-z0-9]+)/deauthorize$"), self.deauthorize),
            ("POST", re.compile(r"^/_emulator/clock/advance$"), self.advance_clock),
            ("GET", re.compile(r"^/_emulator/clock$"), self.clock),
        ]

    def handle(self, request: Request) -> Response:
        path_matched = False
        for method, pattern, handler in self.routes:
            found = pattern.match(request.path)
            if not found:
                continue
            path_matched = True
            if method != request.method:
                continue
            try:
                body = request.json() if request.method == "POST" else {}
            except ValueError as error:
                return _error(400, f"The body is not valid JSON: {error}")
            if not isinstance(body, dict):
                return _error(400, "The body must be a JSON object.")
            try:
                target = next(iter(found.groupdict().values()), None)
                with self.backend.store.scoped_to_object(target):
                    return handler(request, body, **found.groupdict())
            except ControlError as error:
                return _error(error.status, error.message)
        if path_matched:
            return _error(405, f"{request.method} is not allowed on {request.path}.")
        return _error(404, f"No control route {request.method} {request.path}.")

    # -- state ----------------------------------------------------------------------------

    def reset(self, request: Request, body: dict[str, Any]) -> Response:
        self.backend.reset()
        return Response.json(200, {"reset": True})

    def _config(self) -> dict[str, Any]:
        return {
            "forward_to": self.backend.forward_to,
            "webhook_secret": self.backend.webhook_secret,
            "connect_forward_to": self.backend.connect_forward_to,
            "forward_events": sorted(self.backend.forward_events) if self.backend.forward_events is not None else None,
            "connect_webhook_secret": self.backend.connect_webhook_secret,
            "account_api_version": self.backend.account_api_version,
            "public_url": self.backend.public_url,
            "default_api_version": self.backend.default_api_version,
            "db": self.backend.store.path,
            "tuning": {name: getattr(self.backend.tuning, name) for name in vars(self.backend.tuning)},
        }

    def get_config(self, request: Request, body: dict[str, Any]) -> Response:
        return Response.json(200, self._config())

    def set_config(self, request: Request, body: dict[str, Any]) -> Response:
        unknown = set(body) - {"forward_to", "connect_forward_to", "account_api_version"}
        if unknown:
            raise ControlError(400, "Only forward_to, connect_forward_to and account_api_version can be changed; "
                                    f"got {', '.join(sorted(unknown))}.")
        for name in ("forward_to", "connect_forward_to"):
            if name in body:
                url = body[name]
                if url is not None and (not isinstance(url, str) or not re.match(r"^https?://", url)):
                    raise ControlError(400, f"{name} must be an http(s) URL or null.")
        if "account_api_version" in body:
            version = body["account_api_version"]
            if not isinstance(version, str) or not re.match(r"^\d{4}-\d{2}-\d{2}(\.[a-z]+)?$", version):
                raise ControlError(400, "account_api_version must look like 2025-03-31.basil.")
            self.backend.account_api_version = version
        if "forward_to" in body:
            self.backend.forward_to = body["forward_to"] or None
        if "connect_forward_to" in body:
            self.backend.connect_forward_to = body["connect_forward_to"] or None
        return Response.json(200, self._config())

    # -- pace -------------------------------------------------------------------------------

    def get_pace(self, request: Request, body: dict[str, Any]) -> Response:
        """Stripe's latency and rate limits as set, their distribution parameters and counters."""
        return Response.json(200, self.backend.pace.describe())

    def set_pace(self, request: Request, body: dict[str, Any]) -> Response:
        """Change some of ``preset``, ``write_latency``, ``read_latency`` (``{"median_ms", "p99_ms"}``,
        ``"MEDIAN:P99"`` or null), ``rate_limit``, ``endpoint_rate_limit`` (per second, ``"test"``,
        ``"live"`` or 0) and ``seed``; the buckets and counters start afresh."""
        try:
            self.backend.pace.configure(body)
        except PaceError as error:
            raise ControlError(400, str(error)) from None
        return Response.json(200, self.backend.pace.describe())

    # -- webhooks ---------------------------------------------------------------------------

    def _webhook_state(self) -> dict[str, Any]:
        return {**self.backend.dispatcher.fault_state(), **self.backend.dispatcher.counts()}

    def webhook_state(self, request: Request, body: dict[str, Any]) -> Response:
        return Response.json(200, self._webhook_state())

    def hold(self, request: Request, body: dict[str, Any]) -> Response:
        self.backend.dispatcher.hold()
        return Response.json(200, self._webhook_state())

    def release(self, request: Request, body: dict[str, Any]) -> Response:
        self.backend.dispatcher.release()
        return Response.json(200, self._webhook_state())

    def drop(self, request: Request, body: dict[str, Any]) -> Response:
        self.backend.dispatcher.drop_next(_count(body))
        return Response.json(200, self._webhook_state())

    def duplicate(self, request: Request, body: dict[str, Any]) -> Response:
        self.backend.dispatcher.duplicate_next(_count(body))
        return Response.json(200, self._webhook_state())

    def reorder(self, request: Request, body: dict[str, Any]) -> Response:
        enabled = body.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ControlError(400, "enabled must be true or false.")
        self.backend.dispatcher.set_reorder(enabled)
        return Response.json(200, self._webhook_state())

    def wait(self, request: Request, body: dict[str, Any]) -> Response:
        timeout = body.get("timeout", 10)
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 0 <= timeout <= 600:
            raise ControlError(400, "timeout must be a number of seconds between 0 and 600.")
        return Response.json(200, self.backend.dispatcher.wait_idle(float(timeout)))

    def deliveries(self, request: Request, body: dict[str, Any]) -> Response:
        args = request.query_args()
        where, values = [], []
        if args.get("event_id"):
            where.append("a.event_id = ?")
            values.append(args["event_id"])
        if args.get("type"):
            where.append("a.event_type = ?")
            values.append(args["type"])
        limit = _limit(args, 1000)
        if args.get("target"):
            where.append("d.target = ?")
            values.append(args["target"])
        sql = ("SELECT a.*, d.endpoint, d.target, d.state, d.created_at AS queued_at FROM delivery_attempts a "
               "JOIN deliveries d ON d.id = a.delivery_id"
               + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY a.id DESC LIMIT ?")
        rows = self.backend.store.query(sql, [*values, limit])
        attempts = [
            {
                "delivery_id": row["delivery_id"],
                "event_id": row["event_id"],
                "event_type": row["event_type"],
                "attempt": row["attempt"],
                "status": row["status"],
                "error": row["error"],
                "duration_ms": round(row["duration_ms"], 2),
                "at": row["at"],
                "queued_at": row["queued_at"],
                "endpoint": row["endpoint"],
                "target": row["target"],
                "delivery_state": row["state"],
            }
            for row in rows
        ]
        return Response.json(200, {"data": attempts, **self.backend.dispatcher.counts()})

    def events(self, request: Request, body: dict[str, Any]) -> Response:
        args = request.query_args()
        where, values = ["type = 'event'"], []
        if args.get("type"):
            where.append("json_extract(data, '$.type') = ?")
            values.append(args["type"])
        order = "DESC"
        if args.get("after"):
            # A reader following the events: only those made after this one, oldest first.
            after = self.backend.store.query_one("SELECT seq FROM objects WHERE id = ? AND type = 'event'", [args["after"]])
            if after is None:
                raise ControlError(404, f"No event {args['after']}.")
            where.append("seq > ?")
            values.append(after["seq"])
            order = "ASC"
        rows = self.backend.store.query(
            f"SELECT data FROM objects WHERE {' AND '.join(where)} ORDER BY seq {order} LIMIT ?", [*values, _limit(args, 1000)]
        )
        return Response.json(200, {"data": [json.loads(row["data"]) for row in rows]})

    def requests(self, request: Request, body: dict[str, Any]) -> Response:
        return Response.json(200, {"data": self.api.request_log(), "in_flight": self.api.requests_in_flight()})

    def request_detail(self, request: Request, body: dict[str, Any], request_id: str) -> Response:
        entries = self.api.request_log(request_id)
        if not entries:
            raise ControlError(404, f"The emulator does not remember request {request_id} (it keeps the last 500).")
        return Response.json(200, entries[0])

    # -- refunds ----------------------------------------------------------------------------

    def fail_refunds(self, request: Request, body: dict[str, Any]) -> Response:
        mode = body.get("mode", "error")
        if mode not in REFUND_FAULT_MODES:
            raise ControlError(400, f"mode must be one of {', '.join(REFUND_FAULT_MODES)}.")
        seconds = body.get("seconds", 1.0 if mode == "timeout" else 0.0)
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not 0 <= seconds <= 600:
            raise ControlError(400, "seconds must be a number between 0 and 600.")
        count = _count(body)
        self.backend.faults.add_refund_faults(count, mode, float(seconds))
        return Response.json(200, {"pending_refund_faults": len(self.backend.faults.refund_faults)})

    # -- connect ----------------------------------------------------------------------------

    def deauthorize(self, request: Request, body: dict[str, Any], account_id: str) -> Response:
        """The merchant disconnects the platform from their account (as from their Stripe
        dashboard): ``account.application.deauthorized`` goes to the Connect endpoint, and the
        account's ``Stripe-Account`` is refused from then on."""
        store = self.backend.store
        with store.transaction(), store.scoped(connect.PLATFORM):
            account = store.get(account_id, "account")
            if account is None:
                raise ControlError(404, f"No such account: '{account_id}'")
            if store.get_internal(account_id).get("deauthorized"):
                raise ControlError(400, f"Account {account_id} is already disconnected from the platform.")
            event = connect.deauthorize(self.backend, self.backend.system_action(self.backend.account_api_version), account)
        return Response.json(200, event)

    # -- checkout ---------------------------------------------------------------------------

    def expire(self, request: Request, body: dict[str, Any], session_id: str) -> Response:
        store = self.backend.store
        with store.transaction():
            session = store.get(session_id, "checkout.session")
            if session is None:
                raise ControlError(404, f"No such checkout.session: '{session_id}'")
            if session["status"] != "open":
                raise ControlError(
                    400,
                    'Only Checkout Sessions with a status in ["open"] can be expired. '
                    f"This Checkout Session has a status of `{session['status']}`.",
                )
            api_version = store.get_internal(session_id).get("api_version")
            session = payments.expire_session(self.backend, self.backend.system_action(api_version), session)
        return Response.json(200, session)

    def pay(self, request: Request, body: dict[str, Any], session_id: str) -> Response:
        allowed = {"card", "email", "name", "promotion_code", "three_d_secure", "exp", "cvc"}
        unknown = set(body) - allowed
        if unknown:
            raise ControlError(400, f"Unknown field(s): {', '.join(sorted(unknown))}. Known: {', '.join(sorted(allowed))}.")
        three_d_secure = body.get("three_d_secure", "complete")
        if three_d_secure not in ("complete", "fail"):
            raise ControlError(400, "three_d_secure must be complete or fail.")
        if self.backend.store.get(session_id, "checkout.session") is None:
            return _stripe_error(ResourceMissing("checkout.session", session_id, param="session"))
        card = str(body.get("card", "4242424242424242"))
        year = datetime.fromtimestamp(self.backend.clock.now(), tz=timezone.utc).year
        expiry = str(body.get("exp", f"12/{(year + 5) % 100:02d}"))
        digits = card.replace(" ", "")
        cvc = str(body.get("cvc", "1234" if digits.startswith(("34", "37")) else "123"))
        outcome = payments.pay(
            self.backend,
            session_id,
            email=body.get("email"),
            name=body.get("name"),
            card_number=card,
            expiry=expiry,
            cvc=cvc,
            promotion_code=body.get("promotion_code"),
            fallback_email="customer@example.com",
        )
        if outcome.kind == "requires_action":
            outcome = payments.authenticate(self.backend, session_id, three_d_secure)
        if outcome.kind == "completed":
            return Response.json(200, outcome.session)
        if outcome.kind == "declined":
            assert outcome.decline is not None and outcome.payment_method is not None
            error = payments.card_error_body(outcome.decline, charge=outcome.charge, payment_method=outcome.payment_method,
                                             intent=outcome.payment_intent)
            return Response.json(402, {"error": error})
        if outcome.kind == "authentication_failed":
            assert outcome.payment_intent is not None
            error = dict(outcome.payment_intent["last_payment_error"])
            error["payment_intent"] = outcome.payment_intent
            return Response.json(402, {"error": error})
        if outcome.kind == "not_open":
            status = outcome.session.get("status", "unknown")
            return _stripe_error(InvalidRequestError(
                f"This Checkout Session is not open (its status is {status}), so it cannot be paid.", param="session"))
        field = {"email": "email", "cardNumber": "card", "cardExpiry": "exp", "cardCvc": "cvc",
                 "promotionCode": "promotion_code"}.get(outcome.field or "", outcome.field)
        return _stripe_error(InvalidRequestError(outcome.message or "The payment could not be made.", param=field))

    # -- clock ------------------------------------------------------------------------------

    def _clock(self) -> dict[str, Any]:
        now = self.backend.clock.now()
        return {"now": int(now), "offset": self.backend.clock.offset,
                "iso": datetime.fromtimestamp(now, tz=timezone.utc).isoformat()}

    def advance_clock(self, request: Request, body: dict[str, Any]) -> Response:
        seconds = body.get("seconds")
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
            raise ControlError(400, "seconds must be a non-negative number.")
        self.backend.clock.advance(float(seconds))
        fired = self.backend.timers.fire_due()
        return Response.json(200, {**self._clock(), "timers_fired": fired})

    def clock(self, request: Request, body: dict[str, Any]) -> Response:
        return Response.json(200, self._clock())

    # -- overview page ----------------------------------------------------------------------

    def overview(self, request: Request, body: dict[str, Any]) -> Response:
        store = self.backend.store
        counts = self.backend.dispatcher.counts()
        faults = self.backend.dispatcher.fault_state()
        attempts = store.query(
            "SELECT a.*, d.state FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id ORDER BY a.id DESC LIMIT 100"
        )
        events = store.query("SELECT data FROM objects WHERE type = 'event' ORDER BY seq DESC LIMIT 50")
        sessions = store.query("SELECT data FROM objects WHERE type = 'checkout.session' ORDER BY seq DESC LIMIT 20")
        attempt_rows = "".join(
            f'<tr><td class="Mono">{e(_time(row["at"]))}</td><td class="Mono">{e(row["event_id"])}</td><td>{e(row["event_type"])}</td>'
            f'<td>{row["attempt"]}</td><td>{_status_badge(row["status"], row["error"])}</td><td>{row["duration_ms"]:.0f} ms</td></tr>'
            for row in attempts
        ) or '<tr><td colspan="6" class="Muted">No deliveries yet.</td></tr>'
        event_rows = "".join(
            f'<tr><td class="Mono">{e(date(ev["created"], with_time=True))}</td><td class="Mono">{e(ev["id"])}</td>'
            f'<td>{e(ev["type"])}</td><td class="Mono">{e(ev["data"]["object"].get("id"))}</td><td>{ev["pending_webhooks"]}</td></tr>'
            for ev in (json.loads(row["data"]) for row in events)
        ) or '<tr><td colspan="5" class="Muted">No events yet.</td></tr>'
        session_rows = "".join(
            f'<tr><td class="Mono"><a href="/c/pay/{e(s["id"])}">{e(s["id"][:24])}…</a></td><td>{e(s["status"])}</td>'
            f'<td>{e(s["payment_status"])}</td><td>{e(format_amount(s["amount_total"], s["currency"]))}</td>'
            f'<td>{e(date(s["created"], with_time=True))}</td></tr>'
            for s in (json.loads(row["data"]) for row in sessions)
        ) or '<tr><td colspan="5" class="Muted">No Checkout Sessions yet.</td></tr>'
        request_rows = "".join(
            f'<tr><td class="Mono">{e(_time(r["at"]))}</td><td class="Mono">{e(r["id"])}</td><td>{e(r["method"])} {e(r["path"])}</td>'
            f'<td>{e(r["status"] if r["status"] is not None else r["outcome"])}{" (replayed)" if r["replayed"] else ""}</td>'
            f'<td>{r["duration_ms"]:.1f} ms</td></tr>'
            for r in self.api.request_log()[:50]
        ) or '<tr><td colspan="5" class="Muted">No API requests yet.</td></tr>'
        body_html = f"""
<div class="Page">
  <h1>Stripe emulator</h1>
  <p class="Muted">API at <span class="Mono">{e(self.backend.public_url)}</span> &middot; events forwarded to
     <span class="Mono">{e(self.backend.forward_to or "nowhere (no --forward-to)")}</span> &middot; clock
     <span class="Mono">{e(self._clock()["iso"])}</span> (offset {self.backend.clock.offset:g} s)</p>
  <p>Deliveries: {counts["queued"]} queued, {counts["in_flight"]} in flight, {counts["succeeded"]} delivered,
     {counts["failed"]} given up, {counts["dropped"]} dropped.
     {"<strong>Held.</strong>" if faults["held"] else ""} {"Reordering." if faults["reorder"] else ""}</p>
  <h2>Webhook delivery attempts</h2>
  <table class="Table"><thead><tr><th>Time</th><th>Event</th><th>Type</th><th>Attempt</th><th>Result</th><th>Duration</th></tr></thead>
  <tbody>{attempt_rows}</tbody></table>
  <h2>Events</h2>
  <table class="Table"><thead><tr><th>Created</th><th>Event</th><th>Type</th><th>Object</th><th>Pending</th></tr></thead>
  <tbody>{event_rows}</tbody></table>
  <h2>Checkout Sessions</h2>
  <table class="Table"><thead><tr><th>Session</th><th>Status</th><th>Payment</th><th>Total</th><th>Created</th></tr></thead>
  <tbody>{session_rows}</tbody></table>
  <h2>API requests</h2>
  <table class="Table"><thead><tr><th>Time</th><th>Request</th><th>Call</th><th>Status</th><th>Duration</th></tr></thead>
  <tbody>{request_rows}</tbody></table>
</div>"""
        return Response.html(200, page("Stripe emulator", body_html))


def _count(body: dict[str, Any]) -> int:
    count = body.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or count < 0 or count > 100_000:
        raise ControlError(400, "count must be a whole number between 0 and 100000.")
    return count


def _limit(args: dict[str, str], default: int) -> int:
    try:
        return max(1, min(10_000, int(args.get("limit", default))))
    except ValueError:
        raise ControlError(400, "limit must be a whole number.") from None


def _error(status: int, message: str) -> Response:
    return Response.json(status, {"error": {"type": "invalid_request_error", "message": message}})


def _stripe_error(error: StripeError) -> Response:
    return Response.json(error.status, error.body())


def _time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%H:%M:%S.%f")[:-3]


def _status_badge(status: int | None, error: str | None) -> str:
    if status is not None and 200 <= status < 300:
        return f'<span class="Status Status--ok">{status}</span>'
    if status is not None:
        return f'<span class="Status Status--bad">{status}</span>'
    return f'<span class="Status Status--warn">{e(error or "no answer")}</span>'
