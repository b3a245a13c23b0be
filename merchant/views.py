"""The merchant dashboard: thin views that parse a form, call one service, and render or redirect.

Every view is scoped to the signed-in merchant: another merchant's listing, slot or booking is
a 404, an anonymous visitor is sent to sign in, and a signed-in account without a merchant gets
a 403 page saying so. Times are read and entered in the merchant's timezone.
"""

import csv
import datetime as dt
from functools import wraps
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.views import redirect_to_login
from django.core.paginator import Paginator
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse, reverse_lazy
from django.utils import dateformat, timezone
from django.utils.cache import patch_vary_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect, push_url

from bookings import selectors, services
from merchant.forms import (
    BookingFilterForm,
    CapacityForm,
    ListingForm,
    MerchantPasswordResetForm,
    ProfileForm,
    RefundForm,
    SeriesForm,
    SlotForm,
)
from bookings.models import Booking, BookingStatus, Listing, RefundStatus, Slot
from bookings.money import format_money, from_minor_units
from bookings.services import BookingError
from common import ratelimits

BOOKINGS_PER_PAGE = 50
SLOTS_PER_PAGE = 50
DASHBOARD_UPCOMING_SLOTS = 12


def merchant_view(view):
    """Run `view(request, merchant, …)` for a signed-in merchant, in their timezone."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            if request.htmx:
                # Back to the page the person was on, not to the partial htmx asked for.
                page = request.htmx.current_url_abs_path or reverse("merchant:dashboard")
                return HttpResponseClientRedirect(f"{reverse('accounts:login')}?{urlencode({'next': page})}")
            return redirect_to_login(request.get_full_path())
        merchant = selectors.merchant_for_user(request.user)
        if merchant is None:
            return render(request, "merchant/no_merchant.html", status=403)
        with timezone.override(merchant.zone):
            return view(request, merchant, *args, **kwargs)

    return wrapper


def _partial_wanted(request) -> bool:
    """An htmx request swapping part of the page; a history restore wants the whole page."""
    return bool(request.htmx) and not request.htmx.history_restore_request


def _render(request, page: str, partial: str | None, context: dict, *, status: int = 200):
    """The page, or only its partial for htmx (which does not swap 4xx answers, so those are 200)."""
    if partial and _partial_wanted(request):
        response = render(request, partial, context)
    else:
        response = render(request, page, context, status=status)
    patch_vary_headers(response, ("HX-Request",))
    return response


def _next_or(request, default: str) -> str:
    """Where to go back to after a form: a `next` inside the dashboard, or `default`."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if (
        target.startswith("/merchant/")
        and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()})
    ):
        return target
    return default


def _listing_or_404(merchant, pk: int) -> Listing:
    try:
        return selectors.merchant_listing(merchant, pk)
    except Listing.DoesNotExist:
        raise Http404("No such listing.") from None


def _slot_or_404(merchant, pk: int) -> Slot:
    try:
        return selectors.merchant_slot(merchant, pk)
    except Slot.DoesNotExist:
        raise Http404("No such time.") from None


def _booking_or_404(merchant, pk: int) -> Booking:
    try:
        return selectors.merchant_booking(merchant, pk)
    except Booking.DoesNotExist:
        raise Http404("No such booking.") from None


def _when(slot: Slot, fmt: str) -> str:
    """A slot's start as the merchant's clock shows it (merchant_view made their zone the current
    one), in Django's date format."""
    return dateformat.format(timezone.localtime(slot.starts_at), fmt)


# Overview


@require_GET
@merchant_view
def dashboard(request, merchant):
    totals = selectors.merchant_upcoming_totals(merchant)
    revenue = selectors.merchant_revenue(merchant, days=30)
    attention = list(selectors.merchant_bookings_needing_attention(merchant)[:20])
    context = {
        "merchant": merchant,
        "section": "overview",
        "attention": attention,
        "upcoming": list(selectors.merchant_upcoming_slots(merchant)[:DASHBOARD_UPCOMING_SLOTS]),
        "totals": {**totals, "sold": totals["capacity"] - totals["seats_left"] - totals["seats_held"]},
        "listings": list(selectors.merchant_listings(merchant)),
        "revenue": revenue,
        "revenue_totals": selectors.revenue_totals(revenue),
        "connect_enabled": settings.CONNECT_ENABLED,
    }
    return render(request, "merchant/dashboard.html", context)


