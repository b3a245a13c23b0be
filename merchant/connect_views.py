"""Getting paid through Stripe Connect (CONNECT_ENABLED): the merchant creates their connected
account, onboards on Stripe's hosted pages, and opens their Express dashboard. Thin views: each
asks `payments.stripe_api` once and records what Stripe says through a service."""

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from bookings import services
from merchant.views import merchant_view
from payments import stripe_api


def _connect_on() -> None:
    if not settings.CONNECT_ENABLED:
        raise Http404("Payments go to the platform's own Stripe account on this site.")


def _onboarding(request, merchant) -> HttpResponseRedirect:
    url = stripe_api.account_onboarding_url(
        account_id=merchant.stripe_account_id,
        refresh_url=request.build_absolute_uri(reverse("merchant:connect_refresh")),
        return_url=request.build_absolute_uri(reverse("merchant:connect_return")),
    )
    return HttpResponseRedirect(url, status=303)


@require_POST
@merchant_view
def connect_start(request, merchant):
    """"Get paid with Stripe": a connected account is made when the merchant has none (or theirs
    was disconnected or rejected), then Stripe's onboarding opens."""
    _connect_on()
    try:
        if not merchant.stripe_account_id or merchant.stripe_account_deauthorized_at or merchant.stripe_account_rejected:
            account_id = stripe_api.account_create(
                merchant_id=merchant.pk,
                email=merchant.support_email or merchant.user.email,
                name=merchant.display_name,
                account_type=settings.CONNECT_ACCOUNT_TYPE,
                country=settings.CONNECT_ACCOUNT_COUNTRY,
            )
            merchant = services.merchant_stripe_account_attach(
                merchant=merchant, account_id=account_id, account_type=settings.CONNECT_ACCOUNT_TYPE
            )
        return _onboarding(request, merchant)
    except stripe_api.PaymentsUnavailable as error:
        messages.error(request, str(error))
        return redirect("merchant:dashboard")


@require_GET
@merchant_view
def connect_refresh(request, merchant):
    """Stripe sends the merchant here when their onboarding link expired or was used: a new one."""
    _connect_on()
    if not merchant.stripe_account_id:
        return redirect("merchant:dashboard")
    try:
        return _onboarding(request, merchant)
    except stripe_api.PaymentsUnavailable as error:
        messages.error(request, str(error))
        return redirect("merchant:dashboard")


@require_GET
@merchant_view
def connect_return(request, merchant):
    """Back from onboarding: the return URL says nothing by itself, so the account is read and
    its state recorded and shown."""
    _connect_on()
    if not merchant.stripe_account_id:
        return redirect("merchant:dashboard")
    try:
        merchant = services.merchant_stripe_account_sync(facts=stripe_api.account_retrieve(merchant.stripe_account_id))
    except stripe_api.PaymentsUnavailable as error:
        messages.error(request, str(error))
        return redirect("merchant:dashboard")
    if merchant.can_take_payments:
        messages.success(request, "Your Stripe account is ready: your customers can pay you.")
    else:
        messages.warning(request, "Stripe still needs some details before your customers can pay you.")
    return redirect("merchant:dashboard")


@require_POST
@merchant_view
def connect_dashboard(request, merchant):
    """Open the merchant's Express dashboard (a single-use login link)."""
    _connect_on()
    if not merchant.stripe_account_id or merchant.stripe_account_type != "express":
        return redirect("merchant:dashboard")
    try:
        return HttpResponseRedirect(stripe_api.account_dashboard_url(merchant.stripe_account_id), status=303)
    except stripe_api.PaymentsUnavailable as error:
        messages.error(request, str(error))
        return redirect("merchant:dashboard")
