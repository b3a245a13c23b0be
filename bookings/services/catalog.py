"""The catalog a merchant keeps: their profile, listings and times, the rules of a time's start,
capacity and series (public, so forms call them), and cancelling a time."""

import datetime as dt
import logging
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.text import slugify

from bookings import selectors, tasks
from bookings.background import enqueue_after_commit
from bookings.models import (
    REMINDER_HOURS_CHOICES,
    REMINDER_HOURS_DEFAULT,
    Booking,
    BookingStatus,
    CancellationPolicy,
    Listing,
    Merchant,
    PlaceKind,
    Refund,
    RefundReason,
    RefundStatus,
    Slot,
)
from bookings.money import SUPPORTED_CURRENCIES
from bookings.policies import CancellationTerms, booking_terms_fields, listing_terms
from bookings.selectors import slot_series_plan
from bookings.services.refunds import _refund_open, _release_seats
from bookings.services.transitions import BookingError, S, _locked, booking_transition
from bookings.services.waitlist import waitlist_close, waitlist_offers_make
from bookings.timezones import validate_selectable_timezone
from common.logs import log_event

log = logging.getLogger("bookings.transitions")

@dataclass(frozen=True)
class SlotCancellation:
    bookings_cancelled: int
    refunds_opened: int
    already_cancelled: bool


def slot_cancel(*, slot: Slot) -> SlotCancellation:
    """Cancel a slot: stop selling it and refund every confirmed booking of it, once.

    Safe to run again: a second run finds no confirmed booking left and only asks again for
    refunds the provider has not created yet. After commit, the open checkouts of bookings still
    paying are expired at the provider (`checkouts_close`); a payment that arrives all the same
    is refunded with the cancellation as its reason.
    """
    # First the slot, in a transaction of its own: once it commits no confirmation can take a
    # seat, and every booking confirmed before it is visible below.
    with transaction.atomic():
        already_cancelled = not Slot.objects.filter(pk=slot.pk, cancelled_at__isnull=True).update(
            cancelled_at=timezone.now(), is_on_sale=False
        )
    # Then each booking in a transaction of its own that locks the booking before the slot, in
    # the order of `booking_confirm` and `booking_refund`, so that none of them can deadlock.
    booking_ids = list(
        Booking.objects.filter(slot_id=slot.pk, status=S.CONFIRMED).order_by("pk").values_list("pk", flat=True)
    )
    cancelled = refunds_opened = 0
    for booking_id in booking_ids:
        with transaction.atomic():
            booking = _locked(booking_id)
            if booking.status != S.CONFIRMED:
                continue
            outstanding = selectors.booking_refund_outstanding(booking)
            if outstanding:
                _refund_open(booking, amount=outstanding, reason=RefundReason.SLOT_CANCELLED)
                booking_transition(booking, S.REFUND_DUE, ended_reason=RefundReason.SLOT_CANCELLED)
                refunds_opened += 1
            elif booking.amount_refunded >= booking.amount_paid:
                booking_transition(booking, S.CANCELLED, ended_reason=RefundReason.SLOT_CANCELLED)
            else:
                # Refunds already asked for cover what is left: they finish the booking.
                booking_transition(booking, S.REFUND_DUE, ended_reason=RefundReason.SLOT_CANCELLED)
            _release_seats(booking)
            cancelled += 1
    waitlist_close(slot_id=slot.pk)
    pending_refunds = Refund.objects.filter(booking__slot_id=slot.pk, status=RefundStatus.REQUESTED)
    follow_ups = set(booking_ids) | set(pending_refunds.values_list("booking_id", flat=True))
    for booking_id in sorted(follow_ups):
        enqueue_after_commit(tasks.booking_follow_up, booking_id=booking_id, raise_refund_errors=False)
    enqueue_after_commit(tasks.checkouts_close, slot_id=slot.pk)
    log_event(log, "slot_cancelled", slot=slot.pk, bookings=cancelled, refunds=refunds_opened)
    return SlotCancellation(cancelled, refunds_opened, already_cancelled)


