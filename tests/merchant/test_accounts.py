"""Signing in and out, password resets, the merchant's profile, `createmerchant`, the admin."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.management import CommandError, call_command
from django.urls import NoReverseMatch, reverse

from bookings.models import Booking, Merchant
from tests.factories import make_confirmed_booking, make_listing, make_merchant, make_slot, make_staff_user

pytestmark = pytest.mark.django_db

PASSWORD = "pw-123456789"


def test_signing_in_leads_to_the_dashboard(client, merchant):
    response = client.post(reverse("accounts:login"), {"username": merchant.user.username, "password": PASSWORD})

    assert response.status_code == 302
    assert response["Location"] == reverse("merchant:dashboard")


def test_signing_in_returns_to_the_page_that_asked_for_it(client, merchant):
    wanted = reverse("merchant:booking_list") + "?status=confirmed"
    login_url = client.get(wanted)["Location"]

    response = client.post(login_url, {"username": merchant.user.username, "password": PASSWORD, "next": wanted})

    assert response["Location"] == wanted


def test_a_wrong_password_is_refused_with_a_sentence(client, merchant):
    response = client.post(reverse("accounts:login"), {"username": merchant.user.username, "password": "nope"})

    assert response.status_code == 200
    assert "That user name and password do not match." in response.content.decode()


def test_signing_out_is_a_post_and_ends_the_session(client, merchant):
    client.force_login(merchant.user)

    assert client.get(reverse("accounts:logout")).status_code == 405
    response = client.post(reverse("accounts:logout"))

    assert response.status_code == 302
    assert client.get(reverse("merchant:dashboard")).status_code == 302


def test_the_nav_offers_sign_in_to_visitors_and_dashboard_and_sign_out_to_merchants(client, merchant):
    visitor = client.get(reverse("shop:catalog")).content.decode()
    client.force_login(merchant.user)
    signed_in = client.get(reverse("shop:catalog")).content.decode()

    assert "Merchant sign-in" in visitor and "Sign out" not in visitor
    assert reverse("merchant:dashboard") in signed_in
    assert f'action="{reverse("accounts:logout")}"' in signed_in and 'method="post"' in signed_in


def test_there_is_no_sign_up(client):
    with pytest.raises(NoReverseMatch):
        reverse("accounts:signup")
    assert client.get("/accounts/signup/").status_code == 404
    assert "sign up" not in client.get(reverse("accounts:login")).content.decode().lower().replace("no sign-up", "")


def reset_link() -> str:
    return re.search(r"https?://[^/\s]+(/accounts/password/reset/[^\s\"]+/)", mail.outbox[-1].body).group(1)


def test_a_password_reset_link_sets_a_new_password(client, merchant):
    response = client.post(reverse("accounts:password_reset"), {"email": merchant.user.email})
    assert response["Location"] == reverse("accounts:password_reset_done")
    assert mail.outbox[-1].subject == "Choose a new Slotbook password"

    form_url = client.get(reset_link())["Location"]
    done = client.post(form_url, {"new_password1": "a-new-Long-pass-42", "new_password2": "a-new-Long-pass-42"})

    assert done["Location"] == reverse("accounts:password_reset_complete")
    assert client.login(username=merchant.user.username, password="a-new-Long-pass-42")


def test_reset_links_lead_to_site_url_whatever_host_and_port_the_request_named(client, merchant, settings):
    settings.SITE_URL = "https://book.example.com"
    settings.ALLOWED_HOSTS = ["book.example.com", "internal.example.net"]

    client.post(reverse("accounts:password_reset"), {"email": merchant.user.email}, HTTP_HOST="internal.example.net:8080")

    link = re.search(r"\S+/accounts/password/reset/\S+/", mail.outbox[-1].body).group(0)
    assert link.startswith("https://book.example.com/accounts/password/reset/")
    assert "internal.example.net" not in mail.outbox[-1].body
    assert "book.example.com" in mail.outbox[-1].alternatives[0][0]


def test_a_reset_for_an_unknown_address_looks_the_same_and_sends_nothing(client, merchant):
    response = client.post(reverse("accounts:password_reset"), {"email": "nobody@example.com"})

    assert response["Location"] == reverse("accounts:password_reset_done")
    assert mail.outbox == []


def test_a_signed_in_account_without_a_merchant_gets_a_clear_403(client):
    user = get_user_model().objects.create_user(username="someone", password=PASSWORD)
    client.force_login(user)

    response = client.get(reverse("merchant:dashboard"))

    assert response.status_code == 403
    assert "This account has no merchant dashboard" in response.content.decode()
    assert "ask the site's operator" in response.content.decode()


# Profile


def test_the_profile_changes_name_timezone_and_support_email(client, merchant):
    client.force_login(merchant.user)

    response = client.post(
        reverse("merchant:profile"),
        {"display_name": "  Harbour   Kayaks ", "timezone": "America/Vancouver", "support_email": "help@harbour.example"},
    )

    merchant.refresh_from_db()
    assert response.status_code == 302
    assert (merchant.display_name, merchant.timezone, merchant.support_email) == (
        "Harbour Kayaks",
        "America/Vancouver",
        "help@harbour.example",
    )


@pytest.mark.parametrize(
    "overrides,error",
    [
        ({"timezone": "Mars/Olympus_Mons"}, "Choose a timezone from the list."),
        ({"display_name": ""}, "Enter the name customers see"),
        ({"support_email": "not an address"}, "Enter an e-mail address such as help@example.com."),
    ],
)
def test_a_profile_that_is_not_right_is_refused_beside_the_field(client, merchant, overrides, error):
    client.force_login(merchant.user)
    data = {"display_name": "Shop", "timezone": "Europe/London", "support_email": "", **overrides}

    response = client.post(reverse("merchant:profile"), data)

    assert response.status_code == 400
    assert error in response.content.decode()


def test_times_are_shown_in_the_merchant_s_timezone(client, merchant):
    import datetime as dt

    merchant.timezone = "Asia/Tokyo"
    merchant.save()
    slot = make_slot(listing=make_listing(merchant=merchant), starts_at=dt.datetime(2031, 6, 1, 1, 0, tzinfo=dt.UTC))
    client.force_login(merchant.user)

    html = client.get(reverse("merchant:slot_detail", args=[slot.pk])).content.decode()

    assert "Sunday 1 June 2031, 10:00" in html
    assert "Times in Asia/Tokyo" in html


# createmerchant


def test_createmerchant_with_options_and_a_password_from_the_environment(monkeypatch, capsys):
    monkeypatch.setenv("MERCHANT_PASSWORD", "Harbour-Kayaks-2031")

    call_command(
        "createmerchant",
        "--no-input",
        "--username=harbour2",
        "--email=owner@harbour.example",
        "--display-name=Harbour Kayaks",
        "--timezone=Europe/Dublin",
    )

    merchant = Merchant.objects.get(user__username="harbour2")
    assert (merchant.display_name, merchant.timezone, merchant.support_email) == (
        "Harbour Kayaks",
        "Europe/Dublin",
        "owner@harbour.example",
    )
    assert merchant.user.check_password("Harbour-Kayaks-2031")
    assert not merchant.user.is_staff
    assert "Created merchant" in capsys.readouterr().out


def test_createmerchant_without_a_password_lets_the_merchant_choose_one_by_email(client, monkeypatch, capsys):
    monkeypatch.delenv("MERCHANT_PASSWORD", raising=False)

    call_command("createmerchant", "--no-input", "--username=nopass", "--email=np@example.com", "--display-name=NP")

    user = get_user_model().objects.get(username="nopass")
    assert not user.has_usable_password()
    assert "/accounts/password/reset/" in capsys.readouterr().out
    client.post(reverse("accounts:password_reset"), {"email": "np@example.com"})
    assert len(mail.outbox) == 1


def test_createmerchant_asks_for_what_the_options_leave_out(monkeypatch):
    answers = iter(["potter", "pots@example.com", "The Pottery", "Mars/Base", "Europe/Paris", ""])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(answers))
    passwords = iter(["short", "short", "Wheel-Throwing-2031", "Wheel-Throwing-2031"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(passwords))

    call_command("createmerchant")

    merchant = Merchant.objects.get(user__username="potter")
    assert (merchant.display_name, merchant.timezone, merchant.support_email) == ("The Pottery", "Europe/Paris", "pots@example.com")
    assert merchant.user.check_password("Wheel-Throwing-2031")


@pytest.mark.parametrize(
    "args,error",
    [
        (["--username=dup", "--email=d@example.com", "--display-name=D"], "There is already an account named “dup”"),
        (["--username=x", "--email=nope", "--display-name=D"], "--email: Enter a valid email address."),
        (["--username=x", "--email=x@example.com", "--display-name=D", "--timezone=Nowhere"], "--timezone:"),
        (["--username=x", "--email=x@example.com"], "pass --display-name"),
    ],
)
def test_createmerchant_refuses_what_is_not_right(monkeypatch, args, error):
    monkeypatch.delenv("MERCHANT_PASSWORD", raising=False)
    make_merchant(username="dup")

    with pytest.raises(CommandError, match=re.escape(error)):
        call_command("createmerchant", "--no-input", *args)

    assert not get_user_model().objects.filter(username="x").exists()


# Admin


@pytest.fixture
def staff_client(client):
    client.force_login(make_staff_user())
    return client


@pytest.mark.parametrize(
    "model", ["bookings_merchant", "bookings_listing", "bookings_slot", "bookings_booking", "bookings_refund", "payments_stripeevent"]
)
def test_every_admin_list_opens_with_search_and_filters(staff_client, model, stripe_settings_unset):
    booking = make_confirmed_booking()
    from bookings.services import booking_refund

    booking_refund(booking=booking, amount=100)

    response = staff_client.get(reverse(f"admin:{model}_changelist"), {"q": "example"})

    assert response.status_code == 200


def test_a_booking_s_status_cannot_be_edited_in_the_admin(staff_client):
    booking = make_confirmed_booking()
    url = reverse("admin:bookings_booking_change", args=[booking.pk])

    page = staff_client.get(url).content.decode()
    response = staff_client.post(url, {"status": "refunded"})

    booking.refresh_from_db()
    assert 'name="status"' not in page
    assert response.status_code == 403
    assert booking.status == Booking.Status.CONFIRMED
    assert staff_client.get(reverse("admin:bookings_booking_add")).status_code == 403


def test_a_slot_s_seats_cannot_be_edited_in_the_admin(staff_client, slot):
    page = staff_client.get(reverse("admin:bookings_slot_change", args=[slot.pk])).content.decode()

    assert 'name="seats_left"' not in page and 'name="capacity"' not in page
    assert 'name="is_on_sale"' in page


# Abuse limits


def sign_in(client, name, password, address="10.0.0.1", url=None):
    return client.post(url or reverse("accounts:login"), {"username": name, "password": password}, REMOTE_ADDR=address)


def test_failed_sign_ins_are_limited_per_account_from_one_address(client, merchant, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "signin_per_username": "3/10m"}
    name = merchant.user.username
    for _ in range(3):
        assert sign_in(client, name, "x").status_code == 200

    blocked = sign_in(client, name, PASSWORD)

    assert blocked.status_code == 429
    assert "sign-in attempts" in blocked.content.decode()
    assert int(blocked["Retry-After"]) > 0
    assert "_auth_user_id" not in client.session


def test_an_attacker_s_failures_do_not_lock_the_owner_out_from_another_address(client, merchant, settings):
    name = merchant.user.username
    for _ in range(8):
        sign_in(client, name, "guess", address="203.0.113.5")
    assert sign_in(client, name, PASSWORD, address="203.0.113.5").status_code == 429

    owner = sign_in(client, name, PASSWORD, address="198.51.100.7")

    assert owner.status_code == 302
    assert client.session["_auth_user_id"] == str(merchant.user.pk)


def fullwidth(text: str) -> str:
    """The same name in full-width letters, which NFKC normalises back to ASCII."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def test_a_name_written_in_full_width_letters_counts_against_the_same_account(client, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "signin_per_username": "3/10m"}
    merchant = make_merchant(username="harbour")
    for name in ("harbour", fullwidth("harbour"), "ｈarbour"):
        assert sign_in(client, name, "x").status_code == 200

    assert sign_in(client, "harbour", PASSWORD).status_code == 429
    assert "_auth_user_id" not in client.session
    # Sign-in is case-sensitive (the user is looked up by exact name), so is its limit.
    assert sign_in(client, "Harbour", PASSWORD).status_code == 200
    assert merchant.user.username == "harbour"


