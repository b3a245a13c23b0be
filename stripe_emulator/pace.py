"""Stripe's pace: how long each API call takes, and how many calls a key may make per second.

Both are off by default (the emulator answers in a few milliseconds and never refuses for load);
a simulation turns them on with ``--pace stripe-test`` / ``--pace stripe-live``, the finer options
of ``python -m stripe_emulator --help``, or ``POST /_emulator/pace``.

Latency is drawn per request from a log-normal distribution given by its median and its 99th
percentile (``sigma = ln(p99 / median) / z(0.99)``), one for reads (GET) and one for writes
(POST, DELETE). The request's thread sleeps before the call is handled, holding no lock: the
server answers every other request meanwhile, as Stripe does.

Rate limits follow https://docs.stripe.com/rate-limits: a global limit of requests per second per
secret key (live mode 100, test mode 25) and a limit per endpoint (a named API operation, e.g.
``POST /v1/checkout/sessions``; 25 per second unless stated otherwise). Both are token buckets
that hold one second's worth of requests and refill continuously; a refused request takes no
token. A refused request is answered at once with HTTP 429, Stripe's error shape (``type``
``invalid_request_error``, ``code`` ``rate_limit``) and a ``Stripe-Rate-Limited-Reason`` header
(``global-rate`` or ``endpoint-rate``). It carries no ``Stripe-Should-Retry: true``: Stripe's SDKs
do not retry a rate-limited request by themselves (only lock timeouts), the caller must slow down.
"""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .errors import StripeError

# z such that P(Z <= z) = 0.99 for a standard normal Z.
Z99 = 2.3263478740408408
RATE_LIMIT_MESSAGE = (
    "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits."
)
# Stripe's documented defaults (requests per second).
LIVE_RATE_LIMIT = 100
TEST_RATE_LIMIT = 25
ENDPOINT_RATE_LIMIT = 25
# What "stripe" latency means: real Stripe's typical API latency as seen from a server nearby.
STRIPE_WRITE_LATENCY = (250.0, 900.0)
STRIPE_READ_LATENCY = (120.0, 450.0)
# No single request waits longer than this many times its p99 (a log-normal tail is unbounded).
TAIL_CAP = 4.0
PRESETS = {
    "off": {"write_latency": None, "read_latency": None, "rate_limit": 0, "endpoint_rate_limit": 0},
    "stripe-test": {"write_latency": STRIPE_WRITE_LATENCY, "read_latency": STRIPE_READ_LATENCY,
                    "rate_limit": TEST_RATE_LIMIT, "endpoint_rate_limit": ENDPOINT_RATE_LIMIT},
    "stripe-live": {"write_latency": STRIPE_WRITE_LATENCY, "read_latency": STRIPE_READ_LATENCY,
                    "rate_limit": LIVE_RATE_LIMIT, "endpoint_rate_limit": ENDPOINT_RATE_LIMIT},
}


class PaceError(ValueError):
    """A pace setting that makes no sense; the message says why."""


class RateLimited(StripeError):
    status = 429
    type = "invalid_request_error"

    def __init__(self, reason: str):
        super().__init__(RATE_LIMIT_MESSAGE, code="rate_limit", headers={"Stripe-Rate-Limited-Reason": reason})


