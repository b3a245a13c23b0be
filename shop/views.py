import datetime as dt
import logging
import math
import re
import uuid
from functools import wraps
from itertools import groupby
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.messages.storage.cookie import CookieStorage
from django.db import DatabaseError, connection
from django.http import (
    Http404,
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
)
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HTMX_STOP_POLLING

from bookings import selectors
from bookings.calendar import booking_calendar_file, booking_online_url, google_calendar_url
from common.logs import log_event
from bookings.models import Booking, Listing
from bookings.policies import cancel_quote, reschedule_refusal
from bookings.services import BookingError, hold_minutes, merchant_payments_refusal, waitlist_join_refusal
from bookings.storefront_cache import (
    final_status_key,
    fragment_kept,
    status_panel_get,
    status_panel_set,
    storefront_version,
)
from common import ratelimits
from payments import stripe_api
from shop import receipts
from payments.checkout import (
    CHECKOUT_DRAFT_MARKER,
    booking_status_refresh,
    checkout_cancel,
    checkout_draft_booking,
    checkout_queue_drive,
    checkout_start,
    is_checkout_session_id,
    queue_driven_by_pages,
)
from payments.checkout_queue import queue_entry_by_token, queue_place
from payments.models import CheckoutQueueEntry
from shop.forms import BookingForm
from shop.waitlist import waitlist_form_for

log = logging.getLogger("shop.views")

# The success page polls quickly at first, then backs off: a card payment settles in seconds.
POLL_DELAYS_SECONDS = (1, 1, 1, 2, 2, 2, 3, 3, 5)
# From this poll on (about 7 s after the page opened) "a few seconds" is no longer true: in a big
# on-sale a paid buyer waited 40 s at the median for the webhook (benchmarks/onsale.py).
POLL_TAKING_LONG = 5


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


def benchmark_stripe_call(request):
    """One Stripe write (a Customer) and an empty answer: what a sync or threaded worker does while
    Stripe thinks, for benchmarks/stripe_wait.py. Mounted only when BENCHMARK_BARE_VIEW is set."""
    stripe_api.customer_create(email="wait@bench.example", name="Wait", idempotency_key=uuid.uuid4().hex)
    return HttpResponse("ok", content_type="text/plain")


async def benchmark_stripe_call_async(request):
    """The same Stripe write awaited, for an ASGI worker (benchmarks/stripe_wait.py)."""
    await stripe_api.customer_create_async(email="wait@bench.example", name="Wait", idempotency_key=uuid.uuid4().hex)
    return HttpResponse("ok", content_type="text/plain")


def _without_session(request) -> bool:
    """Nobody signed in and no message waiting: a public page is then the same for every such
    visitor but for its CSRF token."""
    cookies = request.COOKIES
    return settings.SESSION_COOKIE_NAME not in cookies and CookieStorage.cookie_name not in cookies


def _public_page(request, *, key: str, template: str, context) -> tuple[bytes, ...] | None:
    """A public page, rendered with a marker where the CSRF token goes, and kept whole in the cache
    (under `key`, which must name the storefront version) for visitors without a session.
    `context()` gives None for a page that does not exist; nothing is kept for it."""

    def make() -> tuple[bytes, ...] | None:
        values = context()
        if values is None:
            return None
        return _pieces(render_to_string(template, {**values, "csrf_token": CSRF_TOKEN_MARKER}, request=request))

    return fragment_kept(key, settings.STOREFRONT_CACHE_SECONDS, make) if _without_session(request) else make()


@require_GET
def catalog(request):
    version = storefront_version()

    def context():
        # The cards are the same for everyone, signed in or not: rendered once per version.
        cards = fragment_kept(
            f"storefront:catalog:{version}",
            settings.STOREFRONT_CACHE_SECONDS,
            lambda: render_to_string("shop/_catalog_cards.html", {"listings": selectors.catalog_listings()}),
        )
        return {"cards": cards}

    pieces = _public_page(
        request, key=f"storefront:catalog-page:{version}", template="shop/catalog.html", context=context
    )
    return HttpResponse(_body(request, pieces))


def _listing_or_404(slug: str) -> Listing:
    try:
        return selectors.listing_for_sale(slug)
    except Listing.DoesNotExist:
        raise Http404("No such listing.") from None


# Stands for the CSRF token in cached HTML; each response puts in its own token.
CSRF_TOKEN_MARKER = "CSRFTOKENMARKER00000000000000000000000000000000000000000000000000"


