"""The operator's side of Stripe Connect, inside the Django admin (staff only): the platform's
fees earned on merchants' direct charges, per currency and per merchant."""

from django.contrib import admin
from django.shortcuts import render
from django.views.decorators.http import require_GET

from bookings import selectors

# The periods offered, in days ("all": since the first payment).
FEE_PERIODS = {"7": 7, "30": 30, "90": 90, "365": 365, "all": None}


@require_GET
def platform_fees(request):
    """Fees charged, fees refunded with refunds, and net, per currency, then per merchant."""
    period = request.GET.get("days", "30")
    if period not in FEE_PERIODS:
        context = {**admin.site.each_context(request), "title": "Platform fees",
                   "error": "Choose a period of 7, 30, 90 or 365 days, or all time."}
        return render(request, "admin/platform_fees.html", context, status=400)
    totals, lines = selectors.platform_fees(days=FEE_PERIODS[period])
    context = {
        **admin.site.each_context(request),
        "title": "Platform fees",
        "period": period,
        "periods": [(key, "All time" if days is None else f"Last {days} days") for key, days in FEE_PERIODS.items()],
        "totals": totals,
        "lines": lines,
    }
    return render(request, "admin/platform_fees.html", context)
