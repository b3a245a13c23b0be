"""Forms of the merchant dashboard. They parse and check what a person typed; the services
check what depends on the database. Every error is a sentence saying what to do next."""

import datetime as dt
import re
import zoneinfo
from decimal import Decimal
from urllib.parse import urlsplit

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import PasswordResetForm, _unicode_ci_compare
from django.core.validators import URLValidator
from django.utils import timezone

from bookings.models import (
    REMINDER_HOURS_CHOICES,
    REMINDER_HOURS_DEFAULT,
    BookingStatus,
    CancellationPolicy,
    Listing,
    Merchant,
    PlaceKind,
)
from bookings.money import (
    STRIPE_AMOUNT_MAX,
    SUPPORTED_CURRENCIES,
    currency_exponent,
    format_money,
    from_minor_units,
    to_minor_units,
)
from bookings import selectors
from bookings.selectors import BookingFilters
from bookings.timezones import timezone_choices
from bookings.services import (
    CANCEL_FREE_HOURS_MAX,
    ONLINE_URL_MAX,
    PLACE_TEXT_MAX,
    SLOT_CAPACITY_MAX,
    BookingError,
    validate_capacity,
    validate_capacity_floor,
    validate_series_range,
    validate_place,
    validate_series_start_times,
    validate_slot_start,
)

PRICE_MAX_MAJOR = Decimal("1000000")
DURATION_MAX_MINUTES = 24 * 60

WEEKDAYS = [(str(n), name) for n, name in enumerate(("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"))]
CURRENCY_CHOICES = [(code, f"{code.upper()} · {name}") for code, name in sorted(SUPPORTED_CURRENCIES.items())]


def service_rule(validate):
    """A field validator made of a service's rule: its refusal becomes the field's error."""

    def validator(value):
        try:
            validate(value)
        except BookingError as error:
            raise forms.ValidationError(str(error)) from None

    return validator


def capacity_field(**kwargs) -> forms.IntegerField:
    return forms.IntegerField(
        widget=forms.NumberInput(attrs={"min": 1, "max": SLOT_CAPACITY_MAX}),
        validators=[service_rule(validate_capacity)],
        error_messages={
            "required": "Enter how many seats this time has.",
            "invalid": "Enter the number of seats as a whole number, such as 8.",
        },
        **kwargs,
    )


# Dates far from now are refused before any timezone arithmetic, which overflows near year 1 or 9999.
YEAR_MIN, YEAR_MAX = 1970, 2100


def _sane_year(value: dt.date) -> None:
    if not YEAR_MIN <= value.year <= YEAR_MAX:
        raise forms.ValidationError(f"Enter a date between {YEAR_MIN} and {YEAR_MAX}.")


def _date_field(label: str, **kwargs) -> forms.DateField:
    return forms.DateField(
        label=label,
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
        input_formats=["%Y-%m-%d", "%d/%m/%Y"],
        validators=[_sane_year],
        error_messages={"invalid": "Enter a date such as 2026-05-31.", "required": "Enter a date."},
        **kwargs,
    )


def single_line(value: str) -> str:
    return " ".join(value.split())


