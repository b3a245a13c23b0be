from django.contrib import admin
from django.urls import include, path

from shop import views

app_name = "shop"

shop_patterns = [
    path("", views.catalog, name="catalog"),
]

urlpatterns = [
    path("", include((shop_patterns, "shop"))),
    path("admin/", admin.site.urls),
]