# Merchants, listings and slots
#
# Everything a merchant changes from the dashboard, apart from the booking lifecycle above.
# Each function checks what a form cannot know (the database's current state) and raises
# BookingError with a sentence to show next to the form.

SLOT_CAPACITY_MAX = 10_000
SERIES_MAX_SLOTS = 500
SERIES_MAX_DAYS = 366
SERIES_MAX_START_TIMES = 24
SLOT_HORIZON = timedelta(days=731)


def _check_timezone(name: str, *, current: str = "") -> None:
    try:
        validate_selectable_timezone(name, current=current)
    except ValidationError as error:
        raise BookingError(" ".join(error.messages)) from None


def merchant_create(
    *, username: str, email: str, password: str | None, display_name: str, timezone_name: str, support_email: str = ""
) -> Merchant:
    """Create a sign-in and its merchant together, or neither. Without a password the account
    gets an unusable one, and the merchant chooses theirs with a password reset e-mail."""
    user_model = get_user_model()
    if user_model.objects.filter(username__iexact=username).exists():
        raise BookingError(f"There is already an account named “{username}”. Choose another user name.")
    _check_timezone(timezone_name)
    with transaction.atomic():
        user = user_model.objects.create_user(username=username, email=email, password=password)
        if password is None:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        merchant = Merchant.objects.create(
            user=user, display_name=display_name, timezone=timezone_name, support_email=support_email
        )
    log_event(log, "merchant_created", merchant=merchant.pk, user=user.pk)
    return merchant


def merchant_update(*, merchant: Merchant, display_name: str, timezone_name: str, support_email: str) -> Merchant:
    """Change how a merchant is shown to customers and in which timezone they enter and read times."""
    _check_timezone(timezone_name, current=merchant.timezone)
    merchant.display_name = display_name
    merchant.timezone = timezone_name
    merchant.support_email = support_email
    merchant.save(update_fields=["display_name", "timezone", "support_email"])
    return merchant


def _listing_slug(title: str) -> str:
    base = slugify(title)[:100].strip("-") or "listing"
    slug, n = base, 1
    while Listing.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


PLACE_TEXT_MAX = 300
ONLINE_URL_MAX = 500


def validate_place(*, kind: str, text: str, online_url: str) -> None:
    """A listing's place is not given, or an address or meeting point with its text, or online
    with an https link (given to confirmed customers only, so it must not leak over plain http)."""
    if kind not in PlaceKind.values:
        raise BookingError("Choose where it happens from the list.", field="place_kind")
    if kind in (PlaceKind.ADDRESS, PlaceKind.MEETING_POINT):
        what = "address" if kind == PlaceKind.ADDRESS else "meeting point"
        if not text:
            raise BookingError(f"Enter the {what} customers go to.", field="place_text")
        if len(text) > PLACE_TEXT_MAX:
            raise BookingError(f"Keep the {what} to {PLACE_TEXT_MAX} characters or fewer.", field="place_text")
    if kind == PlaceKind.ONLINE:
        if not online_url:
            raise BookingError("Enter the link customers join with, such as https://meet.example.com/abc.", field="online_url")
        parts = urlsplit(online_url)
        if parts.scheme.lower() != "https" or not parts.hostname:
            raise BookingError(
                "Enter an online link that starts with https://, so that it reaches customers encrypted.",
                field="online_url",
            )
        if len(online_url) > ONLINE_URL_MAX:
            raise BookingError(f"Keep the online link to {ONLINE_URL_MAX} characters or fewer.", field="online_url")


def validate_reminder_hours(hours: int) -> None:
    """A reminder is sent one of the offered numbers of hours before the start, or not at all (0)."""
    if hours not in {value for value, _ in REMINDER_HOURS_CHOICES}:
        raise BookingError("Choose when to remind customers from the list.", field="reminder_hours")


def _place_fields(kind: str, text: str, online_url: str) -> dict:
    """The place's columns, with what does not belong to its kind left empty."""
    validate_place(kind=kind, text=text, online_url=online_url)
    if kind == PlaceKind.ONLINE:
        online_url = "https" + online_url[len("https"):]  # the scheme in lower case, as the database checks it
    return {
        "place_kind": kind,
        "place_text": text if kind in (PlaceKind.ADDRESS, PlaceKind.MEETING_POINT) else "",
        "online_url": online_url if kind == PlaceKind.ONLINE else "",
    }