class ListingForm(forms.Form):
    title = forms.CharField(
        max_length=120,
        error_messages={
            "required": "Give the listing a title customers will recognise.",
            "max_length": "Keep the title to %(limit_value)d characters or fewer (it has %(show_value)d).",
        },
    )
    description = forms.CharField(
        required=False,
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text="What customers get and what to bring (where it happens goes under Place).",
        error_messages={
            "max_length": "Keep the description to %(limit_value)d characters or fewer (it has %(show_value)d)."
        },
    )
    price = forms.CharField(
        label="Price per seat",
        max_length=32,
        help_text="In the chosen currency, such as 45.00.",
        error_messages={"required": "Enter the price of one seat, such as 45.00."},
    )
    currency = forms.ChoiceField(
        choices=CURRENCY_CHOICES,
        error_messages={
            "invalid_choice": "Choose one of the currencies in the list.",
            "required": "Choose a currency.",
        },
    )
    duration_minutes = forms.IntegerField(
        label="Duration (minutes)",
        min_value=1,
        max_value=DURATION_MAX_MINUTES,
        initial=60,
        error_messages={
            "required": "Enter how long it lasts, in minutes.",
            "invalid": "Enter the duration in whole minutes, such as 90.",
            "min_value": "A listing lasts at least 1 minute.",
            "max_value": f"A listing can last at most {DURATION_MAX_MINUTES} minutes (a day).",
        },
    )

    cancel_policy = forms.ChoiceField(
        label="Who may cancel",
        choices=[
            (CancellationPolicy.CUSTOMER_MAY_CANCEL, "Customers may cancel and move their bookings themselves"),
            (CancellationPolicy.NO_SELF_SERVICE, "No self-service cancellation: customers write to you"),
        ],
        initial=CancellationPolicy.CUSTOMER_MAY_CANCEL,
        widget=forms.RadioSelect,
        error_messages={"invalid_choice": "Choose one of the cancellation policies in the list.", "required": "Choose a cancellation policy."},
    )
    cancel_free_hours = forms.IntegerField(
        label="Free cancellation ends (hours before the start)",
        min_value=0,
        max_value=CANCEL_FREE_HOURS_MAX,
        initial=24,
        help_text="Until then customers get everything back and may move to another time. 0: until the start.",
        error_messages={
            "required": "Enter how many hours before the start free cancellation ends, such as 24.",
            "invalid": "Enter whole hours, such as 24 or 48.",
            "min_value": "Enter 0 or more hours.",
            "max_value": f"Free cancellation can end at most {CANCEL_FREE_HOURS_MAX} hours (a year) before the start.",
        },
    )
    cancel_late_keep_percent = forms.IntegerField(
        label="After that, you keep (% of the payment)",
        min_value=0,
        max_value=100,
        initial=100,
        help_text="100: no refund for late cancellations. 0: everything back until the start. The kept share is rounded down to the cent.",
        error_messages={
            "required": "Enter the share you keep of a late cancellation, from 0 to 100.",
            "invalid": "Enter a whole percentage from 0 to 100.",
            "min_value": "Enter a percentage from 0 to 100.",
            "max_value": "Enter a percentage from 0 to 100.",
        },
    )
    place_kind = forms.ChoiceField(
        label="Where it happens",
        choices=PlaceKind.choices,
        required=False,
        error_messages={"invalid_choice": "Choose where it happens from the list."},
    )
    place_text = forms.CharField(
        label="Address or meeting point",
        required=False,
        max_length=PLACE_TEXT_MAX,
        help_text="Shown on the listing, the booking and in e-mails; an address gets a map link.",
        error_messages={"max_length": "Keep the place to %(limit_value)d characters or fewer (it has %(show_value)d)."},
    )
    online_url = forms.CharField(
        label="Online link",
        required=False,
        max_length=ONLINE_URL_MAX,
        widget=forms.URLInput(attrs={"placeholder": "https://"}),
        help_text="Starts with https://. Given only to confirmed customers, never on the public listing.",
        error_messages={"max_length": "Keep the link to %(limit_value)d characters or fewer (it has %(show_value)d)."},
    )
    reminder_hours = forms.TypedChoiceField(
        label="Reminder e-mail",
        choices=REMINDER_HOURS_CHOICES,
        coerce=int,
        required=False,
        empty_value=None,
        initial=REMINDER_HOURS_DEFAULT,
        help_text="Sent to each confirmed customer this long before their time (not to those who book later than that).",
        error_messages={
            "invalid_choice": "Choose when to remind customers from the list.",
            "required": "Choose when to remind customers.",
        },
    )

    @classmethod
    def for_new_listing(cls, merchant: Merchant, data=None) -> "ListingForm":
        """The form for a merchant's next listing: in the currency they sold in last, else the
        site's LISTING_DEFAULT_CURRENCY."""
        currency = selectors.merchant_usual_currency(merchant) or settings.LISTING_DEFAULT_CURRENCY
        return cls(data, initial={"currency": currency})

    @classmethod
    def for_listing(cls, listing: Listing) -> "ListingForm":
        return cls(
            initial={
                "title": listing.title,
                "description": listing.description,
                "price": str(from_minor_units(listing.price_amount, listing.currency)),
                "currency": listing.currency,
                "duration_minutes": listing.duration_minutes,
                "cancel_policy": listing.cancel_policy,
                "cancel_free_hours": listing.cancel_free_hours,
                "cancel_late_keep_percent": listing.cancel_late_keep_percent,
                "place_kind": listing.place_kind,
                "place_text": listing.place_text,
                "online_url": listing.online_url,
                "reminder_hours": listing.reminder_hours,
            }
        )

    def clean_title(self):
        title = single_line(self.cleaned_data["title"])
        if not title:
            raise forms.ValidationError("Give the listing a title customers will recognise.")
        return title

    def clean_description(self):
        return self.cleaned_data["description"].strip()

    def clean_place_text(self):
        return single_line(self.cleaned_data["place_text"])

    def clean_online_url(self):
        url = self.cleaned_data["online_url"].strip()
        if url and self.cleaned_data.get("place_kind") == PlaceKind.ONLINE:
            try:
                URLValidator(schemes=["https"])(url)
            except forms.ValidationError:
                raise forms.ValidationError(
                    "Enter a whole link that starts with https://, such as https://meet.example.com/abc."
                ) from None
        return url

    def clean(self):
        cleaned = super().clean()
        if "place_kind" in cleaned and "place_text" in cleaned and "online_url" in cleaned:
            try:
                validate_place(kind=cleaned["place_kind"], text=cleaned["place_text"], online_url=cleaned["online_url"])
            except BookingError as error:
                self.add_error(error.field, str(error))
        currency, price = cleaned.get("currency"), cleaned.get("price")
        if currency and price is not None:
            try:
                amount = to_minor_units(price.replace(" ", ""), currency)
            except ValueError as error:
                self.add_error("price", str(error))
            else:
                # A booking of the most seats must still be one payment Stripe can take.
                most = min(
                    int(PRICE_MAX_MAJOR.scaleb(currency_exponent(currency))),
                    STRIPE_AMOUNT_MAX // settings.BOOKING_MAX_QUANTITY,
                )
                if amount <= 0:
                    self.add_error("price", "Enter a price above zero.")
                elif amount > most:
                    self.add_error("price", f"Enter a price of at most {format_money(most, currency)}.")
                else:
                    cleaned["price_amount"] = amount
        return cleaned

    def service_arguments(self) -> dict:
        data = self.cleaned_data
        return {
            "title": data["title"],
            "description": data["description"],
            "price_amount": data["price_amount"],
            "currency": data["currency"],
            "duration_minutes": data["duration_minutes"],
            "cancel_policy": data["cancel_policy"],
            "cancel_free_hours": data["cancel_free_hours"],
            "cancel_late_keep_percent": data["cancel_late_keep_percent"],
            "place_kind": data["place_kind"],
            "place_text": data["place_text"],
            "online_url": data["online_url"],
            # Not sent: the listing's own (or, new, the default) stays.
            **({} if data["reminder_hours"] is None else {"reminder_hours": data["reminder_hours"]}),
        }


