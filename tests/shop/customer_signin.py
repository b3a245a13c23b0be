"""Proving an e-mail address as a customer does: ask for the link, read it from the outbox, use it."""

import re

from django.core import mail
from django.urls import reverse

TOKEN_IN_LINK = re.compile(r"/receipts/sign-in/\?token=([^\s\"&<]+)")


def signin_token_sent_to(email: str) -> str:
    """The token of the latest sign-in link e-mailed to `email`."""
    sent = [message for message in mail.outbox if message.to == [email.strip().lower()] and "Receipts and payment methods" in message.subject]
    assert sent, f"no sign-in link was e-mailed to {email}"
    return TOKEN_IN_LINK.search(sent[-1].body).group(1)


def ask_for_link(client, email: str, *, next_path: str = "", **extra):
    return client.post(reverse("shop:receipts_link"), {"email": email, "next": next_path}, **extra)


def use_link(client, token: str):
    return client.post(reverse("shop:receipts_signin"), {"token": token})


def prove_email(client, email: str, *, next_path: str = ""):
    """Prove `email` in this client's session; returns the redirect after signing in."""
    assert ask_for_link(client, email, next_path=next_path).status_code == 200
    token = signin_token_sent_to(email)
    assert client.get(reverse("shop:receipts_signin"), {"token": token}).status_code == 200
    response = use_link(client, token)
    assert response.status_code == 302, response.content.decode()[:1000]
    return response
