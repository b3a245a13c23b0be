"""Request and Response: what the HTTP server hands to the emulator's apps and gets back."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from email.message import Message
from typing import Any
from urllib.parse import parse_qsl


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: Message
    body: bytes
    client: str = ""

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)

    def form(self) -> dict[str, str]:
        """A browser form (flat fields; the last value of a repeated name wins)."""
        try:
            return dict(parse_qsl(self.body.decode("utf-8"), keep_blank_values=True))
        except (UnicodeDecodeError, ValueError):
            return {}

    def query_args(self) -> dict[str, str]:
        return dict(parse_qsl(self.query, keep_blank_values=True))

    def json(self) -> Any:
        if not self.body.strip():
            return {}
        return json.loads(self.body.decode("utf-8"))


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    # Close the connection without answering, after waiting ``delay`` seconds: a lost answer.
    drop: bool = False
    delay: float = 0.0

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> "Response":
        body = json.dumps(payload, indent=2).encode() + b"\n"
        return cls(status, body, {"Content-Type": "application/json", **(headers or {})})

    @classmethod
    def html(cls, status: int, page: str, headers: dict[str, str] | None = None) -> "Response":
        return cls(status, page.encode(), {"Content-Type": "text/html; charset=utf-8", **(headers or {})})

    @classmethod
    def redirect(cls, location: str, status: int = 303) -> "Response":
        return cls(status, b"", {"Location": location})
