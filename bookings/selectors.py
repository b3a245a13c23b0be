"""Reads that pages depend on: each returns a queryset with its joins already chosen."""

import datetime as dt
import operator
from dataclasses import dataclass
from datetime import timedelta
from functools import reduce
from enum import StrEnum

from django.db.models import Count, F, Prefetch, Q, QuerySet, Sum
from django.db.models.functions import Coalesce, Lower
from django.utils import timezone

from bookings.models import (
    REMINDER_HOURS_CHOICES,
    Booking,
    BookingStatus,
    Hold,
    HoldKind,
    Listing,
    Merchant,
    ProvenCustomer,
    Refund,
    RefundReason,
    RefundStatus,
    WAITLIST_ACTIVE,
    Slot,
    WaitlistEntry,
    WaitlistStatus,
)
from bookings.policies import cancellation_kept


def upcoming_slots() -> QuerySet[Slot]:
    return Slot.objects.filter(starts_at__gt=timezone.now(), cancelled_at__isnull=True).order_by("starts_at", "pk")


CATALOG_NEXT_SLOTS = 3


def catalog_listings() -> QuerySet[Listing]:
    """Active listings with the number of their upcoming slots (`upcoming_count`) and the next
    few of them (`upcoming`), in two queries whatever the number of listings or slots."""
    upcoming = _upcoming_slot_filter("slots__", timezone.now())
    return (
        Listing.objects.filter(is_active=True)
        .select_related("merchant")
        .annotate(upcoming_count=Count("slots", filter=upcoming))
        .prefetch_related(Prefetch("slots", queryset=upcoming_slots()[:CATALOG_NEXT_SLOTS], to_attr="upcoming"))
        .order_by("title")
    )


def listing_for_sale(slug: str) -> Listing:
    """An active listing by slug, or Listing.DoesNotExist."""
    return Listing.objects.select_related("merchant").get(slug=slug, is_active=True)


def slots_on_sale(listing: Listing) -> QuerySet[Slot]:
    """Upcoming slots a customer may pick, sold-out ones included so the page can say so."""
    return upcoming_slots().filter(listing=listing, is_on_sale=True)


def booking_by_session(session_id: str) -> Booking:
    return Booking.objects.select_related("slot__listing__merchant").get(checkout_session_id=session_id)


def booking_by_token(token: str) -> Booking:
    return Booking.objects.select_related("slot__listing__merchant").prefetch_related("refunds").get(public_token=token)


def proven_customer_of(email: str, *, stripe_account: str = "") -> ProvenCustomer | None:
    """The one Customer of a proven (normalised) e-mail address on a Stripe account ("" = the
    platform's; with Connect, a merchant's connected account), if it has one yet."""
    return ProvenCustomer.objects.filter(email=email, stripe_account_id=stripe_account).first()


def proven_customers_of(email: str) -> list[ProvenCustomer]:
    """Every Customer of a proven address: the platform's, and one per merchant's connected
    account it paid on (Connect), each with the merchant of that account when known."""
    customers = list(ProvenCustomer.objects.filter(email=email).order_by("stripe_account_id", "pk"))
    accounts = [c.stripe_account_id for c in customers if c.stripe_account_id]
    merchants = {m.stripe_account_id: m for m in Merchant.objects.filter(stripe_account_id__in=accounts)}
    for customer in customers:
        customer.merchant = merchants.get(customer.stripe_account_id)
    return customers


def bookings_of_email(email: str) -> QuerySet[Booking]:
    """The paid or settled bookings made with a (normalised) e-mail address, newest first."""
    return (
        Booking.objects.annotate(email_lower=Lower("customer_email"))
        .filter(email_lower=email)
        .exclude(status__in=[BookingStatus.PENDING, BookingStatus.EXPIRED])
        .select_related("slot__listing__merchant")
    )


MY_BOOKINGS_MAX = 200


def customer_bookings(email: str, *, now=None) -> tuple[list[Booking], list[Booking]]:
    """A proven (normalised) address's paid or settled bookings across merchants: upcoming ones
    (soonest first), then past ones (latest first). At most MY_BOOKINGS_MAX of each; three queries."""
    now = now or timezone.now()
    mine = bookings_of_email(email).select_related("slot__listing__merchant").prefetch_related("refunds")
    upcoming = list(mine.filter(slot__starts_at__gt=now).order_by("slot__starts_at", "pk")[:MY_BOOKINGS_MAX])
    past = list(mine.filter(slot__starts_at__lte=now).order_by("-slot__starts_at", "-pk")[:MY_BOOKINGS_MAX])
    return upcoming, past