class _MerchantTimeForm(forms.Form):
    """A form whose dates and times are the merchant's wall-clock ones."""

    def __init__(self, *args, merchant: Merchant, **kwargs):
        super().__init__(*args, **kwargs)
        self.merchant = merchant

    def merchant_now(self) -> dt.datetime:
        return timezone.now().astimezone(self.merchant.zone)


class WallClockDateTimeField(forms.DateTimeField):
    """A day and time on the merchant's wall clock, made timezone-aware in their timezone (not
    the server's). A time the clocks skip or repeat is refused with a sentence."""

    zone: zoneinfo.ZoneInfo | None = None

    def to_python(self, value):
        if value in self.empty_values:
            return None
        if isinstance(value, dt.datetime):
            naive = value.replace(tzinfo=None)
        else:
            naive = None
            for fmt in self.input_formats:
                try:
                    naive = dt.datetime.strptime(str(value).strip(), fmt)
                    break
                except (ValueError, TypeError):
                    continue
            if naive is None:
                raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        _sane_year(naive)
        zone = self.zone or timezone.get_current_timezone()
        local = naive.replace(tzinfo=zone)
        repeated = local.replace(fold=1).utcoffset() != local.utcoffset()
        if repeated or not _exists(local):
            raise forms.ValidationError(
                f"{naive:%H:%M} on {naive.day} {naive:%B} does not exist or happens twice in {zone.key}, because "
                "the clocks change then. Choose another time.",
                code="clock_change",
            )
        return local


class SlotForm(_MerchantTimeForm):
    starts_at = WallClockDateTimeField(
        label="Starts at",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"],
        error_messages={
            "required": "Enter the day and time it starts.",
            "invalid": "Enter a day and time such as 2026-05-31 10:00.",
        },
    )
    capacity = capacity_field(initial=8)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["starts_at"].zone = self.merchant.zone

    def clean_starts_at(self):
        starts_at = self.cleaned_data["starts_at"]
        service_rule(lambda value: validate_slot_start(value, now=timezone.now()))(starts_at)
        return starts_at


