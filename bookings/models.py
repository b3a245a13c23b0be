import secrets
import zoneinfo
from urllib.parse import urlencode

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.dispatch import Signal
from django.utils import timezone as django_timezone

# Sent with the model as sender when a bulk write (QuerySet.update, bulk_create), which sends no
# post_save, changed rows of a model the storefront shows. Connected in BookingsConfig.ready().
rows_written_in_bulk = Signal()


class ShownOnStorefrontQuerySet(models.QuerySet):
    """Rows the public pages show (merchants, listings, slots): a bulk write that changes any
    says so with `rows_written_in_bulk`, as save() and delete() do with post_save/post_delete."""

    def update(self, **kwargs) -> int:
        changed = super().update(**kwargs)
        if changed:
            rows_written_in_bulk.send(sender=self.model)
        return changed

    def bulk_create(self, objs, *args, **kwargs):
        created = super().bulk_create(objs, *args, **kwargs)
        if created:
            rows_written_in_bulk.send(sender=self.model)
        return created


def validate_timezone_name(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"“{value}” is not a timezone name such as Europe/London.")


def new_public_token() -> str:
    return secrets.token_urlsafe(24)


class Merchant(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="merchant")
    display_name = models.CharField(max_length=120)
    timezone = models.CharField(max_length=64, default="Europe/London", validators=[validate_timezone_name])
    support_email = models.EmailField(blank=True)
    created_at = models.DateTimeField(default=django_timezone.now)

    # Stripe Connect (CONNECT_ENABLED): the merchant's connected account and what Stripe last
    # said of it (`account.updated`, or read back on the onboarding return page).
    stripe_account_id = models.CharField(max_length=255, blank=True)
    stripe_account_type = models.CharField(max_length=16, blank=True)
    stripe_charges_enabled = models.BooleanField(default=False)
    stripe_payouts_enabled = models.BooleanField(default=False)
    stripe_details_submitted = models.BooleanField(default=False)
    stripe_requirements_due = models.JSONField(default=list, blank=True)
    stripe_disabled_reason = models.CharField(max_length=255, blank=True)
    stripe_account_synced_at = models.DateTimeField(null=True, blank=True)
    # The merchant disconnected the platform (`account.application.deauthorized`): no more sales.
    stripe_account_deauthorized_at = models.DateTimeField(null=True, blank=True)

    objects = ShownOnStorefrontQuerySet.as_manager()

    class Meta:
        ordering = ["display_name"]
        constraints = [
            models.UniqueConstraint(
                fields=["stripe_account_id"], condition=~Q(stripe_account_id=""), name="merchant_stripe_account_unique"
            ),
        ]

    def __str__(self) -> str:
        return self.display_name

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    @property
    def stripe_account_rejected(self) -> bool:
        return self.stripe_disabled_reason.startswith("rejected")

    @property
    def can_take_payments(self) -> bool:
        """Whether this merchant's customers can pay now. Without Connect the platform's own account
        takes every payment; with it, the merchant's connected account must be able to charge."""
        if not settings.CONNECT_ENABLED:
            return True
        return bool(
            self.stripe_account_id
            and self.stripe_charges_enabled
            and self.stripe_account_deauthorized_at is None
            and not self.stripe_account_rejected
        )


class CancellationPolicy(models.TextChoices):
    # Customers cancel themselves: free until `cancel_free_hours` before the start, after that
    # the merchant keeps `cancel_late_keep_percent` of the payment (100: no refund).
    CUSTOMER_MAY_CANCEL = "customer", "Customers may cancel"
    # Customers cannot cancel or reschedule themselves: they write to the merchant.
    NO_SELF_SERVICE = "none", "No self-service cancellation"


class PlaceKind(models.TextChoices):
    NONE = "", "Not given"
    ADDRESS = "address", "An address"
    MEETING_POINT = "meeting_point", "A meeting point"
    ONLINE = "online", "Online"


