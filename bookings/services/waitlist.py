"""The waitlist of a sold-out time: joining, offers of freed seats, lapses, leaving.

Seats freed on a time (a hold released or lapsed, a refund or cancellation giving seats back, a
capacity increase, an offer not taken up) are offered, in the same transaction that freed them,
to the first waiting customers whose seat count fits (`waitlist_offers_make`). An offer is a Hold
of kind `offer`: its seats move from free to held with the conditional update every hold uses,
so offers, checkout holds and sales share one count and no seat is ever promised twice. The
slot's row is locked while offers are made, so two transactions freeing seats of one time make
their offers one after the other. An offer not taken up within WAITLIST_OFFER_MINUTES lapses
(`waitlist_offers_lapse`, run every minute by reconcile) and its seats pass to the next in line.
Each offer e-mail is sent once, after commit (claimed by `offer_email_sent_at`).

Locks are taken in one order: a booking, then a waitlist entry, then the slot, then the
entries waiting on it.
"""

import datetime as dt
import logging
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from bookings import selectors, tasks
from bookings.background import enqueue_after_commit
from bookings.models import Hold, HoldEnd, HoldKind, Slot, WaitlistEntry, WaitlistStatus
from bookings.services.transitions import BookingError
from common.logs import log_event

log = logging.getLogger("bookings.waitlist")

W = WaitlistStatus


def _closed_refusal(slot: Slot, now: dt.datetime) -> str:
    if slot.is_cancelled or not slot.is_on_sale or not slot.listing.is_active:
        return "This time is no longer on sale. Please pick another one."
    if slot.starts_at <= now:
        return "This time has already started. Please pick a later one."
    return ""


def waitlist_join_refusal(slot: Slot, quantity: int, *, now: dt.datetime | None = None) -> str:
    """Why a customer cannot join this time's waitlist for `quantity` seats, or "" when they can:
    only a time on sale with fewer seats free than they need has a waitlist."""
    refusal = _closed_refusal(slot, now or timezone.now())
    if refusal:
        return refusal
    if slot.seats_left >= quantity:
        seats = "seat is" if slot.seats_left == 1 else "seats are"
        return f"{slot.seats_left} {seats} free at this time: book them now instead of waiting."
    return ""


def waitlist_join(*, slot: Slot, quantity: int, customer_email: str, customer_name: str) -> WaitlistEntry:
    """Put a customer in line for `quantity` seats of a time that has fewer free, once per e-mail
    address and time. The slot is locked while they join, so seats freed at that moment are
    either offered to them at once or were free (and the join is refused: book instead).
    Raises BookingError with the sentence to show. The e-mail confirming it goes after commit."""
    max_quantity = settings.BOOKING_MAX_QUANTITY
    if not 1 <= quantity <= max_quantity:
        raise BookingError(f"Choose between 1 and {max_quantity} seats.", field="quantity")
    from bookings.customers import customer_email_normalise  # customers imports the services: not at load

    email = customer_email_normalise(customer_email)
    try:
        with transaction.atomic():
            slot = Slot.objects.select_for_update().select_related("listing").get(pk=slot.pk)
            if refusal := waitlist_join_refusal(slot, quantity):
                raise BookingError(refusal)
            existing = WaitlistEntry.objects.filter(slot=slot, customer_email=email, status__in=[W.WAITING, W.OFFERED]).first()
            if existing is not None:
                raise BookingError(_already_in_line(existing))
            entry = WaitlistEntry.objects.create(
                slot=slot, quantity=quantity, customer_email=email, customer_name=customer_name
            )
            enqueue_after_commit(tasks.waitlist_joined_send, entry_id=entry.pk)
    except IntegrityError:
        raise BookingError("You are already on the waitlist for this time. Check your e-mail.") from None
    log_event(log, "waitlist_joined", entry=entry.pk, slot=slot.pk, seats=quantity)
    return entry


