"""My bookings, and a customer cancelling or moving their own booking.

All of it only for a visitor who has proved the booking's e-mail address (shop.receipts); anyone
else is offered a sign-in link to that address (403). Times are shown in each booking's merchant's
zone. Refusals are sentences with 409 (the booking's state forbids it) or 400 (a time that is not
one of this listing's), and change nothing.
"""

from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import formats, timezone
from django.views.decorators.http import require_GET, require_http_methods

from bookings import selectors
from bookings.calendar import booking_online_url
from bookings.models import Booking, Slot
from bookings.money import format_money
from bookings.policies import cancel_quote, reschedule_refusal
from bookings.services import BookingError, TermsChanged, booking_customer_cancel, booking_reschedule
from shop import receipts
from shop.forms import CancelConfirmForm, ReceiptsLinkForm, RescheduleForm
from shop.views import _booking_by_token_or_404, guessing_limited


def _row(booking: Booking, now) -> dict:
    quote = cancel_quote(booking, now=now)
    return {
        "booking": booking,
        "zone": booking.slot.listing.merchant.timezone,
        "money_back": selectors.booking_money_back(booking),
        "can_cancel": quote.allowed,
        "can_reschedule": not reschedule_refusal(booking, now=now),
        # Given only while the booking is confirmed (never to a cancelled or refunded one).
        "online_url": booking_online_url(booking),
    }


@require_GET
def my_bookings(request):
    """Every booking of the proven address, upcoming first; else the form asking for a link."""
    email = receipts.proven_email(request)
    if not email:
        form = ReceiptsLinkForm(initial={"next": reverse("shop:my_bookings")})
        return receipts._request_page(request, form, purpose="bookings")
    now = timezone.now()
    upcoming, past = selectors.customer_bookings(email, now=now)
    context = {
        "email": email,
        "proven_customer": selectors.proven_customer_of(email),
        "upcoming": [_row(b, now) for b in upcoming],
        "past": [_row(b, now) for b in past],
    }
    response = render(request, "shop/my_bookings.html", context)
    response["Cache-Control"] = "private, no-store"
    return response


def _owned_or_offer(request, token: str):
    booking = _booking_by_token_or_404(request, token)
    if not receipts.owns_booking(request, booking):
        return booking, receipts.link_offer(request, booking=booking, status=403)
    return booking, None


def _cancel_page(request, booking: Booking, *, status: int = 200, problem: str = ""):
    quote = cancel_quote(booking)
    context = {
        "booking": booking,
        "listing": booking.slot.listing,
        "merchant": booking.slot.listing.merchant,
        "starts_at": booking.slot.starts_at,
        "quote": quote,
        "refund_text": format_money(quote.refund, booking.currency),
        "form": CancelConfirmForm(initial={"expected_refund": quote.refund}),
        "problem": problem or quote.refusal,
    }
    if not quote.allowed and status == 200:
        status = 409
    with timezone.override(booking.slot.listing.merchant.zone):
        response = render(request, "shop/booking_cancel.html", context, status=status)
    response["Cache-Control"] = "private, no-store"
    return response


@require_http_methods(["GET", "POST"])
@guessing_limited
def booking_cancel(request, token: str):
    """GET: what cancelling now gives back, and the button. POST: cancel, if what it gives back
    is still what the customer was shown."""
    booking, refused = _owned_or_offer(request, token)
    if refused:
        return refused
    if request.method == "GET":
        return _cancel_page(request, booking)
    form = CancelConfirmForm(request.POST)
    if not form.is_valid():
        return _cancel_page(request, booking, status=400, problem="Please confirm the cancellation with the button below.")
    try:
        quote = booking_customer_cancel(booking=booking, expected_refund=form.cleaned_data["expected_refund"])
    except TermsChanged as changed:
        return _cancel_page(request, selectors.booking_by_token(token), status=409, problem=str(changed))
    except BookingError as error:
        return _cancel_page(request, selectors.booking_by_token(token), status=409, problem=str(error))
    if quote.refund:
        messages.success(
            request,
            f"Your booking is cancelled. A refund of {format_money(quote.refund, booking.currency)} is on its way.",
        )
    else:
        messages.success(request, "Your booking is cancelled and its seats are free for others.")
    return redirect("shop:booking", token=booking.public_token)


def _reschedule_page(request, booking: Booking, *, status: int = 200, problem: str = "", form=None):
    refusal = reschedule_refusal(booking)
    merchant = booking.slot.listing.merchant
    choices = [] if refusal else selectors.reschedule_choices(booking)
    quote = cancel_quote(booking)
    context = {
        "booking": booking,
        "listing": booking.slot.listing,
        "merchant": merchant,
        "starts_at": booking.slot.starts_at,
        "deadline": quote.deadline,
        "choices": choices,
        "form": form or RescheduleForm(),
        "problem": problem or refusal,
    }
    if refusal and status == 200:
        status = 409
    with timezone.override(merchant.zone):
        response = render(request, "shop/booking_reschedule.html", context, status=status)
    response["Cache-Control"] = "private, no-store"
    return response


@require_http_methods(["GET", "POST"])
@guessing_limited
def booking_reschedule_view(request, token: str):
    """GET: the other times with room for this booking. POST: move it to the one chosen."""
    booking, refused = _owned_or_offer(request, token)
    if refused:
        return refused
    if request.method == "GET":
        return _reschedule_page(request, booking)
    form = RescheduleForm(request.POST)
    if not form.is_valid():
        return _reschedule_page(request, booking, status=400, form=form, problem=form.errors["slot"][0])
    slot_id = form.cleaned_data["slot"]
    if not Slot.objects.filter(pk=slot_id, listing_id=booking.slot.listing_id).exists():
        return _reschedule_page(
            request, booking, status=400, form=form, problem="That is not one of this listing's times. Choose one below."
        )
    try:
        moved = booking_reschedule(booking=booking, to_slot_id=slot_id)
    except BookingError as error:
        fresh = selectors.booking_by_token(token)
        return _reschedule_page(request, fresh, status=409, form=form, problem=str(error))
    zone = moved.slot.listing.merchant.zone
    with timezone.override(zone):
        when = formats.date_format(timezone.localtime(moved.slot.starts_at), "l j F Y, H:i")
    messages.success(request, f"Your booking is moved to {when} ({moved.slot.listing.merchant.timezone}). We e-mailed you the new time.")
    return redirect("shop:booking", token=booking.public_token)