# How long before a time starts its customers are reminded by e-mail (0: no reminder). A short
# list, so that finding the reminders due is one query with a condition per choice.
REMINDER_HOURS_CHOICES = [
    (0, "No reminder"),
    (1, "1 hour before"),
    (2, "2 hours before"),
    (3, "3 hours before"),
    (6, "6 hours before"),
    (12, "12 hours before"),
    (24, "24 hours before"),
    (48, "2 days before"),
    (72, "3 days before"),
    (168, "1 week before"),
]
REMINDER_HOURS_DEFAULT = 24


class Listing(models.Model):
    Place = PlaceKind

    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="listings")
    title = models.CharField(max_length=120)
    slug = models.SlugField(max_length=140, unique=True)
    description = models.TextField(blank=True)
    price_amount = models.PositiveIntegerField(help_text="Price per seat in the currency's minor unit (cents, pence…).")
    currency = models.CharField(max_length=3, default="eur")
    duration_minutes = models.PositiveIntegerField(default=60)
    # How long a checkout holds its seats, when this listing needs longer than settings.HOLD_MINUTES.
    hold_minutes = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(30), MaxValueValidator(24 * 60)],
        help_text="Minutes a customer has to pay while their seats are held (30 to 1440); empty: the site's default.",
    )
    # The cancellation policy customers are shown before they pay (bookings.policies). A booking
    # keeps a copy of the terms it was sold under (Booking.policy_*).
    cancel_policy = models.CharField(
        max_length=16, choices=CancellationPolicy.choices, default=CancellationPolicy.CUSTOMER_MAY_CANCEL
    )
    cancel_free_hours = models.PositiveIntegerField(default=24, validators=[MaxValueValidator(24 * 365)])
    cancel_late_keep_percent = models.PositiveSmallIntegerField(default=100, validators=[MaxValueValidator(100)])
    is_active = models.BooleanField(default=True, help_text="Archived listings leave the catalog but keep their bookings.")
    # Where it happens. An address or a meeting point is public (an address gets a map link); an
    # online link is given only to confirmed customers: never on the public listing.
    place_kind = models.CharField(max_length=16, choices=PlaceKind.choices, blank=True, default=PlaceKind.NONE)
    place_text = models.CharField(max_length=300, blank=True, help_text="The address or meeting point.")
    online_url = models.URLField(max_length=500, blank=True, help_text="The https link to join; confirmed customers only.")
    reminder_hours = models.PositiveSmallIntegerField(choices=REMINDER_HOURS_CHOICES, default=REMINDER_HOURS_DEFAULT)
    # The listing's own product at the payment provider: its checkouts sell it, and its merchant's
    # promotion codes apply to it (and to no other merchant's listings). Made at its first checkout.
    stripe_product_id = models.CharField(max_length=255, blank=True)
    # The title the provider's product was last given, so a renamed listing renames it.
    stripe_product_title = models.CharField(max_length=120, blank=True)
    # The account the product lives on ("" the platform's; with Connect the merchant's connected
    # account): a product exists on one account only, so it is made anew when that changes.
    stripe_product_account = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(default=django_timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ShownOnStorefrontQuerySet.as_manager()

    class Meta:
        ordering = ["title"]
        constraints = [
            models.CheckConstraint(condition=Q(price_amount__gt=0), name="listing_price_positive"),
            models.CheckConstraint(condition=Q(duration_minutes__gt=0), name="listing_duration_positive"),
            models.CheckConstraint(
                condition=Q(cancel_late_keep_percent__lte=100), name="listing_cancel_keep_percent_at_most_100"
            ),
            # The last guard of what the listing form checks: a place of each kind has what it needs.
            models.CheckConstraint(
                condition=Q(place_kind="", place_text="", online_url="")
                | Q(place_kind__in=["address", "meeting_point"], online_url="") & ~Q(place_text="")
                | Q(place_kind="online", place_text="", online_url__startswith="https://"),
                name="listing_place_complete",
                violation_error_message="Give an address or meeting point with its text, or an online link "
                "that starts with https://, or no place at all.",
            ),
            models.CheckConstraint(
                condition=Q(reminder_hours__in=[hours for hours, _ in REMINDER_HOURS_CHOICES]),
                name="listing_reminder_hours_offered",
            ),
        ]
        indexes = [models.Index(fields=["is_active", "title"], name="listing_catalog_idx")]

    def __str__(self) -> str:
        return self.title

    @property
    def map_url(self) -> str:
        """An OpenStreetMap search for the address (made here: nothing is fetched), or ""."""
        if self.place_kind != PlaceKind.ADDRESS or not self.place_text:
            return ""
        return "https://www.openstreetmap.org/search?" + urlencode({"query": self.place_text})

    @property
    def is_online(self) -> bool:
        return self.place_kind == PlaceKind.ONLINE


class Slot(models.Model):
    listing = models.ForeignKey(Listing, on_delete=models.PROTECT, related_name="slots")
    starts_at = models.DateTimeField()
    capacity = models.PositiveIntegerField()
    # Free to sell: capacity less the seats sold and the seats held by open checkouts (seats_held).
    seats_left = models.PositiveIntegerField()
    seats_held = models.PositiveIntegerField(default=0)
    is_on_sale = models.BooleanField(default=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=django_timezone.now)

    objects = ShownOnStorefrontQuerySet.as_manager()

    class Meta:
        ordering = ["starts_at", "pk"]
        constraints = [
            models.CheckConstraint(condition=Q(capacity__gte=1), name="slot_capacity_at_least_one"),
            models.CheckConstraint(
                condition=Q(seats_left__gte=0) & Q(seats_left__lte=F("capacity")),
                name="slot_seats_left_within_capacity",
            ),
            # Sold + held + free = capacity, with sold never negative: no seat is held or sold twice.
            models.CheckConstraint(
                condition=Q(seats_held__gte=0) & Q(seats_held__lte=F("capacity") - F("seats_left")),
                name="slot_seats_held_within_capacity",
            ),
            # A listing sells a given time once; a cancelled time may be added again.
            models.UniqueConstraint(
                fields=["listing", "starts_at"],
                condition=Q(cancelled_at__isnull=True),
                name="slot_once_per_listing_and_time",
            ),
        ]
        indexes = [
            models.Index(fields=["listing", "starts_at"], name="slot_listing_start_idx"),
            models.Index(fields=["starts_at"], name="slot_starts_at_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.listing} at {self.starts_at:%Y-%m-%d %H:%M %Z}"

    @property
    def seats_sold(self) -> int:
        return self.capacity - self.seats_left - self.seats_held

    @property
    def is_sold_out(self) -> bool:
        return self.seats_left == 0

    @property
    def is_cancelled(self) -> bool:
        return self.cancelled_at is not None

    @property
    def has_started(self) -> bool:
        return self.starts_at <= django_timezone.now()

    @property
    def is_bookable(self) -> bool:
        return self.is_on_sale and not self.is_cancelled and self.seats_left > 0 and self.starts_at > django_timezone.now()


class RefundReason(models.TextChoices):
    SOLD_OUT = "sold_out", "Sold out while paying"
    SLOT_CANCELLED = "slot_cancelled", "Time cancelled by the merchant"
    MERCHANT = "merchant", "Refunded by the merchant"
    CUSTOMER_CANCELLED = "customer_cancel", "Cancelled by the customer under the policy"


class BookingStatus(models.TextChoices):
    PENDING = "pending", "Waiting for payment"
    CONFIRMED = "confirmed", "Confirmed"
    REFUND_DUE = "refund_due", "Refund due"
    REFUNDED = "refunded", "Refunded"
    REFUND_FAILED = "refund_failed", "Refund failed"
    CANCELLED = "cancelled", "Cancelled"
    EXPIRED = "expired", "Payment not completed"


class Booking(models.Model):
    Status = BookingStatus

    slot = models.ForeignKey(Slot, on_delete=models.PROTECT, related_name="bookings")
    quantity = models.PositiveIntegerField()
    customer_email = models.EmailField()
    customer_name = models.CharField(max_length=120)
    status = models.CharField(max_length=16, choices=BookingStatus.choices, default=BookingStatus.PENDING)
    # Price times quantity, in minor units; what Stripe actually took is amount_paid
    # (less when a promotion code applied, 0 for a 100% code).
    amount_total = models.PositiveIntegerField()
    currency = models.CharField(max_length=3)
    amount_paid = models.PositiveIntegerField(default=0)
    amount_refunded = models.PositiveIntegerField(default=0)

    checkout_session_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    checkout_expires_at = models.DateTimeField(null=True, blank=True)
    payment_intent_id = models.CharField(max_length=255, blank=True, db_index=True)
    stripe_customer_id = models.CharField(max_length=255, blank=True)
    # The connected account the booking's Checkout Session, Customer, payment and refunds live on
    # ("" = the platform's own account, Connect off). Recorded when checkout starts, so every later
    # call about the booking goes to that account even if the merchant's account changes.
    stripe_account_id = models.CharField(max_length=255, blank=True, db_index=True)
    # The platform's fee asked on the payment (payment_intent_data[application_fee_amount]).
    application_fee_amount = models.PositiveIntegerField(default=0)
    # Why the booking stopped holding seats (or never held them): what its customer is told.
    # Recorded by the transition that ends it (to refund_due or cancelled), never guessed later.
    ended_reason = models.CharField(max_length=16, choices=RefundReason.choices, blank=True)
    public_token = models.CharField(max_length=64, unique=True, default=new_public_token, editable=False)

    # The cancellation terms this booking was sold under (copied from its listing when its checkout
    # started; raised only when the merchant makes them more lenient). Empty: sold before
    # listings had a policy, so no self-service cancellation.
    policy_cancel = models.CharField(max_length=16, choices=CancellationPolicy.choices, blank=True)
    policy_free_hours = models.PositiveIntegerField(null=True, blank=True)
    policy_keep_percent = models.PositiveSmallIntegerField(null=True, blank=True)
    # Moves to another time of the same listing by the customer; the e-mail telling of the
    # latest is owed while `reschedules_notified` is behind.
    reschedules = models.PositiveIntegerField(default=0)
    reschedules_notified = models.PositiveIntegerField(default=0)
    cancelled_by_customer_at = models.DateTimeField(null=True, blank=True)
    # The merchant's e-mail telling them a customer cancelled.
    merchant_cancel_notice_sent_at = models.DateTimeField(null=True, blank=True)

    # Set once the success page last asked Stripe about this booking, to rate-limit those reads.
    stripe_checked_at = models.DateTimeField(null=True, blank=True)
    confirmation_email_sent_at = models.DateTimeField(null=True, blank=True)
    # For a booking cancelled with nothing to refund (a 100% promotion code); refunds notify per Refund.
    cancellation_email_sent_at = models.DateTimeField(null=True, blank=True)

    # Claimed (set) by the one process that sends the reminder, before it sends it.
    reminder_sent_at = models.DateTimeField(null=True, blank=True)
    # The SEQUENCE of the booking's calendar entry: raised whenever its time changes (a
    # reschedule), so calendars replace the entry with the same UID instead of adding one.
    calendar_sequence = models.PositiveIntegerField(default=0)

    created_at = models.DateTimeField(default=django_timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gte=1), name="booking_quantity_at_least_one"),
            models.CheckConstraint(
                condition=Q(amount_refunded__lte=F("amount_paid")), name="booking_refund_within_paid"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "created_at"], name="booking_status_created_idx"),
            models.Index(fields=["slot", "status"], name="booking_slot_status_idx"),
            # The bookings a reminder may still be owed to, for the periodic search.
            models.Index(
                fields=["slot"],
                condition=Q(status="confirmed", reminder_sent_at__isnull=True),
                name="booking_reminder_owed_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"Booking {self.pk} ({self.status})"

    @property
    def is_final(self) -> bool:
        return self.status != BookingStatus.PENDING

    @property
    def amount_refundable(self) -> int:
        return self.amount_paid - self.amount_refunded


class HoldKind(models.TextChoices):
    # Seats held while a customer pays on Checkout. Other kinds (a waitlist offer) share the count.
    CHECKOUT = "checkout", "Checkout"
    # Seats offered to a customer on the waitlist until they pay or the offer lapses.
    OFFER = "offer", "Waitlist offer"


class HoldEnd(models.TextChoices):
    CONVERTED = "converted", "Converted into a sale"
    RELEASED = "released", "Released"
    LAPSED = "lapsed", "Lapsed"


class Hold(models.Model):
    """Seats of a slot kept for someone until `expires_at`, counted in `Slot.seats_held` while
    `ended_at` is empty. Taken and ended only by bookings.services.holds, each exactly once."""

    Kind = HoldKind
    End = HoldEnd

    slot = models.ForeignKey(Slot, on_delete=models.PROTECT, related_name="holds")
    booking = models.OneToOneField(Booking, on_delete=models.PROTECT, related_name="hold", null=True, blank=True)
    kind = models.CharField(max_length=16, choices=HoldKind.choices, default=HoldKind.CHECKOUT)
    quantity = models.PositiveIntegerField()
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(default=django_timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)
    end = models.CharField(max_length=16, choices=HoldEnd.choices, blank=True)

    class Meta:
        ordering = ["expires_at", "pk"]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gte=1), name="hold_quantity_at_least_one"),
            models.CheckConstraint(
                condition=Q(ended_at__isnull=True, end="") | Q(ended_at__isnull=False) & ~Q(end=""),
                name="hold_end_recorded_with_its_time",
            ),
        ]
        indexes = [models.Index(fields=["ended_at", "expires_at"], name="hold_open_expiry_idx")]

    def __str__(self) -> str:
        return f"Hold {self.pk} of {self.quantity} on slot {self.slot_id} ({self.end or 'open'})"

    @property
    def is_open(self) -> bool:
        return self.ended_at is None