def _already_in_line(entry: WaitlistEntry) -> str:
    seats = f"{entry.quantity} seat{'s' if entry.quantity != 1 else ''}"
    if entry.status == W.OFFERED:
        return f"Seats are already offered to you at this time ({seats}): follow the link in the e-mail we sent you."
    return (
        f"You are already on the waitlist for this time ({seats}). We will e-mail you when seats free up; "
        "the e-mail confirming your place has a link to leave the waitlist."
    )


def waitlist_offers_make(*, slot_id: int, now: dt.datetime | None = None) -> list[WaitlistEntry]:
    """Offer the free seats of a time to its first waiting customers whose count fits, in line
    order, inside the caller's transaction (or one of its own). Each offer holds its seats for
    WAITLIST_OFFER_MINUTES with a conditional update, as a checkout hold does, so no seat is
    offered twice nor while it is held or sold. The offer e-mails go after commit. Returns the
    entries offered seats."""
    now = now or timezone.now()
    offered: list[WaitlistEntry] = []
    # Nobody waiting (most seats freed): nothing to lock. A customer joining meanwhile locks the
    # slot and finds the seats free (its join is refused: book instead), or waits for the caller's
    # lock on it when the caller has just freed them, and then finds them free as well.
    if not WaitlistEntry.objects.filter(slot_id=slot_id, status=W.WAITING).exists():
        return offered
    with transaction.atomic():
        # The slot's row only (`of`): on PostgreSQL a plain FOR UPDATE would lock the joined
        # listing as well, and a customer's cancel (booking, then here) would deadlock with a
        # policy edit (listing, then its bookings).
        slot = Slot.objects.select_for_update(of=("self",)).select_related("listing").filter(pk=slot_id).first()
        if slot is None or slot.seats_left == 0 or _closed_refusal(slot, now):
            return offered
        free = slot.seats_left
        expires_at = now + timedelta(minutes=settings.WAITLIST_OFFER_MINUTES)
        line = WaitlistEntry.objects.filter(slot_id=slot_id, status=W.WAITING, quantity__lte=free).order_by("created_at", "pk")
        for entry in line:
            if entry.quantity > free:
                continue
            taken = Slot.objects.filter(pk=slot_id, seats_left__gte=entry.quantity).update(
                seats_left=F("seats_left") - entry.quantity, seats_held=F("seats_held") + entry.quantity
            )
            if not taken:
                break
            hold = Hold.objects.create(slot_id=slot_id, kind=HoldKind.OFFER, quantity=entry.quantity, expires_at=expires_at)
            if not WaitlistEntry.objects.filter(pk=entry.pk, status=W.WAITING).update(
                status=W.OFFERED, offer_hold=hold, offered_at=now
            ):
                # The customer left the line a moment ago: the seats go back, to the next in line.
                hold.delete()
                Slot.objects.filter(pk=slot_id).update(
                    seats_left=F("seats_left") + entry.quantity, seats_held=F("seats_held") - entry.quantity
                )
                continue
            free -= entry.quantity
            entry.status, entry.offer_hold, entry.offered_at = W.OFFERED, hold, now
            offered.append(entry)
            enqueue_after_commit(tasks.waitlist_offer_send, entry_id=entry.pk)
            log_event(log, "waitlist_offered", entry=entry.pk, slot=slot_id, hold=hold.pk, seats=entry.quantity)
            if free == 0:
                break
    return offered


def seats_free_and_pass_on(*, slot_id: int, quantity: int, held: bool) -> None:
    """Give `quantity` seats of a time back (from held when `held`, else from sold), and offer
    them at once to its waitlist, in the caller's transaction."""
    moved = {"seats_left": F("seats_left") + quantity}
    if held:
        moved["seats_held"] = F("seats_held") - quantity
    Slot.objects.filter(pk=slot_id).update(**moved)
    waitlist_offers_make(slot_id=slot_id)


