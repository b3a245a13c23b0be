from django.urls import path

from merchant import connect_views, tools_views, views

app_name = "merchant"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("listings/", views.listing_list, name="listing_list"),
    path("listings/new/", views.listing_create, name="listing_create"),
    path("listings/<int:pk>/", views.listing_detail, name="listing_detail"),
    path("listings/<int:pk>/edit/", views.listing_edit, name="listing_edit"),
    path("listings/<int:pk>/archive/", views.listing_archive, name="listing_archive"),
    path("listings/<int:pk>/restore/", views.listing_restore, name="listing_restore"),
    path("listings/<int:pk>/slots/new/", views.slot_create, name="slot_create"),
    path("listings/<int:pk>/slots/series/", views.slot_series, name="slot_series"),
    path("slots/<int:pk>/", views.slot_detail, name="slot_detail"),
    path("slots/<int:pk>/capacity/", views.slot_capacity, name="slot_capacity"),
    path("slots/<int:pk>/selling/", views.slot_selling, name="slot_selling"),
    path("slots/<int:pk>/cancel/", views.slot_cancel, name="slot_cancel"),
    path("slots/<int:pk>/attendees/", tools_views.slot_attendees, name="slot_attendees"),
    path("slots/<int:pk>/attendees.csv", tools_views.slot_attendees_export, name="slot_attendees_export"),
    path("slots/<int:pk>/message/", tools_views.slot_message, name="slot_message"),
    path("promotions/", tools_views.promotion_list, name="promotion_list"),
    path("promotions/<int:pk>/active/", tools_views.promotion_active, name="promotion_active"),
    path("bookings/", views.booking_list, name="booking_list"),
    path("bookings/export.csv", views.booking_export, name="booking_export"),
    path("bookings/<int:pk>/", views.booking_detail, name="booking_detail"),
    path("bookings/<int:pk>/refund/", views.booking_refund, name="booking_refund"),
    path("bookings/<int:pk>/refund/retry/", views.booking_refund_retry, name="booking_refund_retry"),
    path("bookings/<int:pk>/refund/resubmit/", views.booking_refund_resubmit, name="booking_refund_resubmit"),
    path("profile/", views.profile, name="profile"),
    path("stripe/connect/", connect_views.connect_start, name="connect_start"),
    path("stripe/connect/refresh/", connect_views.connect_refresh, name="connect_refresh"),
    path("stripe/connect/return/", connect_views.connect_return, name="connect_return"),
    path("stripe/dashboard/", connect_views.connect_dashboard, name="connect_dashboard"),
]