def reschedule_choices(booking: Booking, *, now=None) -> list[Slot]:
    """The other times of the booking's listing it could move to now: upcoming, on sale, not
    cancelled, with free seats (held ones count as taken) for all of its seats."""
    now = now or timezone.now()
    return list(
        Slot.objects.filter(
            listing_id=booking.slot.listing_id,
            starts_at__gt=now,
            cancelled_at__isnull=True,
            is_on_sale=True,
            seats_left__gte=booking.quantity,
        )
        .exclude(pk=booking.slot_id)
        .order_by("starts_at", "pk")
    )


class MoneyBackState(StrEnum):
    NOTHING_CHARGED = "nothing_charged"
    ON_ITS_WAY = "on_its_way"  # recorded, not yet created at the provider
    REFUNDED = "refunded"  # created at the provider: 5 to 10 days to reach the statement
    FAILED = "failed"
    KEPT = "kept"  # cancelled by the customer after the deadline: the policy refunds nothing more


@dataclass(frozen=True)
class MoneyBack:
    """Why a customer's money came back (or why the booking ended with nothing to refund), how
    much, and where the refund stands: what every page and e-mail tells the customer, from the
    reason recorded when it happened. `templates/common/_money_back.html` says it in words."""

    reason: str  # a RefundReason
    booking_ended: bool  # cancelled: holds no seats
    state: MoneyBackState
    amount: int  # in minor units of `currency`: refunded, on its way, or failed
    amount_paid: int
    currency: str
    ended_reason: str = ""  # why the booking ended, when it did (a RefundReason)

    @property
    def in_full(self) -> bool:
        return self.amount == self.amount_paid

    @property
    def ended_by(self) -> str:
        """The reason the booking ended for: its own, or this money's when none is recorded."""
        return self.ended_reason or self.reason

    @property
    def refunded_while_it_stood(self) -> bool:
        """Part of the payment given back by the merchant while the booking stood, told on its own
        (its e-mail) after the booking ended for another reason: the merchant did not end it."""
        return self.reason == RefundReason.MERCHANT and self.booking_ended and self.ended_by != RefundReason.MERCHANT


_CREATED = (RefundStatus.PENDING, RefundStatus.SUCCEEDED)


def booking_refund_outstanding(booking: Booking) -> int:
    """What can still be refunded: paid, less what the provider has refunded and less what has
    been asked for but not created yet (a requested refund is not counted in `amount_refunded`).
    Reads `booking.refunds` (prefetched or not)."""
    asked = sum(refund.amount for refund in booking.refunds.all() if refund.status == RefundStatus.REQUESTED)
    return booking.amount_refundable - asked


def booking_refund_owed(booking: Booking) -> int:
    """What an ended booking's customer is still owed back beyond what has come back or been asked
    for: all that is left, or, for a booking its customer cancelled, what its terms gave back at
    that moment (`policies.cancellation_kept`). More than 0 once a refund counted in it failed.
    Reads `booking.refunds` and, for a customer's cancellation, `booking.slot`."""
    outstanding = booking_refund_outstanding(booking)
    if booking.ended_reason != RefundReason.CUSTOMER_CANCELLED or booking.cancelled_by_customer_at is None:
        return outstanding
    return max(0, outstanding - cancellation_kept(booking))