class WaitlistStatus(models.TextChoices):
    WAITING = "waiting", "Waiting"
    OFFERED = "offered", "Offered seats"
    BOOKED = "booked", "Took up the offer"
    LAPSED = "lapsed", "Offer not taken up"
    LEFT = "left", "Left the waitlist"
    CLOSED = "closed", "Time cancelled"


# An entry still in line for seats, or holding an offer of them.
WAITLIST_ACTIVE = (WaitlistStatus.WAITING, WaitlistStatus.OFFERED)


class WaitlistEntry(models.Model):
    """A customer waiting for seats of a sold-out time. When seats free up the first entries whose
    count fits are offered them: an offer is a Hold (kind `offer`), so offers, checkout holds and
    sales share one count. Written only by bookings.services.waitlist; each entry is offered once."""

    Status = WaitlistStatus

    slot = models.ForeignKey(Slot, on_delete=models.PROTECT, related_name="waitlist_entries")
    customer_name = models.CharField(max_length=120)
    customer_email = models.EmailField(help_text="Normalised: trimmed and lower-case.")
    quantity = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=WaitlistStatus.choices, default=WaitlistStatus.WAITING)
    created_at = models.DateTimeField(default=django_timezone.now)
    # The seats held for this entry while its offer is open (and after, as its record).
    offer_hold = models.OneToOneField(
        Hold, on_delete=models.PROTECT, related_name="waitlist_entry", null=True, blank=True
    )
    offered_at = models.DateTimeField(null=True, blank=True)
    # The booking its offer turned into once the customer went to pay.
    booking = models.OneToOneField(
        Booking, on_delete=models.PROTECT, related_name="waitlist_entry", null=True, blank=True
    )
    ended_at = models.DateTimeField(null=True, blank=True)
    # Claimed before each e-mail is sent, so that each is sent once.
    joined_email_sent_at = models.DateTimeField(null=True, blank=True)
    offer_email_sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gte=1), name="waitlist_quantity_at_least_one"),
            # One place in line per address and time.
            models.UniqueConstraint(
                fields=["slot", "customer_email"],
                condition=Q(status__in=["waiting", "offered"]),
                name="waitlist_once_per_email_and_slot",
            ),
            models.CheckConstraint(
                condition=~Q(status="offered") | Q(offer_hold__isnull=False), name="waitlist_offer_has_hold"
            ),
        ]
        indexes = [models.Index(fields=["slot", "status", "created_at"], name="waitlist_line_idx")]

    def __str__(self) -> str:
        return f"Waitlist entry {self.pk} for {self.quantity} on slot {self.slot_id} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in WAITLIST_ACTIVE


