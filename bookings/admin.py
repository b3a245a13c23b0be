"""The Django admin for staff. Lists are searchable and filterable; what only the booking state
machine may change (a booking's status and money, seats, refunds, Stripe events) is read-only,
so nobody can move a booking or a seat count around it."""

from django.contrib import admin

from bookings.models import Booking, Listing, Merchant, Refund, Slot
from bookings.money import format_money


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written only by the domain's services: staff with the view permission may look,
    nobody may add, change or delete."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Merchant)
class MerchantAdmin(admin.ModelAdmin):
    list_display = ["display_name", "user", "timezone", "support_email", "listing_count", "created_at"]
    list_filter = ["timezone"]
    search_fields = ["display_name", "user__username", "user__email", "support_email"]
    list_select_related = ["user"]
    raw_id_fields = ["user"]
    readonly_fields = ["created_at"]

    @admin.display(description="Listings")
    def listing_count(self, merchant):
        return merchant.listings.count()

    def has_delete_permission(self, request, obj=None):
        return False  # a merchant's listings and bookings are kept (PROTECT)


@admin.register(Listing)
class ListingAdmin(admin.ModelAdmin):
    list_display = ["title", "merchant", "price", "duration_minutes", "is_active", "created_at"]
    list_filter = ["is_active", "currency", "merchant"]
    search_fields = ["title", "slug", "description", "merchant__display_name"]
    list_select_related = ["merchant"]
    # The cancellation policy changes through the merchant's listing form (catalog.listing_update),
    # which also gives more lenient terms to bookings already made; not edited here.
    readonly_fields = ["slug", "cancel_policy", "cancel_free_hours", "cancel_late_keep_percent", "created_at", "updated_at"]
    date_hierarchy = "created_at"

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if db_field.name == "online_url":
            kwargs["assume_scheme"] = "https"  # an online link is https only (listing_place_complete)
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    @admin.display(description="Price", ordering="price_amount")
    def price(self, listing):
        return format_money(listing.price_amount, listing.currency)

    def has_delete_permission(self, request, obj=None):
        return False  # archive instead: bookings keep pointing at it


@admin.register(Slot)
class SlotAdmin(admin.ModelAdmin):
    list_display = ["starts_at", "listing", "capacity", "seats_left", "seats_held", "is_on_sale", "cancelled_at"]
    list_filter = ["is_on_sale", ("cancelled_at", admin.EmptyFieldListFilter), "listing__merchant"]
    search_fields = ["listing__title", "listing__merchant__display_name"]
    list_select_related = ["listing"]
    date_hierarchy = "starts_at"
    # Capacity and seats move together in one conditional update (the dashboard's capacity
    # form); cancelling refunds everyone (the dashboard's cancel). Neither is edited here.
    # Held seats move only with their holds.
    readonly_fields = ["listing", "starts_at", "capacity", "seats_left", "seats_held", "cancelled_at", "created_at"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class RefundInline(admin.TabularInline):
    model = Refund
    extra = 0
    can_delete = False
    fields = ["created_at", "amount", "reason", "status", "stripe_refund_id", "failure_reason", "attempts"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Booking)
class BookingAdmin(ReadOnlyAdmin):
    list_display = ["pk", "customer_email", "slot", "quantity", "status", "paid", "refunded", "created_at"]
    list_filter = ["status", "currency", "slot__listing__merchant"]
    search_fields = [
        "=pk",
        "customer_email",
        "customer_name",
        "checkout_session_id",
        "payment_intent_id",
        "stripe_customer_id",
    ]
    list_select_related = ["slot__listing"]
    date_hierarchy = "created_at"
    inlines = [RefundInline]

    @admin.display(description="Paid", ordering="amount_paid")
    def paid(self, booking):
        return format_money(booking.amount_paid, booking.currency)

    @admin.display(description="Refunded", ordering="amount_refunded")
    def refunded(self, booking):
        return format_money(booking.amount_refunded, booking.currency)


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    list_display = ["pk", "booking", "amount_display", "reason", "status", "stripe_refund_id", "attempts", "created_at"]
    list_filter = ["status", "reason"]
    search_fields = ["=booking__pk", "stripe_refund_id", "booking__customer_email", "booking__payment_intent_id"]
    list_select_related = ["booking"]
    date_hierarchy = "created_at"

    @admin.display(description="Amount", ordering="amount")
    def amount_display(self, refund):
        return format_money(refund.amount, refund.booking.currency)
