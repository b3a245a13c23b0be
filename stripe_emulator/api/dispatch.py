"""Stripe's API conventions around every call: authentication, ``Stripe-Version``, parameter
parsing and validation, ``Idempotency-Key`` replays, ``Request-Id``, errors in Stripe's shape,
and the refund faults tests ask for.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
import threading
import time
from collections import deque
from typing import Any

from ..backend import Action, Backend
from ..errors import (
    ApiError,
    AuthenticationError,
    IdempotencyError,
    InvalidRequestError,
    PermissionDenied,
    StripeError,
    UnrecognizedUrl,
)
from ..ids import new_id
from ..params import MAX_BODY_BYTES, ParamError, parse_form
from ..web import Request, Response
from . import (  # noqa: F401
    accounts,
    billing_portal,
    checkout,
    coupons,
    customers,
    events,
    payment_objects,
    products,
    refunds,
)
from .routing import Route, match

log = logging.getLogger("stripe_emulator.api")

_KEY = re.compile(r"^(sk|rk)_test_[A-Za-z0-9_]{1,247}$")
_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(\.[a-z]+)?$")
NO_KEY_MESSAGE = (
    "You did not provide an API key. You need to provide your API key in the Authorization header, using "
    "Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication "
    "for details, or we can help at https://support.stripe.com/."
)
FORM_ONLY_MESSAGE = (
    "Invalid request (check that your POST content type is application/x-www-form-urlencoded). "
    "If you have any questions, we can help at https://support.stripe.com/."
)
SERVER_ERROR_MESSAGE = (
    "Sorry, something went wrong. We've already been notified of the problem, but if you need any help, "
    "you can reach us at https://support.stripe.com/contact."
)
# Headers of the first answer that a replay repeats (a replay gets its own Request-Id).
_REPLAYED_HEADERS = ("Content-Type", "Stripe-Version")


def mask_key(key: str) -> str:
    """How Stripe shows a key in an error: the prefix and the last four characters."""
    prefix = key[:8] if key.startswith(("sk_", "rk_", "pk_")) else key[:3]
    return f"{prefix}{'*' * max(4, len(key) - len(prefix) - 4)}{key[-4:] if len(key) > 12 else ''}"


def api_key_of(request: Request) -> str:
    authorization = (request.header("Authorization") or "").strip()
    if not authorization:
        raise AuthenticationError(NO_KEY_MESSAGE)
    scheme, _, credentials = authorization.partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer":
        key = credentials
    elif scheme.lower() == "basic":
        try:
            key = base64.b64decode(credentials, validate=True).decode("utf-8").split(":", 1)[0]
        except (binascii.Error, UnicodeDecodeError):
            raise AuthenticationError(NO_KEY_MESSAGE) from None
    else:
        raise AuthenticationError(NO_KEY_MESSAGE)
    if not key:
        raise AuthenticationError(NO_KEY_MESSAGE)
    if not _KEY.match(key):
        raise AuthenticationError(f"Invalid API Key provided: {mask_key(key)}")
    return key


class ApiApp:
    def __init__(self, backend: Backend):
        self.backend = backend
        self.recent: deque[dict[str, Any]] = deque(maxlen=500)
        self.in_flight: dict[str, dict[str, Any]] = {}
        self._recent_lock = threading.Lock()

    # -- request log ----------------------------------------------------------------------

    def _record(self, entry: dict[str, Any]) -> None:
        with self._recent_lock:
            self.recent.append(entry)

    def requests_in_flight(self) -> list[dict[str, Any]]:
        with self._recent_lock:
            return list(self.in_flight.values())

    def request_log(self, request_id: str | None = None) -> list[dict[str, Any]]:
        with self._recent_lock:
            entries = list(self.recent)
        if request_id is not None:
            return [entry for entry in entries if entry["id"] == request_id]
        return list(reversed(entries))

    def log_url(self, request_id: str) -> str:
        return f"{self.backend.public_url}/_emulator/requests/{request_id}"

    # -- handling -------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        request_id = new_id("req")
        version = request.header("Stripe-Version") or self.backend.default_api_version
        headers = {"Request-Id": request_id, "Stripe-Version": version}
        idempotency_key = request.header("Idempotency-Key") if request.method == "POST" else None
        with self._recent_lock:
            self.in_flight[request_id] = {"id": request_id, "method": request.method, "path": request.path,
                                          "idempotency_key": idempotency_key, "since": time.time()}
        try:
            response = self._handle(request, request_id, version, idempotency_key)
        except StripeError as error:
            response = self._error(error, request_id)
        except Exception:  # a bug must still answer in Stripe's shape, and be visible
            log.exception("unexpected error handling %s %s", request.method, request.path)
            response = self._error(ApiError(SERVER_ERROR_MESSAGE), request_id)
        finally:
            with self._recent_lock:
                pace_delay_ms = (self.in_flight.pop(request_id, None) or {}).get("pace_delay_ms", 0.0)
        for name, value in headers.items():
            response.headers.setdefault(name, value)
        if idempotency_key:
            response.headers.setdefault("Idempotency-Key", idempotency_key)
        response.headers.setdefault("Access-Control-Allow-Origin", "*")
        response.headers.setdefault("Cache-Control", "no-cache, no-store")
        log.info("%s %s -> %s%s (%.1f ms) %s", request.method, request.path,
                 response.status if not response.drop else "dropped",
                 " replayed" if response.headers.get("Idempotent-Replayed") else "",
                 (time.perf_counter() - started) * 1000, request_id)
        self._record({
            "id": request_id,
            "method": request.method,
            "path": request.path,
            "status": response.status if not response.drop else None,
            "outcome": "connection dropped" if response.drop else None,
            "idempotency_key": idempotency_key,
            "replayed": response.headers.get("Idempotent-Replayed") == "true",
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            "pace_delay_ms": pace_delay_ms,
            "at": time.time(),
            "error": _error_summary(response),
        })
        return response

    def _error(self, error: StripeError, request_id: str) -> Response:
        response = Response.json(error.status, error.body(self.log_url(request_id)))
        response.headers.update(error.headers)
        if error.status == 401:
            response.headers["WWW-Authenticate"] = 'Basic realm="Stripe"'
        return response

    def _handle(self, request: Request, request_id: str, version: str, idempotency_key: str | None) -> Response:
        api_key_of(request)
        if not _VERSION.match(version):
            raise InvalidRequestError(f"Invalid Stripe API version: {version}", param="Stripe-Version")
        route, path_params = match(request.method, request.path)
        if route is None:
            raise UnrecognizedUrl(request.method, request.path)
        key = api_key_of(request)
        pace = self.backend.pace
        if pace.active:
            # Refused at once when over the key's rate; otherwise the request takes Stripe's time,
            # in this request's own thread and under no lock (other requests go on meanwhile).
            pace.admit(key, f"{route.method} {route.template}")
            delay = pace.delay_for(request.method)
            with self._recent_lock:
                if request_id in self.in_flight:
                    self.in_flight[request_id]["pace_delay_ms"] = round(delay * 1000, 3)
            if delay > 0:
                self.backend.stopping.wait(delay)
        account = self._connected_account(request, key)
        with self.backend.store.scoped(account):
            return self._handle_on(request, route, path_params, request_id, version, idempotency_key, account)

    def _connected_account(self, request: Request, key: str) -> str:
        """The account a request acts on: ``""`` (the platform) without ``Stripe-Account``, else
        that connected account, refused as Stripe refuses it when it is not (or no longer)
        connected to the platform."""
        header = request.header("Stripe-Account")
        if header is None:
            return ""
        header = header.strip()
        with self.backend.store.scoped(""):
            account = self.backend.store.get(header, "account") if header else None
        if account is None or self.backend.store.get_internal(header).get("deauthorized"):
            raise PermissionDenied(
                f"The provided key '{mask_key(key)}' does not have access to account '{header}' (or that account "
                "does not exist). Application access may have been revoked.",
                code="account_invalid",
            )
        return header

    def _handle_on(self, request: Request, route: Route, path_params: dict[str, str], request_id: str, version: str,
                   idempotency_key: str | None, account: str) -> Response:
        raw = self._raw_params(request)
        params = self.backend.coerce(raw, route.method.lower(), route.template)
        action = Action(api_version=version, request_id=request_id, idempotency_key=idempotency_key,
                        key_hint=mask_key(api_key_of(request)))
        if request.method != "POST" or not idempotency_key:
            return self._execute(route, action, params, path_params, idempotency_key=None)
        if len(idempotency_key) > 255:
            raise InvalidRequestError(
                f"Idempotency keys can be up to 255 characters long; the key you provided is {len(idempotency_key)} characters.",
                param="Idempotency-Key",
            )
        fingerprint = _fingerprint(request.method, request.path, raw)
        # Keys are remembered per account, as Stripe does: the same key on two accounts is two keys.
        stored_key = f"{account}|{idempotency_key}" if account else idempotency_key
        replay = self._reserve(stored_key, fingerprint, request_id, endpoint=request.path, shown_key=idempotency_key)
        if replay is not None:
            return replay
        return self._execute(route, action, params, path_params, idempotency_key=stored_key)

    def _raw_params(self, request: Request) -> dict[str, Any]:
        raw = parse_form(request.query) if request.query else {}
        if request.method in ("POST", "DELETE") and request.body:
            content_type = (request.header("Content-Type") or "application/x-www-form-urlencoded").split(";")[0].strip().lower()
            if content_type != "application/x-www-form-urlencoded":
                raise InvalidRequestError(FORM_ONLY_MESSAGE)
            if len(request.body) > MAX_BODY_BYTES:
                raise InvalidRequestError("Request body too large.")
            body = parse_form(request.body)
            for key in body:
                if key in raw:
                    raise ParamError(f"Received duplicate parameter: {key} (both in the URL and the body).", param=key)
            raw.update(body)
        return raw

    # -- idempotency ------------------------------------------------------------------------

    def _reserve(self, key: str, fingerprint: str, request_id: str, *, endpoint: str,
                 shown_key: str) -> Response | None:
        """Claim the key for this request, or answer as Stripe does when it is taken: replay a
        finished request made with the same parameters, refuse other parameters, and answer 409
        while the first request is still running."""
        store = self.backend.store
        with store.transaction():
            row = store.query_one("SELECT * FROM idempotency WHERE key = ?", (key,))
            if row is None:
                store.execute(
                    "INSERT INTO idempotency (key, fingerprint, state, request_id, created, endpoint) "
                    "VALUES (?, ?, 'in_flight', ?, ?, ?)",
                    (key, fingerprint, request_id, self.backend.clock.now(), endpoint),
                )
                return None
        if row["endpoint"] and row["endpoint"] != endpoint:
            raise IdempotencyError(
                "Keys for idempotent requests can only be used for the same endpoint they were first used for "
                f"('{row['endpoint']}' vs '{endpoint}'). Try using a key other than '{shown_key}' if you meant to "
                "execute a different request."
            )
        if row["fingerprint"] != fingerprint:
            raise IdempotencyError(
                "Keys for idempotent requests can only be used with the same parameters they were first used with. "
                f"Try using a key other than '{shown_key}' if you meant to execute a different request."
            )
        if row["state"] == "in_flight":
            raise IdempotencyError(
                "There is currently another in-progress request using this Idempotent Key (that probably means you "
                f"submitted twice, and the other request is still going through): {shown_key}. Please try again later.",
                code="idempotency_key_in_use",
                status=409,
            )
        headers = json.loads(row["headers"])
        headers.update({"Idempotent-Replayed": "true", "Original-Request": row["request_id"]})
        return Response(row["status"], bytes(row["body"]), headers)

    def _release(self, key: str) -> None:
        with self.backend.store.transaction():
            self.backend.store.execute("DELETE FROM idempotency WHERE key = ? AND state = 'in_flight'", (key,))

    def _save(self, key: str, response: Response) -> None:
        headers = {name: response.headers[name] for name in _REPLAYED_HEADERS if name in response.headers}
        self.backend.store.execute(
            "UPDATE idempotency SET state = 'done', status = ?, headers = ?, body = ? WHERE key = ?",
            (response.status, json.dumps(headers), response.body, key),
        )

    # -- execution --------------------------------------------------------------------------

    def _execute(
        self,
        route: Route,
        action: Action,
        params: dict[str, Any],
        path_params: dict[str, str],
        *,
        idempotency_key: str | None,
    ) -> Response:
        store = self.backend.store
        fault = self.backend.faults.take_refund_fault() if route.name == "create_refund" else None
        if fault is not None and fault.mode == "timeout":
            # The server is busy with the request (a retry meanwhile gets 409), then gives up
            # without doing anything and without answering; the key is free again afterwards.
            self.backend.stopping.wait(fault.seconds)
            if idempotency_key:
                self._release(idempotency_key)
            return Response(0, drop=True)
        version_header = {"Stripe-Version": action.api_version}
        if fault is not None and fault.mode == "error":
            # Nothing is created. As on Stripe, the endpoint had begun: the 500 is saved under the
            # Idempotency-Key and replayed to every retry with that key; only a new key runs afresh.
            response = self._error(ApiError(SERVER_ERROR_MESSAGE), action.request_id or "")
            response.headers.update(version_header)
            if idempotency_key:
                with store.transaction():
                    self._save(idempotency_key, response)
            return response
        try:
            with store.transaction():
                payload = route.handler(self.backend, action, params, **path_params)
                response = Response.json(200, payload, version_header)
                if idempotency_key:
                    self._save(idempotency_key, response)
        except StripeError as error:
            response = self._error(error, action.request_id or "")
            response.headers.update(version_header)
            if idempotency_key:
                # The endpoint ran and refused: Stripe remembers that answer too.
                with store.transaction():
                    self._save(idempotency_key, response)
        except Exception:
            if idempotency_key:
                self._release(idempotency_key)
            raise
        if fault is not None and fault.mode == "lost_response":
            return Response(0, drop=True)
        return response


def _fingerprint(method: str, path: str, raw: dict[str, Any]) -> str:
    canonical = json.dumps([method, path, raw], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _error_summary(response: Response) -> str | None:
    if response.status < 400 or response.drop:
        return None
    try:
        return json.loads(response.body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return None