@dataclass(frozen=True)
class Latency:
    """A log-normal latency, in milliseconds, given by its median and 99th percentile."""

    median_ms: float
    p99_ms: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.median_ms) and math.isfinite(self.p99_ms)):
            raise PaceError("Latency must be finite numbers of milliseconds.")
        if self.median_ms <= 0:
            raise PaceError("The median latency must be more than 0 ms.")
        if self.p99_ms < self.median_ms:
            raise PaceError("The p99 latency cannot be below the median.")
        if self.p99_ms > 60_000:
            raise PaceError("The p99 latency can be at most 60000 ms.")

    @property
    def mu(self) -> float:
        """The mean of the latency's logarithm (ln of milliseconds)."""
        return math.log(self.median_ms)

    @property
    def sigma(self) -> float:
        """The standard deviation of the latency's logarithm."""
        return math.log(self.p99_ms / self.median_ms) / Z99

    def sample_ms(self, rng: random.Random) -> float:
        return min(math.exp(rng.gauss(self.mu, self.sigma)), self.p99_ms * TAIL_CAP)

    def describe(self) -> dict[str, float]:
        return {"median_ms": self.median_ms, "p99_ms": self.p99_ms, "mu": round(self.mu, 6),
                "sigma": round(self.sigma, 6), "cap_ms": self.p99_ms * TAIL_CAP}

    @classmethod
    def parse(cls, value: Any) -> "Latency | None":
        """``None``/``"off"``/``0``, ``"stripe"`` (writes' default), ``"MEDIAN:P99"`` in ms, or
        ``{"median_ms": .., "p99_ms": ..}``."""
        if value in (None, "off", "", 0):
            return None
        if isinstance(value, Latency):
            return value
        if isinstance(value, (tuple, list)) and len(value) == 2:
            median, p99 = value
        elif isinstance(value, dict):
            unknown = set(value) - {"median_ms", "p99_ms"}
            if unknown or "median_ms" not in value:
                raise PaceError("A latency is {\"median_ms\": .., \"p99_ms\": ..}.")
            median, p99 = value["median_ms"], value.get("p99_ms", value["median_ms"])
        elif isinstance(value, str) and ":" in value:
            median, _, p99 = value.partition(":")
        elif isinstance(value, str):
            median = p99 = value
        else:
            raise PaceError("A latency is MEDIAN:P99 in milliseconds, e.g. 250:900, or off.")
        if isinstance(median, bool) or isinstance(p99, bool):
            raise PaceError("A latency is MEDIAN:P99 in milliseconds, e.g. 250:900, or off.")
        try:
            median, p99 = float(median), float(p99)
        except (TypeError, ValueError):
            raise PaceError("A latency is MEDIAN:P99 in milliseconds, e.g. 250:900, or off.") from None
        return cls(median, p99)


