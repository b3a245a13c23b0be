from django import template
from django.template.loader import render_to_string

from bookings.policies import booking_terms, listing_terms

register = template.Library()


@register.simple_tag
def cancellation_policy(listing=None, booking=None, dated=True):
    """The cancellation policy in words: of a listing (for new bookings, in hours before the
    start) or of a booking (its own terms; `dated`, the free window's end as a date and time in
    the current zone, which pages and e-mails set to the merchant's, else in hours before the
    start: where the start is the only time of day a page or e-mail may state)."""
    if booking is None or not dated:
        terms = listing_terms(listing) if booking is None else booking_terms(booking)
        return render_to_string("common/_cancellation_policy.html", {"terms": terms}).strip()
    terms = booking_terms(booking)
    context = {
        "terms": terms,
        "deadline": terms.deadline(booking.slot.starts_at),
        "zone_name": booking.slot.listing.merchant.timezone,
    }
    return render_to_string("common/_cancellation_policy.html", context).strip()
