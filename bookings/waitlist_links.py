"""The links a waitlist e-mail carries: signed with SECRET_KEY over the entry, never stored.

An offer link opens the page where the customer pays for the seats offered; a leave link takes
them off the waitlist. A link whose signature does not check out names no entry at all, so a
forged or mangled one shows nothing of anyone. Whether an offer can still be taken up is the
entry's state (its hold), not the link's age.
"""

from common.signed_ids import signed_id, signed_id_read

from bookings.models import WaitlistEntry

_OFFER_SALT = "bookings.waitlist.offer"
_LEAVE_SALT = "bookings.waitlist.leave"


def waitlist_offer_token(entry: WaitlistEntry) -> str:
    # An entry is offered seats once: its link names that one offer.
    return signed_id(entry.pk, salt=_OFFER_SALT)


def waitlist_leave_token(entry: WaitlistEntry) -> str:
    return signed_id(entry.pk, salt=_LEAVE_SALT)


def waitlist_entry_by_offer_token(token: str) -> WaitlistEntry | None:
    """The entry an offer link names, with what its page shows; None for a link not ours."""
    value = signed_id_read(token, salt=_OFFER_SALT)
    if value is None:
        return None
    return (
        WaitlistEntry.objects.select_related("slot__listing__merchant", "offer_hold", "booking")
        .filter(pk=value, offer_hold__isnull=False)
        .first()
    )


def waitlist_entry_by_leave_token(token: str) -> WaitlistEntry | None:
    value = signed_id_read(token, salt=_LEAVE_SALT)
    if value is None:
        return None
    return WaitlistEntry.objects.select_related("slot__listing__merchant", "offer_hold").filter(pk=value).first()
