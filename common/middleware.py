"""Response headers Django 5.2 does not set by itself."""

from functools import cache
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpResponseBadRequest
from django.utils.cache import patch_cache_control

# The merchant's pages, the sign-in and password pages, the CSV export and the admin: never kept
# by a shared cache or on disk.
PRIVATE_NAMESPACES = frozenset({"merchant", "accounts", "admin"})


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def stripe_hosted_origins() -> list[str]:
    """Where our forms may send the browser on: Stripe's hosted Checkout and portal, or the emulator's."""
    if settings.STRIPE_API_BASE:
        return [origin for origin in {_origin(settings.STRIPE_API_BASE), *settings.STRIPE_HOSTED_ORIGINS} if origin]
    return ["https://checkout.stripe.com", "https://billing.stripe.com", *settings.STRIPE_HOSTED_ORIGINS]


@cache
def _policy_for(api_base: str, hosted_origins: tuple[str, ...]) -> str:
    # No inline script anywhere: htmx is a static file, configured by a <meta> tag with eval
    # and its injected indicator <style> both turned off.
    form_targets = " ".join(["'self'", *stripe_hosted_origins()])
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "font-src 'self'",
            "object-src 'none'",
            "base-uri 'self'",
            f"form-action {form_targets}",
            "frame-ancestors 'none'",
        ]
    )


def content_security_policy() -> str:
    return _policy_for(settings.STRIPE_API_BASE, tuple(settings.STRIPE_HOSTED_ORIGINS))


class SecurityHeadersMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", content_security_policy())
        response.headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
        response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        match = getattr(request, "resolver_match", None)
        if match is not None and PRIVATE_NAMESPACES.intersection(match.namespaces):
            patch_cache_control(response, private=True, no_store=True)
        return response


class MalformedRequestMiddleware:
    """A Content-Length that is not a number is refused with a sentence (Django would fail on it
    with a 500 when reading the body; gunicorn refuses it too, the development server does not)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        length = request.META.get("CONTENT_LENGTH", "")
        if length and not (length.isascii() and length.isdigit()):
            return HttpResponseBadRequest("The Content-Length header is not a number.", content_type="text/plain")
        return self.get_response(request)
