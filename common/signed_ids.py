"""Row ids in addresses, signed so that nobody can name another person's row."""

import datetime as dt

from django.core import signing

# A token longer than any we make is not ours: refused before the signature is computed.
SIGNED_ID_MAX_LENGTH = 200


def signed_id(pk: int, *, salt: str) -> str:
    return signing.dumps(pk, salt=salt, compress=False)


def signed_id_read(token: str, *, salt: str, max_age: int | dt.timedelta | None = None) -> int | None:
    """The id a token made by `signed_id` with this salt names; None for a token not ours
    (tampered, another salt, too old, too long, not ASCII, or not naming an integer)."""
    if not token or len(token) > SIGNED_ID_MAX_LENGTH or not token.isascii():
        return None
    try:
        value = signing.loads(token, salt=salt, max_age=max_age)
    except signing.BadSignature:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    return value