def listing_create(
    *,
    merchant: Merchant,
    title: str,
    description: str,
    price_amount: int,
    currency: str,
    duration_minutes: int,
    cancel_policy: str = CancellationPolicy.CUSTOMER_MAY_CANCEL,
    cancel_free_hours: int = 24,
    cancel_late_keep_percent: int = 100,
    place_kind: str = PlaceKind.NONE,
    place_text: str = "",
    online_url: str = "",
    reminder_hours: int = REMINDER_HOURS_DEFAULT,
) -> Listing:
    """Create an active listing with a unique slug made from its title (kept when it is renamed,
    so links to it keep working), with its place and reminder lead time."""
    if currency not in SUPPORTED_CURRENCIES:
        raise BookingError("Choose one of the currencies in the list.")
    policy = _policy_fields(cancel_policy, cancel_free_hours, cancel_late_keep_percent)
    place = _place_fields(place_kind, place_text, online_url)
    validate_reminder_hours(reminder_hours)
    for attempt in range(5):
        try:
            with transaction.atomic():
                listing = Listing.objects.create(
                    merchant=merchant,
                    slug=_listing_slug(title),
                    title=title,
                    description=description,
                    price_amount=price_amount,
                    currency=currency,
                    duration_minutes=duration_minutes,
                    **policy,
                    reminder_hours=reminder_hours,
                    **place,
                )
        except IntegrityError:
            if attempt == 4:
                raise
            continue  # another listing took the same slug a moment ago
        log_event(log, "listing_created", listing=listing.pk, merchant=merchant.pk)
        return listing
    raise AssertionError("unreachable")


def validate_cancellation_policy(*, cancel_policy: str, cancel_free_hours: int, cancel_late_keep_percent: int) -> None:
    if cancel_policy not in CancellationPolicy.values:
        raise BookingError("Choose one of the cancellation policies in the list.", field="cancel_policy")
    if not 0 <= cancel_free_hours <= CANCEL_FREE_HOURS_MAX:
        raise BookingError(
            f"Free cancellation can end at most {CANCEL_FREE_HOURS_MAX} hours (a year) before the start.",
            field="cancel_free_hours",
        )
    if not 0 <= cancel_late_keep_percent <= 100:
        raise BookingError("The share you keep is a percentage from 0 to 100.", field="cancel_late_keep_percent")


CANCEL_FREE_HOURS_MAX = 24 * 365


def _policy_fields(cancel_policy: str, cancel_free_hours: int, cancel_late_keep_percent: int) -> dict:
    validate_cancellation_policy(
        cancel_policy=cancel_policy, cancel_free_hours=cancel_free_hours, cancel_late_keep_percent=cancel_late_keep_percent
    )
    terms = CancellationTerms.of(cancel_policy, cancel_free_hours, cancel_late_keep_percent)
    return {
        "cancel_policy": terms.policy,
        # Without self-service the numbers are kept for when the merchant turns it back on.
        "cancel_free_hours": terms.free_hours if terms.customer_may_cancel else cancel_free_hours,
        "cancel_late_keep_percent": cancel_late_keep_percent,
    }