def _exists(local: dt.datetime) -> bool:
    round_trip = local.astimezone(dt.UTC).astimezone(local.tzinfo)
    return round_trip.replace(tzinfo=None) == local.replace(tzinfo=None)


TIME_PATTERN = re.compile(r"^([01]?\d|2[0-3])[:.h]([0-5]\d)$")


class SeriesForm(_MerchantTimeForm):
    weekdays = forms.MultipleChoiceField(
        label="On these days",
        choices=WEEKDAYS,
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Tick at least one day of the week.", "invalid_choice": "Tick days from the list."},
    )
    start_times = forms.CharField(
        label="Start times",
        max_length=300,
        help_text="24-hour times separated by commas, such as 10:00, 14:30.",
        error_messages={"required": "Enter at least one start time, such as 10:00."},
    )
    first_day = _date_field("From")
    last_day = _date_field("Until (included)")
    capacity = capacity_field(initial=8)

    def clean_start_times(self):
        times = set()
        for part in re.split(r"[,;\s]+", self.cleaned_data["start_times"].strip()):
            if not part:
                continue
            match = TIME_PATTERN.match(part)
            if not match:
                raise forms.ValidationError(f"“{part[:20]}” is not a time. Write times like 09:30 or 14:00.")
            times.add(dt.time(int(match[1]), int(match[2])))
        times = tuple(sorted(times))
        service_rule(validate_series_start_times)(times)
        return times

    def clean_weekdays(self):
        return frozenset(int(day) for day in self.cleaned_data["weekdays"])

    def clean(self):
        cleaned = super().clean()
        first, last = cleaned.get("first_day"), cleaned.get("last_day")
        if first and last:
            try:
                validate_series_range(first_day=first, last_day=last, today=self.merchant_now().date())
            except BookingError as error:
                self.add_error(error.field, str(error))
        return cleaned

    def series_arguments(self) -> dict:
        data = self.cleaned_data
        return {
            "weekdays": data["weekdays"],
            "start_times": data["start_times"],
            "first_day": data["first_day"],
            "last_day": data["last_day"],
        }


class CapacityForm(forms.Form):
    capacity = capacity_field()

    def __init__(self, *args, slot, **kwargs):
        kwargs.setdefault("initial", {"capacity": slot.capacity})
        super().__init__(*args, **kwargs)
        self.slot = slot
        sold = slot.seats_sold + slot.seats_held
        field = self.fields["capacity"]
        field.widget.attrs.update(min=max(sold, 1), max=SLOT_CAPACITY_MAX)
        field.help_text = capacity_help(sold)

    def clean_capacity(self):
        capacity = self.cleaned_data["capacity"]
        service_rule(
            lambda value: validate_capacity_floor(
                capacity=value, seats_sold=self.slot.seats_sold, seats_held=self.slot.seats_held
            )
        )(capacity)
        return capacity


def capacity_help(seats_sold: int) -> str:
    """What the capacity field says under it: how low the capacity can go."""
    if not seats_sold:
        return "No seats are sold yet."
    seats = "1 seat is" if seats_sold == 1 else f"{seats_sold} seats are"
    return f"{seats} already sold, so capacity cannot go below {seats_sold}."


class RefundForm(forms.Form):
    amount = forms.CharField(
        label="Amount to refund",
        max_length=32,
        error_messages={"required": "Enter the amount to refund, such as 10.00."},
    )

    def __init__(self, *args, booking, outstanding: int, **kwargs):
        self.currency = booking.currency
        self.outstanding = outstanding
        kwargs.setdefault("initial", {"amount": str(from_minor_units(outstanding, booking.currency))})
        super().__init__(*args, **kwargs)
        self.fields["amount"].help_text = (
            f"Up to {format_money(outstanding, booking.currency)}. The full amount cancels the booking and frees "
            "its seats; less leaves the booking in place."
        )

    def clean_amount(self):
        try:
            amount = to_minor_units(self.cleaned_data["amount"].replace(" ", ""), self.currency)
        except ValueError as error:
            raise forms.ValidationError(str(error)) from None
        if amount <= 0:
            raise forms.ValidationError("Enter an amount above zero.")
        if amount > self.outstanding:
            raise forms.ValidationError(
                f"You can refund at most {format_money(self.outstanding, self.currency)}, what is left of the payment."
            )
        return amount


