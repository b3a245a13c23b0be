"""`manage.py loaddemo`: two merchants with listings and slots, and bookings paid through the emulator."""

import os

import pytest
from django.core import mail
from django.conf import settings
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from bookings.demo import DEMO_PASSWORD
from bookings.models import Booking, BookingStatus, Listing, Merchant, PromotionCode, Slot
from bookings.money import from_minor_units
from payments import stripe_api
from shop.demo import DEMO_FREE_PROMOTION_CODE
from tests.payments.stripe_flow import deliver_events, open_checkout

pytestmark = pytest.mark.django_db


def counts() -> tuple[int, ...]:
    return tuple(model.objects.count() for model in (Merchant, Listing, Slot, Booking))


@pytest.mark.platform_account
def test_loading_the_demo_twice_adds_nothing_the_second_time(capsys, stripe_emulator):
    call_command("loaddemo", days=5)
    first = counts()
    call_command("loaddemo", days=5)

    assert counts() == first
    assert first[0] == 2 and first[3] > 0
    output = capsys.readouterr().out
    assert "0 merchants, 0 listings, 0 slots created" in output
    assert "Demo bookings paid through the Stripe emulator: 0 created" in output


@pytest.mark.platform_account
def test_demo_bookings_are_real_payments_confirmed_through_the_state_machine(
    stripe_emulator, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        call_command("loaddemo", days=5)

    bookings = list(Booking.objects.select_related("slot"))
    assert {b.status for b in bookings} == {BookingStatus.CONFIRMED}
    for slot in Slot.objects.filter(bookings__isnull=False).distinct():
        sold = sum(b.quantity for b in slot.bookings.all())
        assert slot.capacity - slot.seats_left == sold
    intent = stripe_api.stripe_client().v1.payment_intents.retrieve(bookings[0].payment_intent_id)
    assert intent.status == "succeeded"
    assert intent.amount == bookings[0].amount_paid
    assert mail.outbox == []


@pytest.mark.platform_account
def test_without_the_emulator_the_demo_has_no_bookings_and_says_why(capsys, settings):
    settings.STRIPE_API_BASE = ""

    call_command("loaddemo", days=3)

    assert Booking.objects.count() == 0
    output = capsys.readouterr().out
    assert "No demo bookings" in output
    assert "Promotion code" not in output


@pytest.mark.platform_account
def test_each_demo_merchant_sees_a_dashboard_with_only_their_own_bookings(client, stripe_emulator):
    call_command("loaddemo", days=5)

    for merchant in Merchant.objects.all():
        assert client.login(username=merchant.user.username, password=DEMO_PASSWORD)
        html = client.get(reverse("merchant:booking_list")).content.decode()
        theirs = Booking.objects.filter(slot__listing__merchant=merchant)
        others = Booking.objects.exclude(slot__listing__merchant=merchant)
        assert theirs.exists()
        assert all(f"#{b.pk}<" in html for b in theirs)
        assert not any(f"#{b.pk}<" in html for b in others)
        assert "seats sold" in client.get(reverse("merchant:dashboard")).content.decode()


@pytest.mark.platform_account
@pytest.mark.django_db(transaction=True)
def test_a_demo_booking_can_be_refunded_from_the_dashboard(client, stripe_emulator):
    call_command("loaddemo", days=3)
    booking = Booking.objects.filter(status=BookingStatus.CONFIRMED).select_related("slot__listing__merchant__user").first()
    client.login(username=booking.slot.listing.merchant.user.username, password=DEMO_PASSWORD)

    full_amount = str(from_minor_units(booking.amount_paid, booking.currency))
    response = client.post(reverse("merchant:booking_refund", args=[booking.pk]), {"amount": full_amount})

    booking.refresh_from_db()
    assert response.status_code == 302
    assert booking.status == BookingStatus.REFUNDED
    refunds = stripe_api.stripe_client().v1.refunds.list(params={"payment_intent": booking.payment_intent_id}).data
    assert [r.amount for r in refunds] == [booking.amount_paid]


@pytest.mark.platform_account
def test_the_100_percent_off_code_the_readme_advertises_exists_once_and_books_a_seat_with_no_card(
    client, capsys, stripe_emulator, django_capture_on_commit_callbacks
):
    readme = (settings.BASE_DIR / "README.md").read_text()
    assert f"`{DEMO_FREE_PROMOTION_CODE}`" in readme
    call_command("loaddemo", days=3)
    call_command("loaddemo", days=3)
    assert capsys.readouterr().out.count(f"Promotion code {DEMO_FREE_PROMOTION_CODE}: 100% off") == 2
    [code] = stripe_api.stripe_client().v1.promotion_codes.list(params={"code": DEMO_FREE_PROMOTION_CODE}).data
    assert code.active and code.coupon.percent_off == 100

    slot = Slot.objects.filter(listing__slug="sea-cave-explorer", bookings__isnull=True).first()
    booking, _ = open_checkout(client, slot, quantity=2, email="newcomer@example.com", name="New Comer")
    paid = stripe_emulator.pay_session(
        booking.checkout_session_id, email="newcomer@example.com", name="New Comer", promotion_code="demo100"
    )
    with django_capture_on_commit_callbacks(execute=True):
        deliver_events(client, stripe_emulator, types={"checkout.session.completed"})

    booking.refresh_from_db()
    slot.refresh_from_db()
    assert paid["amount_total"] == 0 and paid["payment_status"] == "no_payment_required"
    assert booking.status == BookingStatus.CONFIRMED
    assert (booking.amount_total, booking.amount_paid) == (2 * 6500, 0)
    assert slot.seats_left == slot.capacity - 2


@pytest.mark.platform_account
def test_the_demo_runs_the_periodic_reconcile_itself_and_passes_on_what_is_not_settled(tmp_path):
    import sys
    import threading
    import time

    from shop.management.commands.demo import reconcile_every

    runs = tmp_path / "runs"
    command = [
        sys.executable,
        "-c",
        f"import sys; open({str(runs)!r}, 'a').write('run\\n'); sys.stderr.write('not settled yet: refund 7\\n')",
    ]
    stop = threading.Event()
    written: list[str] = []

    thread = reconcile_every(0.05, command, env=dict(os.environ), stop=stop, write=written.append)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (runs.exists() and runs.read_text().count("run") >= 2):
        time.sleep(0.02)
    stop.set()
    thread.join(timeout=30)

    assert not thread.is_alive()
    assert runs.read_text().count("run") >= 2
    assert written[:2] == ["not settled yet: refund 7", "not settled yet: refund 7"]


@pytest.mark.own_connect_accounts
def test_with_connect_the_demo_merchants_are_connected_accounts_two_onboarded_and_one_not(
    client, capsys, stripe_emulator, settings
):
    from bookings.money import platform_fee

    settings.CONNECT_ENABLED = True
    settings.PLATFORM_FEE_PERCENT, settings.PLATFORM_FEE_FIXED = "5", 30
    settings.STRIPE_CONNECT_WEBHOOK_SECRETS = [stripe_emulator.connect_webhook_secret]
    call_command("loaddemo", days=4)
    call_command("loaddemo", days=4)  # again: no second account, nothing added

    merchants = {m.user.username: m for m in Merchant.objects.select_related("user")}
    assert sorted(merchants) == ["atelier", "harbour", "studio"]
    api = stripe_api.stripe_client()
    accounts = {a.id: a for a in api.v1.accounts.list(params={"limit": 100}).data}
    assert sorted(accounts) == sorted(m.stripe_account_id for m in merchants.values())
    for username in ("harbour", "atelier"):
        merchant = merchants[username]
        account = accounts[merchant.stripe_account_id]
        assert account.type == "express" and account.charges_enabled and account.payouts_enabled
        assert (merchant.stripe_charges_enabled, merchant.stripe_payouts_enabled, merchant.can_take_payments) == (True, True, True)
        bookings = list(Booking.objects.filter(slot__listing__merchant=merchant))
        assert bookings and {b.status for b in bookings} == {BookingStatus.CONFIRMED}
        for booking in bookings:
            assert booking.stripe_account_id == merchant.stripe_account_id
            assert booking.application_fee_amount == platform_fee(booking.amount_paid) > 0
        intent = api.v1.payment_intents.retrieve(bookings[0].payment_intent_id, options={"stripe_account": merchant.stripe_account_id})
        assert (intent.status, intent.amount, intent.application_fee_amount) == (
            "succeeded", bookings[0].amount_paid, bookings[0].application_fee_amount)
    assert (accounts[merchants["harbour"].stripe_account_id].country, accounts[merchants["atelier"].stripe_account_id].country) == ("GB", "FR")

    studio = merchants["studio"]
    account = accounts[studio.stripe_account_id]
    assert not account.charges_enabled and "individual.first_name" in account.requirements.currently_due
    assert not studio.can_take_payments and "tos_acceptance.date" in studio.stripe_requirements_due
    assert not Booking.objects.filter(slot__listing__merchant=studio).exists()
    page = client.get(reverse("shop:listing", args=["darkroom-printing-workshop"])).content.decode()
    assert "Studio Lumen is not taking bookings yet" in page and "Continue to payment" not in page

    output = capsys.readouterr().out
    assert "Connect: Harbour Kayaks's connected account can take payments." in output
    assert "Connect: Studio Lumen's connected account has not finished Stripe's onboarding" in output
    assert "Merchant sign-ins: harbour, atelier, studio" in output
    # The demo codes are made on their merchants' own accounts, once, and work on their checkouts.
    assert "Promotion code DEMO100: 100% off Harbour Kayaks's listings" in output
    harbour = merchants["harbour"]
    [code] = api.v1.promotion_codes.list(params={"code": "DEMO100"}, options={"stripe_account": harbour.stripe_account_id}).data
    assert api.v1.promotion_codes.list(params={"code": "DEMO100"}).data == []
    assert PromotionCode.objects.filter(merchant=harbour, stripe_account=harbour.stripe_account_id).count() == 1
    slot = Slot.objects.filter(listing__merchant=harbour, seats_left__gt=0, starts_at__gt=timezone.now()).first()
    booking, _ = open_checkout(client, slot)
    paid = stripe_emulator.pay_session(booking.checkout_session_id, promotion_code="demo100")
    assert paid["amount_total"] == 0 and code.times_redeemed == 0


@pytest.mark.platform_account
def test_without_connect_the_demo_has_its_two_merchants_and_no_connected_accounts(stripe_emulator):
    call_command("loaddemo", days=3)
    assert sorted(Merchant.objects.values_list("user__username", flat=True)) == ["atelier", "harbour"]
    assert not Merchant.objects.exclude(stripe_account_id="").exists()
    assert not Booking.objects.exclude(stripe_account_id="").exists()