def listing_update(
    *,
    listing: Listing,
    title: str,
    description: str,
    price_amount: int,
    currency: str,
    duration_minutes: int,
    cancel_policy: str | None = None,
    cancel_free_hours: int | None = None,
    cancel_late_keep_percent: int | None = None,
    place_kind: str | None = None,
    place_text: str = "",
    online_url: str = "",
    reminder_hours: int | None = None,
) -> Listing:
    """Change a listing. Bookings already started keep the price and currency they were made at,
    and the cancellation terms they were sold under, unless the new terms are at least as
    lenient as theirs (bookings.policies): those not yet ended and not yet started get the new
    terms, in the same transaction. Each booking row is updated under its lock, so a customer's
    cancellation in flight either finishes under the old terms or reads the new ones.
    The place (unless `place_kind` is None: kept) and the reminder lead time (unless None) are
    what every booking of it is told from now on, in e-mails, reminders and calendar files."""
    if currency not in SUPPORTED_CURRENCIES:
        raise BookingError("Choose one of the currencies in the list.")
    policy = _policy_fields(
        listing.cancel_policy if cancel_policy is None else cancel_policy,
        listing.cancel_free_hours if cancel_free_hours is None else cancel_free_hours,
        listing.cancel_late_keep_percent if cancel_late_keep_percent is None else cancel_late_keep_percent,
    )
    place = None if place_kind is None else _place_fields(place_kind, place_text, online_url)
    if reminder_hours is not None:
        validate_reminder_hours(reminder_hours)
    fields = ["title", "description", "price_amount", "currency", "duration_minutes", *policy, "updated_at"]
    with transaction.atomic():
        Listing.objects.select_for_update().filter(pk=listing.pk).first()
        listing.title = title
        listing.description = description
        listing.price_amount = price_amount
        listing.currency = currency
        listing.duration_minutes = duration_minutes
        for name, value in policy.items():
            setattr(listing, name, value)
        if place is not None:
            for name, value in place.items():
                setattr(listing, name, value)
            fields += ["place_kind", "place_text", "online_url"]
        if reminder_hours is not None:
            listing.reminder_hours = reminder_hours
            fields.append("reminder_hours")
        listing.save(update_fields=fields)
        upgraded = bookings_terms_upgrade(listing=listing)
    if upgraded:
        log_event(log, "listing_policy_upgraded_bookings", listing=listing.pk, bookings=upgraded)
    return listing


def bookings_terms_upgrade(*, listing: Listing) -> int:
    """Give the listing's current terms to its bookings not yet ended or started whose own terms
    they are at least as lenient as (and differ from). Returns how many bookings changed."""
    new_terms = listing_terms(listing)
    live = Booking.objects.filter(
        slot__listing=listing,
        status__in=[BookingStatus.PENDING, BookingStatus.CONFIRMED],
        slot__starts_at__gt=timezone.now(),
    )
    # Lock them in primary-key order (a cancellation in flight holds its booking's lock: this
    # waits, then sees whether it still is live), then update those the new terms are kind to.
    rows = live.select_for_update(of=("self",)).order_by("pk").values_list(
        "pk", "policy_cancel", "policy_free_hours", "policy_keep_percent"
    )
    upgrade = []
    for pk, policy, free_hours, keep in rows:
        old_terms = CancellationTerms.of(policy, free_hours, keep)
        if (old_terms != new_terms or not policy) and new_terms.at_least_as_lenient_as(old_terms):
            upgrade.append(pk)
    changed = 0
    if upgrade:
        changed = Booking.objects.filter(pk__in=upgrade).update(updated_at=timezone.now(), **booking_terms_fields(new_terms))
    return changed


def listing_archive(*, listing: Listing) -> bool:
    """Take a listing out of the catalog. Its slots and bookings stay. After commit the open
    checkouts of its times are expired at the provider (`checkouts_close`); a payment that
    raced the archiving is honoured while seats are left. Returns False when it was already
    archived."""
    changed = Listing.objects.filter(pk=listing.pk, is_active=True).update(is_active=False, updated_at=timezone.now())
    enqueue_after_commit(tasks.checkouts_close, listing_id=listing.pk)
    listing.is_active = False
    return bool(changed)


def listing_restore(*, listing: Listing) -> bool:
    """Put an archived listing back in the catalog. Returns False when it was already active."""
    changed = Listing.objects.filter(pk=listing.pk, is_active=False).update(is_active=True, updated_at=timezone.now())
    listing.is_active = True
    return bool(changed)


# The rules of a time's start, capacity and series. Public, so that the dashboard's forms call
# them instead of restating them; each raises BookingError with `field` set.


