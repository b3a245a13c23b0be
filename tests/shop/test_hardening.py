import re
from html.parser import HTMLParser
from unittest import mock

import pytest
from django.db import DatabaseError
from django.urls import reverse

from payments.models import StripeEvent
from tests.factories import make_booking, make_slot

pytestmark = pytest.mark.django_db


def pages(booking):
    return [
        reverse("shop:catalog"),
        reverse("shop:listing", args=[booking.slot.listing.slug]),
        reverse("shop:checkout_success") + f"?session_id={booking.checkout_session_id}",
        reverse("shop:booking", args=[booking.public_token]),
        "/no-such-page/",
        reverse("shop:healthz"),
    ]


@pytest.fixture
def confirmed_booking(slot):
    return make_booking(slot=slot, status="confirmed", amount_paid=2500)


def test_every_response_carries_the_security_headers(client, confirmed_booking):
    for url in pages(confirmed_booking) + [reverse("payments:stripe_webhook")]:
        response = client.get(url)
        csp = response.headers["Content-Security-Policy"]
        script_src = re.search(r"script-src ([^;]+)", csp).group(1)
        assert script_src == "'self'", url
        assert "frame-ancestors 'none'" in csp
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "same-origin"
        assert response.headers["X-Frame-Options"] == "DENY"


def test_forms_may_only_send_the_browser_to_the_site_and_stripe(client, settings):
    settings.STRIPE_API_BASE = ""
    csp = client.get(reverse("shop:catalog")).headers["Content-Security-Policy"]
    assert "form-action 'self' https://checkout.stripe.com https://billing.stripe.com" in csp

    settings.STRIPE_API_BASE = "http://127.0.0.1:12111"
    csp = client.get(reverse("shop:catalog")).headers["Content-Security-Policy"]
    assert "form-action 'self' http://127.0.0.1:12111" in csp


def test_hsts_is_sent_over_https_when_configured(client, settings):
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True

    response = client.get(reverse("shop:catalog"), secure=True)

    assert response.headers["Strict-Transport-Security"].startswith("max-age=31536000")


def test_pages_contain_no_inline_script_or_style_attribute(client, confirmed_booking):
    for url in pages(confirmed_booking)[:-1]:
        html = client.get(url).content.decode()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), url
        assert " style=" not in html, url
        assert not re.search(r"<[^>]*\son[a-z]+=", html), url


class BlocksInParagraphs(HTMLParser):
    """Block elements opened inside a <p>: a browser closes the paragraph before them, so they
    end up outside whatever the <p> was meant to lay out."""

    BLOCKS = {"form", "div", "ul", "ol", "dl", "table", "section", "p", "h1", "h2", "h3"}

    def __init__(self):
        super().__init__()
        self.open_paragraphs = 0
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in self.BLOCKS and self.open_paragraphs:
            self.found.append(tag)
        if tag == "p":
            self.open_paragraphs += 1

    def handle_endtag(self, tag):
        if tag == "p" and self.open_paragraphs:
            self.open_paragraphs -= 1


def test_no_form_or_block_is_nested_in_a_paragraph(client, slot):
    booking = make_booking(slot=slot, status="confirmed", amount_paid=2500, stripe_customer_id="cus_portal")
    for url in pages(booking)[:-2]:
        parser = BlocksInParagraphs()
        parser.feed(client.get(url).content.decode())
        assert parser.found == [], url


def test_healthz_reports_the_database(client):
    response = client.get(reverse("shop:healthz"))

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


def test_healthz_answers_503_when_the_database_is_unreachable(client):
    with mock.patch("shop.views.connection.cursor", side_effect=DatabaseError("down")):
        response = client.get(reverse("shop:healthz"))

    assert response.status_code == 503
    assert response.json()["database"] == "unreachable"


def test_a_webhook_body_over_the_limit_is_refused_with_413_and_nothing_recorded(client, settings):
    settings.WEBHOOK_MAX_BODY_BYTES = 1000

    response = client.post(
        reverse("payments:stripe_webhook"), data=b"x" * 1001, content_type="application/json", HTTP_STRIPE_SIGNATURE="t=1,v1=a"
    )

    assert response.status_code == 413
    assert not StripeEvent.objects.exists()


def test_a_form_body_over_the_limit_is_a_400_not_a_500(client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    slot = make_slot()

    response = client.post(
        reverse("shop:checkout_create", args=[slot.listing.slug]), {"customer_name": "x" * 2000, "slot": slot.pk}
    )

    assert response.status_code == 400


@pytest.mark.parametrize("poll", ["²", "١", "０", "1²"])
def test_a_poll_number_in_non_ascii_digits_is_read_as_the_first_poll(client, confirmed_booking, poll):
    url = reverse("shop:checkout_status", args=[confirmed_booking.checkout_session_id])

    response = client.get(url, {"poll": poll}, headers={"HX-Request": "true"})

    assert response.status_code == 286
    assert "You're booked!" in response.content.decode()


def test_merchant_account_admin_pages_and_the_export_are_never_cached(client, confirmed_booking):
    from tests.factories import make_staff_user

    merchant = confirmed_booking.slot.listing.merchant
    client.force_login(merchant.user)
    private = [
        reverse("merchant:dashboard"),
        reverse("merchant:booking_list"),
        reverse("merchant:booking_export"),
        reverse("merchant:booking_detail", args=[confirmed_booking.pk]),
        reverse("merchant:profile"),
        reverse("accounts:password_change"),
    ]
    for url in private:
        response = client.get(url)
        assert response.status_code == 200, url
        directives = {part.strip() for part in response["Cache-Control"].split(",")}
        assert {"private", "no-store"} <= directives, url
    client.logout()
    for url in (reverse("accounts:login"), reverse("accounts:password_reset"), reverse("merchant:dashboard")):
        directives = {part.strip() for part in client.get(url)["Cache-Control"].split(",")}
        assert {"private", "no-store"} <= directives, url
    client.force_login(make_staff_user())
    directives = {part.strip() for part in client.get(reverse("admin:index"))["Cache-Control"].split(",")}
    assert {"private", "no-store"} <= directives
    assert "private" not in client.get(reverse("shop:catalog")).get("Cache-Control", "")