def _pieces(html: str) -> tuple[bytes, ...]:
    """HTML as it is sent: encoded once, and cut where the CSRF token goes."""
    return tuple(html.encode().split(CSRF_TOKEN_MARKER.encode()))


def _body(request, pieces: tuple[bytes, ...]) -> bytes:
    return pieces[0] if len(pieces) == 1 else get_token(request).encode().join(pieces)


def _with_csrf_token(request, html: str) -> str:
    if CSRF_TOKEN_MARKER in html:
        html = html.replace(CSRF_TOKEN_MARKER, get_token(request))
    return mark_safe(html)


# A listing with more upcoming times than this shows them a week at a time.
PICKER_ONE_PAGE_MAX_SLOTS = 12


def _slot_weeks(listing: Listing, slots) -> dict[dt.date, list[tuple[dt.date, list]]]:
    """The slots by week (starting Monday) and day, on the merchant's calendar; a few times
    all under their first week."""
    weeks: dict[dt.date, list[tuple[dt.date, list]]] = {}
    one_page = len(slots) <= PICKER_ONE_PAGE_MAX_SLOTS
    with timezone.override(listing.merchant.zone):
        for day, day_slots in groupby(slots, key=lambda slot: timezone.localdate(slot.starts_at)):
            monday = day - dt.timedelta(days=day.weekday())
            weeks.setdefault(next(iter(weeks), monday) if one_page else monday, []).append((day, list(day_slots)))
    return weeks


def _week_wanted(raw: str, weeks) -> dt.date | None:
    """The week with times at or after the date `raw` names (else the last); None for no such date."""
    try:
        day = dt.date.fromisoformat(raw) if len(raw) == 10 else None
    except ValueError:
        day = None
    if day is None or not weeks:
        return None
    monday = day - dt.timedelta(days=day.weekday())
    return next((week for week in weeks if week >= monday), weeks[-1])


def _picker_html(listing: Listing, weeks: dict, week: dt.date | None, *, selected: str = "", errors=()) -> str:
    """The slot picker showing one week of times, with links to the weeks before and after."""
    order = sorted(weeks)
    week = week if week in weeks else (order[0] if order else None)
    at = order.index(week) if week is not None else 0
    with timezone.override(listing.merchant.zone):
        this_year = timezone.localdate().year
    context = {
        "listing": listing,
        "zone": listing.merchant.zone,
        "week": week,
        "days": weeks.get(week, []),
        "previous_week": order[at - 1] if at > 0 else None,
        "next_week": order[at + 1] if at + 1 < len(order) else None,
        "this_year": this_year,
        "selected": selected,
        "errors": errors,
        "hold_minutes": hold_minutes(listing),
    }
    return render_to_string("shop/_slot_picker.html", context)


def _listing_content(listing: Listing, form: BookingForm, *, picker: str, slots: list, waitlist=None) -> str:
    """The listing's part of its page: description, times and the booking form. Rendered without
    the request, with a marker where the CSRF token goes, so that nothing of one customer is in it."""
    context = {
        "listing": listing,
        "form": form,
        "has_days": bool(slots),
        "has_bookable": any(slot.is_bookable for slot in slots),
        "has_held": any(slot.seats_held for slot in slots),
        "hold_minutes": hold_minutes(listing),
        # With Connect, a merchant whose account cannot take charges is not selling (yet).
        "not_taking_bookings": merchant_payments_refusal(listing.merchant),
        "slot_picker": picker,
        "csrf_token": CSRF_TOKEN_MARKER,
        "offer_minutes": settings.WAITLIST_OFFER_MINUTES,
        **(waitlist or {}),
    }
    return render_to_string("shop/_listing.html", context)


def _listing_page(request, listing: Listing, form: BookingForm, *, status: int = 200, week: str = "", waitlist=None):
    """The page with a form a customer sent back (errors, a refused checkout, a cancelled
    Checkout's choices): never cached. It opens on the week of the chosen time."""
    slots = list(form.fields["slot"].queryset)
    weeks = _slot_weeks(listing, slots)
    selected = str(form["slot"].value() or "")
    chosen = next((slot for slot in slots if str(slot.pk) == selected), None)
    if chosen is not None:
        week = timezone.localdate(chosen.starts_at, listing.merchant.zone).isoformat()
    picker = _picker_html(listing, weeks, _week_wanted(week, sorted(weeks)), selected=selected, errors=form["slot"].errors)
    content = _listing_content(listing, form, picker=picker, slots=slots, waitlist=waitlist)
    response = render(
        request, "shop/listing.html", {"title": listing.title, "content": _with_csrf_token(request, content)}, status=status
    )
    response["Cache-Control"] = "private, no-store"
    return response