def validate_slot_start(starts_at: dt.datetime, *, now: dt.datetime) -> None:
    """A time starts in the future, within SLOT_HORIZON."""
    if starts_at <= now:
        raise BookingError("Choose a time in the future.", field="starts_at")
    if starts_at > now + SLOT_HORIZON:
        raise BookingError("Choose a time within the next two years.", field="starts_at")


def validate_capacity(capacity: int) -> None:
    """A time has between 1 and SLOT_CAPACITY_MAX seats."""
    if capacity < 1:
        raise BookingError("A time needs at least 1 seat.", field="capacity")
    if capacity > SLOT_CAPACITY_MAX:
        raise BookingError(f"A time can have at most {SLOT_CAPACITY_MAX:,} seats.", field="capacity")


def validate_capacity_floor(*, capacity: int, seats_sold: int, seats_held: int = 0) -> None:
    """A time's capacity never goes below the seats already sold plus those held by open checkouts."""
    floor = seats_sold + seats_held
    if capacity < floor:
        seats = "1 seat is" if floor == 1 else f"{floor} seats are"
        taken = "already sold" if not seats_held else "sold or held by people paying now"
        raise BookingError(f"{seats} {taken}, so capacity cannot go below {floor}.", field="capacity")


def validate_series_start_times(start_times: tuple[dt.time, ...]) -> None:
    """A series has between 1 and SERIES_MAX_START_TIMES start times a day."""
    if not start_times:
        raise BookingError("Enter at least one start time, such as 10:00.", field="start_times")
    if len(start_times) > SERIES_MAX_START_TIMES:
        raise BookingError(f"Enter at most {SERIES_MAX_START_TIMES} start times.", field="start_times")


def validate_series_range(*, first_day: dt.date, last_day: dt.date, today: dt.date) -> None:
    """A series starts today or later, ends on or after its first day, covers at most
    SERIES_MAX_DAYS days, and stays within SLOT_HORIZON. `today` is the merchant's."""
    if first_day < today:
        raise BookingError("Start the series today or later.", field="first_day")
    if first_day > today + SLOT_HORIZON:
        raise BookingError("Start the series within the next two years.", field="first_day")
    if last_day < first_day:
        raise BookingError("End the series on or after its first day.", field="last_day")
    if (last_day - first_day).days >= SERIES_MAX_DAYS:
        raise BookingError(
            f"A series can cover at most {SERIES_MAX_DAYS} days. Choose an earlier end.", field="last_day"
        )
    if last_day > today + SLOT_HORIZON:
        raise BookingError("End the series within the next two years.", field="last_day")


def slot_create(*, listing: Listing, starts_at: dt.datetime, capacity: int) -> Slot:
    """Add one time to a listing: in the future, at a time the listing does not already have."""
    validate_capacity(capacity)
    validate_slot_start(starts_at, now=timezone.now())
    if not listing.is_active:
        raise BookingError("This listing is archived. Restore it before adding times.")
    try:
        with transaction.atomic():
            slot = Slot.objects.create(listing=listing, starts_at=starts_at, capacity=capacity, seats_left=capacity)
    except IntegrityError:
        raise BookingError("This listing already has a time then. Choose another time.") from None
    log_event(log, "slot_created", slot=slot.pk, listing=listing.pk)
    return slot


@dataclass(frozen=True)
class SeriesCreated:
    created: list[Slot]
    skipped_existing: int


