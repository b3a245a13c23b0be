"""The links a waitlist e-mail carries: signed with SECRET_KEY over the entry, never stored.

An offer link opens the page where the customer pays for the seats offered; a leave link takes
them off the waitlist. A link whose signature does not check out names no entry at all, so a
forged or mangled one shows nothing of anyone. Whether an offer can still be taken up is the
entry's state (its hold), not the link's age.
"""

from django.core import signing

from bookings.models import WaitlistEntry

_OFFER_SALT = "bookings.waitlist.offer"
_LEAVE_SALT = "bookings.waitlist.leave"
# Longer than any signed value these make: anything longer is not looked at.
TOKEN_MAX_LENGTH = 200


def waitlist_offer_token(entry: WaitlistEntry) -> str:
    # An entry is offered seats once: its link names that one offer.
    return signing.dumps(entry.pk, salt=_OFFER_SALT, compress=False)


def waitlist_leave_token(entry: WaitlistEntry) -> str:
    return signing.dumps(entry.pk, salt=_LEAVE_SALT, compress=False)


def _loads(token: str, salt: str):
    if not token or len(token) > TOKEN_MAX_LENGTH or not token.isascii():
        return None
    try:
        return signing.loads(token, salt=salt)
    except signing.BadSignature:
        return None


def waitlist_entry_by_offer_token(token: str) -> WaitlistEntry | None:
    """The entry an offer link names, with what its page shows; None for a link not ours."""
    value = _loads(token, _OFFER_SALT)
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    return (
        WaitlistEntry.objects.select_related("slot__listing__merchant", "offer_hold", "booking")
        .filter(pk=value, offer_hold__isnull=False)
        .first()
    )


def waitlist_entry_by_leave_token(token: str) -> WaitlistEntry | None:
    value = _loads(token, _LEAVE_SALT)
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    return WaitlistEntry.objects.select_related("slot__listing__merchant", "offer_hold").filter(pk=value).first()