# Stands, in the cached listing, for the picker of the week asked for.
PICKER_MARKER = "SLOTPICKERMARKER0000000000000000"


def _listing_for_customers(slug: str) -> dict | None:
    """Everything the listing's public pages show, for all its weeks: the page once with a marker
    where the picker goes, and one picker per week. The same for every customer."""
    try:
        listing = selectors.listing_for_sale(slug)
    except Listing.DoesNotExist:
        return None
    form = BookingForm(slots=selectors.slots_on_sale(listing))
    slots = list(form.fields["slot"].queryset)
    weeks = _slot_weeks(listing, slots)
    content = _listing_content(listing, form, picker=PICKER_MARKER, slots=slots)
    return {
        "slug": listing.slug,
        "title": listing.title,
        "content": content,
        "weeks": sorted(weeks),
        "pickers": {week: _picker_html(listing, weeks, week) for week in weeks},
        "slot_weeks": {str(slot.pk): week for week, days in weeks.items() for _, day_slots in days for slot in day_slots},
    }


def _cancelled_checkout_page(request, slug: str):
    """Back from Stripe's Checkout page: the listing with the customer's own choices filled in,
    when the address names their booking (signed, so it cannot be guessed); never cached."""
    listing = _listing_or_404(slug)
    booking = checkout_draft_booking(request.GET.get("draft", ""), listing=listing)
    if booking is not None:
        # Its session is expired at Stripe and the seats it held are free for others at once.
        booking = checkout_cancel(booking=booking)
    if booking is not None and booking.status not in (Booking.Status.PENDING, Booking.Status.EXPIRED):
        # Paid after all (the payment got there before the cancel): its own page says so.
        return redirect("shop:booking", token=booking.public_token)
    messages.info(request, "Checkout cancelled. Nothing was charged, and the seats you held are free again.")
    if booking is None:
        return redirect("shop:listing", slug=listing.slug)
    form = BookingForm(
        slots=selectors.slots_on_sale(listing),
        initial={
            "slot": booking.slot_id,
            "quantity": booking.quantity,
            "customer_name": booking.customer_name,
            "customer_email": booking.customer_email,
        },
    )
    return _listing_page(request, listing, form)


@require_GET
def listing_detail(request, slug: str):
    if request.GET.get("checkout") == "cancelled":
        return _cancelled_checkout_page(request, slug)
    if len(slug) > Listing._meta.get_field("slug").max_length:
        raise Http404("No such listing.")
    version = storefront_version()
    # The listing's part is the same for every customer, signed in or not: rendered once per
    # version (only listings on sale are kept, so unknown addresses fill nothing).
    page = fragment_kept(
        f"storefront:listing:{slug}:{version}",
        settings.STOREFRONT_CACHE_SECONDS,
        lambda: _listing_for_customers(slug),
    )
    if page is None:
        raise Http404("No such listing.")
    # The week asked for, else the one of the time a customer came to pick from the catalog,
    # else the first: always one of the weeks with times, so there are few pages to keep.
    selected = request.GET.get("slot") or ""
    week = _week_wanted(request.GET.get("week", ""), page["weeks"]) or page["slot_weeks"].get(selected)
    if week is None and page["weeks"]:
        week = page["weeks"][0]
    picker = page["pickers"].get(week, "")
    if request.headers.get("HX-Request") == "true":
        # Only the picker, for htmx's previous/next; it takes the focus to the week shown.
        response = HttpResponse(picker.replace(" data-week-label", " data-week-label autofocus", 1))
        response["Vary"] = "HX-Request"
        return response

    def context():
        return {"title": page["title"], "content": mark_safe(page["content"].replace(PICKER_MARKER, picker))}

    pieces = _public_page(
        request, key=f"storefront:listing-page:{slug}:{version}:{week}", template="shop/listing.html", context=context
    )
    body = _body(request, pieces)
    # The time a customer came to pick from the catalog is marked afterwards, so that one copy
    # of the page serves them all.
    if selected.isdigit() and len(selected) < 20:
        radio = f'name="slot" value="{selected}"'.encode()
        body = body.replace(radio, radio + b" checked", 1)
    response = HttpResponse(body)
    response["Vary"] = "HX-Request"
    return response