STATUS_FILTER_CHOICES = [("", "All statuses"), ("attention", "Needs attention"), *BookingStatus.choices]


class BookingFilterForm(forms.Form):
    """The filters of the bookings list, read from the query string. Anything that does not
    parse is reported beside its field and ignored, never an error page."""

    status = forms.ChoiceField(
        required=False,
        choices=STATUS_FILTER_CHOICES,
        error_messages={"invalid_choice": "Choose a status from the list."},
    )
    listing = forms.TypedChoiceField(
        required=False,
        coerce=int,
        empty_value=None,
        error_messages={"invalid_choice": "Choose one of your listings."},
    )
    date_from = _date_field("From", required=False)
    date_to = _date_field("Until", required=False)
    q = forms.CharField(
        label="Customer e-mail",
        template_name="forms/field_grow.html",
        required=False,
        max_length=254,
        widget=forms.TextInput(attrs={"type": "search", "placeholder": "name@example.com", "autocomplete": "off"}),
        error_messages={"max_length": "Search with at most %(limit_value)d characters."},
    )
    slot = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=2**62,
        widget=forms.HiddenInput,
        error_messages={
            "invalid": "That time is not one of yours.",
            "min_value": "That time is not one of yours.",
            "max_value": "That time is not one of yours.",
        },
    )

    def __init__(self, *args, listings: list[Listing], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["listing"].choices = [("", "All listings")] + [
            (str(listing.pk), listing.title + ("" if listing.is_active else " (archived)")) for listing in listings
        ]

    def clean(self):
        cleaned = super().clean()
        date_from, date_to = cleaned.get("date_from"), cleaned.get("date_to")
        if date_from and date_to and date_to < date_from:
            self.add_error("date_to", "Choose an end date on or after the start date.")
        return cleaned

    def filters(self) -> BookingFilters:
        """The valid filters; an invalid one is left out."""
        self.is_valid()
        data = {name: value for name, value in self.cleaned_data.items() if name not in self.errors}
        return BookingFilters(
            status=data.get("status") or "",
            date_from=data.get("date_from"),
            date_to=data.get("date_to") if "date_to" not in self.errors else None,
            email=(data.get("q") or "").strip(),
            listing_id=data.get("listing"),
            slot_id=data.get("slot"),
        )


class ProfileForm(forms.Form):
    display_name = forms.CharField(
        label="Name shown to customers",
        max_length=120,
        error_messages={
            "required": "Enter the name customers see on your listings and e-mails.",
            "max_length": "Keep the name to %(limit_value)d characters or fewer.",
        },
    )
    timezone = forms.ChoiceField(
        label="Timezone",
        help_text="Times of your slots are entered and shown in this timezone.",
        error_messages={"invalid_choice": "Choose a timezone from the list.", "required": "Choose your timezone."},
    )
    support_email = forms.EmailField(
        label="Support e-mail",
        required=False,
        max_length=254,
        help_text="Customers' replies to booking e-mails go here; refund alerts too.",
        error_messages={"invalid": "Enter an e-mail address such as help@example.com."},
    )

    def __init__(self, *args, current_timezone: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        # Canonical names by region; a merchant's existing alias stays selectable (services check the same rule).
        self.fields["timezone"].choices = timezone_choices(current_timezone)

    def clean_display_name(self):
        name = single_line(self.cleaned_data["display_name"])
        if not name:
            raise forms.ValidationError("Enter the name customers see on your listings and e-mails.")
        return name


class MerchantPasswordResetForm(PasswordResetForm):
    """Django's reset form, which also lets a merchant created without a password (by
    `createmerchant`) choose their first one. Other accounts without a usable password, such
    as ones meant never to sign in with one, still get no e-mail."""

    def save(self, *args, domain_override=None, use_https=False, **kwargs):
        """Send the links to SITE_URL when it is set, never to whatever Host the request named."""
        if settings.SITE_URL:
            site = urlsplit(settings.SITE_URL)
            domain_override, use_https = site.netloc, site.scheme == "https"
        return super().save(*args, domain_override=domain_override, use_https=use_https, **kwargs)

    def get_users(self, email):
        email_field = get_user_model().get_email_field_name()
        users = get_user_model()._default_manager.filter(**{f"{email_field}__iexact": email, "is_active": True})
        for user in users:
            has_merchant = Merchant.objects.filter(user=user).exists()
            if (user.has_usable_password() or has_merchant) and _unicode_ci_compare(email, getattr(user, email_field)):
                yield user
