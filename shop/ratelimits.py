"""Abuse limits, counted in Django's cache by django-ratelimit.

With several web processes the cache must be shared (set REDIS_URL); with the default
local-memory cache each process counts on its own.
"""

import ipaddress

from django.conf import settings
from django.shortcuts import render
from django_ratelimit import ALL
from django_ratelimit.core import get_usage


def client_ip(request) -> str:
    """The client's address: REMOTE_ADDR, or the address the trusted proxies in front of us saw."""
    address = request.META.get("REMOTE_ADDR", "")
    hops = settings.TRUSTED_PROXY_COUNT
    if hops:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(forwarded) >= hops:
            address = forwarded[-hops]
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return "0.0.0.0"


def _usage(request, *, group: str, key, rate: str, increment: bool) -> dict | None:
    return get_usage(request, group=group, key=key, rate=rate, method=ALL, increment=increment)


def _ip_key(group, request) -> str:
    return client_ip(request)


def hit(request, *, group: str, rate: str, key=_ip_key) -> bool:
    """Count one attempt; True when the limit is now exceeded."""
    usage = _usage(request, group=group, key=key, rate=rate, increment=True)
    return bool(usage and usage["should_limit"])


def exceeded(request, *, group: str, rate: str, key=_ip_key) -> bool:
    """Whether the limit is already used up, without counting an attempt."""
    usage = _usage(request, group=group, key=key, rate=rate, increment=False)
    return bool(usage and usage["count"] >= usage["limit"])


def retry_after_seconds(request, *, group: str, rate: str, key=_ip_key) -> int:
    usage = _usage(request, group=group, key=key, rate=rate, increment=False)
    return max(1, int(usage["time_left"])) if usage else 60


def checkout_limited(request, *, email: str) -> bool:
    """Opening checkouts costs Stripe calls: limited per address and per customer e-mail."""
    limits = settings.RATE_LIMITS
    by_ip = hit(request, group="checkout-ip", rate=limits["checkout_per_ip"])
    by_email = hit(request, group="checkout-email", rate=limits["checkout_per_email"], key=lambda g, r: email.lower())
    return by_ip or by_email


def receipts_link_limited(request, *, email: str) -> tuple[bool, bool]:
    """Asking for a sign-in link sends an e-mail: limited per address and per (normalised) e-mail.
    Returns (by address, by e-mail); both are counted on every request."""
    limits = settings.RATE_LIMITS
    by_ip = hit(request, group="receipts-link-ip", rate=limits["receipts_link_per_ip"])
    by_email = hit(request, group="receipts-link-email", rate=limits["receipts_link_per_email"], key=lambda g, r: email)
    return by_ip, by_email


def token_guessing_blocked(request) -> bool:
    return exceeded(request, group="token-miss", rate=settings.RATE_LIMITS["token_misses_per_ip"])


def token_miss_record(request) -> None:
    hit(request, group="token-miss", rate=settings.RATE_LIMITS["token_misses_per_ip"])


def too_many_requests(request, *, what: str, retry_after: int = 600):
    response = render(request, "429.html", {"what": what, "retry_minutes": max(1, round(retry_after / 60))}, status=429)
    response["Retry-After"] = str(retry_after)
    return response