class RefundStatus(models.TextChoices):
    REQUESTED = "requested", "Requested"
    PENDING = "pending", "Pending at Stripe"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class Refund(models.Model):
    """One refund of a booking: written before Stripe is asked, so a crash can be finished later."""

    Reason = RefundReason
    Status = RefundStatus

    booking = models.ForeignKey(Booking, on_delete=models.PROTECT, related_name="refunds")
    amount = models.PositiveIntegerField()
    reason = models.CharField(max_length=16, choices=RefundReason.choices)
    status = models.CharField(max_length=16, choices=RefundStatus.choices, default=RefundStatus.REQUESTED)
    stripe_refund_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    failure_reason = models.CharField(max_length=255, blank=True)
    last_error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # One process at a time asks the provider for this refund; a crashed one's lease runs out.
    submit_lease_until = models.DateTimeField(null=True, blank=True)
    # Opened when the merchant asked again after an earlier refund of the same reason failed: it
    # keeps that reason (what the customer is told) but is a refund of its own at the provider.
    asked_again = models.BooleanField(default=False)
    # Connect: whether the platform's fee is refunded with this refund (decided when it is opened,
    # from CONNECT_REFUND_FEE_REASONS), and how much of it that gave back.
    refund_application_fee = models.BooleanField(default=False)
    application_fee_refunded = models.PositiveIntegerField(default=0)
    customer_notified_at = models.DateTimeField(null=True, blank=True)
    # A refund the customer was told of that then failed: they are told that too, once.
    customer_told_failed_at = models.DateTimeField(null=True, blank=True)
    merchant_alerted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=django_timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gte=1), name="refund_amount_positive"),
            # A booking is refunded for selling out, or for a cancelled slot, at most once (a refund
            # the merchant asks for again after that one failed is the only other).
            models.UniqueConstraint(
                fields=["booking", "reason"],
                condition=Q(reason__in=["sold_out", "slot_cancelled"], asked_again=False),
                name="refund_once_per_booking_and_automatic_reason",
            ),
        ]
        indexes = [models.Index(fields=["status"], name="refund_status_idx")]

    def __str__(self) -> str:
        return f"Refund {self.pk} of booking {self.booking_id} ({self.status})"

    def idempotency_key(self, attempt: int) -> str:
        """The first attempt's key is derived from the booking alone. Stripe replays a saved 500
        for a reused key, so a later attempt, made only after looking for a refund the earlier
        one may have created, needs a key of its own."""
        if self.reason in (RefundReason.SOLD_OUT, RefundReason.SLOT_CANCELLED) and not self.asked_again:
            base = f"booking-{self.booking_id}-{self.reason}-refund"
        else:
            base = f"booking-{self.booking_id}-refund-{self.pk}"
        return base if attempt <= 1 else f"{base}-attempt-{attempt}"


