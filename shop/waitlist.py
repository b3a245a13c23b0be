"""The waitlist's pages: joining a sold-out time's waitlist (from the listing, with htmx or
without), the page an offer e-mail links to (paying goes through the normal checkout), and
leaving from the e-mail. Links come signed; a forged, used or expired one gets a sentence and a
4xx, never an error page."""

import logging

from django.conf import settings
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from bookings import selectors
from bookings.models import Listing, Slot, WaitlistEntry, WaitlistStatus
from bookings.services import (
    BookingError,
    hold_minutes,
    waitlist_join_refusal,
    waitlist_leave as leave_service,
    waitlist_offer_lapse,
    waitlist_offer_refusal,
    waitlist_offer_is_expired,
)
from bookings.services import waitlist_join as join_service
from bookings.waitlist_links import waitlist_entry_by_leave_token, waitlist_entry_by_offer_token, waitlist_leave_token
from common import ratelimits
from payments import stripe_api
from payments.checkout import CHECKOUT_DRAFT_MARKER, checkout_start_from_offer
from shop import receipts
from shop.forms import OfferCheckoutForm, WaitlistForm

log = logging.getLogger("shop.waitlist")


def _listing_or_404(slug: str) -> Listing:
    try:
        return selectors.listing_for_sale(slug)
    except Listing.DoesNotExist:
        raise Http404("No such listing.") from None


def waitlist_form_for(listing: Listing, *, data=None, initial=None) -> WaitlistForm:
    return WaitlistForm(data, initial=initial, slots=selectors.slots_on_sale(listing))


def _join_page(request, listing: Listing, form: WaitlistForm, slot: Slot | None, *, status: int = 200, refusal: str = ""):
    context = {
        "waitlist_refusal": refusal,
        "listing": listing,
        "waitlist_form": form,
        "waitlist_slot": slot,
        "hold_minutes": hold_minutes(listing),
        "offer_minutes": settings.WAITLIST_OFFER_MINUTES,
    }
    template = "shop/_waitlist_form.html" if request.htmx else "shop/waitlist_join.html"
    with timezone.override(listing.merchant.zone):
        response = render(request, template, context, status=status)
    response["Cache-Control"] = "private, no-store"
    return response


def _chosen_slot(form: WaitlistForm) -> Slot | None:
    raw = str(form["slot"].value() or "")
    if not raw.isdigit() or len(raw) > 18:
        return None
    return form.fields["slot"].queryset.filter(pk=int(raw)).first()


@require_http_methods(["GET", "POST"])
def waitlist_join(request, slug: str):
    """GET: the form to join the waitlist of the time `?slot=` names. POST: join it."""
    listing = _listing_or_404(slug)
    if request.method == "GET":
        form = waitlist_form_for(
            listing, initial={"slot": request.GET.get("slot", ""), "quantity": request.GET.get("quantity") or 1}
        )
        slot = _chosen_slot(form)
        if slot is None:
            raise Http404("No such time on sale.")
        if refusal := waitlist_join_refusal(slot, 1):
            return _join_page(request, listing, form, slot, status=409, refusal=refusal)
        return _join_page(request, listing, form, slot)
    form = waitlist_form_for(listing, data=request.POST)
    slot = _chosen_slot(form)
    if not form.is_valid():
        return _join_page(request, listing, form, slot, status=400)
    if ratelimits.waitlist_limited(request, email=form.cleaned_data["customer_email"]):
        return ratelimits.too_many_requests(request, what="waitlist sign-ups")
    try:
        entry = join_service(
            slot=form.cleaned_data["slot"],
            quantity=form.cleaned_data["quantity"],
            customer_email=form.cleaned_data["customer_email"],
            customer_name=form.cleaned_data["customer_name"],
        )
    except BookingError as error:
        form.add_error(error.field if error.field in form.fields else None, str(error))
        return _join_page(request, listing, form, slot, status=409)
    entry.refresh_from_db()
    context = {
        "listing": listing,
        "entry": entry,
        "slot": entry.slot,
        "ahead": selectors.waitlist_ahead_of(entry),
    }
    template = "shop/_waitlist_joined.html" if request.htmx else "shop/waitlist_joined.html"
    with timezone.override(listing.merchant.zone):
        response = render(request, template, context, status=201)
    response["Cache-Control"] = "private, no-store"
    return response


def _link_problem(request, *, title: str, message: str, status: int, entry: WaitlistEntry | None = None):
    listing = entry.slot.listing if entry is not None else None
    response = render(
        request, "shop/waitlist_link_problem.html", {"title": title, "message": message, "listing": listing}, status=status
    )
    response["Cache-Control"] = "private, no-store"
    return response