def _offer_end(entry: WaitlistEntry, *, status: str, now: dt.datetime, pass_on: bool = True) -> None:
    """End a locked entry's open offer: its seats are free again and, with `pass_on`, offered to
    the next in line in the same transaction."""
    hold = entry.offer_hold
    end = HoldEnd.LAPSED if status == W.LAPSED else HoldEnd.RELEASED
    ended = Hold.objects.filter(pk=hold.pk, ended_at__isnull=True).update(ended_at=now, end=end)
    WaitlistEntry.objects.filter(pk=entry.pk).update(status=status, ended_at=now)
    entry.status, entry.ended_at = status, now
    if ended:
        Slot.objects.filter(pk=hold.slot_id).update(
            seats_left=F("seats_left") + hold.quantity, seats_held=F("seats_held") - hold.quantity
        )
        log_event(log, "waitlist_offer_ended", entry=entry.pk, slot=hold.slot_id, hold=hold.pk, end=end)
        if pass_on:
            waitlist_offers_make(slot_id=hold.slot_id, now=now)


def _locked_entry(entry_id: int) -> WaitlistEntry:
    return WaitlistEntry.objects.select_for_update(of=("self",)).select_related("offer_hold").get(pk=entry_id)


def waitlist_offer_is_expired(entry: WaitlistEntry, *, now: dt.datetime | None = None) -> bool:
    return entry.status == W.OFFERED and entry.offer_hold.expires_at <= (now or timezone.now())


def waitlist_offer_lapse(*, entry: WaitlistEntry, now: dt.datetime | None = None) -> bool:
    """End one offer whose time is up, passing its seats to the next in line. False when it was
    not open or not yet up (changing nothing)."""
    now = now or timezone.now()
    with transaction.atomic():
        entry = _locked_entry(entry.pk)
        if not waitlist_offer_is_expired(entry, now=now):
            return False
        _offer_end(entry, status=W.LAPSED, now=now)
    return True


def waitlist_offers_lapse(*, now: dt.datetime | None = None) -> int:
    """End every offer whose time is up with nothing taken: its seats pass to the next in line.
    Run every minute by reconcile, so no offer outlives its time by more than a minute.
    Returns the number of offers ended."""
    now = now or timezone.now()
    ended = 0
    for entry in selectors.waitlist_offers_lapsed(now=now):
        ended += waitlist_offer_lapse(entry=entry, now=now)
    if ended:
        log_event(log, "waitlist_offers_lapsed", offers=ended)
    return ended


def waitlist_leave(*, entry: WaitlistEntry) -> bool:
    """Take a customer off the waitlist. Seats offered to them go to the next in line at once.
    False, changing nothing, when they were no longer in line (left, booked, lapsed)."""
    now = timezone.now()
    with transaction.atomic():
        entry = _locked_entry(entry.pk)
        if entry.status == W.WAITING:
            WaitlistEntry.objects.filter(pk=entry.pk).update(status=W.LEFT, ended_at=now)
            entry.status = W.LEFT
        elif entry.status == W.OFFERED:
            _offer_end(entry, status=W.LEFT, now=now)
        else:
            return False
    log_event(log, "waitlist_left", entry=entry.pk, slot=entry.slot_id)
    return True


def waitlist_close(*, slot_id: int) -> int:
    """A cancelled time's waitlist closes: nobody waits any longer and open offers end (their
    seats are not offered again). Returns the number of entries closed."""
    now = timezone.now()
    closed = 0
    for entry_id in WaitlistEntry.objects.filter(slot_id=slot_id, status__in=[W.WAITING, W.OFFERED]).values_list("pk", flat=True):
        with transaction.atomic():
            entry = _locked_entry(entry_id)
            if entry.status == W.OFFERED:
                _offer_end(entry, status=W.CLOSED, now=now, pass_on=False)
            elif entry.status == W.WAITING:
                WaitlistEntry.objects.filter(pk=entry.pk).update(status=W.CLOSED, ended_at=now)
            else:
                continue
            closed += 1
    return closed
