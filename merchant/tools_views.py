"""The merchant's tools around their times: promotion codes, attendee lists and messages to
attendees. Scoped like every merchant view: another merchant's code or time is a 404."""

import csv

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from bookings import selectors
from bookings.models import BookingStatus, PromotionCode
from bookings.services.messages import attendee_message_send
from merchant.tools_forms import AttendeeMessageForm, PromotionCodeForm
from merchant.views import _slot_or_404, csv_safe, merchant_view
from bookings.services.promotions import promotion_account
from payments.promotions import (
    STRANDED_CODE,
    PaymentsUnavailable,
    PromotionRefused,
    merchant_connect_required,
    promotion_active_set,
    promotion_create,
    promotions_use_refresh,
)


def _promotion_or_404(merchant, pk: int) -> PromotionCode:
    try:
        return selectors.merchant_promotion_code(merchant, pk)
    except PromotionCode.DoesNotExist:
        raise Http404("No such promotion code.") from None


@require_http_methods(["GET", "POST"])
@merchant_view
def promotion_list(request, merchant):
    """The merchant's codes with their use (asked of Stripe), and the form to make one."""
    form = PromotionCodeForm(request.POST or None, merchant=merchant)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            try:
                made = promotion_create(
                    merchant=merchant,
                    code=data["code"],
                    percent_off=data["percent_value"],
                    amount_off=data["amount_value"],
                    currency=data.get("currency") or "",
                    max_redemptions=data.get("max_redemptions"),
                    expires_at=data.get("expires_on"),
                    request_key=form.one_time_key(),
                )
            except (PromotionRefused, PaymentsUnavailable) as error:
                form.add_error(None, str(error))
                status = 400 if isinstance(error, PromotionRefused) else 503
            else:
                messages.success(request, f"Code {made.code} is ready: customers can type it on the payment page.")
                return redirect("merchant:promotion_list")
        else:
            status = 400
    promotions = list(selectors.merchant_promotion_codes(merchant))
    use_known = promotions_use_refresh(promotions) if promotions else True
    account = promotion_account(merchant)
    for promotion in promotions:
        # Checkout offers a code only on sessions of the account it was made on.
        promotion.stranded = promotion.stripe_account != account
    context = {"merchant": merchant, "section": "promotions", "form": form, "promotions": promotions,
               "use_known": use_known, "now": timezone.now(), "stranded_code": STRANDED_CODE,
               "connect_required": merchant_connect_required(merchant), "on_own_account": bool(account)}
    return render(request, "merchant/promotion_list.html", context, status=status)


@require_POST
@merchant_view
def promotion_active(request, merchant, pk: int):
    """Pause (active=0) or resume (active=1) one of the merchant's codes."""
    promotion = _promotion_or_404(merchant, pk)
    wanted = request.POST.get("active")
    if wanted not in ("0", "1"):
        messages.error(request, "Choose to pause or resume the code.")
        return redirect("merchant:promotion_list")
    try:
        promotion_active_set(promotion=promotion, active=wanted == "1")
    except (PromotionRefused, PaymentsUnavailable) as error:
        messages.error(request, f"{promotion.code}: {error}")
    else:
        messages.success(request, f"{promotion.code} is {'active again' if promotion.active else 'paused'}.")
    return redirect("merchant:promotion_list")


@require_GET
@merchant_view
def slot_attendees(request, merchant, pk: int):
    """Who is coming to a time: names, seats and status; printable."""
    slot = _slot_or_404(merchant, pk)
    attendees = list(selectors.slot_attendees(slot))
    confirmed = [a for a in attendees if a.status == BookingStatus.CONFIRMED]
    context = {"merchant": merchant, "section": "listings", "slot": slot, "listing": slot.listing,
               "attendees": attendees, "confirmed_seats": sum(a.quantity for a in confirmed),
               "confirmed_count": len(confirmed)}
    return render(request, "merchant/slot_attendees.html", context)


ATTENDEE_CSV_HEADER = ["listing", "starts_at", "timezone", "name", "email", "seats", "status", "booking"]


@require_GET
@merchant_view
def slot_attendees_export(request, merchant, pk: int):
    """A time's attendee list as CSV, its times on the merchant's clock."""
    slot = _slot_or_404(merchant, pk)
    starts = timezone.localtime(slot.starts_at, merchant.zone).strftime("%Y-%m-%d %H:%M")
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    writer = csv.writer(response)
    writer.writerow(ATTENDEE_CSV_HEADER)
    for booking in selectors.slot_attendees(slot):
        writer.writerow([csv_safe(slot.listing.title), starts, merchant.timezone, csv_safe(booking.customer_name),
                         csv_safe(booking.customer_email), booking.quantity, booking.get_status_display(), booking.pk])
    stamp = timezone.localtime(slot.starts_at, merchant.zone).strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = f'attachment; filename="attendees-{slot.listing.slug}-{stamp}.csv"'
    return response


@require_http_methods(["GET", "POST"])
@merchant_view
def slot_message(request, merchant, pk: int):
    """Write to everyone confirmed for a time, and see what was written before."""
    slot = _slot_or_404(merchant, pk)
    form = AttendeeMessageForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                message, created = attendee_message_send(
                    slot=slot, subject=form.cleaned_data["subject"], body=form.cleaned_data["body"],
                    submission_key=form.cleaned_data["submission_key"],
                )
            except ValidationError as error:
                form.add_error(None, error.messages[0])
                status = 400
            else:
                if created:
                    count = message.deliveries.count()
                    messages.success(request, f"Your message is on its way to {count} booking{'s' if count != 1 else ''}.")
                else:
                    messages.info(request, "This message was already sent; nobody gets it twice.")
                return redirect(reverse("merchant:slot_message", args=[slot.pk]))
        else:
            status = 400
    confirmed = selectors.slot_attendees(slot).filter(status=BookingStatus.CONFIRMED)
    context = {"merchant": merchant, "section": "listings", "slot": slot, "listing": slot.listing, "form": form,
               "history": list(selectors.slot_attendee_messages(slot)), "recipient_count": confirmed.count()}
    return render(request, "merchant/slot_message.html", context, status=status)