def _bad_link(request):
    ratelimits.token_miss_record(request)
    return _link_problem(
        request,
        title="This link is not valid",
        message="We could not recognise this link. If it came from one of our e-mails, please check you copied all of it.",
        status=404,
    )


OFFER_ENDED_STATUS = {
    WaitlistStatus.BOOKED: 409,
    WaitlistStatus.LAPSED: 410,
    WaitlistStatus.LEFT: 410,
    WaitlistStatus.CLOSED: 410,
}


@require_http_methods(["GET", "POST"])
def waitlist_offer(request, token: str):
    """The page an offer e-mail links to: the seats held for the customer and until when; paying
    opens the normal Checkout, whose hold takes over the offer's seats."""
    if ratelimits.token_guessing_blocked(request):
        return ratelimits.too_many_requests(request, what="link look-ups")
    entry = waitlist_entry_by_offer_token(token)
    if entry is None:
        return _bad_link(request)
    if waitlist_offer_is_expired(entry):
        waitlist_offer_lapse(entry=entry)  # its seats pass to the next in line now, not at the next sweep
        entry.refresh_from_db()
    listing = entry.slot.listing
    refusal = waitlist_offer_refusal(entry)
    if refusal:
        title = "This offer has been used" if entry.status == WaitlistStatus.BOOKED else "This offer has ended"
        return _link_problem(
            request, title=title, message=refusal, status=OFFER_ENDED_STATUS.get(entry.status, 409), entry=entry
        )
    form = OfferCheckoutForm(request.POST or None, initial={"customer_name": entry.customer_name})
    status = 200
    if request.method == "POST":
        if not form.is_valid():
            status = 400
        elif ratelimits.checkout_limited(request, email=entry.customer_email):
            return ratelimits.too_many_requests(request, what="checkouts")
        else:
            success_url = (
                request.build_absolute_uri(reverse("shop:checkout_success")) + "?session_id={CHECKOUT_SESSION_ID}"
            )
            cancel_url = (
                request.build_absolute_uri(reverse("shop:listing", args=[listing.slug]))
                + f"?checkout=cancelled&draft={CHECKOUT_DRAFT_MARKER}"
            )
            try:
                started = checkout_start_from_offer(
                    entry=entry,
                    customer_name=form.cleaned_data["customer_name"],
                    success_url=success_url,
                    cancel_url=cancel_url,
                    proven_email=receipts.proven_email(request),
                )
            except BookingError as error:
                entry.refresh_from_db()
                return _link_problem(
                    request, title="This offer has ended", message=str(error),
                    status=OFFER_ENDED_STATUS.get(entry.status, 409), entry=entry,
                )
            except stripe_api.PaymentsUnavailable as error:
                entry = WaitlistEntry.objects.select_related("slot__listing__merchant", "offer_hold").get(pk=entry.pk)
                form.add_error(None, f"{error} Your seats stay held for you until the time below.")
                status = 503
            else:
                return HttpResponseRedirect(started.url, status=303)
    context = {
        "entry": entry,
        "listing": listing,
        "slot": entry.slot,
        "merchant": listing.merchant,
        "form": form,
        "held_until": entry.offer_hold.expires_at,
        "amount_total": listing.price_amount * entry.quantity,
        "leave_url": reverse("shop:waitlist_leave", args=[waitlist_leave_token(entry)]),
    }
    with timezone.override(listing.merchant.zone):
        response = render(request, "shop/waitlist_offer.html", context, status=status)
    response["Cache-Control"] = "private, no-store"
    return response


@require_http_methods(["GET", "POST"])
def waitlist_leave(request, token: str):
    """GET asks to confirm (a mail scanner following links must not take anyone off the list);
    POST leaves. Seats offered to the customer pass at once to the next in line."""
    if ratelimits.token_guessing_blocked(request):
        return ratelimits.too_many_requests(request, what="link look-ups")
    entry = waitlist_entry_by_leave_token(token)
    if entry is None:
        return _bad_link(request)
    if request.method == "POST":
        leave_service(entry=entry)
        entry.refresh_from_db()
    left = entry.status == WaitlistStatus.LEFT
    listing = entry.slot.listing
    context = {"entry": entry, "listing": listing, "slot": entry.slot, "merchant": listing.merchant, "left": left}
    status = 200 if entry.is_active or entry.status == WaitlistStatus.LEFT else 410
    with timezone.override(listing.merchant.zone):
        response = render(request, "shop/waitlist_leave.html", context, status=status)
    response["Cache-Control"] = "private, no-store"
    return response