@require_POST
def checkout_create(request, slug: str):
    listing = _listing_or_404(slug)
    # The chosen time with its listing in one read: the form checks the payment's size by it.
    form = BookingForm(request.POST, slots=selectors.slots_on_sale(listing).select_related("listing"))
    week = request.POST.get("week", "")
    if not form.is_valid():
        return _listing_page(request, listing, form, status=400, week=week)
    if ratelimits.checkout_limited(request, email=form.cleaned_data["customer_email"]):
        return ratelimits.too_many_requests(request, what="checkouts")
    success_url = request.build_absolute_uri(reverse("shop:checkout_success")) + "?session_id={CHECKOUT_SESSION_ID}"
    cancel_url = (
        request.build_absolute_uri(reverse("shop:listing", args=[listing.slug]))
        + f"?checkout=cancelled&draft={CHECKOUT_DRAFT_MARKER}"
    )
    try:
        started = checkout_start(
            slot=form.cleaned_data["slot"],
            quantity=form.cleaned_data["quantity"],
            customer_email=form.cleaned_data["customer_email"],
            customer_name=form.cleaned_data["customer_name"],
            success_url=success_url,
            cancel_url=cancel_url,
            proven_email=receipts.proven_email(request),
        )
    except BookingError as error:
        form.add_error(None, str(error))
        return _listing_page(request, listing, form, status=409, week=week, waitlist=_waitlist_instead(listing, form))
    except stripe_api.PaymentsUnavailable as error:
        form.add_error(None, str(error))
        return _listing_page(request, listing, form, status=503, week=week)
    if started.queue_token:
        # Stripe's budget is spent for this moment: the seats are held, and a page shows the line.
        return HttpResponseRedirect(reverse("shop:checkout_queue", args=[started.queue_token]), status=303)
    return HttpResponseRedirect(started.url, status=303)


# The waiting page polls about as often as its turn can come: every second for the next second's
# turns, further back every (turns ahead at the budget's pace) seconds, at most every
# QUEUE_POLL_MAX_SECONDS. A thousand people in line at 20 turns a second then poll about 120
# times a second in all instead of a thousand, which a web tier busy opening checkouts could not
# answer (benchmarks/onsale.py, 2,000 buyers for 1,500 seats).
QUEUE_POLL_MAX_SECONDS = 15


def queue_poll_seconds(place: int) -> int:
    rate = settings.STRIPE_REQUESTS_PER_SECOND or 1.0
    return max(1, min(QUEUE_POLL_MAX_SECONDS, math.ceil(place / rate)))


@require_GET
@guessing_limited
def checkout_queue(request, token: str):
    """The page of a checkout start waiting for Stripe: its place in line and an estimate, polled
    (htmx, else a refresh). With no Celery broker (no beat to drive the line) each poll gives the
    next turn in line, whoever's it is; with one, beat's driver gives the turns and a poll only
    reads. When this customer's turn has opened their Checkout they go there (HX-Redirect with
    htmx, else 303).
    Past QUEUE_MAX_WAIT_SECONDS, or when the time sold out meanwhile, the page says so (the
    waitlist offered for a sold-out time, the form kept to try again) and polling stops."""
    if ratelimits.token_guessing_blocked(request):
        raise GuessingBlocked
    entry = queue_entry_by_token(token) if len(token) < 200 else None
    if entry is None:
        ratelimits.token_miss_record(request)
        raise Http404("No such place in line.")
    waiting_turn = entry.status in (CheckoutQueueEntry.Status.WAITING, CheckoutQueueEntry.Status.OPENING)
    if waiting_turn and queue_driven_by_pages():
        checkout_queue_drive(max_opens=1)
        entry.refresh_from_db()
    booking = entry.booking
    if entry.status == CheckoutQueueEntry.Status.OPENED:
        booking.refresh_from_db()
        # Back on this page later (from Stripe's page): the booking's own page once it has moved on.
        target = (
            entry.checkout_url
            if booking.status == Booking.Status.PENDING
            else reverse("shop:booking", args=[booking.public_token])
        )
        if request.htmx:
            response = HttpResponse(status=200)
            response["HX-Redirect"] = target
            return response
        return HttpResponseRedirect(target, status=303)
    listing = booking.slot.listing
    waiting = entry.status in (CheckoutQueueEntry.Status.WAITING, CheckoutQueueEntry.Status.OPENING)
    place = queue_place(entry) if waiting else None
    poll_seconds = queue_poll_seconds(place.place) if place else QUEUE_POLL_MAX_SECONDS
    context = {
        "entry": entry,
        "booking": booking,
        "listing": listing,
        "waiting": waiting,
        "place": place,
        "poll_delay": poll_seconds,
        # Without JavaScript a reload costs a whole page: at least every 2 seconds.
        "refresh_seconds": max(2, poll_seconds),
        "max_wait_seconds": settings.QUEUE_MAX_WAIT_SECONDS,
        "offer_minutes": settings.WAITLIST_OFFER_MINUTES,
        **(_queue_waitlist(booking) if entry.status == CheckoutQueueEntry.Status.SOLD_OUT else {}),
    }
    with timezone.override(listing.merchant.zone):
        if request.htmx:
            response = render(request, "shop/_checkout_queue.html", context, status=200 if waiting else HTMX_STOP_POLLING)
        else:
            response = render(request, "shop/checkout_queue.html", context)
    response["Vary"] = "HX-Request"
    response["Cache-Control"] = "private, no-store"
    return response