def parse_rate(value: Any, name: str) -> int:
    """``off``/``0``/None, ``test`` (25), ``live`` (100) or a positive whole number per second."""
    if value in (None, "off", "", 0):
        return 0
    if value == "test":
        return TEST_RATE_LIMIT
    if value == "live":
        return LIVE_RATE_LIMIT
    if isinstance(value, bool):
        raise PaceError(f"{name} is a whole number of requests per second, test, live or off.")
    try:
        rate = int(value)
    except (TypeError, ValueError):
        raise PaceError(f"{name} is a whole number of requests per second, test, live or off.") from None
    if rate != float(value) or rate < 0 or rate > 100_000:
        raise PaceError(f"{name} is a whole number of requests per second between 0 and 100000.")
    return rate


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class Pace:
    """The emulator's pace settings and counters; thread-safe."""

    write_latency: Latency | None = None
    read_latency: Latency | None = None
    rate_limit: int = 0
    endpoint_rate_limit: int = 0
    seed: int | None = None
    _rng: random.Random = field(default_factory=random.Random, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _buckets: dict[tuple[str, str], _Bucket] = field(default_factory=dict, repr=False)
    _counts: dict[str, float] = field(default_factory=dict, repr=False)
    _initial: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.seed is not None:
            self._rng.seed(self.seed)
        self._counts = self._zero_counts()

    @staticmethod
    def _zero_counts() -> dict[str, float]:
        return {"delayed": 0, "delayed_ms_total": 0.0, "rate_limited": 0, "rate_limited_global": 0,
                "rate_limited_endpoint": 0}

    @property
    def active(self) -> bool:
        return bool(self.write_latency or self.read_latency or self.rate_limit or self.endpoint_rate_limit)

    def configure(self, settings: dict[str, Any]) -> None:
        """Change some settings (the others stay); a ``preset`` is applied first. Raises PaceError
        and then changes nothing."""
        unknown = set(settings) - {"preset", "write_latency", "read_latency", "rate_limit", "endpoint_rate_limit",
                                   "seed"}
        if unknown:
            raise PaceError(f"Unknown pace setting(s): {', '.join(sorted(unknown))}.")
        merged: dict[str, Any] = {}
        if "preset" in settings:
            if settings["preset"] not in PRESETS:
                raise PaceError(f"preset is one of {', '.join(PRESETS)}.")
            merged.update(PRESETS[settings["preset"]])
        merged.update({k: v for k, v in settings.items() if k != "preset"})
        new = {
            "write_latency": Latency.parse(merged["write_latency"]) if "write_latency" in merged else self.write_latency,
            "read_latency": Latency.parse(merged["read_latency"]) if "read_latency" in merged else self.read_latency,
            "rate_limit": parse_rate(merged["rate_limit"], "rate_limit") if "rate_limit" in merged else self.rate_limit,
            "endpoint_rate_limit": (parse_rate(merged["endpoint_rate_limit"], "endpoint_rate_limit")
                                    if "endpoint_rate_limit" in merged else self.endpoint_rate_limit),
        }
        seed = merged.get("seed", None)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise PaceError("seed is a whole number.")
        with self._lock:
            for name, value in new.items():
                setattr(self, name, value)
            if "seed" in merged:
                self.seed = seed
                self._rng.seed(seed)
            self._buckets.clear()
            self._counts = self._zero_counts()

    def remember_as_initial(self) -> None:
        """What ``restore`` (the control API's reset) goes back to: the emulator's start options."""
        self._initial = {"write_latency": self.write_latency, "read_latency": self.read_latency,
                         "rate_limit": self.rate_limit, "endpoint_rate_limit": self.endpoint_rate_limit,
                         "seed": self.seed}

    def restore(self) -> None:
        self.configure(dict(self._initial) or dict(PRESETS["off"]))

    def describe(self) -> dict[str, Any]:
        with self._lock:
            counts = dict(self._counts)
        counts["delayed_ms_total"] = round(counts["delayed_ms_total"], 3)
        return {
            "active": self.active,
            "write_latency": self.write_latency.describe() if self.write_latency else None,
            "read_latency": self.read_latency.describe() if self.read_latency else None,
            "rate_limit": self.rate_limit,
            "endpoint_rate_limit": self.endpoint_rate_limit,
            "seed": self.seed,
            "counts": counts,
        }

    # -- per request ----------------------------------------------------------------------

    def admit(self, key: str, endpoint: str, now: float | None = None) -> None:
        """Take a token of the key's global bucket and of its endpoint's, or raise RateLimited
        (taking none)."""
        if not (self.rate_limit or self.endpoint_rate_limit):
            return
        now = time.monotonic() if now is None else now
        with self._lock:
            checks = []
            if self.rate_limit:
                checks.append(("global-rate", self._refilled((key, ""), self.rate_limit, now)))
            if self.endpoint_rate_limit:
                checks.append(("endpoint-rate", self._refilled((key, endpoint), self.endpoint_rate_limit, now)))
            for reason, bucket in checks:
                if bucket.tokens < 1:
                    self._counts["rate_limited"] += 1
                    self._counts["rate_limited_global" if reason == "global-rate" else "rate_limited_endpoint"] += 1
                    raise RateLimited(reason)
            for _, bucket in checks:
                bucket.tokens -= 1

    def _refilled(self, name: tuple[str, str], rate: int, now: float) -> _Bucket:
        bucket = self._buckets.get(name)
        if bucket is None:
            bucket = self._buckets[name] = _Bucket(tokens=float(rate), updated=now)
        else:
            bucket.tokens = min(float(rate), bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
        return bucket

    def delay_for(self, method: str) -> float:
        """Seconds this request should take (0 when latency is off), counted."""
        latency = self.read_latency if method in ("GET", "HEAD") else self.write_latency
        if latency is None:
            return 0.0
        with self._lock:
            delay_ms = latency.sample_ms(self._rng)
            self._counts["delayed"] += 1
            self._counts["delayed_ms_total"] += delay_ms
        return delay_ms / 1000.0
