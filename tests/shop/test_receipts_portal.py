"""Receipts and payment methods open only for a visitor who has proved the booking's e-mail:
nobody reaches another person's Stripe Customer by typing their address."""

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from bookings.models import BookingStatus, ProvenCustomer
from payments import stripe_api
from tests.shop.customer_signin import prove_email
from tests.payments.stripe_flow import open_checkout, poll

pytestmark = pytest.mark.django_db(transaction=True)

VICTIM = "victim@example.com"


@pytest.fixture(autouse=True)
def _stripe(stripe_emulator, settings):
    settings.STRIPE_STATUS_CHECK_SECONDS = 0
    return stripe_emulator


def portal_session_requests(stripe_emulator) -> int:
    return sum(
        1
        for r in stripe_emulator.requests()
        if r["method"] == "POST" and r["path"] == "/v1/billing_portal/sessions" and r["status"] == 200
    )


def paid_booking(client, slot, stripe_emulator, *, email=VICTIM, name="Vic Tim", **pay):
    booking, _ = open_checkout(client, slot, email=email, name=name)
    stripe_emulator.pay_session(booking.checkout_session_id, **pay)
    poll(client, booking)
    booking.refresh_from_db()
    assert booking.status == BookingStatus.CONFIRMED
    return booking


def free_promotion_code(slot) -> str:
    """A 100% code on the account the slot's payments are made on (with Connect its merchant's)."""
    api = stripe_api.stripe_client()
    account = slot.listing.merchant.stripe_account_id
    options = {"stripe_account": account} if account else {}
    coupon = api.v1.coupons.create(params={"percent_off": 100, "duration": "once"}, options=options)
    api.v1.promotion_codes.create(params={"coupon": coupon.id, "code": "ALLFREE"}, options=options)
    return "ALLFREE"


def portal_of(client, booking):
    """The proven visitor's portal on the account the booking was paid on (the receipts page's
    button names the account: with Connect a person is one Customer per merchant)."""
    return client.post(reverse("shop:receipts_portal"), {"account": booking.stripe_account_id})


def test_a_stranger_with_the_victims_email_never_reaches_the_victims_portal(slot, stripe_emulator, portals_opened):
    victim, stranger = Client(), Client()
    prove_email(victim, VICTIM)
    victims_booking = paid_booking(victim, slot, stripe_emulator)
    victims_customer = ProvenCustomer.objects.get(email=VICTIM).stripe_customer_id
    assert victims_booking.stripe_customer_id == victims_customer
    portals_before = portal_session_requests(stripe_emulator)

    paid = paid_booking(stranger, slot, stripe_emulator, name="Mallory")
    free = paid_booking(stranger, slot, stripe_emulator, name="Mallory", promotion_code=free_promotion_code(slot))
    assert free.amount_paid == 0

    for booking in (paid, free):
        assert booking.stripe_customer_id not in ("", victims_customer)
        success = stranger.get(reverse("shop:checkout_success"), {"session_id": booking.checkout_session_id}).content.decode()
        page = stranger.get(reverse("shop:booking", args=[booking.public_token])).content.decode()
        # The success page links to the booking page, whose form for this visitor asks for a link.
        assert f'href="{reverse("shop:booking", args=[booking.public_token])}#receipts"' in success
        assert "E-mail me a link to my receipts" in page
        for html in (success, page):
            assert reverse("shop:booking_portal", args=[booking.public_token]) not in html
        refused = stranger.post(reverse("shop:booking_portal", args=[booking.public_token]))
        assert refused.status_code == 403
        assert "only for the owner of the booking's e-mail address" in refused.content.decode()
    assert paid.stripe_customer_id != free.stripe_customer_id
    # Neither the victim's booking page nor the proven-customer portal opens for the stranger.
    assert stranger.post(reverse("shop:booking_portal", args=[victims_booking.public_token])).status_code == 403
    assert stranger.post(reverse("shop:receipts_portal"))["Location"] == reverse("shop:receipts")
    # Asking for a link sends it to the victim's mailbox, not to the stranger.
    mail.outbox.clear()
    stranger.post(reverse("shop:receipts_link"), {"email": VICTIM})
    assert [message.to for message in mail.outbox] == [[VICTIM]]
    assert stranger.post(reverse("shop:booking_portal", args=[paid.public_token])).status_code == 403

    assert portals_opened == []
    assert portal_session_requests(stripe_emulator) == portals_before

    # The victim, proven, opens their own Customer's portal: it holds their payment only.
    opened = portal_of(victim, victims_booking)
    assert opened.status_code == 303 and opened["Location"].startswith(stripe_emulator.base_url + "/p/session/bps_")
    assert portals_opened == [victims_customer]
    assert portal_session_requests(stripe_emulator) == portals_before + 1


