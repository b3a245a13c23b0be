import logging
from functools import wraps
from itertools import groupby

from django.conf import settings
from django.contrib import messages
from django.db import DatabaseError, connection
from django.http import (
    Http404,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseRedirect,
    JsonResponse,
)
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HTMX_STOP_POLLING

from bookings import selectors
from bookings.logs import log_event
from bookings.models import Booking, Listing
from bookings.services import BookingError
from shop import payments, ratelimits
from shop.checkout import booking_status_refresh, checkout_start, is_checkout_session_id
from shop.forms import BookingForm
from shop.webhooks import EventResult, stripe_event_receive

log = logging.getLogger("shop.views")

# The success page polls quickly at first, then backs off: a card payment settles in seconds.
POLL_DELAYS_SECONDS = (1, 1, 1, 2, 2, 2, 3, 3, 5)


class GuessingBlocked(Exception):
    """This address asked for too many bookings that do not exist."""


def guessing_limited(view):
    """Answer 429 to an address that has asked for too many bookings that do not exist."""

    @wraps(view)
    def limited(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except GuessingBlocked:
            return ratelimits.too_many_requests(request, what="booking look-ups")

    return limited


@require_GET
def healthz(request):
    """For load balancers: 200 when this process can reach the database, 503 otherwise."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError:
        log_event(log, "healthz_database_unreachable", level=logging.ERROR)
        return JsonResponse({"status": "unavailable", "database": "unreachable"}, status=503)
    return JsonResponse({"status": "ok", "database": "ok"})


@csrf_exempt
def benchmark_bare(request):
    """The floor benchmarks/load.py measures pages against: the same middleware, no work.
    Mounted only when BENCHMARK_BARE_VIEW is set; reads a POST body like the webhook does."""
    if request.method == "POST":
        request.read()
    return HttpResponse("ok", content_type="text/plain")


@require_GET
def catalog(request):
    return render(request, "shop/catalog.html", {"listings": selectors.catalog_listings()})


def _listing_or_404(slug: str) -> Listing:
    try:
        return selectors.listing_for_sale(slug)
    except Listing.DoesNotExist:
        raise Http404("No such listing.") from None


def _listing_page(request, listing: Listing, form: BookingForm, *, status: int = 200):
    slots = list(form.fields["slot"].queryset)
    zone = listing.merchant.zone
    days = [
        (day, list(day_slots))
        for day, day_slots in groupby(slots, key=lambda slot: timezone.localtime(slot.starts_at, zone).date())
    ]
    context = {"listing": listing, "form": form, "days": days, "zone": zone, "has_bookable": any(s.is_bookable for s in slots)}
    return render(request, "shop/listing.html", context, status=status)


@require_GET
def listing_detail(request, slug: str):
    listing = _listing_or_404(slug)
    if request.GET.get("checkout") == "cancelled":
        messages.info(request, "Checkout cancelled. Nothing was charged; your seats are still open to book.")
        return redirect("shop:listing", slug=listing.slug)
    form = BookingForm(slots=selectors.slots_on_sale(listing), initial={"slot": request.GET.get("slot")})
    return _listing_page(request, listing, form)


@require_POST
def checkout_create(request, slug: str):
    listing = _listing_or_404(slug)
    form = BookingForm(request.POST, slots=selectors.slots_on_sale(listing))
    if not form.is_valid():
        return _listing_page(request, listing, form, status=400)
    if ratelimits.checkout_limited(request, email=form.cleaned_data["customer_email"]):
        return ratelimits.too_many_requests(request, what="checkouts")
    success_url = request.build_absolute_uri(reverse("shop:checkout_success")) + "?session_id={CHECKOUT_SESSION_ID}"
    cancel_url = request.build_absolute_uri(reverse("shop:listing", args=[listing.slug])) + "?checkout=cancelled"
    try:
        started = checkout_start(
            slot=form.cleaned_data["slot"],
            quantity=form.cleaned_data["quantity"],
            customer_email=form.cleaned_data["customer_email"],
            customer_name=form.cleaned_data["customer_name"],
            success_url=success_url,
            cancel_url=cancel_url,
        )
    except BookingError as error:
        form.add_error(None, str(error))
        return _listing_page(request, listing, form, status=409)
    except payments.PaymentsUnavailable as error:
        form.add_error(None, str(error))
        return _listing_page(request, listing, form, status=503)
    return HttpResponseRedirect(started.url, status=303)


def _booking_by_session_or_404(request, session_id: str) -> Booking:
    if ratelimits.token_guessing_blocked(request):
        raise GuessingBlocked
    try:
        if not is_checkout_session_id(session_id):
            raise Booking.DoesNotExist
        return selectors.booking_by_session(session_id)
    except Booking.DoesNotExist:
        ratelimits.token_miss_record(request)
        raise Http404("No such checkout.") from None


def _status_context(request, check, poll: int) -> dict:
    booking = check.booking
    next_poll = min(poll + 1, len(POLL_DELAYS_SECONDS) - 1)
    return {
        "booking": booking,
        "problem": check.problem,
        "listing": booking.slot.listing,
        "starts_at": timezone.localtime(booking.slot.starts_at, booking.slot.listing.merchant.zone),
        "poll_url": reverse("shop:checkout_status", args=[booking.checkout_session_id]) + f"?poll={next_poll}",
        "poll_delay": POLL_DELAYS_SECONDS[poll],
    }


def _poll_number(request) -> int:
    raw = request.GET.get("poll", "0")
    return min(int(raw), len(POLL_DELAYS_SECONDS) - 1) if raw.isdigit() and len(raw) < 4 else 0


@require_GET
@guessing_limited
def checkout_success(request):
    booking = _booking_by_session_or_404(request, request.GET.get("session_id", ""))
    check = booking_status_refresh(booking)
    return render(request, "shop/checkout_success.html", _status_context(request, check, 0))


@require_GET
@guessing_limited
def checkout_status(request, session_id: str):
    booking = _booking_by_session_or_404(request, session_id)
    check = booking_status_refresh(booking)
    response = render(request, "shop/_checkout_status.html", _status_context(request, check, _poll_number(request)))
    if check.booking.is_final:
        response.status_code = HTMX_STOP_POLLING
    return response


def _booking_by_token_or_404(request, token: str) -> Booking:
    if ratelimits.token_guessing_blocked(request):
        raise GuessingBlocked
    try:
        if not token or len(token) > 64:
            raise Booking.DoesNotExist
        return selectors.booking_by_token(token)
    except Booking.DoesNotExist:
        ratelimits.token_miss_record(request)
        raise Http404("No such booking.") from None



@require_GET
@guessing_limited
def booking_page(request, token: str):
    booking = _booking_by_token_or_404(request, token)
    listing = booking.slot.listing
    context = {
        "booking": booking,
        "listing": listing,
        "merchant": listing.merchant,
        "starts_at": timezone.localtime(booking.slot.starts_at, listing.merchant.zone),
        "refunds": [refund for refund in booking.refunds.all() if refund.stripe_refund_id],
    }
    return render(request, "shop/booking.html", context)


@require_POST
@guessing_limited
def booking_portal(request, token: str):
    booking = _booking_by_token_or_404(request, token)
    if not booking.stripe_customer_id:
        messages.error(request, "There are no payment details for this booking yet.")
        return redirect("shop:booking", token=booking.public_token)
    return_url = request.build_absolute_uri(reverse("shop:booking", args=[booking.public_token]))
    try:
        url = payments.portal_url(customer_id=booking.stripe_customer_id, return_url=return_url)
    except payments.PaymentsUnavailable as error:
        messages.error(request, str(error))
        return redirect("shop:booking", token=booking.public_token)
    return HttpResponseRedirect(url, status=303)


def _webhook_body(request) -> bytes | None:
    """The raw body, read past the forms' size limit up to the webhook's own; None when too large."""
    length = request.META.get("CONTENT_LENGTH") or ""
    if not length.isdigit() or int(length) > settings.WEBHOOK_MAX_BODY_BYTES:
        return None
    return request.read(int(length))


@csrf_exempt
@require_POST
def stripe_webhook(request):
    payload = _webhook_body(request)
    if payload is None:
        return HttpResponse("Webhook refused: body missing or too large.", status=413, content_type="text/plain")
    signature = request.headers.get("Stripe-Signature")
    try:
        event = payments.webhook_event(payload=payload, signature_header=signature)
    except payments.WebhookRejected as error:
        log_event(
            log,
            "webhook_rejected",
            level=logging.WARNING,
            reason=str(error),
            signature_fingerprint=payments.signature_fingerprint(signature),
        )
        return HttpResponseBadRequest(f"Webhook refused: {error}.", content_type="text/plain")
    result = stripe_event_receive(event)
    log_event(log, "webhook_received", event_id=event.get("id"), type=event.get("type"), result=result.value)
    if result == EventResult.FAILED_RETRY:
        return HttpResponse("Not processed yet; please retry.", status=500, content_type="text/plain")
    return HttpResponse(result.value, content_type="text/plain")
