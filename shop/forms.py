from django import forms
from django.conf import settings
from django.core.validators import MaxValueValidator

from bookings.models import Slot
from bookings.money import STRIPE_AMOUNT_MAX, format_money


class BookingForm(forms.Form):
    """A customer's choice of slot and seats, checked against what the listing sells."""

    slot = forms.ModelChoiceField(
        queryset=Slot.objects.none(),
        widget=forms.RadioSelect,
        error_messages={
            "required": "Pick a time.",
            "invalid_choice": "That time is no longer available. Please pick another one.",
        },
    )
    quantity = forms.IntegerField(
        min_value=1,
        initial=1,
        error_messages={"required": "Say how many seats you need.", "invalid": "Enter a number of seats."},
    )
    customer_name = forms.CharField(
        label="Your name",
        max_length=120,
        error_messages={"required": "Tell us the name to put on the booking."},
    )
    customer_email = forms.EmailField(
        label="E-mail",
        max_length=254,
        error_messages={"required": "We need your e-mail to send the confirmation.", "invalid": "Enter a valid e-mail address."},
    )

    def __init__(self, *args, slots, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["slot"].queryset = slots
        max_quantity = settings.BOOKING_MAX_QUANTITY
        quantity = self.fields["quantity"]
        quantity.validators.append(
            MaxValueValidator(max_quantity, message=f"One booking can take up to {max_quantity} seats.")
        )
        quantity.error_messages["min_value"] = "Book at least one seat."
        quantity.widget.attrs.update(max=max_quantity)

    def clean_customer_name(self):
        name = " ".join(self.cleaned_data["customer_name"].split())
        if not name:
            raise forms.ValidationError("Tell us the name to put on the booking.")
        return name

    def clean(self):
        cleaned = super().clean()
        slot, quantity = cleaned.get("slot"), cleaned.get("quantity")
        if slot is not None and quantity is not None:
            listing = slot.listing
            if listing.price_amount * quantity > STRIPE_AMOUNT_MAX:
                most = format_money(STRIPE_AMOUNT_MAX, listing.currency)
                self.add_error("quantity", f"One payment can be at most {most}: book fewer seats at a time.")
        return cleaned


class ReceiptsLinkForm(forms.Form):
    """An address to e-mail a sign-in link to, and where to go once signed in."""

    email = forms.EmailField(
        label="E-mail",
        max_length=254,
        error_messages={"required": "Enter the e-mail address you booked with.", "invalid": "Enter a valid e-mail address."},
    )
    next = forms.CharField(max_length=500, required=False, widget=forms.HiddenInput)

    def clean_next(self):
        # Only a path on this site: the link must never lead a customer elsewhere.
        path = self.cleaned_data["next"]
        if not path.startswith("/") or path.startswith("//") or "\\" in path or not path.isprintable():
            return ""
        return path


class CancelConfirmForm(forms.Form):
    """The customer confirms a cancellation: with the refund they were shown, so that a change
    of terms meanwhile is caught rather than silently applied."""

    expected_refund = forms.IntegerField(min_value=0, max_value=STRIPE_AMOUNT_MAX, widget=forms.HiddenInput)


class RescheduleForm(forms.Form):
    slot = forms.IntegerField(
        min_value=1,
        max_value=2**62,
        error_messages={
            "required": "Choose the time to move your booking to.",
            "invalid": "Choose one of the times listed.",
            "min_value": "Choose one of the times listed.",
            "max_value": "Choose one of the times listed.",
        },
    )


class WaitlistForm(BookingForm):
    """A place on a sold-out time's waitlist: the time, the seats wanted, who to e-mail. The same
    checks as a booking (the services' own refusals are added by the view)."""

    def __init__(self, *args, **kwargs):
        # Its own ids: on the listing it sits beside the booking form's fields.
        kwargs.setdefault("auto_id", "waitlist_%s")
        super().__init__(*args, **kwargs)
        self.fields["slot"].widget = forms.HiddenInput()
        self.fields["slot"].error_messages["invalid_choice"] = "That time is no longer on sale. Please pick another one."
        self.fields["customer_email"].error_messages["required"] = "We need your e-mail to tell you when seats free up."
        self.fields["customer_email"].help_text = "We e-mail you a link that holds the seats for you if they free up."
        self.fields["customer_name"].error_messages["required"] = "Tell us your name."
        self.fields["quantity"].label = "Seats you need"

    def clean_customer_name(self):
        name = " ".join(self.cleaned_data["customer_name"].split())
        if not name:
            raise forms.ValidationError("Tell us your name.")
        return name


class OfferCheckoutForm(forms.Form):
    """The name to put on the booking of seats offered from the waitlist."""

    customer_name = forms.CharField(
        label="Name on the booking",
        max_length=120,
        error_messages={"required": "Tell us the name to put on the booking."},
    )

    def clean_customer_name(self):
        name = " ".join(self.cleaned_data["customer_name"].split())
        if not name:
            raise forms.ValidationError("Tell us the name to put on the booking.")
        return name
