"""Forms of the merchant's tools: promotion codes and messages to attendees. They call the
services' validators rather than restating the rules."""

import datetime as dt
import uuid

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone

from bookings.models import Merchant
from bookings.money import to_minor_units
from bookings.services.messages import MESSAGE_BODY_MAX, MESSAGE_SUBJECT_MAX
from bookings.services.promotions import (
    promotion_account,
    promotion_code_taken,
    validate_promotion_code_text,
    validate_promotion_discount,
    validate_promotion_expiry,
    validate_promotion_limit,
)


def _service(validate, value):
    try:
        validate(value)
    except ValidationError as error:
        raise forms.ValidationError(error.messages[0]) from None


class PromotionCodeForm(forms.Form):
    code = forms.CharField(label="Code", max_length=40, help_text="What customers type on the payment page, e.g. SPRING20.",
                           error_messages={"required": "Enter the code customers will type, such as SPRING20."})
    kind = forms.ChoiceField(label="Discount", choices=[("percent", "Percent off"), ("amount", "Amount off")],
                             widget=forms.RadioSelect, initial="percent",
                             error_messages={"required": "Choose percent off or amount off."})
    percent_off = forms.IntegerField(label="Percent off", required=False, min_value=1, max_value=100,
                                     error_messages={"min_value": "A percentage off is a whole number from 1 to 100.",
                                                     "max_value": "A percentage off is a whole number from 1 to 100.",
                                                     "invalid": "A percentage off is a whole number from 1 to 100."})
    amount_off = forms.CharField(label="Amount off", required=False, max_length=20, help_text="Per order, e.g. 10.00.")
    currency = forms.ChoiceField(label="Currency", required=False)
    max_redemptions = forms.IntegerField(label="Limit of uses", required=False, min_value=1, max_value=1_000_000,
                                         help_text="Empty: no limit.",
                                         error_messages={"min_value": "A limit is at least 1 use; leave it empty for no limit.",
                                                         "invalid": "Enter a whole number of uses, or leave it empty."})
    expires_on = forms.DateField(label="Valid until", required=False,
                                 widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
                                 help_text="The last day it works, in your timezone. Empty: no expiry.",
                                 error_messages={"invalid": "Enter a day such as 2026-06-30."})
    request_key = forms.UUIDField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args, merchant: Merchant, **kwargs):
        super().__init__(*args, **kwargs)
        self.merchant = merchant
        currencies = sorted(set(merchant.listings.values_list("currency", flat=True))) or ["eur"]
        self.fields["currency"].choices = [(c, c.upper()) for c in currencies]
        self.fields["currency"].initial = currencies[0]
        if not self.is_bound:
            self.initial.setdefault("request_key", uuid.uuid4())

    def clean_code(self):
        code = self.cleaned_data["code"]
        _service(validate_promotion_code_text, code)
        code = validate_promotion_code_text(code)
        if promotion_code_taken(code=code, merchant=self.merchant, stripe_account=promotion_account(self.merchant)):
            raise forms.ValidationError(f"The code {code} is already in use. Please choose another.")
        return code

    def clean_expires_on(self):
        day = self.cleaned_data["expires_on"]
        if day is None:
            return None
        if day >= dt.date.max - dt.timedelta(days=1):
            raise forms.ValidationError("Choose an expiry within the next five years, or none.")
        # Works through the whole of that day on the merchant's clock.
        expires_at = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=self.merchant.zone)
        _service(lambda value: validate_promotion_expiry(expires_at=value), expires_at)
        return expires_at

    def clean(self):
        data = super().clean()
        kind = data.get("kind")
        percent, amount = None, None
        if kind == "percent":
            percent = data.get("percent_off")
            if percent is None and "percent_off" not in self.errors:
                self.add_error("percent_off", "Enter a percentage off from 1 to 100.")
                return data
        elif kind == "amount":
            currency = data.get("currency") or ""
            text = (data.get("amount_off") or "").strip()
            if not text:
                self.add_error("amount_off", "Enter the amount off, such as 10.00.")
                return data
            try:
                amount = to_minor_units(text, currency)
            except ValueError as error:
                self.add_error("amount_off", str(error))
                return data
        else:
            return data
        try:
            validate_promotion_discount(percent_off=percent, amount_off=amount)
            validate_promotion_limit(max_redemptions=data.get("max_redemptions"))
        except ValidationError as error:
            self.add_error("amount_off" if kind == "amount" else "percent_off", error.messages[0])
        data["percent_value"], data["amount_value"] = percent, amount
        return data

    def one_time_key(self) -> uuid.UUID:
        return self.cleaned_data.get("request_key") or uuid.uuid4()


class AttendeeMessageForm(forms.Form):
    subject = forms.CharField(label="Subject", max_length=MESSAGE_SUBJECT_MAX,
                              error_messages={"required": "Write a subject.",
                                              "max_length": f"Keep the subject under {MESSAGE_SUBJECT_MAX} characters."})
    body = forms.CharField(label="Message", max_length=MESSAGE_BODY_MAX, widget=forms.Textarea(attrs={"rows": 8}),
                           error_messages={"required": "Write the message.",
                                           "max_length": f"Keep the message under {MESSAGE_BODY_MAX} characters."})
    submission_key = forms.UUIDField(widget=forms.HiddenInput,
                                     error_messages={"required": "This form is out of date: please write the message again.",
                                                     "invalid": "This form is out of date: please write the message again."})

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            self.initial.setdefault("submission_key", uuid.uuid4())


def merchant_today(merchant: Merchant) -> dt.date:
    return timezone.now().astimezone(merchant.zone).date()