def test_the_admin_sign_in_is_limited_like_the_merchant_s(client, settings):
    make_staff_user(username="root")
    url = reverse("admin:login")
    for _ in range(25):
        assert sign_in(client, "root", "wrong", url=url).status_code == 200

    right = sign_in(client, "root", PASSWORD, url=url)

    assert "_auth_user_id" not in client.session
    assert "Too many failed sign-ins for this account from your connection" in right.content.decode()
    assert client.get(reverse("admin:index")).status_code == 302


def test_failed_sign_ins_from_one_ipv6_network_count_together(client, merchant, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "signin_per_username": "3/10m"}
    name = merchant.user.username
    for host in (1, 2, 3):
        assert sign_in(client, name, "x", address=f"2001:db8:1:2::{host}").status_code == 200

    assert sign_in(client, name, PASSWORD, address="2001:db8:1:2:ffff::9").status_code == 429
    assert sign_in(client, name, PASSWORD, address="2001:db8:1:3::1").status_code == 302


def test_failed_sign_ins_are_limited_per_address_and_successes_do_not_count(client, merchant, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "signin_per_ip": "2/10m"}
    for _ in range(3):
        ok = client.post(reverse("accounts:login"), {"username": merchant.user.username, "password": PASSWORD})
        assert ok.status_code == 302
        client.logout()
    for name in ("a", "b"):
        client.post(reverse("accounts:login"), {"username": name, "password": "x"})

    assert client.post(reverse("accounts:login"), {"username": "c", "password": "x"}).status_code == 429
    other = client.post(
        reverse("accounts:login"), {"username": merchant.user.username, "password": PASSWORD}, REMOTE_ADDR="10.7.7.7"
    )
    assert other.status_code == 302


def test_password_reset_e_mails_are_limited_per_address(client, merchant, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "signin_per_ip": "2/10m"}
    statuses = [client.post(reverse("accounts:password_reset"), {"email": merchant.user.email}).status_code for _ in range(3)]

    assert statuses == [302, 302, 429]
    assert len(mail.outbox) == 2


def test_a_merchant_alerted_about_a_failed_refund_gets_a_link_to_the_booking(
    client, merchant, django_capture_on_commit_callbacks, stripe_settings_unset
):
    from bookings.services import booking_refund, refund_record_failure

    booking = make_confirmed_booking(slot=make_slot(listing=make_listing(merchant=merchant)))
    refund = booking_refund(booking=booking)
    with django_capture_on_commit_callbacks(execute=True):
        refund_record_failure(refund_id=refund.pk, failure_reason="expired_or_canceled_card")

    alert = next(m for m in mail.outbox if "refund failed" in m.subject)
    link = re.search(r"https?://[^/\s]+(/merchant/bookings/\d+/)", alert.body).group(1)
    assert alert.to == [merchant.support_email]
    assert link == reverse("merchant:booking_detail", args=[booking.pk])
    client.force_login(merchant.user)
    assert "Retry the refund" in client.get(link).content.decode()
