from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from merchant import operator_views
from shop import my_bookings, receipts, views, waitlist

shop_patterns = [
    path("", views.catalog, name="catalog"),
    path("l/<slug:slug>/", views.listing_detail, name="listing"),
    path("l/<slug:slug>/book/", views.checkout_create, name="checkout_create"),
    path("l/<slug:slug>/waitlist/", waitlist.waitlist_join, name="waitlist_join"),
    path("waitlist/offer/<str:token>/", waitlist.waitlist_offer, name="waitlist_offer"),
    path("waitlist/leave/<str:token>/", waitlist.waitlist_leave, name="waitlist_leave"),
    path("checkout/queue/<str:token>/", views.checkout_queue, name="checkout_queue"),
    path("checkout/success/", views.checkout_success, name="checkout_success"),
    path("checkout/status/<str:session_id>/", views.checkout_status, name="checkout_status"),
    path("b/<str:token>/", views.booking_page, name="booking"),
    path("b/<str:token>/portal/", views.booking_portal, name="booking_portal"),
    path("b/<str:token>/cancel/", my_bookings.booking_cancel, name="booking_cancel"),
    path("b/<str:token>/reschedule/", my_bookings.booking_reschedule_view, name="booking_reschedule"),
    path("my-bookings/", my_bookings.my_bookings, name="my_bookings"),
    path("b/<str:token>/calendar.ics", views.booking_calendar, name="booking_calendar"),
    path("receipts/", receipts.receipts_home, name="receipts"),
    path("receipts/link/", receipts.receipts_link_request, name="receipts_link"),
    path("receipts/sign-in/", receipts.receipts_signin, name="receipts_signin"),
    path("receipts/sign-out/", receipts.receipts_signout, name="receipts_signout"),
    path("receipts/portal/", receipts.receipts_portal, name="receipts_portal"),
    path("healthz", views.healthz, name="healthz"),
]

urlpatterns = [
    path("", include((shop_patterns, "shop"))),
    path("", include("payments.urls")),
    path("merchant/", include("merchant.urls")),
    path("accounts/", include("merchant.account_urls")),
    # Staff only (the admin's own sign-in), before the admin's catch-all.
    path("admin/platform-fees/", admin.site.admin_view(operator_views.platform_fees), name="admin_platform_fees"),
    path("admin/", admin.site.urls),
]

if settings.BENCHMARK_BARE_VIEW:
    urlpatterns.append(path("_benchmark/bare/", views.benchmark_bare, name="benchmark_bare"))
    urlpatterns.append(path("_benchmark/stripe-call/", views.benchmark_stripe_call))
    urlpatterns.append(path("_benchmark/stripe-call-async/", views.benchmark_stripe_call_async))
