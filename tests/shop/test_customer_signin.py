"""The sign-in link that proves an e-mail address: single-use, expiring, bound to its address,
the same answer whether or not the address has bookings, rate-limited, never a 5xx."""

import re
import time

import pytest
from django.core import mail, signing
from django.test import Client
from django.urls import reverse

from bookings.models import CustomerSignInLink
from shop.receipts import PROVEN_EMAIL_SESSION_KEY
from tests.factories import make_confirmed_booking
from tests.shop.customer_signin import ask_for_link, prove_email, signin_token_sent_to, use_link

pytestmark = pytest.mark.django_db(transaction=True)


def token_made_seconds_ago(monkeypatch, seconds: int):
    """Links asked for while this is on carry a timestamp `seconds` in the past."""
    monkeypatch.setattr(signing.TimestampSigner, "timestamp", lambda self: signing.b62_encode(int(time.time()) - seconds))


def proven(client) -> str:
    return client.session.get(PROVEN_EMAIL_SESSION_KEY, "")


def test_following_the_link_proves_the_address_rotates_the_session_and_uses_the_link(client):
    ask_for_link(client, "Ada@Example.com ")
    message = mail.outbox[-1]
    assert message.to == ["ada@example.com"]
    assert message.subject == "Your link to Receipts and payment methods"
    assert "within 15 minutes" in message.body and "works once" in message.body
    token = signin_token_sent_to("ada@example.com")

    shown = client.get(reverse("shop:receipts_signin"), {"token": token})
    assert "Continue as <strong>ada@example.com</strong>" in shown.content.decode()
    assert CustomerSignInLink.objects.get().used_at is None  # opening the link (a mail scanner) uses nothing
    key_before = client.session.session_key

    response = use_link(client, token)

    assert response.status_code == 302 and response["Location"] == reverse("shop:receipts")
    assert proven(client) == "ada@example.com"
    assert client.session.session_key != key_before
    assert CustomerSignInLink.objects.get().used_at is not None


def test_a_link_works_once(client):
    ask_for_link(client, "ada@example.com")
    token = signin_token_sent_to("ada@example.com")
    assert use_link(client, token).status_code == 302

    other = Client()
    for again in (other.get(reverse("shop:receipts_signin"), {"token": token}), use_link(other, token)):
        assert again.status_code == 410
        assert "This sign-in link has already been used: each link works once." in again.content.decode()
        assert "E-mail me a link to my receipts" in again.content.decode()  # and a way to ask again
    assert proven(other) == ""


@pytest.mark.parametrize(("age_seconds", "works"), [(15 * 60 - 5, True), (15 * 60 + 1, False)])
def test_a_link_expires_after_the_set_minutes(client, monkeypatch, age_seconds, works):
    token_made_seconds_ago(monkeypatch, age_seconds)
    ask_for_link(client, "ada@example.com")
    monkeypatch.undo()
    token = signin_token_sent_to("ada@example.com")

    response = use_link(client, token)

    if works:
        assert response.status_code == 302 and proven(client) == "ada@example.com"
    else:
        assert response.status_code == 410
        assert "This sign-in link has expired: links work for 15 minutes." in response.content.decode()
        assert proven(client) == "" and CustomerSignInLink.objects.get().used_at is None


def test_the_lifetime_is_a_setting(client, monkeypatch, settings):
    settings.CUSTOMER_SIGNIN_LINK_MINUTES = 2
    token_made_seconds_ago(monkeypatch, 3 * 60)
    ask_for_link(client, "ada@example.com")
    monkeypatch.undo()
    assert "within 2 minutes" in mail.outbox[-1].body

    response = use_link(client, signin_token_sent_to("ada@example.com"))

    assert response.status_code == 410 and "links work for 2 minutes" in response.content.decode()


def test_a_link_is_bound_to_its_address_and_signs_in_no_other(client):
    ask_for_link(client, "mallory@example.com")
    ask_for_link(client, "victim@example.com")
    mallorys = signin_token_sent_to("mallory@example.com")
    victims_link = CustomerSignInLink.objects.get(email="victim@example.com")
    # Mallory's valid signature, pointed at the victim's link row.
    forged = f"{victims_link.pk}:{mallorys.split(':', 1)[1]}"

    response = use_link(client, forged)

    assert response.status_code == 400
    assert "This sign-in link is not one of ours, or it was cut short." in response.content.decode()
    assert proven(client) == ""
    victims_link.refresh_from_db()
    assert victims_link.used_at is None