# Listings


@require_GET
@merchant_view
def listing_list(request, merchant):
    archived = request.GET.get("show") == "archived"
    context = {
        "merchant": merchant,
        "section": "listings",
        "archived": archived,
        "listings": list(selectors.merchant_listings(merchant, archived=archived)),
        "counts": selectors.merchant_listing_counts(merchant),
    }
    return render(request, "merchant/listing_list.html", context)


@require_http_methods(["GET", "POST"])
@merchant_view
def listing_create(request, merchant):
    form = ListingForm.for_new_listing(merchant, request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            listing = services.listing_create(merchant=merchant, **form.service_arguments())
        except BookingError as error:
            form.add_error(None, str(error))
        else:
            messages.success(request, f"“{listing.title}” is in the catalog. Now add the times people can book.")
            return redirect("merchant:listing_detail", pk=listing.pk)
    status = 400 if request.method == "POST" else 200
    context = {"merchant": merchant, "section": "listings", "form": form, "listing": None}
    return render(request, "merchant/listing_form.html", context, status=status)


@require_GET
@merchant_view
def listing_detail(request, merchant, pk: int):
    listing = _listing_or_404(merchant, pk)
    past = request.GET.get("when") == "past"
    page = Paginator(selectors.listing_slots(listing, past=past), SLOTS_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "merchant": merchant,
        "section": "listings",
        "listing": listing,
        "past": past,
        "page": page,
        "slots": list(page.object_list),
    }
    return render(request, "merchant/listing_detail.html", context)


@require_http_methods(["GET", "POST"])
@merchant_view
def listing_edit(request, merchant, pk: int):
    listing = _listing_or_404(merchant, pk)
    form = ListingForm(request.POST) if request.method == "POST" else ListingForm.for_listing(listing)
    if request.method == "POST" and form.is_valid():
        try:
            services.listing_update(listing=listing, **form.service_arguments())
        except BookingError as error:
            form.add_error(None, str(error))
        else:
            messages.success(
                request,
                "Your changes are saved. Bookings already made keep the price they were made at, and their cancellation terms unless the new ones are more lenient.",
            )
            return redirect("merchant:listing_detail", pk=listing.pk)
    status = 400 if request.method == "POST" else 200
    context = {"merchant": merchant, "section": "listings", "form": form, "listing": listing}
    return render(request, "merchant/listing_form.html", context, status=status)


@require_POST
@merchant_view
def listing_archive(request, merchant, pk: int):
    listing = _listing_or_404(merchant, pk)
    if services.listing_archive(listing=listing):
        messages.success(
            request,
            f"“{listing.title}” is archived: it has left the catalog, and its bookings stand. Restore it at any time.",
        )
    return redirect(_next_or(request, reverse("merchant:listing_detail", args=[listing.pk])))


@require_POST
@merchant_view
def listing_restore(request, merchant, pk: int):
    listing = _listing_or_404(merchant, pk)
    if services.listing_restore(listing=listing):
        messages.success(request, f"“{listing.title}” is back in the catalog.")
    return redirect(_next_or(request, reverse("merchant:listing_detail", args=[listing.pk])))


# Slots


@require_http_methods(["GET", "POST"])
@merchant_view
def slot_create(request, merchant, pk: int):
    listing = _listing_or_404(merchant, pk)
    form = SlotForm(request.POST or None, merchant=merchant)
    if request.method == "POST" and form.is_valid():
        try:
            slot = services.slot_create(
                listing=listing, starts_at=form.cleaned_data["starts_at"], capacity=form.cleaned_data["capacity"]
            )
        except BookingError as error:
            form.add_error("starts_at" if listing.is_active else None, str(error))
        else:
            when = _when(slot, "l j F Y, H:i")
            messages.success(request, f"Added {when} with {slot.capacity} seats.")
            return redirect("merchant:listing_detail", pk=listing.pk)
    status = 400 if request.method == "POST" else 200
    context = {"merchant": merchant, "section": "listings", "listing": listing, "form": form}
    return render(request, "merchant/slot_form.html", context, status=status)


@require_http_methods(["GET", "POST"])
@merchant_view
def slot_series(request, merchant, pk: int):
    """A recurring series. "Preview" (a plain submit, or htmx as the form changes) shows the
    times it would make; "Create" makes them."""
    listing = _listing_or_404(merchant, pk)
    form = SeriesForm(request.POST or None, merchant=merchant, initial=_series_initial(merchant))
    plan = None
    status = 200
    if request.method == "POST":
        if form.is_valid():
            plan = selectors.slot_series_plan(listing=listing, **form.series_arguments())
            if request.POST.get("action") == "create":
                try:
                    result = services.slot_series_create(
                        listing=listing, capacity=form.cleaned_data["capacity"], **form.series_arguments()
                    )
                except BookingError as error:
                    form.add_error(None, str(error))
                else:
                    skipped = result.skipped_existing
                    note = f" {skipped} already existed and were skipped." if skipped else ""
                    messages.success(request, f"Added {len(result.created)} times.{note}")
                    return redirect("merchant:listing_detail", pk=listing.pk)
        if not form.is_valid():
            status = 400
    context = {
        "merchant": merchant,
        "section": "listings",
        "listing": listing,
        "form": form,
        "plan": plan,
        "series_max": services.SERIES_MAX_SLOTS,
    }
    return _render(request, "merchant/slot_series.html", "merchant/_series_preview.html", context, status=status)


def _series_initial(merchant) -> dict:
    today = timezone.localdate()
    return {"first_day": today + dt.timedelta(days=1), "last_day": today + dt.timedelta(days=28)}


@require_GET
@merchant_view
def slot_detail(request, merchant, pk: int):
    slot = _slot_or_404(merchant, pk)
    bookings = selectors.merchant_bookings(merchant).filter(slot=slot).order_by("-created_at", "-pk")
    context = {
        "merchant": merchant,
        "section": "listings",
        "slot": slot,
        "listing": slot.listing,
        "bookings": list(bookings[:200]),
        "booking_count": bookings.count(),
        "capacity_form": CapacityForm(slot=slot),
        "waitlist": selectors.slot_waitlist(slot),
        "seats_offered": sum(hold.quantity for hold in selectors.open_offers(slot_id=slot.pk)),
    }
    return render(request, "merchant/slot_detail.html", context)


def _slot_row(request, merchant, slot: Slot, *, form: CapacityForm | None = None, status: int = 200):
    """The slot's row of the slots table for htmx; otherwise the capacity page."""
    back = (request.htmx.current_url_abs_path if request.htmx else None) or _next_or(request, "")
    context = {
        "merchant": merchant,
        "section": "listings",
        "slot": slot,
        "listing": slot.listing,
        "form": form,
        "editing": form is not None,
        "next": back,
    }
    return _render(request, "merchant/slot_capacity.html", "merchant/_slot_row.html", context, status=status)


@require_http_methods(["GET", "POST"])
@merchant_view
def slot_capacity(request, merchant, pk: int):
    """Change a slot's capacity: inline in the slots table with htmx, or on a page of its own."""
    slot = _slot_or_404(merchant, pk)
    if request.method == "GET":
        if request.GET.get("cancel") and _partial_wanted(request):
            return _slot_row(request, merchant, slot)
        return _slot_row(request, merchant, slot, form=CapacityForm(slot=slot))
    form = CapacityForm(request.POST, slot=slot)
    if form.is_valid():
        try:
            services.slot_capacity_change(slot=slot, capacity=form.cleaned_data["capacity"])
        except BookingError as error:
            form = CapacityForm(request.POST, slot=slot)  # its help now states the fresh seats sold
            form.is_valid()
            form.add_error("capacity", str(error))
        else:
            if _partial_wanted(request):
                return _slot_row(request, merchant, slot)
            messages.success(request, f"Capacity is now {slot.capacity} seats; {slot.seats_left} left to sell.")
            return redirect(_next_or(request, reverse("merchant:slot_detail", args=[slot.pk])))
    return _slot_row(request, merchant, slot, form=form, status=400)


@require_POST
@merchant_view
def slot_selling(request, merchant, pk: int):
    """Stop or resume selling a slot (`on_sale` = 1 or 0)."""
    slot = _slot_or_404(merchant, pk)
    on_sale = request.POST.get("on_sale") == "1"
    try:
        services.slot_selling_set(slot=slot, on_sale=on_sale)
    except BookingError as error:
        messages.error(request, str(error))
    else:
        if not _partial_wanted(request):
            stopped = "This time is no longer on sale. Bookings made stand."
            messages.success(request, "This time is on sale again." if on_sale else stopped)
    if _partial_wanted(request):
        return _slot_row(request, merchant, slot)
    return redirect(_next_or(request, reverse("merchant:slot_detail", args=[slot.pk])))


@require_http_methods(["GET", "POST"])
@merchant_view
def slot_cancel(request, merchant, pk: int):
    """GET: what cancelling would do, to confirm. POST: cancel, refund and e-mail everyone once."""
    slot = _slot_or_404(merchant, pk)
    if request.method == "POST":
        result = services.slot_cancel(slot=slot)
        when = _when(slot, "l j F, H:i")
        if result.already_cancelled and not result.bookings_cancelled:
            messages.info(request, f"{when} was already cancelled; there was nothing more to refund.")
        elif not result.bookings_cancelled:
            messages.success(request, f"{when} is cancelled. Nobody had booked it, so there was nothing to refund.")
        else:
            cancelled, refunds = result.bookings_cancelled, result.refunds_opened
            messages.success(
                request,
                f"{when} is cancelled. {cancelled} booking{pluralize(cancelled)} cancelled and "
                f"{refunds} refund{pluralize(refunds)} sent to Stripe; each customer is e-mailed once their "
                "refund is made. Their statuses are below.",
            )
        return redirect("merchant:slot_detail", pk=slot.pk)
    summary = selectors.slot_cancel_summary(slot)
    context = {"merchant": merchant, "section": "listings", "slot": slot, "listing": slot.listing, "summary": summary}
    return _render(request, "merchant/slot_cancel.html", "merchant/_slot_cancel_confirm.html", context)


# Bookings


def _booking_filter_form(request, merchant) -> BookingFilterForm:
    listings = list(Listing.objects.filter(merchant=merchant).order_by("-is_active", "title", "pk"))
    return BookingFilterForm(request.GET, listings=listings)


@require_GET
@merchant_view
def booking_list(request, merchant):
    form = _booking_filter_form(request, merchant)
    filters = form.filters()
    page = Paginator(selectors.merchant_bookings_filtered(merchant, filters), BOOKINGS_PER_PAGE).get_page(
        request.GET.get("page")
    )
    slot = None
    if filters.slot_id:
        slot = selectors.merchant_slots(merchant).filter(pk=filters.slot_id).first()
    context = {
        "merchant": merchant,
        "section": "bookings",
        "form": form,
        "page": page,
        "bookings": list(page.object_list),
        "slot": slot,
        "open_offers": selectors.merchant_open_offers(merchant, slot_id=filters.slot_id),
    }
    response = _render(request, "merchant/booking_list.html", "merchant/_booking_table.html", context)
    if _partial_wanted(request):
        # htmx pushes the form's every field, empty ones too; the address bar gets only those in use.
        used = [(key, value) for key, value in request.GET.items() if value]
        push_url(response, request.path + (f"?{urlencode(used)}" if used else ""))
    return response


CSV_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\n")


def csv_safe(value) -> str:
    """A cell a spreadsheet shows as text: one starting like a formula gets a leading apostrophe."""
    text = "" if value is None else str(value)
    if text.startswith(CSV_FORMULA_PREFIXES):
        return "'" + text
    return text


class _Echo:
    def write(self, value):
        return value


CSV_HEADER = [
    "booking",
    "status",
    "listing",
    "starts_at",
    "timezone",
    "seats",
    "customer_name",
    "customer_email",
    "currency",
    "amount_total",
    "amount_paid",
    "amount_refunded",
    "booked_at",
    "payment_intent",
]


@require_GET
@merchant_view
def booking_export(request, merchant):
    """The filtered bookings as CSV, streamed, in the merchant's timezone."""
    filters = _booking_filter_form(request, merchant).filters()
    bookings = selectors.merchant_bookings_filtered(merchant, filters)
    # The rows are written while the response streams, after this view (and merchant_view's
    # timezone.override) has returned: so they name the merchant's zone themselves.
    zone = merchant.zone

    def rows():
        yield CSV_HEADER
        for booking in bookings.iterator(chunk_size=500):
            currency = booking.currency
            yield [
                booking.pk,
                booking.status,
                csv_safe(booking.slot.listing.title),
                timezone.localtime(booking.slot.starts_at, zone).strftime("%Y-%m-%d %H:%M"),
                merchant.timezone,
                booking.quantity,
                csv_safe(booking.customer_name),
                csv_safe(booking.customer_email),
                currency.upper(),
                from_minor_units(booking.amount_total, currency),
                from_minor_units(booking.amount_paid, currency),
                from_minor_units(booking.amount_refunded, currency),
                timezone.localtime(booking.created_at, zone).strftime("%Y-%m-%d %H:%M"),
                csv_safe(booking.payment_intent_id),
            ]

    writer = csv.writer(_Echo())
    response = StreamingHttpResponse((writer.writerow(row) for row in rows()), content_type="text/csv; charset=utf-8")
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = f'attachment; filename="bookings-{stamp}.csv"'
    return response


@require_GET
@merchant_view
def booking_detail(request, merchant, pk: int):
    booking = _booking_or_404(merchant, pk)
    refunds = list(booking.refunds.all())
    context = {
        "merchant": merchant,
        "section": "bookings",
        "booking": booking,
        "slot": booking.slot,
        "listing": booking.slot.listing,
        "refunds": refunds,
        "outstanding": selectors.booking_refund_outstanding(booking),
        "owed": selectors.booking_refund_owed(booking),
        "has_requested_refund": any(refund.status == RefundStatus.REQUESTED for refund in refunds),
    }
    return render(request, "merchant/booking_detail.html", context)


@require_http_methods(["GET", "POST"])
@merchant_view
def booking_refund(request, merchant, pk: int):
    """GET: the refund form, to confirm (inline with htmx). POST: refund fully or in part."""
    booking = _booking_or_404(merchant, pk)
    outstanding = selectors.booking_refund_outstanding(booking)
    form = RefundForm(request.POST or None, booking=booking, outstanding=outstanding)
    status = 200
    if booking.status != BookingStatus.CONFIRMED:
        messages.error(request, "Only a confirmed booking can be refunded. Its current status is shown below.")
        if _partial_wanted(request):
            return HttpResponseClientRedirect(reverse("merchant:booking_detail", args=[booking.pk]))
        return redirect("merchant:booking_detail", pk=booking.pk)
    if request.method == "POST":
        nothing_paid = booking.amount_paid == 0
        if nothing_paid or form.is_valid():
            amount = None if nothing_paid else form.cleaned_data["amount"]
            try:
                refund = services.booking_refund(booking=booking, amount=amount)
            except BookingError as error:
                form.add_error("amount" if not nothing_paid else None, str(error))
            else:
                messages.success(request, _refund_outcome(booking, refund, full=amount == outstanding))
                return redirect("merchant:booking_detail", pk=booking.pk)
        status = 400
    context = {
        "merchant": merchant,
        "section": "bookings",
        "booking": booking,
        "slot": booking.slot,
        "listing": booking.slot.listing,
        "form": form,
        "outstanding": outstanding,
    }
    return _render(request, "merchant/booking_refund.html", "merchant/_refund_confirm.html", context, status=status)


def _refund_outcome(booking: Booking, refund, *, full: bool) -> str:
    if refund is None:
        return "The booking is cancelled and its seats are free again. Nothing was paid, so nothing is refunded."
    refund.refresh_from_db()
    amount = format_money(refund.amount, booking.currency)
    what = (
        f"Refunded {amount} in full: the booking is cancelled and its {booking.quantity} "
        f"seat{'s are' if booking.quantity != 1 else ' is'} free again."
        if full
        else f"Refunded {amount}; the booking stands."
    )
    if refund.status == RefundStatus.REQUESTED:
        return what + " Stripe could not be reached just now, so the refund will be sent again; see its status below."
    if refund.status == RefundStatus.FAILED:
        return what.replace("Refunded", "Tried to refund") + " Stripe refused it; the reason is below."
    return what + " The customer is e-mailed."


@require_POST
@merchant_view
def booking_refund_retry(request, merchant, pk: int):
    booking = _booking_or_404(merchant, pk)
    try:
        refund = services.booking_refund_retry(booking=booking)
    except BookingError as error:
        messages.error(request, str(error))
    else:
        refund.refresh_from_db()
        if refund.status == RefundStatus.FAILED:
            messages.error(request, "Stripe refused the refund again. Contact the customer for other payment details.")
        elif refund.status == RefundStatus.REQUESTED:
            messages.warning(request, "Stripe could not be reached just now; the refund will be sent again.")
        else:
            messages.success(request, "The refund went through this time. The customer is e-mailed.")
    return redirect("merchant:booking_detail", pk=booking.pk)


@require_POST
@merchant_view
def booking_refund_resubmit(request, merchant, pk: int):
    booking = _booking_or_404(merchant, pk)
    if services.booking_refunds_resubmit(booking=booking):
        messages.success(request, "Stripe has every refund of this booking now.")
    else:
        messages.warning(request, "Stripe could not be reached again. The refund stays due; try again in a while.")
    return redirect("merchant:booking_detail", pk=booking.pk)


# Profile


@require_http_methods(["GET", "POST"])
@merchant_view
def profile(request, merchant):
    initial = {
        "display_name": merchant.display_name,
        "timezone": merchant.timezone,
        "support_email": merchant.support_email,
    }
    form = ProfileForm(request.POST or None, initial=initial, current_timezone=merchant.timezone)
    if request.method == "POST" and form.is_valid():
        try:
            services.merchant_update(
                merchant=merchant,
                display_name=form.cleaned_data["display_name"],
                timezone_name=form.cleaned_data["timezone"],
                support_email=form.cleaned_data["support_email"],
            )
        except BookingError as error:
            form.add_error(None, str(error))
        else:
            messages.success(request, "Your profile is saved.")
            return redirect("merchant:profile")
    status = 400 if request.method == "POST" else 200
    context = {"merchant": merchant, "section": "profile", "form": form}
    return render(request, "merchant/profile.html", context, status=status)


# Accounts: Django's views. Failed sign-ins are limited in the authentication backend
# (common.ratelimits.SignInLimitedBackend, for every sign-in form, the admin's too) and reset
# e-mails per address (settings.RATE_LIMITS), so that passwords cannot be guessed and inboxes
# cannot be flooded.


class SignInView(auth_views.LoginView):
    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def form_invalid(self, form):
        retry_after = ratelimits.signin_limited_seconds(form)
        if retry_after is not None:
            return ratelimits.too_many_requests(self.request, what="sign-in attempts", retry_after=retry_after)
        return super().form_invalid(form)


class ResetRequestView(auth_views.PasswordResetView):
    email_template_name = "registration/password_reset_email.txt"
    html_email_template_name = "registration/password_reset_email.html"
    subject_template_name = "registration/password_reset_subject.txt"
    success_url = reverse_lazy("accounts:password_reset_done")
    form_class = MerchantPasswordResetForm

    def post(self, request, *args, **kwargs):
        if ratelimits.password_reset_limited(request):
            retry_after = ratelimits.password_reset_retry_after(request)
            return ratelimits.too_many_requests(request, what="password reset requests", retry_after=retry_after)
        return super().post(request, *args, **kwargs)
