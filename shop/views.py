from django.shortcuts import render
from django.views.decorators.http import require_GET

from bookings import selectors


@require_GET
def catalog(request):
    return render(request, "shop/catalog.html", {"listings": selectors.catalog_listings()})