def booking_money_back(booking: Booking, *, refund: Refund | None = None) -> MoneyBack | None:
    """What the customer is told about money coming back for a booking, or None when nothing
    came back and the booking did not end. With `refund`, about that refund alone (its e-mail).
    Reads `booking.refunds` (prefetched by `booking_by_token`)."""
    ended = booking.status in (
        BookingStatus.REFUND_DUE,
        BookingStatus.REFUNDED,
        BookingStatus.REFUND_FAILED,
        BookingStatus.CANCELLED,
    )
    facts = dict(
        booking_ended=ended,
        amount_paid=booking.amount_paid,
        currency=booking.currency,
        ended_reason=booking.ended_reason if ended else "",
    )
    if refund is not None:
        state = MoneyBackState.REFUNDED if refund.status in _CREATED else MoneyBackState.ON_ITS_WAY
        if refund.status == RefundStatus.FAILED:
            state = MoneyBackState.FAILED
        return MoneyBack(reason=refund.reason, state=state, amount=refund.amount, **facts)
    if not ended and booking.status != BookingStatus.CONFIRMED:
        return None  # pending or expired: nothing was paid, so nothing came back (no read of refunds)
    refunds = [r for r in booking.refunds.all() if r.status != RefundStatus.FAILED]
    if booking.status == BookingStatus.CONFIRMED:
        if not refunds:
            return None
        asked = sum(r.amount for r in refunds)
        created = all(r.status in _CREATED for r in refunds)
        state = MoneyBackState.REFUNDED if created else MoneyBackState.ON_ITS_WAY
        return MoneyBack(reason=RefundReason.MERCHANT, state=state, amount=asked, **facts)
    if booking.amount_paid == 0:
        state, amount = MoneyBackState.NOTHING_CHARGED, 0
    elif booking.status == BookingStatus.CANCELLED and booking.ended_reason == RefundReason.CUSTOMER_CANCELLED:
        # What the merchant had refunded before the customer cancelled is what comes back.
        state, amount = MoneyBackState.KEPT, sum(r.amount for r in refunds)
    elif booking.status == BookingStatus.REFUND_FAILED:
        state, amount = MoneyBackState.FAILED, booking_refund_owed(booking)
    elif booking.status == BookingStatus.REFUND_DUE:
        state, amount = MoneyBackState.ON_ITS_WAY, sum(r.amount for r in refunds)
    else:
        state, amount = MoneyBackState.REFUNDED, booking.amount_refunded
    return MoneyBack(reason=booking.ended_reason, state=state, amount=amount, **facts)


def bookings_due_reminder(*, now: dt.datetime) -> QuerySet[Booking]:
    """Confirmed bookings whose reminder is due at `now` and not sent: their time starts within
    its listing's reminder lead time and has not started, and they were confirmed no later than
    the reminder time (a booking made after it gets no reminder at all). One query: a condition
    per lead time a listing can choose."""
    due = [
        Q(
            slot__listing__reminder_hours=hours,
            slot__starts_at__lte=now + timedelta(hours=hours),
            confirmed_at__lte=F("slot__starts_at") - timedelta(hours=hours),
        )
        for hours, _ in REMINDER_HOURS_CHOICES
        if hours
    ]
    return (
        Booking.objects.filter(
            reduce(operator.or_, due),
            status=BookingStatus.CONFIRMED,
            reminder_sent_at__isnull=True,
            slot__starts_at__gt=now,
            slot__cancelled_at__isnull=True,
        )
        .select_related("slot__listing__merchant__user")
        .order_by("slot__starts_at", "pk")
    )


def bookings_owing_email() -> QuerySet[Booking]:
    """Bookings with an e-mail owed and not sent: a confirmation, a cancellation, a refund notice
    to the customer, or a failed refund's alert to the merchant."""
    unsent_confirmation = Q(status=BookingStatus.CONFIRMED, confirmation_email_sent_at__isnull=True)
    unsent_cancellation = Q(status=BookingStatus.CANCELLED, cancellation_email_sent_at__isnull=True)
    unsent_refund_notice = Q(
        refunds__status__in=[RefundStatus.PENDING, RefundStatus.SUCCEEDED], refunds__customer_notified_at__isnull=True
    )
    unsent_alert = Q(refunds__status=RefundStatus.FAILED, refunds__merchant_alerted_at__isnull=True)
    unsent_reschedule = Q(status=BookingStatus.CONFIRMED, reschedules__gt=F("reschedules_notified"))
    unsent_merchant_notice = Q(cancelled_by_customer_at__isnull=False, merchant_cancel_notice_sent_at__isnull=True)
    owing = (
        unsent_confirmation
        | unsent_cancellation
        | unsent_refund_notice
        | unsent_alert
        | unsent_reschedule
        | unsent_merchant_notice
    )
    return Booking.objects.filter(owing).distinct()


def pending_checkouts_unsellable(*, slot_id: int | None = None, listing_id: int | None = None) -> QuerySet[Booking]:
    """Pending bookings with a checkout session open at the provider for a time that can no
    longer be sold (cancelled, off sale, or its listing archived), of one slot or listing or all."""
    unsellable = Q(slot__cancelled_at__isnull=False) | Q(slot__is_on_sale=False) | Q(slot__listing__is_active=False)
    pending = Booking.objects.filter(unsellable, status=BookingStatus.PENDING, checkout_session_id__isnull=False)
    if slot_id is not None:
        pending = pending.filter(slot_id=slot_id)
    if listing_id is not None:
        pending = pending.filter(slot__listing_id=listing_id)
    return pending.order_by("pk")