def slot_series_create(
    *,
    listing: Listing,
    weekdays: frozenset[int],
    start_times: tuple[dt.time, ...],
    first_day: dt.date,
    last_day: dt.date,
    capacity: int,
) -> SeriesCreated:
    """Create the slots of a recurring series (weekdays × start times × dates, in the merchant's
    timezone) in one transaction: all of them or none.

    Times that already exist are skipped, not doubled; so are times already past and wall-clock
    times a daylight-saving change skips. The series is planned again inside the transaction,
    so a time added since the preview is skipped too; one added at the very same moment by
    someone else makes the whole series fail with a sentence asking to preview again.
    """
    validate_capacity(capacity)
    validate_series_start_times(start_times)
    today = timezone.localtime(timezone.now(), listing.merchant.zone).date()
    validate_series_range(first_day=first_day, last_day=last_day, today=today)
    if not listing.is_active:
        raise BookingError("This listing is archived. Restore it before adding times.")
    try:
        with transaction.atomic():
            plan = slot_series_plan(
                listing=listing,
                weekdays=weekdays,
                start_times=start_times,
                first_day=first_day,
                last_day=last_day,
            )
            if not plan.new:
                raise BookingError("There is nothing to add: every time of this series already exists or has passed.")
            if len(plan.new) > SERIES_MAX_SLOTS:
                raise BookingError(
                    f"This series would make {len(plan.new)} times; one series can make at most {SERIES_MAX_SLOTS}. "
                    "Choose a shorter date range, or fewer days or start times."
                )
            slots = Slot.objects.bulk_create(
                [
                    Slot(listing=listing, starts_at=item.starts_at, capacity=capacity, seats_left=capacity)
                    for item in plan.new
                ]
            )
    except IntegrityError:
        raise BookingError(
            "Some of these times were added by someone else just now. Preview the series again."
        ) from None
    log_event(log, "slot_series_created", listing=listing.pk, slots=len(slots))
    return SeriesCreated(created=slots, skipped_existing=len(plan.existing))


def slot_capacity_change(*, slot: Slot, capacity: int) -> Slot:
    """Set a slot's capacity, never below the seats already sold and held.

    One conditional UPDATE moves capacity and seats left by the same difference, so a
    confirmation that takes seats at the same moment is never lost: either it comes first and
    the condition sees its seats sold, or it comes after and finds the new seats left.
    """
    validate_capacity(capacity)
    now = timezone.now()
    with transaction.atomic():
        changed = Slot.objects.filter(
            pk=slot.pk, cancelled_at__isnull=True, starts_at__gt=now, capacity__lte=F("seats_left") + capacity
        ).update(capacity=capacity, seats_left=F("seats_left") + capacity - F("capacity"))
        if changed:
            # Seats added are offered at once to the first waiting customers whose count fits.
            waitlist_offers_make(slot_id=slot.pk, now=now)
    fresh = Slot.objects.get(pk=slot.pk)
    slot.capacity, slot.seats_left, slot.cancelled_at = fresh.capacity, fresh.seats_left, fresh.cancelled_at
    slot.seats_held = fresh.seats_held
    if not changed:
        if fresh.is_cancelled:
            raise BookingError("This time is cancelled, so its capacity can no longer change.")
        if fresh.starts_at <= now:
            raise BookingError("This time has already started, so its capacity can no longer change.")
        validate_capacity_floor(capacity=capacity, seats_sold=fresh.seats_sold, seats_held=fresh.seats_held)
        # Seats given back between the refused update and this read: the floor has moved.
        raise BookingError("The seats sold changed just now. Check them and try again.", field="capacity")
    log_event(log, "slot_capacity_changed", slot=slot.pk, capacity=fresh.capacity, seats_left=fresh.seats_left)
    return slot


def slot_selling_set(*, slot: Slot, on_sale: bool) -> bool:
    """Stop or resume selling a slot. When sales stop, the open checkouts of the slot are expired
    at the provider after commit (`checkouts_close`); a payment that raced the stop is honoured
    while seats are left, since the time still happens. A cancelled slot cannot be put back on
    sale. Returns False when nothing changed."""
    if on_sale and slot.is_cancelled:
        raise BookingError("This time is cancelled and cannot be sold again. Add a new time instead.")
    selling = Slot.objects.filter(pk=slot.pk, cancelled_at__isnull=True).exclude(is_on_sale=on_sale)
    changed = selling.update(is_on_sale=on_sale)
    if on_sale and changed:
        # Seats freed while sales were stopped go to the waitlist first.
        waitlist_offers_make(slot_id=slot.pk)
    if not on_sale:
        enqueue_after_commit(tasks.checkouts_close, slot_id=slot.pk)
    slot.is_on_sale = on_sale if changed else Slot.objects.values_list("is_on_sale", flat=True).get(pk=slot.pk)
    return bool(changed)