def _queue_waitlist(booking: Booking) -> dict:
    """The waitlist of the time that sold out while its customer waited, with their choices."""
    slot = selectors.slots_on_sale(booking.slot.listing).filter(pk=booking.slot_id).select_related("listing").first()
    if slot is None or waitlist_join_refusal(slot, booking.quantity):
        return {}
    return {
        "waitlist_slot": slot,
        "waitlist_form": waitlist_form_for(
            slot.listing,
            initial={
                "slot": slot.pk,
                "quantity": booking.quantity,
                "customer_name": booking.customer_name,
                "customer_email": booking.customer_email,
            },
        ),
    }


def _waitlist_instead(listing: Listing, form: BookingForm) -> dict | None:
    """A checkout refused because too few seats are free: the waitlist of that time, offered
    with the customer's choices filled in."""
    slot = selectors.slots_on_sale(listing).filter(pk=form.cleaned_data["slot"].pk).select_related("listing").first()
    quantity = form.cleaned_data["quantity"]
    if slot is None or waitlist_join_refusal(slot, quantity):
        return None
    waitlist_form = waitlist_form_for(
        listing,
        initial={
            "slot": slot.pk,
            "quantity": quantity,
            "customer_name": form.cleaned_data["customer_name"],
            "customer_email": form.cleaned_data["customer_email"],
        },
    )
    return {
        "waitlist_form": waitlist_form,
        "waitlist_slot": slot,
        "waitlist_sentence": "Join this time's waitlist and we will e-mail you if seats free up: "
        "the first people in line whose number of seats fits get a link that holds the seats for them.",
    }


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


# Times: a page about one booking is rendered with its merchant's zone as the current one
# (timezone.override), so the templates' date filters show the merchant's wall clock; the
# context holds the aware datetimes as stored, never converted beforehand.
def _status_context(request, check, poll: int) -> dict:
    booking = check.booking
    next_poll = min(poll + 1, len(POLL_DELAYS_SECONDS) - 1)
    return {
        "booking": booking,
        "problem": check.problem,
        "money_back": selectors.booking_money_back(booking),
        "listing": booking.slot.listing,
        "starts_at": booking.slot.starts_at,
        "poll_url": reverse("shop:checkout_status", args=[booking.checkout_session_id]) + f"?poll={next_poll}",
        "refresh_url": reverse("shop:checkout_success") + "?" + urlencode(
            {"session_id": booking.checkout_session_id, "poll": next_poll}
        ),
        "poll_delay": POLL_DELAYS_SECONDS[poll],
        "taking_long": poll >= POLL_TAKING_LONG,
        "held_until": _held_until(booking),
    }


def _held_until(booking: Booking):
    """When the seats of a booking still being paid stop being held for it, if they are."""
    if booking.status != Booking.Status.PENDING:
        return None
    hold = selectors.booking_open_hold(booking)
    return hold.expires_at if hold else None


def _poll_number(request) -> int:
    raw = request.GET.get("poll", "0")
    return min(int(raw), len(POLL_DELAYS_SECONDS) - 1) if raw.isascii() and raw.isdigit() and len(raw) < 4 else 0


@require_GET
@guessing_limited
def checkout_success(request):
    booking = _booking_by_session_or_404(request, request.GET.get("session_id", ""))
    check = booking_status_refresh(booking)
    # Without JavaScript the page reloads itself, counting its reloads as htmx counts its polls.
    with timezone.override(booking.slot.listing.merchant.zone):
        return render(request, "shop/checkout_success.html", _status_context(request, check, _poll_number(request)))


