from django import template
from django.template.loader import render_to_string

from bookings.policies import booking_terms, listing_terms

register = template.Library()


@register.simple_tag
def cancellation_policy(listing=None, booking=None):
    """The cancellation policy in words: of a listing (for new bookings, in hours before the
    start) or of a booking (its own terms, the free window's end as a date and time in the
    current zone, which pages and e-mails set to the merchant's)."""
    if booking is None:
        return render_to_string("common/_cancellation_policy.html", {"terms": listing_terms(listing)}).strip()
    terms = booking_terms(booking)
    context = {
        "terms": terms,
        "deadline": terms.deadline(booking.slot.starts_at),
        "zone_name": booking.slot.listing.merchant.timezone,
    }
    return render_to_string("common/_cancellation_policy.html", context).strip()