class ProvenCustomer(models.Model):
    """The one Stripe Customer of an e-mail address its owner has proved (by following a sign-in
    link sent to it), per Stripe account: with Connect a Customer lives on one merchant's
    connected account, so a person has one on each merchant they book with ("" = the platform).
    Bookings made by that owner while signed in are paid as this Customer, so its billing portal
    shows all of them. Never found by searching Stripe: only created."""

    email = models.CharField(max_length=254, help_text="Normalised: trimmed and lower-case.")
    stripe_account_id = models.CharField(max_length=255, blank=True, default="")
    stripe_customer_id = models.CharField(max_length=255, unique=True)
    created_at = models.DateTimeField(default=django_timezone.now)

    class Meta:
        ordering = ["email", "stripe_account_id"]
        constraints = [
            models.UniqueConstraint(fields=["email", "stripe_account_id"], name="proven_customer_once_per_account"),
        ]

    def __str__(self) -> str:
        return f"{self.email} ({self.stripe_customer_id})"


class CustomerSignInLink(models.Model):
    """One sign-in link e-mailed to an address. The link's token is signed over this row and its
    address, and is never stored; `used_at` makes it single-use."""

    email = models.CharField(max_length=254, help_text="Normalised: trimmed and lower-case.")
    # Where the visitor goes once signed in: a path on this site, checked when the link is asked for.
    next_path = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=django_timezone.now)
    used_at = models.DateTimeField(null=True, blank=True)
    # Claimed before the e-mail is sent, so a task delivered twice sends it once.
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["email", "created_at"], name="signin_link_email_idx")]

    def __str__(self) -> str:
        return f"Sign-in link {self.pk} ({'used' if self.used_at else 'unused'})"


