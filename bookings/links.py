"""Addresses of the site's pages, absolute (for e-mails and calendar entries): SITE_URL in front."""

from django.conf import settings
from django.urls import reverse

from bookings.models import Booking


def absolute_url(path: str) -> str:
    return (settings.SITE_URL or "http://localhost:8000") + path


def booking_page_url(booking: Booking) -> str:
    return absolute_url(reverse("shop:booking", args=[booking.public_token]))
