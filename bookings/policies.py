"""Cancellation policies: the terms a listing is sold under, and what they give a customer.

Terms are three facts: whether customers may cancel themselves at all; `free_hours`, how many
hours before the start free cancellation ends (the deadline); `keep_percent`, the share of the
payment the merchant keeps when a customer cancels after the deadline (100: no refund).

- Hours are elapsed time: the deadline is the start less `free_hours` real hours, so across a
  clock change the deadline's wall-clock time differs from the start's (shown in the merchant's
  zone, with the date). Cancelling exactly at the deadline is still free; a moment later is not.
- A late cancellation refunds the payment less the kept share. The kept share is rounded DOWN to
  a whole minor unit (the customer gets the fraction of a cent), so the refund is
  `paid - floor(paid * keep_percent / 100)`, less whatever was already refunded or asked for.
- Terms keeping nothing (keep_percent 0) have no deadline: cancellation is free until the start
  (`free_hours` is normalised to 0).
- Rescheduling is allowed until the deadline, cancelling until the start.

"More lenient": terms N are at least as lenient as terms O when, at every moment before the
start, a customer under N may do whatever they may under O and gets back at least as much:
O allows no self-service, or N allows it with `N.keep_percent <= O.keep_percent` and
`N.free_hours <= O.free_hours` (a later deadline). A merchant's edit reaches bookings already
made only where it is at least as lenient as their terms and differs from them; any other edit
(stricter, or better in one way and worse in another) applies to new bookings only.
"""

import datetime as dt
from dataclasses import dataclass

from django.utils import timezone

from bookings.models import Booking, CancellationPolicy, Listing


@dataclass(frozen=True)
class CancellationTerms:
    customer_may_cancel: bool
    free_hours: int = 0
    keep_percent: int = 100

    @classmethod
    def of(cls, policy: str, free_hours: int | None, keep_percent: int | None) -> "CancellationTerms":
        if policy != CancellationPolicy.CUSTOMER_MAY_CANCEL:
            return cls(customer_may_cancel=False)
        keep = int(keep_percent or 0)
        return cls(customer_may_cancel=True, free_hours=0 if keep == 0 else int(free_hours or 0), keep_percent=keep)

    @property
    def policy(self) -> str:
        return CancellationPolicy.CUSTOMER_MAY_CANCEL if self.customer_may_cancel else CancellationPolicy.NO_SELF_SERVICE

    def at_least_as_lenient_as(self, other: "CancellationTerms") -> bool:
        if not other.customer_may_cancel:
            return True
        return (
            self.customer_may_cancel
            and self.keep_percent <= other.keep_percent
            and self.free_hours <= other.free_hours
        )

    def deadline(self, starts_at: dt.datetime) -> dt.datetime | None:
        """The last moment free cancellation (and rescheduling) is open; None without self-service."""
        if not self.customer_may_cancel:
            return None
        # In UTC: arithmetic on a datetime in a zone is wall-clock arithmetic in Python, which
        # would put the deadline an hour off across a clock change.
        return starts_at.astimezone(dt.UTC) - dt.timedelta(hours=self.free_hours)

    def kept(self, amount_paid: int) -> int:
        """What the merchant keeps of a late cancellation: rounded down to a whole minor unit."""
        return amount_paid * self.keep_percent // 100


def listing_terms(listing: Listing) -> CancellationTerms:
    return CancellationTerms.of(listing.cancel_policy, listing.cancel_free_hours, listing.cancel_late_keep_percent)


def booking_terms(booking: Booking) -> CancellationTerms:
    """The terms the booking was sold under (no self-service for one sold before policies)."""
    return CancellationTerms.of(booking.policy_cancel, booking.policy_free_hours, booking.policy_keep_percent)


def booking_terms_fields(terms: CancellationTerms) -> dict:
    """The booking columns that keep `terms`."""
    return {
        "policy_cancel": terms.policy,
        "policy_free_hours": terms.free_hours if terms.customer_may_cancel else None,
        "policy_keep_percent": terms.keep_percent if terms.customer_may_cancel else None,
    }


class CancelRefusal:
    """Why a customer cannot cancel or reschedule a booking themselves: a sentence each."""

    NOT_CONFIRMED = "This booking is already cancelled, or was never paid: there is nothing to cancel."
    NO_SELF_SERVICE = "This booking cannot be cancelled or moved online: please write to the host."
    STARTED = "This booking's time has started, so it can no longer be cancelled."
    RESCHEDULE_DEADLINE = "The last moment to move this booking has passed."


@dataclass(frozen=True)
class CancelQuote:
    """What cancelling a booking now gives its customer."""

    terms: CancellationTerms
    deadline: dt.datetime | None
    free: bool  # within the free window
    refund: int  # minor units, what comes back now
    kept: int  # what the merchant keeps under the policy
    already_back: int  # refunded or being refunded before this cancellation
    refusal: str = ""

    @property
    def allowed(self) -> bool:
        return not self.refusal


def cancel_quote(booking: Booking, *, now: dt.datetime | None = None) -> CancelQuote:
    """What the customer gets back by cancelling at `now` under the booking's own terms.
    Reads `booking.refunds` (prefetched or not) for refunds already made or in flight."""
    from bookings.selectors import booking_refund_outstanding

    now = now or timezone.now()
    terms = booking_terms(booking)
    starts_at = booking.slot.starts_at
    deadline = terms.deadline(starts_at)
    paid = booking.amount_paid
    already_back = paid - booking_refund_outstanding(booking) if paid else 0
    free = _free_at(deadline, now)
    kept = 0 if free else terms.kept(paid)
    refund = max(0, paid - kept - already_back)
    refusal = ""
    if booking.status != Booking.Status.CONFIRMED:
        refusal = CancelRefusal.NOT_CONFIRMED
    elif not terms.customer_may_cancel:
        refusal = CancelRefusal.NO_SELF_SERVICE
    elif now >= starts_at:
        refusal = CancelRefusal.STARTED
    return CancelQuote(
        terms=terms, deadline=deadline, free=free, refund=refund, kept=kept, already_back=already_back, refusal=refusal
    )


def _free_at(deadline: dt.datetime | None, moment: dt.datetime) -> bool:
    return deadline is not None and moment <= deadline


def cancellation_kept(booking: Booking) -> int:
    """What the merchant keeps of a booking its customer cancelled, by the terms it was sold under
    and the moment it was cancelled (the same rule as the quote the customer confirmed). Terms
    never change once a booking has ended. Reads `booking.slot`."""
    terms = booking_terms(booking)
    if _free_at(terms.deadline(booking.slot.starts_at), booking.cancelled_by_customer_at):
        return 0
    return terms.kept(booking.amount_paid)


def reschedule_refusal(booking: Booking, *, now: dt.datetime | None = None) -> str:
    """Why the customer cannot move this booking now, or ""."""
    now = now or timezone.now()
    terms = booking_terms(booking)
    if booking.status != Booking.Status.CONFIRMED:
        return "Only a confirmed booking can be moved to another time."
    if not terms.customer_may_cancel:
        return CancelRefusal.NO_SELF_SERVICE
    if now > terms.deadline(booking.slot.starts_at):
        return CancelRefusal.RESCHEDULE_DEADLINE
    return ""