class PromotionCode(models.Model):
    """A merchant's promotion code, made at the payment provider (a coupon and its code) and
    recorded here: who owns it is this row, never the provider's metadata. Percent or amount off,
    never both; the amount in `currency`'s minor unit."""

    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="promotion_codes")
    code = models.CharField(max_length=40)
    percent_off = models.PositiveSmallIntegerField(null=True, blank=True)
    amount_off = models.PositiveIntegerField(null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    max_redemptions = models.PositiveIntegerField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    active = models.BooleanField(default=True)
    stripe_coupon_id = models.CharField(max_length=255)
    stripe_promotion_code_id = models.CharField(max_length=255, unique=True)
    # The account the coupon and code live on ("" the platform's; with Connect the merchant's
    # connected account): Checkout offers a code only on sessions of that same account.
    stripe_account = models.CharField(max_length=255, blank=True, default="")
    # The listings whose products the coupon applies to when it was made (Stripe fixes them then).
    listings = models.ManyToManyField(Listing, related_name="promotion_codes", blank=True)
    # What the provider last said of its use; the page asks again when shown.
    times_redeemed = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=django_timezone.now)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(percent_off__isnull=False, amount_off__isnull=True, percent_off__gte=1, percent_off__lte=100)
                           | Q(percent_off__isnull=True, amount_off__isnull=False, amount_off__gte=1)),
                name="promotion_code_one_discount",
            ),
        ]

    def __str__(self) -> str:
        return self.code

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= django_timezone.now()

    @property
    def is_used_up(self) -> bool:
        return self.max_redemptions is not None and self.times_redeemed >= self.max_redemptions


class AttendeeMessage(models.Model):
    """A message a merchant wrote to the confirmed attendees of a time. Its recipients are fixed
    when it is written (one delivery per booking), each e-mailed once."""

    slot = models.ForeignKey(Slot, on_delete=models.PROTECT, related_name="attendee_messages")
    subject = models.CharField(max_length=150)
    body = models.TextField(max_length=5000)
    # The form's one-time key: a form submitted twice writes one message.
    submission_key = models.UUIDField(unique=True)
    created_at = models.DateTimeField(default=django_timezone.now)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return self.subject


class AttendeeMessageDelivery(models.Model):
    message = models.ForeignKey(AttendeeMessage, on_delete=models.CASCADE, related_name="deliveries")
    booking = models.ForeignKey(Booking, on_delete=models.PROTECT, related_name="attendee_messages")
    # Claimed before the e-mail is sent, so a retried task sends it once.
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(fields=["message", "booking"], name="attendee_message_once_per_booking"),
        ]
