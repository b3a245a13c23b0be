from django.contrib import admin

from bookings.admin import ReadOnlyAdmin
from payments.models import StripeEvent


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
    list_display = ["event_id", "type", "status", "attempts", "received_at", "processed_at"]
    list_filter = ["status", "type"]
    search_fields = ["event_id", "type", "error"]
    date_hierarchy = "received_at"