def test_a_proven_visitors_bookings_share_one_customer_and_its_portal(slot, stripe_emulator, portals_opened):
    client = Client()
    prove_email(client, "Pat@Example.com")
    first = paid_booking(client, slot, stripe_emulator, email="pat@example.com", name="Pat")
    second = paid_booking(client, slot, stripe_emulator, email="PAT@example.com", name="Pat")

    proven = ProvenCustomer.objects.get()
    assert proven.email == "pat@example.com"
    assert first.stripe_customer_id == second.stripe_customer_id == proven.stripe_customer_id
    home = client.get(reverse("shop:receipts")).content.decode()
    assert "Signed in as pat@example.com" in home
    assert f"#{first.pk} " in home and f"#{second.pk} " in home
    page = client.get(reverse("shop:booking", args=[first.public_token])).content.decode()
    assert "Receipts and payment methods</button>" in page
    assert "E-mail me a link to my receipts" not in page

    assert client.post(reverse("shop:booking_portal", args=[first.public_token])).status_code == 303
    assert portal_of(client, first).status_code == 303
    assert portals_opened == [proven.stripe_customer_id, proven.stripe_customer_id]


def test_a_booking_made_before_proving_opens_its_own_customer_for_the_proven_owner(slot, stripe_emulator, portals_opened):
    client = Client()
    earlier = paid_booking(client, slot, stripe_emulator, email="sam@example.com", name="Sam")
    other = paid_booking(client, slot, stripe_emulator, email="sam@example.com", name="Sam")
    assert earlier.stripe_customer_id != other.stripe_customer_id  # an unproven address shares nothing

    # The booking page's button sends the link, and the link comes back to the booking page.
    booking_path = reverse("shop:booking", args=[earlier.public_token])
    signed_in = prove_email(client, "sam@example.com", next_path=booking_path)
    assert signed_in["Location"] == booking_path
    assert client.post(reverse("shop:booking_portal", args=[earlier.public_token])).status_code == 303
    assert portals_opened == [earlier.stripe_customer_id]


def test_proving_one_address_opens_nothing_of_another(slot, stripe_emulator, portals_opened):
    owner, other = Client(), Client()
    booking = paid_booking(owner, slot, stripe_emulator, email="owner@example.com")
    prove_email(other, "other@example.com")
    assert other.post(reverse("shop:booking_portal", args=[booking.public_token])).status_code == 403
    # A proven visitor booking with someone else's address pays as a Customer of that booking alone.
    typed = paid_booking(other, slot, stripe_emulator, email="owner@example.com")
    assert ProvenCustomer.objects.count() == 0
    assert typed.stripe_customer_id not in ("", booking.stripe_customer_id)
    assert portals_opened == []


def test_signing_out_closes_the_portal(slot, stripe_emulator, portals_opened):
    client = Client()
    booking = paid_booking(client, slot, stripe_emulator, email="kim@example.com")
    prove_email(client, "kim@example.com")
    client.post(reverse("shop:receipts_signout"))
    assert client.post(reverse("shop:booking_portal", args=[booking.public_token])).status_code == 403
    assert "Enter the e-mail address you booked with" in client.get(reverse("shop:receipts")).content.decode()
    assert portals_opened == []
