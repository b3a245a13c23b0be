"""Abuse limits, counted in Django's cache by django-ratelimit: the only place they are decided.

Every limit counts a client by `client_network` (IPv6 grouped by /64). Sign-ins are limited in
the authentication backend, so every form that signs in (the merchant's and the admin's) goes
through the same limits.

With several web processes the cache must be shared (set REDIS_URL); with the default
local-memory cache each process counts on its own.
"""

import ipaddress

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.cache import caches
from django.core.exceptions import ValidationError
from django.shortcuts import render
from django_ratelimit import ALL
from django_ratelimit.core import _get_window, _make_cache_key, _split_rate, get_usage

# A subscriber is usually given a whole /64: counting single IPv6 addresses would let one
# client escape every limit by changing address.
IPV6_PREFIX_LENGTH = 64


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


def client_network(request) -> str:
    """Whom an abuse limit counts: the client's IPv4 address, or the /64 network of its IPv6 one."""
    address = ipaddress.ip_address(client_ip(request))
    if address.version == 6:
        if address.ipv4_mapped:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/{IPV6_PREFIX_LENGTH}", strict=False))
    return str(address)


def _usage(request, *, group: str, key, rate: str, increment: bool) -> dict | None:
    return get_usage(request, group=group, key=key, rate=rate, method=ALL, increment=increment)


def _ip_key(group, request) -> str:
    return client_network(request)


def hit(request, *, group: str, rate: str, key=_ip_key) -> bool:
    """Count one attempt; True when the limit is now exceeded."""
    usage = _usage(request, group=group, key=key, rate=rate, increment=True)
    return bool(usage and usage["should_limit"])


def exceeded(request, *, group: str, rate: str, key=_ip_key) -> bool:
    """Whether the limit is already used up, without counting an attempt: one read of the count
    django-ratelimit keeps, under its own key (its `get_usage` would first write an empty count,
    a second round trip to Redis on every booking page and poll)."""
    if not getattr(settings, "RATELIMIT_ENABLE", True):
        return False
    limit, period = _split_rate(rate)
    value = key(group, request)
    counted = _make_cache_key(group, _get_window(value, period), rate, value, ALL)
    return caches[settings.RATELIMIT_USE_CACHE].get(counted, 0) >= limit


def retry_after_seconds(request, *, group: str, rate: str, key=_ip_key) -> int:
    usage = _usage(request, group=group, key=key, rate=rate, increment=False)
    return max(1, int(usage["time_left"])) if usage else 60


def checkout_limited(request, *, email: str) -> bool:
    """Opening checkouts costs Stripe calls: limited per address, and more tightly per customer
    e-mail from one address. Never per e-mail alone, or a stranger typing someone's e-mail
    could stop that person from booking."""
    limits = settings.RATE_LIMITS
    by_ip = hit(request, group="checkout-ip", rate=limits["checkout_per_ip"])
    by_email = hit(
        request,
        group="checkout-email",
        rate=limits["checkout_per_email"],
        key=lambda group, request: f"{email.lower()}\n{client_network(request)}",
    )
    return by_ip or by_email


def waitlist_limited(request, *, email: str) -> bool:
    """Joining a waitlist sends an e-mail: limited like checkout starts, per address and more
    tightly per e-mail from one address (never per e-mail alone)."""
    limits = settings.RATE_LIMITS
    by_ip = hit(request, group="waitlist-ip", rate=limits["waitlist_per_ip"])
    by_email = hit(
        request,
        group="waitlist-email",
        rate=limits["waitlist_per_email"],
        key=lambda group, request: f"{email.lower()}\n{client_network(request)}",
    )
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


def password_reset_limited(request) -> bool:
    """Reset e-mails are limited per address, so that nobody floods a merchant's inbox."""
    return hit(request, group="password-reset-ip", rate=settings.RATE_LIMITS["signin_per_ip"])


def password_reset_retry_after(request) -> int:
    return retry_after_seconds(request, group="password-reset-ip", rate=settings.RATE_LIMITS["signin_per_ip"])


class SignInLimited(ValidationError):
    """Too many failed sign-ins: a form error on whichever form signs in, naming the wait."""

    code = "signin_limited"

    def __init__(self, retry_after: int):
        minutes = max(1, round(retry_after / 60))
        super().__init__(
            "Too many failed sign-ins for this account from your connection. Wait %(minutes)s minute(s) "
            "and try again, or reset your password.",
            code=self.code,
            params={"minutes": minutes, "retry_after": retry_after},
        )


def _signin_limits(request, username: str) -> list[dict]:
    """Failures are counted per address (loosely) and per account from one address (tightly),
    as django-axes does with [username, ip]: an attacker's failures never lock the owner out
    from another connection. The name is normalised as Django signs in with it (NFKC, and
    case-sensitive, as the user is looked up by `get_by_natural_key`)."""
    limits = settings.RATE_LIMITS
    account = get_user_model().normalize_username(username or "")
    return [
        {"group": "signin-ip", "rate": limits["signin_per_ip"], "key": _ip_key},
        {
            "group": "signin-account",
            "rate": limits["signin_per_username"],
            "key": lambda group, request: f"{account}\n{client_network(request)}",
        },
    ]


class SignInLimitedBackend(ModelBackend):
    """Django's ModelBackend behind the sign-in limits. Once a limit is used up, even the right
    password is refused with `SignInLimited` (a ValidationError, so the sign-in form shows it),
    before the password is checked; each failed attempt counts against every limit."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:  # not a sign-in from the web (a management command)
            return super().authenticate(request, username=username, password=password, **kwargs)
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        limits = _signin_limits(request, username)
        used_up = [limit for limit in limits if exceeded(request, **limit)]
        if used_up:
            raise SignInLimited(max(retry_after_seconds(request, **limit) for limit in used_up))
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None:
            for limit in limits:
                hit(request, **limit)
        return user


def signin_limited_seconds(form) -> int | None:
    """How long to wait, when the sign-in form was refused by `SignInLimitedBackend`."""
    for error in form.non_field_errors().as_data():
        if error.code == SignInLimited.code:
            return error.params["retry_after"]
    return None


def too_many_requests(request, *, what: str, retry_after: int = 600):
    response = render(request, "429.html", {"what": what, "retry_minutes": max(1, round(retry_after / 60))}, status=429)
    response["Retry-After"] = str(retry_after)
    return response
