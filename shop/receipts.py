"""Receipts and payment methods: only for a visitor who has proved the e-mail address.

A visitor asks for a sign-in link (the answer is the same sentence whether or not the address has
bookings), follows it from the e-mail, and confirms on the page it opens; the browser's session
then holds the proven address (its key rotated). Confirming by a button rather than on the link's
GET keeps mail scanners that open links from using up a link meant to work once.
"""

import logging

from django.conf import settings
from django.contrib import messages
from django.http import HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from bookings import selectors
from bookings.customers import (
    SignInLinkRefused,
    customer_email_normalise,
    customer_signin_link_check,
    customer_signin_link_send,
    customer_signin_link_use,
)
from common.logs import log_event
from bookings.models import Booking
from common import ratelimits
from payments import stripe_api
from shop.forms import ReceiptsLinkForm

log = logging.getLogger("shop.receipts")

PROVEN_EMAIL_SESSION_KEY = "proven_customer_email"


def proven_email(request) -> str:
    """The (normalised) address this browser has proved, or ""."""
    return request.session.get(PROVEN_EMAIL_SESSION_KEY, "") if hasattr(request, "session") else ""


def owns_booking(request, booking: Booking) -> bool:
    """Whether this browser has proved the address the booking was made with."""
    proven = proven_email(request)
    return bool(proven) and proven == customer_email_normalise(booking.customer_email)


def _request_page(request, form: ReceiptsLinkForm, *, status: int = 200, **extra):
    context = {"form": form, "minutes": settings.CUSTOMER_SIGNIN_LINK_MINUTES, **extra}
    return render(request, "shop/receipts_request.html", context, status=status)


def link_offer(request, *, booking: Booking, status: int):
    """The page offering to e-mail a sign-in link to a booking's address."""
    form = ReceiptsLinkForm(
        initial={"email": booking.customer_email, "next": reverse("shop:booking", args=[booking.public_token])}
    )
    return _request_page(request, form, status=status, refused=True)


@require_GET
def receipts_home(request):
    """A proven visitor's receipts; anyone else gets the form asking for a sign-in link."""
    email = proven_email(request)
    if not email:
        return _request_page(request, ReceiptsLinkForm())
    context = {
        "email": email,
        # One portal per Stripe account: with Connect a person is a different Customer on each
        # merchant's connected account, and a portal shows one Customer's receipts.
        "proven_customers": selectors.proven_customers_of(email),
        "bookings": selectors.bookings_of_email(email)[:50],
    }
    return render(request, "shop/receipts.html", context)


@require_POST
def receipts_link_request(request):
    """E-mail a sign-in link. The answer says the same whether or not the address has bookings."""
    form = ReceiptsLinkForm(request.POST)
    if not form.is_valid():
        return _request_page(request, form, status=400)
    email = customer_email_normalise(form.cleaned_data["email"])
    by_ip, by_email = ratelimits.receipts_link_limited(request, email=email)
    if by_ip:
        return ratelimits.too_many_requests(request, what="requests for sign-in links")
    if by_email:
        # The links sent a moment ago are in that mailbox; saying so would tell nothing more.
        log_event(log, "receipts_link_limited_for_email")
    else:
        customer_signin_link_send(email=email, next_path=form.cleaned_data["next"])
    context = {"email": form.cleaned_data["email"], "minutes": settings.CUSTOMER_SIGNIN_LINK_MINUTES}
    return render(request, "shop/receipts_link_sent.html", context)


@require_http_methods(["GET", "POST"])
def receipts_signin(request):
    """GET shows the link's confirmation button (nothing used yet); POST uses the link, proves its
    address for this browser and goes on. A bad, used or expired link gets a page saying so."""
    token = (request.POST if request.method == "POST" else request.GET).get("token", "")
    try:
        if request.method == "GET":
            link = customer_signin_link_check(token=token)
            return render(request, "shop/receipts_signin.html", {"email": link.email, "token": token})
        link = customer_signin_link_use(token=token)
    except SignInLinkRefused as refused:
        return _request_page(request, ReceiptsLinkForm(), status=refused.status, problem=str(refused))
    request.session.cycle_key()
    request.session[PROVEN_EMAIL_SESSION_KEY] = link.email
    return redirect(link.next_path or reverse("shop:receipts"))


@require_POST
def receipts_signout(request):
    request.session.pop(PROVEN_EMAIL_SESSION_KEY, None)
    request.session.cycle_key()
    return redirect("shop:receipts")


@require_POST
def receipts_portal(request):
    """The billing portal of the proven address's one Customer on the account asked for (the
    platform's, or with Connect one merchant's connected account, opened on that account)."""
    email = proven_email(request)
    account = request.POST.get("account", "")[:255]
    proven = selectors.proven_customer_of(email, stripe_account=account) if email else None
    if proven is None:
        return redirect("shop:receipts")
    return_url = request.build_absolute_uri(reverse("shop:receipts"))
    try:
        url = stripe_api.portal_url(
            customer_id=proven.stripe_customer_id, return_url=return_url, stripe_account=proven.stripe_account_id
        )
    except stripe_api.PaymentsUnavailable as error:
        messages.error(request, str(error))
        return redirect("shop:receipts")
    return HttpResponseRedirect(url, status=303)
