"""Customers proving an e-mail address, and the one Stripe Customer of each proven address.

An e-mail typed into the booking form proves nothing: a booking made that way gets a Customer of
its own, and its receipts open only for a visitor who has proved the address. Proof is a sign-in
link e-mailed to the address: its token is Django's TimestampSigner over the link's row, salted
with the address (a token made for one address never verifies for another), expires after
CUSTOMER_SIGNIN_LINK_MINUTES, and works once (the row's `used_at`). The token is never stored.
"""

import logging
import re
from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction
from django.utils import timezone

from bookings import tasks
from bookings.background import enqueue_after_commit
from common.logs import log_event
from bookings.models import CustomerSignInLink, ProvenCustomer

log = logging.getLogger("bookings.customers")

# "<link id>:<timestamp>:<signature>", as TimestampSigner makes it; anything else is not looked up.
SIGNIN_TOKEN = re.compile(r"([0-9]{1,18}):[0-9A-Za-z]{1,12}:[A-Za-z0-9_-]{20,100}")


class SignInLinkRefused(Exception):
    """A sign-in link that cannot sign anyone in; the message is a sentence for the visitor."""

    status = 400


class SignInLinkMalformed(SignInLinkRefused):
    status = 400


class SignInLinkExpired(SignInLinkRefused):
    status = 410


class SignInLinkUsed(SignInLinkRefused):
    status = 410


def customer_email_normalise(email: str) -> str:
    """The form an address is compared and stored in: trimmed, lower-case (the address a person
    types in another case is the same mailbox at every common provider)."""
    return email.strip().lower()


def _signer(email: str) -> signing.TimestampSigner:
    return signing.TimestampSigner(salt=f"bookings.customer-signin:{email}")


def customer_signin_token(link: CustomerSignInLink) -> str:
    """A fresh token for a sign-in link: made where the e-mail is sent, so that it never travels
    through the broker (task arguments are stored there) and exists only in the e-mail."""
    return _signer(link.email).sign(str(link.pk))


def customer_signin_link_send(*, email: str, next_path: str = "") -> CustomerSignInLink:
    """Record a sign-in link for `email` and e-mail it after commit. `next_path` must already be
    a path on this site. The token exists only in the e-mail."""
    address = customer_email_normalise(email)
    with transaction.atomic():
        link = CustomerSignInLink.objects.create(email=address, next_path=next_path)
        enqueue_after_commit(tasks.customer_signin_link_send, link_id=link.pk)
    log_event(log, "customer_signin_link_created", link=link.pk)
    return link


def _link_of(token: str) -> CustomerSignInLink:
    """The unused, unexpired link `token` was made for; raises SignInLinkRefused otherwise."""
    shape = SIGNIN_TOKEN.fullmatch(token or "")
    link = CustomerSignInLink.objects.filter(pk=int(shape.group(1))).first() if shape else None
    if link is None:
        raise SignInLinkMalformed("This sign-in link is not one of ours, or it was cut short.")
    try:
        _signer(link.email).unsign(token, max_age=timedelta(minutes=settings.CUSTOMER_SIGNIN_LINK_MINUTES))
    except signing.SignatureExpired:
        raise SignInLinkExpired(
            f"This sign-in link has expired: links work for {settings.CUSTOMER_SIGNIN_LINK_MINUTES} minutes."
        ) from None
    except signing.BadSignature:
        raise SignInLinkMalformed("This sign-in link is not one of ours, or it was cut short.") from None
    if link.used_at is not None:
        raise SignInLinkUsed("This sign-in link has already been used: each link works once.")
    return link


def customer_signin_link_check(*, token: str) -> CustomerSignInLink:
    """The link a token opens, changing nothing. Raises SignInLinkRefused (malformed, expired, used)."""
    return _link_of(token)


def customer_signin_link_use(*, token: str) -> CustomerSignInLink:
    """Use a sign-in link: of any number of concurrent uses of one link, exactly one succeeds;
    the others, and every later one, raise SignInLinkUsed."""
    link = _link_of(token)
    now = timezone.now()
    if not CustomerSignInLink.objects.filter(pk=link.pk, used_at__isnull=True).update(used_at=now):
        raise SignInLinkUsed("This sign-in link has already been used: each link works once.")
    link.used_at = now
    log_event(log, "customer_signin_link_used", link=link.pk)
    return link


def proven_customer_record(*, email: str, stripe_customer_id: str, stripe_account: str = "") -> ProvenCustomer:
    """The proven address's one Customer on a Stripe account (the platform's, or with Connect a
    merchant's connected account): this one when the address has none there yet, else the one
    recorded first (a Customer created by a racing request is then left unused)."""
    address = customer_email_normalise(email)
    try:
        with transaction.atomic():
            proven, _ = ProvenCustomer.objects.get_or_create(
                email=address, stripe_account_id=stripe_account, defaults={"stripe_customer_id": stripe_customer_id}
            )
    except IntegrityError:
        proven = ProvenCustomer.objects.get(email=address, stripe_account_id=stripe_account)
    return proven
