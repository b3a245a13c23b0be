"""The table of API routes; each resource module registers its handlers with ``@route``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from ..backend import Action, Backend

Handler = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    handler: Handler
    name: str


ROUTES: list[Route] = []


def route(method: str, template: str, name: str | None = None) -> Callable[[Handler], Handler]:
    """Register ``handler(backend, action, params, **path_params)``; ``template`` is the path as
    written in Stripe's spec (``/v1/customers/{customer}``), which also selects the request schema."""
    regex = "^" + re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(template)) + "$"

    def register(handler: Handler) -> Handler:
        ROUTES.append(Route(method, template, re.compile(regex), handler, name or handler.__name__))
        # Literal paths win over templated ones (/v1/customers/search before /v1/customers/{customer}).
        ROUTES.sort(key=lambda r: r.template.count("{"))
        return handler

    return register


def match(method: str, path: str) -> tuple[Route | None, dict[str, str]]:
    """The route for a request and its path parameters. Stripe answers an unknown method on a
    known path like an unknown path (404), so the caller needs nothing more."""
    for candidate in ROUTES:
        found = candidate.pattern.match(path)
        if found and candidate.method == method:
            return candidate, found.groupdict()
    return None, {}


__all__ = ["Action", "Backend", "ROUTES", "Route", "match", "route"]