# The merchant's side. Every selector takes the merchant and only ever returns their rows.


def booking_open_hold(booking: Booking) -> Hold | None:
    """The hold a booking still has on its seats, if any."""
    return Hold.objects.filter(booking=booking, ended_at__isnull=True).first()


def holds_lapsed(*, now: dt.datetime) -> QuerySet[Hold]:
    """Open holds whose time is up, oldest first, with their booking."""
    return Hold.objects.filter(ended_at__isnull=True, expires_at__lte=now).select_related("booking").order_by("expires_at", "pk")


# The waitlist


def waitlist_offers_lapsed(*, now: dt.datetime) -> QuerySet[WaitlistEntry]:
    """Entries holding an offer whose time is up, oldest offer first."""
    return (
        WaitlistEntry.objects.filter(
            status=WaitlistStatus.OFFERED, offer_hold__ended_at__isnull=True, offer_hold__expires_at__lte=now
        )
        .select_related("offer_hold")
        .order_by("offer_hold__expires_at", "pk")
    )


def waitlist_ahead_of(entry: WaitlistEntry) -> int:
    """How many are in line before this entry (waiting or holding an offer)."""
    return WaitlistEntry.objects.filter(
        Q(created_at__lt=entry.created_at) | Q(created_at=entry.created_at, pk__lt=entry.pk),
        slot_id=entry.slot_id,
        status__in=WAITLIST_ACTIVE,
    ).count()


def waitlist_offers_owing_email() -> QuerySet[WaitlistEntry]:
    """Open offers whose e-mail has not gone out (a crash after commit, a mail server down)."""
    return WaitlistEntry.objects.filter(status=WaitlistStatus.OFFERED, offer_email_sent_at__isnull=True)


def slot_waitlist(slot: Slot) -> list[WaitlistEntry]:
    """A time's waitlist as its merchant sees it: everyone waiting or holding an offer, in line order."""
    return list(
        WaitlistEntry.objects.filter(slot=slot, status__in=[WaitlistStatus.WAITING, WaitlistStatus.OFFERED])
        .select_related("offer_hold")
        .order_by("created_at", "pk")
    )


def open_offers(*, slot_id: int | None = None) -> QuerySet[Hold]:
    """Open waitlist offers (holds of kind offer), of one slot or all, soonest to end first."""
    offers = Hold.objects.filter(kind=HoldKind.OFFER, ended_at__isnull=True)
    if slot_id is not None:
        offers = offers.filter(slot_id=slot_id)
    return offers.order_by("expires_at", "pk")


def seats_offered_per_slot() -> dict[int, int]:
    """Seats held by open waitlist offers, per slot (for checks: never more than a slot's held seats)."""
    rows = open_offers().order_by().values("slot_id").annotate(seats=Sum("quantity"))
    return {row["slot_id"]: row["seats"] for row in rows}


def seats_held_per_slot() -> dict[int, int]:
    """Seats of open holds of every kind, per slot: what each slot's `seats_held` must equal."""
    rows = Hold.objects.filter(ended_at__isnull=True).order_by().values("slot_id").annotate(seats=Sum("quantity"))
    return {row["slot_id"]: row["seats"] for row in rows}


def waitlist_entries_offered_twice() -> QuerySet[WaitlistEntry]:
    """Entries with more than one open offer: must always be empty."""
    return WaitlistEntry.objects.annotate(
        open_offers=Count("offer_hold", filter=Q(offer_hold__ended_at__isnull=True))
    ).filter(open_offers__gt=1)


def merchant_open_offers(merchant: Merchant, *, slot_id: int | None = None) -> list[WaitlistEntry]:
    """The merchant's open waitlist offers on upcoming times, with their end time, soonest to end first."""
    offers = WaitlistEntry.objects.filter(
        slot__listing__merchant=merchant,
        status=WaitlistStatus.OFFERED,
        offer_hold__ended_at__isnull=True,
        slot__starts_at__gt=timezone.now(),
    )
    if slot_id is not None:
        offers = offers.filter(slot_id=slot_id)
    return list(offers.select_related("offer_hold", "slot__listing").order_by("offer_hold__expires_at", "pk"))


