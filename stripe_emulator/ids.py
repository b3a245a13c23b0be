"""Object ids with Stripe's prefixes and lengths (``cus_`` + 14, ``pi_3`` + 23, ``cs_test_a1`` + 58, ...)."""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.ascii_letters + string.digits


def _random(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


# prefix → (leading characters after the prefix, random length), as Stripe's ids look today.
_SHAPES = {
    "cs_test": ("a1", 58),
    "pi": ("3", 23),
    "ch": ("3", 23),
    "re": ("3", 23),
    "pm": ("1", 23),
    "in": ("1", 23),
    "il": ("1", 23),
    "li": ("1", 23),
    "evt": ("1", 23),
    "price": ("1", 23),
    "promo": ("1", 23),
    "bps": ("1", 23),
    "bpc": ("1", 23),
    "fee": ("1", 23),
    "fr": ("1", 23),
    "acct": ("1", 15),
    "cus": ("", 14),
    "prod": ("", 14),
    "req": ("", 14),
    "di": ("", 14),
    "src": ("", 14),
}


def new_id(prefix: str) -> str:
    lead, length = _SHAPES[prefix]
    return f"{prefix}_{lead}{_random(length)}"


def new_coupon_id() -> str:
    return "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(8))


def new_secret(length: int = 24) -> str:
    return _random(length)


def new_webhook_secret() -> str:
    return "whsec_" + secrets.token_hex(32)


def new_receipt_number() -> str:
    return f"{secrets.randbelow(9000) + 1000}-{secrets.randbelow(9000) + 1000}"


def new_fingerprint(card_number: str) -> str:
    # Stripe's fingerprint is stable per card number within an account.
    import hashlib

    digest = hashlib.sha256(("stripe-emulator:" + card_number).encode()).digest()
    return "".join(_ALPHABET[b % len(_ALPHABET)] for b in digest[:16])
