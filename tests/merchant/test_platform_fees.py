"""The operator's page of platform fees (Connect), in the Django admin: fees charged on direct
charges, fees given back with refunds, and net, per currency and per merchant; staff only."""

import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from bookings.models import Booking
from bookings.selectors import platform_fees
from bookings.services import slot_cancel
from tests.factories import make_listing, make_slot
from tests.payments.test_connect import connect, connected_merchant, paid_on_account  # noqa: F401 (the fixture)

pytestmark = [pytest.mark.django_db, pytest.mark.own_connect_accounts]


@pytest.fixture
def staff_client(client):
    staff = get_user_model().objects.create_user("ops", "ops@example.com", "pw-123456789", is_staff=True)
    client.force_login(staff)
    return client


def test_the_operator_sees_fees_charged_refunded_and_net_per_currency_and_merchant(
    client, connect, settings, django_capture_on_commit_callbacks  # noqa: F811
):
    # 10% + 0.30: a €25.00 seat pays €2.80, a £40.00 seat £4.30.
    paris = connected_merchant(display_name="Atelier Paris")
    tours = make_slot(listing=make_listing(merchant=paris, price_amount=2500, currency="eur"), capacity=5)
    cancelled = make_slot(listing=make_listing(merchant=paris, price_amount=2500, currency="eur"), capacity=5)
    london = connected_merchant(display_name="Bankside Walks")
    walks = make_slot(listing=make_listing(merchant=london, price_amount=4000, currency="gbp"), capacity=5)
    paid_on_account(client, connect, tours, quantity=2)  # €50.00: fee €5.30
    paid_on_account(client, connect, cancelled)  # €25.00: fee €2.80, given back when the time is cancelled
    paid_on_account(client, connect, walks)  # £40.00: fee £4.30
    with django_capture_on_commit_callbacks(execute=True):
        slot_cancel(slot=cancelled)
    # A payment older than the period counts only in "all time".
    old = paid_on_account(client, connect, walks)
    Booking.objects.filter(pk=old.pk).update(created_at=timezone.now() - dt.timedelta(days=45))

    totals, lines = platform_fees(days=30)
    assert [(t.currency, t.payments, t.charged, t.refunded, t.net) for t in totals] == [
        ("eur", 2, 810, 280, 530), ("gbp", 1, 430, 0, 430)]
    assert [(line.merchant.display_name, line.currency, line.charged, line.refunded, line.net) for line in lines] == [
        ("Atelier Paris", "eur", 810, 280, 530), ("Bankside Walks", "gbp", 430, 0, 430)]
    totals, _ = platform_fees(days=None)
    assert [(t.currency, t.payments, t.net) for t in totals] == [("eur", 2, 530), ("gbp", 2, 860)]

    staff = get_user_model().objects.create_user("ops", "ops@example.com", "pw-123456789", is_staff=True)
    client.force_login(staff)
    page = client.get(reverse("admin_platform_fees")).content.decode()
    assert "€8.10" in page and "−€2.80" in page and "€5.30" in page and "£4.30" in page
    assert paris.stripe_account_id in page and "Bankside Walks" in page
    page = client.get(reverse("admin_platform_fees"), {"days": "all"}).content.decode()
    assert "£8.60" in page
    # Linked from the merchants' list in the admin.
    from django.contrib.auth.models import Permission

    staff.user_permissions.add(Permission.objects.get(codename="view_merchant"))
    assert "Platform fees earned" in client.get(reverse("admin:bookings_merchant_changelist")).content.decode()


def test_the_fees_page_is_for_staff_only_and_refuses_a_period_it_does_not_offer(client, staff_client):
    client.logout()
    merchant_user = get_user_model().objects.create_user("shopkeeper", "s@example.com", "pw-123456789")
    client.force_login(merchant_user)
    response = client.get(reverse("admin_platform_fees"))
    assert response.status_code == 302 and reverse("admin:login") in response["Location"]
    client.force_login(get_user_model().objects.get(username="ops"))
    response = client.get(reverse("admin_platform_fees"), {"days": "12"})
    assert response.status_code == 400
    assert "Choose a period of 7, 30, 90 or 365 days, or all time." in response.content.decode()
    response = client.get(reverse("admin_platform_fees"))
    assert response.status_code == 200 and "No platform fees in this period." in response.content.decode()
