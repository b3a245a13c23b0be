"""Seats held while a customer pays: one count per slot, enforced by the database.

A slot's seats are split three ways: sold, held (`Slot.seats_held`, the sum of its open holds)
and free (`Slot.seats_left`), and sold + held + free = capacity with sold never negative (a check
constraint, the last guard). Taking a hold moves seats from free to held with one conditional
update, so two checkouts can never hold the same last seat. A hold ends exactly once, claimed by
a conditional update of its row: converted (held to sold, never free in between), or released
or lapsed (held to free). Callers lock the booking first, then the hold and the slot, in the
order of every other booking transaction.
"""

import datetime as dt
import logging

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from bookings.models import Booking, Hold, HoldEnd, HoldKind, Listing, Slot
from bookings.services.waitlist import seats_free_and_pass_on
from common.logs import log_event

log = logging.getLogger("bookings.holds")


def hold_minutes(listing: Listing) -> int:
    """How long a checkout of this listing holds its seats: the listing's own length, else HOLD_MINUTES."""
    return listing.hold_minutes or settings.HOLD_MINUTES


def hold_take(*, booking: Booking, expires_at: dt.datetime) -> Hold | None:
    """Hold the booking's seats until `expires_at`, inside the caller's transaction. Returns
    None, changing nothing, when fewer seats are free or the time can no longer be sold."""
    taken = Slot.objects.filter(
        pk=booking.slot_id, cancelled_at__isnull=True, is_on_sale=True, seats_left__gte=booking.quantity
    ).update(seats_left=F("seats_left") - booking.quantity, seats_held=F("seats_held") + booking.quantity)
    if not taken:
        return None
    hold = Hold.objects.create(
        slot_id=booking.slot_id, booking=booking, kind=HoldKind.CHECKOUT, quantity=booking.quantity, expires_at=expires_at
    )
    log_event(log, "hold_taken", hold=hold.pk, booking=booking.pk, slot=booking.slot_id, seats=hold.quantity)
    return hold


def hold_extend_to(*, booking: Booking, expires_at: dt.datetime) -> None:
    """The open hold of a booking ends when its checkout session does (Stripe may round it later)."""
    Hold.objects.filter(booking=booking, ended_at__isnull=True).update(expires_at=expires_at)


def _open_hold(booking: Booking) -> Hold | None:
    return Hold.objects.filter(booking=booking, ended_at__isnull=True).first()


# A caller that has already read the booking's open hold (under the booking's lock) passes it,
# so that it is not read again; by default it is read here.
READ_IT = object()


def hold_convert(*, booking: Booking, hold: Hold | None | object = READ_IT) -> bool:
    """Turn the booking's open hold into a sale, in the caller's transaction (booking locked):
    its seats go from held to sold and are never free in between. False, changing nothing, when
    the booking holds nothing or its time was cancelled (the caller then releases)."""
    if hold is READ_IT:
        hold = _open_hold(booking)
    if hold is None:
        return False
    sold = Slot.objects.filter(pk=hold.slot_id, cancelled_at__isnull=True, seats_held__gte=hold.quantity).update(
        seats_held=F("seats_held") - hold.quantity
    )
    if not sold:
        return False
    if not Hold.objects.filter(pk=hold.pk, ended_at__isnull=True).update(ended_at=timezone.now(), end=HoldEnd.CONVERTED):
        raise RuntimeError(f"Hold {hold.pk} ended while its booking was locked.")
    log_event(log, "hold_ended", hold=hold.pk, booking=booking.pk, slot=hold.slot_id, end=HoldEnd.CONVERTED)
    return True


def hold_take_over_offer(*, booking: Booking, offer: Hold, expires_at: dt.datetime) -> Hold | None:
    """The seats of a waitlist offer become the booking's checkout hold, in the caller's
    transaction (the offer's entry locked): the offer ends converted and a checkout hold of the
    same seats opens, so the slot's counts do not move and the seats are never free in between.
    None, changing nothing, when the offer had already ended."""
    if not Hold.objects.filter(pk=offer.pk, kind=HoldKind.OFFER, ended_at__isnull=True).update(
        ended_at=timezone.now(), end=HoldEnd.CONVERTED
    ):
        return None
    hold = Hold.objects.create(
        slot_id=offer.slot_id, booking=booking, kind=HoldKind.CHECKOUT, quantity=offer.quantity, expires_at=expires_at
    )
    log_event(log, "hold_taken_over_offer", hold=hold.pk, offer=offer.pk, booking=booking.pk, slot=offer.slot_id)
    return hold


def hold_back_to_offer(*, booking: Booking, expires_at: dt.datetime) -> Hold | None:
    """A checkout opened from a waitlist offer could not start: its seats go back to being an
    offer (returned) held until `expires_at`, in the caller's transaction (booking and entry
    locked); the slot's counts do not move. None when the booking held nothing."""
    hold = Hold.objects.filter(booking=booking, ended_at__isnull=True).first()
    if hold is None or not Hold.objects.filter(pk=hold.pk, ended_at__isnull=True).update(
        ended_at=timezone.now(), end=HoldEnd.RELEASED
    ):
        return None
    return Hold.objects.create(slot_id=hold.slot_id, kind=HoldKind.OFFER, quantity=hold.quantity, expires_at=expires_at)


def hold_release(
    *, booking: Booking, now: dt.datetime | None = None, pass_on: bool = True, hold: Hold | None | object = READ_IT
) -> str | None:
    """End the booking's open hold and free its seats at once, in the caller's transaction
    (booking locked). The end is `lapsed` when the hold's time was up, else `released`. With
    `pass_on` the freed seats are offered at once to the time's waitlist (`waitlist_offers_make`).
    Returns the end recorded, or None when the booking held nothing."""
    now = now or timezone.now()
    if hold is READ_IT:
        hold = _open_hold(booking)
    if hold is None:
        return None
    end = HoldEnd.LAPSED if hold.expires_at <= now else HoldEnd.RELEASED
    if not Hold.objects.filter(pk=hold.pk, ended_at__isnull=True).update(ended_at=now, end=end):
        return None
    log_event(log, "hold_ended", hold=hold.pk, booking=booking.pk, slot=hold.slot_id, end=end)
    if pass_on:
        seats_free_and_pass_on(slot_id=hold.slot_id, quantity=hold.quantity, held=True)
    else:
        Slot.objects.filter(pk=hold.slot_id).update(
            seats_left=F("seats_left") + hold.quantity, seats_held=F("seats_held") - hold.quantity
        )
    return end