def unpaid_booking_of_listing(*, booking_id: int, listing: Listing) -> Booking | None:
    """The booking, if it is of this listing and nothing was paid for it (pending or expired)."""
    return (
        Booking.objects.filter(
            pk=booking_id, slot__listing=listing, status__in=[BookingStatus.PENDING, BookingStatus.EXPIRED]
        )
        .only("pk", "slot_id", "quantity", "customer_name", "customer_email")
        .first()
    )


def merchant_for_user(user) -> Merchant | None:
    """The merchant a signed-in user acts as, or None (staff and other accounts have none)."""
    if not user.is_authenticated:
        return None
    return Merchant.objects.filter(user=user).first()


def _upcoming_slot_filter(prefix: str, now: dt.datetime) -> Q:
    return Q(**{f"{prefix}starts_at__gt": now, f"{prefix}cancelled_at__isnull": True})


def merchant_listings(merchant: Merchant, *, archived: bool = False) -> QuerySet[Listing]:
    """The merchant's active (or archived) listings, each annotated with its upcoming slots,
    seats and seats sold, in one query whatever their number."""
    upcoming = _upcoming_slot_filter("slots__", timezone.now())
    return (
        Listing.objects.filter(merchant=merchant, is_active=not archived)
        .annotate(
            upcoming_slots=Count("slots", filter=upcoming),
            upcoming_capacity=Coalesce(Sum("slots__capacity", filter=upcoming), 0),
            upcoming_seats_left=Coalesce(Sum("slots__seats_left", filter=upcoming), 0),
            upcoming_held=Coalesce(Sum("slots__seats_held", filter=upcoming), 0),
        )
        .annotate(upcoming_sold=F("upcoming_capacity") - F("upcoming_seats_left") - F("upcoming_held"))
        .order_by("title", "pk")
    )


def merchant_listing(merchant: Merchant, pk: int) -> Listing:
    """One of the merchant's listings (archived ones included), or Listing.DoesNotExist."""
    return Listing.objects.select_related("merchant").get(merchant=merchant, pk=pk)


def merchant_usual_currency(merchant: Merchant) -> str | None:
    """The currency of the merchant's most recently created listing (archived ones count), or None."""
    return (
        Listing.objects.filter(merchant=merchant)
        .order_by("-created_at", "-pk")
        .values_list("currency", flat=True)
        .first()
    )


def merchant_listing_counts(merchant: Merchant) -> dict[str, int]:
    counts = Listing.objects.filter(merchant=merchant).aggregate(
        active=Count("pk", filter=Q(is_active=True)), archived=Count("pk", filter=Q(is_active=False))
    )
    return counts


# How many are in line (waiting or holding an offer) on a slot: `waitlist_length`.
WAITLIST_LENGTH = Count("waitlist_entries", filter=Q(waitlist_entries__status__in=WAITLIST_ACTIVE))


def merchant_slots(merchant: Merchant) -> QuerySet[Slot]:
    return Slot.objects.filter(listing__merchant=merchant).select_related("listing__merchant").annotate(
        waitlist_length=WAITLIST_LENGTH
    )


def merchant_upcoming_slots(merchant: Merchant) -> QuerySet[Slot]:
    return merchant_slots(merchant).filter(_upcoming_slot_filter("", timezone.now())).order_by("starts_at", "pk")


def merchant_slot(merchant: Merchant, pk: int) -> Slot:
    """One of the merchant's slots, or Slot.DoesNotExist."""
    return merchant_slots(merchant).get(pk=pk)


def listing_slots(listing: Listing, *, past: bool = False) -> QuerySet[Slot]:
    """A listing's upcoming slots (cancelled ones included, so the merchant sees them), soonest
    first; or its past ones, latest first."""
    now = timezone.now()
    slots = Slot.objects.filter(listing=listing).select_related("listing__merchant").annotate(
        waitlist_length=WAITLIST_LENGTH
    )
    if past:
        return slots.filter(starts_at__lte=now).order_by("-starts_at", "-pk")
    return slots.filter(starts_at__gt=now).order_by("starts_at", "pk")


def slot_cancel_summary(slot: Slot) -> dict:
    """What cancelling a slot would do: how many confirmed bookings and seats, and the money to
    refund per currency (a listing's currency can change between bookings)."""
    rows = list(
        Booking.objects.filter(slot=slot, status=BookingStatus.CONFIRMED)
        .values("currency")
        .annotate(bookings=Count("pk"), seats=Sum("quantity"), to_refund=Sum(F("amount_paid") - F("amount_refunded")))
        .order_by("currency")
    )
    return {
        "bookings": sum(row["bookings"] for row in rows),
        "seats": sum(row["seats"] for row in rows),
        "to_refund": [(row["to_refund"], row["currency"]) for row in rows if row["to_refund"]],
    }