def test_the_token_is_never_stored(client):
    ask_for_link(client, "ada@example.com")
    token = signin_token_sent_to("ada@example.com")
    signature = token.rsplit(":", 1)[1]
    stored = CustomerSignInLink.objects.values_list("email", "next_path").get()
    assert all(signature not in value for value in stored)
    assert use_link(client, token).status_code == 302
    assert all(signature not in str(value) for value in client.session.values())


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "1:x:y",
        "99999:1aBcDe:" + "A" * 43,
        "1:1aBcDe:" + "A" * 43,
        "1:1aBcDe:" + "A" * 43 + "\x00",
        "１:1aBcDe:" + "A" * 43,
        "²:1aBcDe:" + "A" * 43,
        "1" * 30 + ":1aBcDe:" + "A" * 43,
        "x" * 5000,
        "1:1aBcDe:ZZZ%0A",
    ],
)
def test_a_bad_token_is_a_400_with_a_sentence_never_a_500(client, token):
    ask_for_link(client, "ada@example.com")  # link 1 exists, so "1:..." reaches the signature check
    for response in (client.get(reverse("shop:receipts_signin"), {"token": token}), use_link(client, token)):
        assert response.status_code == 400
        assert "This sign-in link is not one of ours, or it was cut short." in response.content.decode()
    assert proven(client) == ""


def answer_without_variables(response, email: str) -> str:
    """The page as the visitor reads it, but for the address they typed and the CSRF token."""
    return re.sub(r"[A-Za-z0-9]{64}", "CSRF", response.content.decode().replace(email, "EMAIL"))


def test_the_answer_does_not_tell_whether_an_address_has_bookings(client, slot):
    make_confirmed_booking(slot=slot, customer_email="has@example.com")

    with_bookings = ask_for_link(client, "has@example.com")
    without = ask_for_link(client, "none@example.com")

    assert with_bookings.status_code == without.status_code == 200
    assert answer_without_variables(with_bookings, "has@example.com") == answer_without_variables(
        without, "none@example.com"
    )
    assert "a sign-in link is on its way" in with_bookings.content.decode()
    # Both get a link (an address may prove itself before booking), so timing tells nothing either.
    links = [m.to[0] for m in mail.outbox if "Receipts and payment methods" in m.subject]
    assert sorted(links) == ["has@example.com", "none@example.com"]


def test_links_are_limited_per_email_silently_and_per_address_with_a_429(settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "receipts_link_per_ip": "5/h", "receipts_link_per_email": "2/15m"}
    client = Client()
    answers = [ask_for_link(client, "ada@example.com", REMOTE_ADDR=f"203.0.113.{n}") for n in range(4)]
    # Per e-mail: the same answer, but the mailbox gets two links, not four.
    assert [a.status_code for a in answers] == [200] * 4
    assert all("a sign-in link is on its way" in a.content.decode() for a in answers)
    assert len(mail.outbox) == 2

    mail.outbox.clear()
    from_one_address = [ask_for_link(client, f"p{n}@example.com", REMOTE_ADDR="198.51.100.7") for n in range(6)]
    assert [a.status_code for a in from_one_address] == [200] * 5 + [429]
    assert "too many requests for sign-in links" in from_one_address[-1].content.decode()
    assert len(mail.outbox) == 5


def test_a_link_leads_back_only_to_a_path_of_this_site(client):
    for next_path, lands in [("/b/abc/", "/b/abc/"), ("https://evil.example/", "/receipts/"), ("//evil.example/", "/receipts/")]:
        fresh = Client()
        assert prove_email(fresh, "ada@example.com", next_path=next_path)["Location"] == lands


def test_an_invalid_address_is_a_400_with_a_sentence(client):
    response = ask_for_link(client, "not an address")
    assert response.status_code == 400
    assert "Enter a valid e-mail address." in response.content.decode()
    assert mail.outbox == []


def test_of_many_concurrent_uses_of_one_link_exactly_one_signs_in():
    from bookings.customers import SignInLinkUsed, customer_signin_link_use
    from tests.concurrency import run_concurrently

    ask_for_link(Client(), "ada@example.com")
    token = signin_token_sent_to("ada@example.com")

    results = run_concurrently([lambda: customer_signin_link_use(token=token) for _ in range(8)])

    assert sum(isinstance(r, CustomerSignInLink) for r in results) == 1
    assert sum(isinstance(r, SignInLinkUsed) for r in results) == 7
