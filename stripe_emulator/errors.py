"""Errors answered in Stripe's error shape: ``{"error": {"type", "code", "message", "param", ...}}``."""

from __future__ import annotations

from typing import Any

DOC_URL_BASE = "https://stripe.com/docs/error-codes/"


class StripeError(Exception):
    """An error that becomes an HTTP answer in Stripe's error shape."""

    status = 400
    type = "invalid_request_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        if status is not None:
            self.status = status
        self.extra = extra or {}
        self.headers = headers or {}

    def body(self, request_log_url: str | None = None) -> dict[str, Any]:
        error: dict[str, Any] = {}
        if self.code:
            error["code"] = self.code
            error["doc_url"] = DOC_URL_BASE + self.code.replace("_", "-")
        error.update(self.extra)
        error["message"] = self.message
        if self.param is not None:
            error["param"] = self.param
        if request_log_url:
            error["request_log_url"] = request_log_url
        error["type"] = self.type
        return {"error": dict(sorted(error.items()))}


class InvalidRequestError(StripeError):
    status = 400
    type = "invalid_request_error"


class AuthenticationError(StripeError):
    status = 401
    type = "invalid_request_error"


class ResourceMissing(InvalidRequestError):
    """404 with Stripe's "No such <object>: '<id>'" message."""

    status = 404

    def __init__(self, object_name: str, object_id: str, *, param: str = "id"):
        super().__init__(f"No such {object_name}: '{object_id}'", param=param, code="resource_missing")


class PermissionDenied(StripeError):
    """403, as Stripe answers a ``Stripe-Account`` the key may not act for."""

    status = 403
    type = "invalid_request_error"


class CardError(StripeError):
    status = 402
    type = "card_error"


class IdempotencyError(StripeError):
    status = 400
    type = "idempotency_error"


class ApiError(StripeError):
    status = 500
    type = "api_error"


class UnrecognizedUrl(InvalidRequestError):
    status = 404

    def __init__(self, method: str, path: str):
        super().__init__(
            f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs "
            "or we can help at https://support.stripe.com/."
        )


class NotEmulated(InvalidRequestError):
    """A parameter Stripe accepts but whose behaviour the emulator does not reproduce.

    Refusing it is safer than silently ignoring it: a test would otherwise pass against the
    emulator and fail against Stripe."""

    def __init__(self, param: str, detail: str | None = None):
        message = f"The Stripe emulator does not emulate `{param}`"
        message += f" ({detail})." if detail else "."
        message += " Remove it, or run this against Stripe test mode."
        super().__init__(message, param=param)