NEEDS_ATTENTION = (BookingStatus.REFUND_FAILED, BookingStatus.REFUND_DUE)


def merchant_bookings(merchant: Merchant) -> QuerySet[Booking]:
    return Booking.objects.filter(slot__listing__merchant=merchant).select_related("slot__listing__merchant", "hold")


@dataclass(frozen=True)
class BookingFilters:
    status: str = ""  # a BookingStatus, "attention", or "" for all
    date_from: dt.date | None = None  # the slot's day, in the merchant's timezone
    date_to: dt.date | None = None
    email: str = ""
    listing_id: int | None = None
    slot_id: int | None = None


def merchant_bookings_filtered(merchant: Merchant, filters: BookingFilters) -> QuerySet[Booking]:
    """The merchant's bookings narrowed by the filters, newest first."""
    bookings = merchant_bookings(merchant)
    if filters.status == "attention":
        bookings = bookings.filter(status__in=NEEDS_ATTENTION)
    elif filters.status:
        bookings = bookings.filter(status=filters.status)
    zone = merchant.zone
    if filters.date_from:
        bookings = bookings.filter(slot__starts_at__gte=dt.datetime.combine(filters.date_from, dt.time(), tzinfo=zone))
    if filters.date_to:
        day_after = filters.date_to + dt.timedelta(days=1)
        bookings = bookings.filter(slot__starts_at__lt=dt.datetime.combine(day_after, dt.time(), tzinfo=zone))
    if filters.email:
        bookings = bookings.filter(customer_email__icontains=filters.email)
    if filters.listing_id:
        bookings = bookings.filter(slot__listing_id=filters.listing_id)
    if filters.slot_id:
        bookings = bookings.filter(slot_id=filters.slot_id)
    return bookings.order_by("-created_at", "-pk")


def merchant_booking(merchant: Merchant, pk: int) -> Booking:
    """One of the merchant's bookings with its refunds, or Booking.DoesNotExist."""
    return merchant_bookings(merchant).prefetch_related("refunds").get(pk=pk)


def merchant_bookings_needing_attention(merchant: Merchant) -> QuerySet[Booking]:
    """Bookings whose refund failed or is still owed: money the merchant must look at."""
    return merchant_bookings(merchant).filter(status__in=NEEDS_ATTENTION).order_by("updated_at", "pk")


def merchant_upcoming_totals(merchant: Merchant) -> dict[str, int]:
    """Upcoming slots, their seats and seats sold, in one query."""
    return Slot.objects.filter(listing__merchant=merchant).filter(_upcoming_slot_filter("", timezone.now())).aggregate(
        slots=Count("pk"),
        capacity=Coalesce(Sum("capacity"), 0),
        seats_left=Coalesce(Sum("seats_left"), 0),
        seats_held=Coalesce(Sum("seats_held"), 0),
    )


@dataclass
class RevenueLine:
    listing_id: int
    title: str
    currency: str
    paid: int = 0
    refunded: int = 0
    bookings: int = 0
    # Connect: the platform's fees on these payments, less the fees refunded with refunds.
    fee: int = 0

    @property
    def net(self) -> int:
        return self.paid - self.refunded - self.fee


def merchant_revenue(merchant: Merchant, *, days: int = 30) -> list[RevenueLine]:
    """Money in and out per listing and currency over the last `days`, in two queries: what
    bookings started in that time were paid, less the refunds the provider made in that time
    (whenever their booking was paid). Refunds asked for but not made yet do not count."""
    since = timezone.now() - dt.timedelta(days=days)
    lines: dict[tuple[int, str], RevenueLine] = {}
    paid_rows = (
        Booking.objects.filter(slot__listing__merchant=merchant, created_at__gte=since, amount_paid__gt=0)
        .values("slot__listing_id", "slot__listing__title", "currency")
        .annotate(paid=Sum("amount_paid"), bookings=Count("pk"), fee=Sum("application_fee_amount"))
        .order_by()
    )
    for row in paid_rows:
        key = (row["slot__listing_id"], row["currency"])
        lines[key] = RevenueLine(
            row["slot__listing_id"],
            row["slot__listing__title"],
            row["currency"],
            row["paid"],
            0,
            row["bookings"],
            row["fee"] or 0,
        )
    refund_rows = (
        Refund.objects.filter(
            booking__slot__listing__merchant=merchant,
            created_at__gte=since,
            status__in=(RefundStatus.PENDING, RefundStatus.SUCCEEDED),
        )
        .values("booking__slot__listing_id", "booking__slot__listing__title", "booking__currency")
        .annotate(refunded=Sum("amount"), fee_refunded=Sum("application_fee_refunded"))
        .order_by()
    )
    for row in refund_rows:
        key = (row["booking__slot__listing_id"], row["booking__currency"])
        line = lines.setdefault(
            key, RevenueLine(key[0], row["booking__slot__listing__title"], key[1])
        )
        line.refunded = row["refunded"]
        line.fee -= row["fee_refunded"] or 0
    return sorted(lines.values(), key=lambda line: (line.title.lower(), line.listing_id, line.currency))


