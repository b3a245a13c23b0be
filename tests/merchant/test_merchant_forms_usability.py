"""The merchant's forms: the currency a new listing starts in, the timezone menu, and the error
summary every form shows after a failed submit."""

import re

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from bookings.models import Merchant
from tests.factories import make_listing, make_merchant

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed_in(client, merchant):
    client.force_login(merchant.user)
    return client


def selected_option(html: str, name: str) -> str | None:
    select = re.search(rf'<select name="{name}"[^>]*>(.*?)</select>', html, re.S).group(1)
    match = re.search(r'<option value="([^"]*)"[^>]*\bselected\b', select)
    return match and match.group(1)


# Currency


def test_a_first_listing_starts_in_the_site_s_default_currency(signed_in, settings):
    settings.LISTING_DEFAULT_CURRENCY = "usd"

    html = signed_in.get(reverse("merchant:listing_create")).content.decode()

    assert selected_option(html, "currency") == "usd"


def test_a_new_listing_starts_in_the_currency_of_the_merchant_s_latest_listing(signed_in, merchant, settings):
    settings.LISTING_DEFAULT_CURRENCY = "eur"
    make_listing(merchant=merchant, currency="usd")
    make_listing(merchant=merchant, currency="gbp")
    make_listing(currency="chf")  # someone else's, newer still

    html = signed_in.get(reverse("merchant:listing_create")).content.decode()

    assert selected_option(html, "currency") == "gbp"


# Timezone menu


def optgroups(html: str) -> dict[str, list[str]]:
    select = re.search(r'<select name="timezone"[^>]*>(.*?)</select>', html, re.S).group(1)
    return {
        label: re.findall(r'<option value="([^"]+)"', body)
        for label, body in re.findall(r'<optgroup label="([^"]+)">(.*?)</optgroup>', select, re.S)
    }


def test_the_timezone_menu_offers_canonical_names_grouped_by_region(signed_in):
    groups = optgroups(signed_in.get(reverse("merchant:profile")).content.decode())
    names = [name for names in groups.values() for name in names]

    assert "Europe/Paris" in groups["Europe"] and "Asia/Kolkata" in groups["Asia"]
    assert "America/New_York" in groups["America"] and "UTC" in names
    for alias in ("US/Eastern", "GB", "Etc/GMT+5", "Asia/Calcutta", "Europe/Kiev", "Zulu", "EST5EDT"):
        assert alias not in names
    assert all(name.startswith(f"{region}/") for region, members in groups.items() if region not in {"Universal"} for name in members)
    assert 350 < len(names) < 450


def test_an_alias_is_refused_with_a_sentence(signed_in, merchant):
    data = {"display_name": "Shop", "timezone": "US/Eastern", "support_email": ""}

    response = signed_in.post(reverse("merchant:profile"), data)

    merchant.refresh_from_db()
    assert response.status_code == 400
    assert "Choose a timezone from the list." in response.content.decode()
    assert merchant.timezone == "Europe/London"


def test_a_merchant_who_already_has_an_alias_keeps_it_and_can_save(client):
    merchant = make_merchant(timezone_name="US/Eastern")
    client.force_login(merchant.user)

    html = client.get(reverse("merchant:profile")).content.decode()
    assert selected_option(html, "timezone") == "US/Eastern"
    assert optgroups(html)["Your current timezone"] == ["US/Eastern"]

    response = client.post(reverse("merchant:profile"), {"display_name": "Renamed", "timezone": "US/Eastern", "support_email": ""})
    merchant.refresh_from_db()
    assert response.status_code == 302
    assert (merchant.display_name, merchant.timezone) == ("Renamed", "US/Eastern")

    client.post(reverse("merchant:profile"), {"display_name": "Renamed", "timezone": "America/New_York", "support_email": ""})
    merchant.refresh_from_db()
    assert merchant.timezone == "America/New_York"
    html = client.get(reverse("merchant:profile")).content.decode()
    assert "Your current timezone" not in html


def test_createmerchant_refuses_an_alias_and_takes_a_canonical_name():
    with pytest.raises(CommandError, match="old alias"):
        call_command("createmerchant", "--no-input", "--username=a1", "--email=a1@example.com", "--display-name=A", "--timezone=GB")
    call_command("createmerchant", "--no-input", "--username=a2", "--email=a2@example.com", "--display-name=A", "--timezone=Europe/London")
    assert Merchant.objects.get(user__username="a2").timezone == "Europe/London"