def _final_status_response(request, pieces: tuple[bytes, ...]) -> HttpResponse:
    return HttpResponse(_body(request, pieces), status=HTMX_STOP_POLLING)


@require_GET
@guessing_limited
def checkout_status(request, session_id: str):
    """The polled status panel. A final booking's panel no longer changes with each poll: it is
    kept until the booking changes or FINAL_STATUS_CACHE_SECONDS pass, and answered without a
    query or a call to Stripe. It is the same for every visitor and holds no form (receipts are
    a link to the booking page), so a kept panel is sent as it is, with no CSRF token to mask."""
    if ratelimits.token_guessing_blocked(request):
        raise GuessingBlocked
    seconds = settings.FINAL_STATUS_CACHE_SECONDS
    # The key is taken before the booking is read: a change meanwhile moves it (storefront_cache).
    key = final_status_key(session_id) if seconds > 0 and is_checkout_session_id(session_id) else None
    if key:
        pieces = status_panel_get(key)
        if pieces is not None:
            return _final_status_response(request, pieces)
    booking = _booking_by_session_or_404(request, session_id)
    check = booking_status_refresh(booking)
    context = _status_context(request, check, _poll_number(request))
    with timezone.override(booking.slot.listing.merchant.zone):
        if not check.booking.is_final:
            return render(request, "shop/_checkout_status.html", context)
        html = render_to_string(
            "shop/_checkout_status.html", {**context, "csrf_token": CSRF_TOKEN_MARKER}, request=request
        )
    pieces = _pieces(html)
    if key and not check.problem:
        status_panel_set(key, pieces, seconds)
    return _final_status_response(request, pieces)


# What new_public_token() makes (secrets.token_urlsafe): anything else cannot be a booking, and
# is not looked up at all (PostgreSQL refuses a NUL character in a query with an error).
PUBLIC_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")


def is_public_token(value: str) -> bool:
    return bool(PUBLIC_TOKEN.fullmatch(value))


def _booking_by_token_or_404(request, token: str) -> Booking:
    if ratelimits.token_guessing_blocked(request):
        raise GuessingBlocked
    try:
        if not is_public_token(token):
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
        "starts_at": booking.slot.starts_at,
        "refunds": [refund for refund in booking.refunds.all() if refund.stripe_refund_id],
        "owns_booking": receipts.owns_booking(request, booking),
        "money_back": selectors.booking_money_back(booking),
        "can_cancel": cancel_quote(booking).allowed,
        "can_reschedule": not reschedule_refusal(booking),
        "online_url": booking_online_url(booking),
        "google_calendar_url": google_calendar_url(booking) if booking.status == Booking.Status.CONFIRMED else "",
    }
    with timezone.override(listing.merchant.zone):
        return render(request, "shop/booking.html", context)


@require_GET
@guessing_limited
def booking_calendar(request, token: str):
    """The booking's calendar file, under its private address: for a confirmed booking only
    (it may carry the online link)."""
    booking = _booking_by_token_or_404(request, token)
    if booking.status != Booking.Status.CONFIRMED:
        return HttpResponse(
            "There is no calendar entry for this booking: it is not confirmed. Its page says why.",
            status=409,
            content_type="text/plain; charset=utf-8",
        )
    calendar_file = booking_calendar_file(booking=booking, method="PUBLISH")
    response = HttpResponse(calendar_file.content, content_type=calendar_file.content_type)
    response["Content-Disposition"] = f'attachment; filename="{calendar_file.filename}"'
    response["Cache-Control"] = "private, no-store"
    return response


@require_POST
@guessing_limited
def booking_portal(request, token: str):
    """The billing portal of the booking's own Customer, only for a visitor who has proved the
    booking's e-mail address; anyone else is offered a sign-in link to that address."""
    booking = _booking_by_token_or_404(request, token)
    if not receipts.owns_booking(request, booking):
        return receipts.link_offer(request, booking=booking, status=403)
    if not booking.stripe_customer_id:
        messages.error(request, "There are no payment details for this booking yet.")
        return redirect("shop:booking", token=booking.public_token)
    return_url = request.build_absolute_uri(reverse("shop:booking", args=[booking.public_token]))
    try:
        url = stripe_api.portal_url(
            customer_id=booking.stripe_customer_id, return_url=return_url, stripe_account=booking.stripe_account_id
        )
    except stripe_api.PaymentsUnavailable as error:
        messages.error(request, str(error))
        return redirect("shop:booking", token=booking.public_token)
    return HttpResponseRedirect(url, status=303)