def revenue_totals(lines: list[RevenueLine]) -> list[RevenueLine]:
    """The lines added up per currency (amounts in different currencies are never summed)."""
    totals: dict[str, RevenueLine] = {}
    for line in lines:
        total = totals.setdefault(line.currency, RevenueLine(0, "", line.currency))
        total.paid += line.paid
        total.refunded += line.refunded
        total.bookings += line.bookings
        total.fee += line.fee
    return [totals[currency] for currency in sorted(totals)]


@dataclass
class PlatformFeeLine:
    """The platform's fees (Connect) in one currency, for one merchant (or all: `merchant` None)."""

    currency: str
    merchant: Merchant | None = None
    charged: int = 0
    refunded: int = 0
    payments: int = 0

    @property
    def net(self) -> int:
        return self.charged - self.refunded


def platform_fees(*, days: int | None = 30) -> tuple[list[PlatformFeeLine], list[PlatformFeeLine]]:
    """The fees the platform earned on direct charges over the last `days` (None: ever), as
    (totals per currency, lines per merchant and currency), in three queries: the fees asked on
    payments made in that time (bookings created then and paid), less the fees given back with
    refunds the provider made in that time (whenever their booking was paid), as the merchants'
    revenue counts them. Currencies are never summed together."""
    bookings = Booking.objects.filter(amount_paid__gt=0, application_fee_amount__gt=0).exclude(stripe_account_id="")
    refunds = Refund.objects.filter(status__in=_CREATED, application_fee_refunded__gt=0)
    if days is not None:
        since = timezone.now() - dt.timedelta(days=days)
        bookings = bookings.filter(created_at__gte=since)
        refunds = refunds.filter(created_at__gte=since)
    lines: dict[tuple[int, str], PlatformFeeLine] = {}
    charged = (
        bookings.values("slot__listing__merchant_id", "currency")
        .annotate(fee=Sum("application_fee_amount"), payments=Count("pk"))
        .order_by()
    )
    for row in charged:
        line = lines.setdefault((row["slot__listing__merchant_id"], row["currency"]), PlatformFeeLine(row["currency"]))
        line.charged, line.payments = row["fee"], row["payments"]
    given_back = (
        refunds.values("booking__slot__listing__merchant_id", "booking__currency")
        .annotate(fee=Sum("application_fee_refunded"))
        .order_by()
    )
    for row in given_back:
        key = (row["booking__slot__listing__merchant_id"], row["booking__currency"])
        lines.setdefault(key, PlatformFeeLine(row["booking__currency"])).refunded = row["fee"]
    merchants = Merchant.objects.in_bulk({merchant_id for merchant_id, _ in lines})
    totals: dict[str, PlatformFeeLine] = {}
    for (merchant_id, currency), line in lines.items():
        line.merchant = merchants[merchant_id]
        total = totals.setdefault(currency, PlatformFeeLine(currency))
        total.charged += line.charged
        total.refunded += line.refunded
        total.payments += line.payments
    by_merchant = sorted(lines.values(), key=lambda line: (line.merchant.display_name.lower(), line.merchant.pk, line.currency))
    return [totals[currency] for currency in sorted(totals)], by_merchant


# Recurring series


class PlannedState(StrEnum):
    NEW = "new"
    EXISTS = "exists"
    PAST = "past"
    SKIPPED_BY_CLOCK_CHANGE = "clock_change"


@dataclass(frozen=True)
class PlannedSlot:
    day: dt.date
    start: dt.time
    starts_at: dt.datetime  # aware, in the merchant's timezone
    state: PlannedState


@dataclass(frozen=True)
class SeriesPlan:
    items: list[PlannedSlot]

    def _of(self, state: PlannedState) -> list[PlannedSlot]:
        return [item for item in self.items if item.state == state]

    @property
    def new(self) -> list[PlannedSlot]:
        return self._of(PlannedState.NEW)

    @property
    def existing(self) -> list[PlannedSlot]:
        return self._of(PlannedState.EXISTS)

    @property
    def past(self) -> list[PlannedSlot]:
        return self._of(PlannedState.PAST)

    @property
    def clock_change(self) -> list[PlannedSlot]:
        return self._of(PlannedState.SKIPPED_BY_CLOCK_CHANGE)

    def by_day(self) -> list[tuple[dt.date, list[PlannedSlot]]]:
        days: dict[dt.date, list[PlannedSlot]] = {}
        for item in self.items:
            days.setdefault(item.day, []).append(item)
        return list(days.items())


def _wall_time_exists(local: dt.datetime) -> bool:
    """False for a wall-clock time that a clock change skips (01:30 when clocks go 01:00 → 02:00)."""
    round_trip = local.astimezone(dt.UTC).astimezone(local.tzinfo)
    return round_trip.replace(tzinfo=None) == local.replace(tzinfo=None)


def slot_series_plan(
    *,
    listing: Listing,
    weekdays: frozenset[int],
    start_times: tuple[dt.time, ...],
    first_day: dt.date,
    last_day: dt.date,
    now: dt.datetime | None = None,
) -> SeriesPlan:
    """Every time a series makes: each chosen weekday (0 = Monday) between the two days, at each
    start time, as a wall-clock time in the merchant's timezone (10:00 stays 10:00 across a
    daylight-saving change), marked new, already existing, past, or skipped by a clock change.
    One query whatever the number of times."""
    zone = listing.merchant.zone
    now = now or timezone.now()
    candidates: list[tuple[dt.date, dt.time, dt.datetime]] = []
    day = first_day
    while day <= last_day:
        if day.weekday() in weekdays:
            for start in sorted(start_times):
                candidates.append((day, start, dt.datetime.combine(day, start, tzinfo=zone)))
        day += dt.timedelta(days=1)
    existing: set[dt.datetime] = set()
    if candidates:
        existing = set(
            Slot.objects.filter(
                listing=listing,
                cancelled_at__isnull=True,
                starts_at__gte=candidates[0][2] - dt.timedelta(hours=3),
                starts_at__lte=candidates[-1][2] + dt.timedelta(hours=3),
            ).values_list("starts_at", flat=True)
        )
    items = []
    for day, start, local in candidates:
        if not _wall_time_exists(local):
            state = PlannedState.SKIPPED_BY_CLOCK_CHANGE
        elif local <= now:
            state = PlannedState.PAST
        elif local in existing:
            state = PlannedState.EXISTS
        else:
            state = PlannedState.NEW
        items.append(PlannedSlot(day, start, local, state))
    return SeriesPlan(items)


def merchant_promotion_codes(merchant: Merchant) -> QuerySet:
    from bookings.models import PromotionCode

    return PromotionCode.objects.filter(merchant=merchant).prefetch_related("listings")


def merchant_promotion_code(merchant: Merchant, pk: int):
    """The merchant's own code; another merchant's raises PromotionCode.DoesNotExist."""
    from bookings.models import PromotionCode

    return PromotionCode.objects.get(merchant=merchant, pk=pk)


def slot_attendees(slot: Slot) -> QuerySet[Booking]:
    """Everyone who booked a time and still has or had seats: confirmed first, then by name."""
    from django.db.models import Case, IntegerField, Value, When

    shown = [BookingStatus.CONFIRMED, BookingStatus.REFUND_DUE, BookingStatus.REFUNDED, BookingStatus.REFUND_FAILED,
             BookingStatus.CANCELLED]
    return (
        Booking.objects.filter(slot=slot, status__in=shown)
        .annotate(confirmed_first=Case(When(status=BookingStatus.CONFIRMED, then=Value(0)), default=Value(1),
                                       output_field=IntegerField()))
        .order_by("confirmed_first", "customer_name", "pk")
    )


def slot_attendee_messages(slot: Slot) -> QuerySet:
    from django.db.models import Count, Q

    from bookings.models import AttendeeMessage

    return AttendeeMessage.objects.filter(slot=slot).annotate(
        recipients=Count("deliveries"), sent=Count("deliveries", filter=Q(deliveries__sent_at__isnull=False))
    )
