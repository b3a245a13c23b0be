"""Merchant refunds and slot cancellations against the Stripe emulator: bookings paid for real
through Checkout, refunds created at "Stripe" exactly once, whatever is run twice."""

import pytest
from django.core import mail
from django.urls import reverse

from bookings.models import Booking, BookingStatus, Refund, RefundReason, RefundStatus
from bookings.services import booking_confirm, booking_follow_up, booking_refund, slot_cancel
from payments import stripe_api
from payments.checkout import checkout_start
from tests.factories import make_slot
from tests.payments.stripe_flow import deliver_events, lose_hold
from tests.simulation.told import readable

pytestmark = pytest.mark.django_db

CARD_OK = "4242424242424242"
CARD_REFUND_FAILS_LATER = "4000000000005126"


@pytest.fixture
def pay(stripe_emulator, django_capture_on_commit_callbacks):
    """Book and pay for real: open a Checkout Session, pay it on the emulator, confirm the booking."""

    def paid_booking(slot, *, quantity=1, card=CARD_OK, email=None):
        email = email or f"guest{Booking.objects.count() + 1}@example.com"
        started = checkout_start(
            slot=slot,
            quantity=quantity,
            customer_email=email,
            customer_name="Guest",
            success_url="http://testserver/checkout/success/?session_id={CHECKOUT_SESSION_ID}",
            cancel_url="http://testserver/",
        )
        session_id = started.booking.checkout_session_id
        stripe_emulator.pay_session(session_id, card=card)
        with django_capture_on_commit_callbacks(execute=True):
            booking_confirm(facts=stripe_api.checkout_facts(session_id, stripe_account=started.booking.stripe_account_id))
        booking = Booking.objects.get(pk=started.booking.pk)
        assert booking.status == BookingStatus.CONFIRMED
        return booking

    return paid_booking


def stripe_refunds(booking: Booking) -> list[dict]:
    return stripe_api.refunds_of_payment(booking.payment_intent_id, stripe_account=booking.stripe_account_id)


@pytest.fixture
def merchant_client(client, listing):
    client.force_login(listing.merchant.user)
    return client


def test_a_full_refund_is_made_once_at_stripe_and_returns_the_seats(
    merchant_client, listing, pay, django_capture_on_commit_callbacks
):
    slot = make_slot(listing=listing, capacity=4)
    booking = pay(slot, quantity=2)
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        response = merchant_client.post(reverse("merchant:booking_refund", args=[booking.pk]), {"amount": "50.00"})

    booking.refresh_from_db()
    slot.refresh_from_db()
    refund = booking.refunds.get()
    assert response.status_code == 302
    assert booking.status == BookingStatus.REFUNDED
    assert booking.amount_refunded == booking.amount_paid == 5000
    assert slot.seats_left == 4
    assert refund.stripe_refund_id.startswith("re_")
    assert [(r["id"], r["amount"], r["status"]) for r in stripe_refunds(booking)] == [(refund.stripe_refund_id, 5000, "succeeded")]
    assert [m.to for m in mail.outbox] == [[booking.customer_email]]
    page = merchant_client.get(reverse("merchant:booking_detail", args=[booking.pk])).content.decode()
    assert refund.stripe_refund_id in page


def test_partial_refunds_leave_the_booking_until_everything_is_refunded(
    merchant_client, listing, pay, django_capture_on_commit_callbacks
):
    slot = make_slot(listing=listing, capacity=4)
    booking = pay(slot, quantity=2)
    url = reverse("merchant:booking_refund", args=[booking.pk])

    with django_capture_on_commit_callbacks(execute=True):
        merchant_client.post(url, {"amount": "10.00"})
    booking.refresh_from_db()
    slot.refresh_from_db()
    assert (booking.status, booking.amount_refunded, slot.seats_left) == (BookingStatus.CONFIRMED, 1000, 2)

    with django_capture_on_commit_callbacks(execute=True):
        too_much = merchant_client.post(url, {"amount": "40.01"})
        rest = merchant_client.post(url, {"amount": "40.00"})

    booking.refresh_from_db()
    slot.refresh_from_db()
    assert too_much.status_code == 400 and "You can refund at most €40.00" in too_much.content.decode()
    assert rest.status_code == 302
    assert (booking.status, booking.amount_refunded, slot.seats_left) == (BookingStatus.REFUNDED, 5000, 4)
    assert sorted(r["amount"] for r in stripe_refunds(booking)) == [1000, 4000]
    assert len([m for m in mail.outbox if "refund" in m.subject.lower()]) == 2


def test_a_refund_stripe_could_not_take_is_sent_again_from_the_booking_page(
    merchant_client, listing, pay, stripe_emulator, django_capture_on_commit_callbacks, settings
):
    booking = pay(make_slot(listing=listing))
    settings.STRIPE_MAX_NETWORK_RETRIES = 0  # one failure is one attempt
    stripe_emulator.fail_refunds(count=1, mode="error")

    with django_capture_on_commit_callbacks(execute=True):
        merchant_client.post(reverse("merchant:booking_refund", args=[booking.pk]), {"amount": "25.00"})
    booking.refresh_from_db()
    assert booking.status == BookingStatus.REFUND_DUE
    assert booking.refunds.get().status == RefundStatus.REQUESTED
    assert stripe_refunds(booking) == []
    page = merchant_client.get(reverse("merchant:booking_detail", args=[booking.pk])).content.decode()
    assert "Send the refund to Stripe now" in page

    with django_capture_on_commit_callbacks(execute=True):
        response = merchant_client.post(reverse("merchant:booking_refund_resubmit", args=[booking.pk]), follow=True)

    booking.refresh_from_db()
    assert "Stripe has every refund of this booking now." in response.content.decode()
    assert booking.status == BookingStatus.REFUNDED
    assert len(stripe_refunds(booking)) == 1


def test_a_refund_that_fails_later_is_retried_by_the_merchant(
    merchant_client, listing, pay, stripe_emulator, django_capture_on_commit_callbacks
):
    booking = pay(make_slot(listing=listing), card=CARD_REFUND_FAILS_LATER)
    with django_capture_on_commit_callbacks(execute=True):
        booking_refund(booking=booking)
    stripe_emulator.advance_clock(60)  # the refund of this card fails a moment after it succeeded
    with django_capture_on_commit_callbacks(execute=True):
        refund_events = {"refund.created", "refund.updated", "refund.failed"}
        responses = deliver_events(merchant_client, stripe_emulator, types=refund_events)
    assert {response.status_code for response in responses} == {200}

    booking.refresh_from_db()
    assert booking.status == BookingStatus.REFUND_FAILED
    assert booking.refunds.get().failure_reason
    alert = [m for m in mail.outbox if "refund failed" in m.subject]
    assert len(alert) == 1 and reverse("merchant:booking_detail", args=[booking.pk]) in alert[0].body
    dashboard = merchant_client.get(reverse("merchant:dashboard")).content.decode()
    assert "Needs your attention" in dashboard and f"#{booking.pk}" in dashboard

    with django_capture_on_commit_callbacks(execute=True):
        merchant_client.post(reverse("merchant:booking_refund_retry", args=[booking.pk]))

    booking.refresh_from_db()
    statuses = list(booking.refunds.order_by("pk").values_list("status", flat=True))
    assert statuses[0] == RefundStatus.FAILED
    assert len(statuses) == 2 and statuses[1] != RefundStatus.REQUESTED
    assert len(stripe_refunds(booking)) == 2


def test_cancelling_a_slot_refunds_every_customer_once_at_stripe_even_when_run_twice(
    merchant_client, listing, pay, django_capture_on_commit_callbacks
):
    slot = make_slot(listing=listing, capacity=10)
    paid = [pay(slot, quantity=q) for q in (1, 2, 3)]
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        first = merchant_client.post(reverse("merchant:slot_cancel", args=[slot.pk]), follow=True)
    with django_capture_on_commit_callbacks(execute=True):
        second = merchant_client.post(reverse("merchant:slot_cancel", args=[slot.pk]), follow=True)
    with django_capture_on_commit_callbacks(execute=True):
        slot_cancel(slot=slot)  # and once more, from code

    slot.refresh_from_db()
    assert "3 bookings cancelled and 3 refunds sent to Stripe" in first.content.decode()
    assert "was already cancelled" in second.content.decode()
    assert slot.seats_left == slot.capacity
    for booking in paid:
        booking.refresh_from_db()
        refunds = stripe_refunds(booking)
        assert booking.status == BookingStatus.REFUNDED
        assert [(r["amount"], r["metadata"]["reason"]) for r in refunds] == [(booking.amount_paid, RefundReason.SLOT_CANCELLED)]
        assert Refund.objects.filter(booking=booking).count() == 1
    assert sorted(m.to[0] for m in mail.outbox) == sorted(b.customer_email for b in paid)
    assert all("is cancelled" in m.subject for m in mail.outbox)


def test_a_sold_out_refund_asked_again_by_the_merchant_keeps_its_reason(
    merchant_client, client, listing, pay, stripe_emulator, django_capture_on_commit_callbacks
):
    slot = make_slot(listing=listing, capacity=1)
    late = checkout_start(
        slot=slot, quantity=1, customer_email="late@example.com", customer_name="Late",
        success_url="http://testserver/checkout/success/?session_id={CHECKOUT_SESSION_ID}",
        cancel_url="http://testserver/",
    ).booking
    lose_hold(late)  # its hold ended with the payment still on its way ...
    pay(slot)  # ... and someone else took the only seat
    stripe_emulator.pay_session(late.checkout_session_id, card=CARD_REFUND_FAILS_LATER)
    with django_capture_on_commit_callbacks(execute=True):
        booking_confirm(facts=stripe_api.checkout_facts(late.checkout_session_id, stripe_account=late.stripe_account_id))
    stripe_emulator.advance_clock(60)
    with django_capture_on_commit_callbacks(execute=True):
        deliver_events(merchant_client, stripe_emulator, types={"refund.created", "refund.updated", "refund.failed"})
    late.refresh_from_db()
    assert late.status == BookingStatus.REFUND_FAILED
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        merchant_client.post(reverse("merchant:booking_refund_retry", args=[late.pk]))

    late.refresh_from_db()
    first, again = late.refunds.order_by("pk")
    assert (first.reason, first.status) == (RefundReason.SOLD_OUT, RefundStatus.FAILED)
    assert again.reason == RefundReason.SOLD_OUT and again.asked_again
    assert late.ended_reason == RefundReason.SOLD_OUT
    assert [r["metadata"]["reason"] for r in stripe_refunds(late)] == [RefundReason.SOLD_OUT] * 2
    assert len({r["id"] for r in stripe_refunds(late)}) == 2
    notice = [m for m in mail.outbox if m.to == ["late@example.com"]]
    assert len(notice) == 1 and "sold out" in notice[0].subject
    assert "The last seats went to someone else while you were paying." in notice[0].body
    assert "cancelled your booking" not in notice[0].body and "cancelled this time" not in notice[0].body
    page = client.get(reverse("shop:booking", args=[late.public_token])).content.decode()
    assert "Sold out while you paid" in page and "cancelled your booking" not in page


def test_a_partial_refund_told_after_the_customer_cancelled_says_who_gave_it_and_who_cancelled(
    stripe_emulator, pay, django_capture_on_commit_callbacks, settings
):
    """Simulation seeds 424201083 and 424201107: the merchant gave part of the payment back, Stripe
    could not make that refund at once, the customer then cancelled; when the merchant's refund
    was made, its e-mail said "<merchant> cancelled your booking" under "Cancelled and refunded by
    <merchant>". The merchant did not cancel it: the customer did."""
    from bookings.models import CancellationPolicy
    from bookings.policies import cancel_quote
    from bookings.services import booking_customer_cancel
    from tests.factories import make_listing, make_merchant

    merchant = make_merchant(timezone_name="Europe/Paris", display_name="Canal Tours")
    listing = make_listing(merchant=merchant, title="Canal walk", cancel_policy=CancellationPolicy.CUSTOMER_MAY_CANCEL)
    booking = pay(make_slot(listing=listing), email="ines@example.com")
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    stripe_emulator.fail_refunds(count=1, mode="error")
    with django_capture_on_commit_callbacks(execute=True):
        booking_refund(booking=booking, amount=500)  # Stripe fails it: left to be asked again
    assert Refund.objects.get(booking=booking).status == RefundStatus.REQUESTED
    assert not [m for m in mail.outbox if "refund" in m.subject.lower()]
    booking = Booking.objects.get(pk=booking.pk)
    quote = cancel_quote(booking)
    assert quote.allowed and quote.refund == 2000

    with django_capture_on_commit_callbacks(execute=True):
        # The cancellation's follow-up asks for every refund still owed: the merchant's is made now.
        booking_customer_cancel(booking=booking, expected_refund=2000)

    booking.refresh_from_db()
    assert booking.status == BookingStatus.REFUNDED and booking.amount_refunded == 2500
    merchants_refund = next(m for m in mail.outbox if m.subject == "A refund for your booking: Canal walk")
    html = merchants_refund.alternatives[0][0]
    assert "Canal Tours refunded €5.00 of your €25.00 payment. You cancelled this booking, so it holds no seats. " \
           "The refund has been made; refunds take 5 to 10 days to reach your statement." in merchants_refund.body
    assert "Partly refunded by Canal Tours" in html
    assert "cancelled your booking" not in merchants_refund.body and "Cancelled and refunded by" not in html
    # Its time, in the merchant's zone, as every e-mail gives it.
    starts = booking.slot.starts_at.astimezone(merchant.zone)
    assert f"{starts:%H:%M} (Europe/Paris)" in merchants_refund.body


def test_a_late_cancellation_covered_by_the_merchants_refund_is_owed_again_when_that_refund_fails(
    stripe_emulator, pay, client, django_capture_on_commit_callbacks
):
    """Simulation seed 424200367: the merchant refunded half of a payment, the customer then
    cancelled late under terms keeping half, so nothing more came back; the merchant's refund then
    failed at the bank. The booking stayed `cancelled`, its pages said nothing is refunded, and the
    customer's half was owed by nobody. Now the booking is `refund_failed` for what the policy
    gives back, the customer's pages say so, and the merchant's retry refunds that, not all."""
    from bookings.models import CancellationPolicy
    from bookings.policies import cancel_quote
    from bookings.services import booking_customer_cancel
    from tests.factories import make_listing, make_merchant

    merchant = make_merchant(timezone_name="Europe/Paris", display_name="Canal Tours", support_email="desk@canal.example")
    listing = make_listing(
        merchant=merchant, title="Canal walk", price_amount=2500, cancel_policy=CancellationPolicy.CUSTOMER_MAY_CANCEL,
        cancel_free_hours=2000, cancel_late_keep_percent=50,
    )
    booking = pay(make_slot(listing=listing), card=CARD_REFUND_FAILS_LATER, email="ines@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        booking_refund(booking=booking, amount=1250)
    booking = Booking.objects.get(pk=booking.pk)
    quote = cancel_quote(booking)
    assert (quote.free, quote.kept, quote.already_back, quote.refund) == (False, 1250, 1250, 0)
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        booking_customer_cancel(booking=booking, expected_refund=0)

    booking.refresh_from_db()
    assert booking.status == BookingStatus.CANCELLED
    told = next(m for m in mail.outbox if m.to == ["ines@example.com"])
    assert told.subject == "You cancelled your booking: Canal walk"
    kept = ("You cancelled this booking, so it holds no seats. You cancelled after the free cancellation deadline, "
            "so under Canal Tours's cancellation policy nothing more is refunded: the €12.50 Canal Tours refunded "
            "before you cancelled is what comes back.")
    assert kept in told.body
    assert "nothing is refunded" not in told.body
    starts = booking.slot.starts_at.astimezone(merchant.zone)
    assert f"{starts:%H:%M} (Europe/Paris)" in told.body
    # The merchant is told the same: their own refund is what the cancellation counted.
    notice = next(m for m in mail.outbox if m.to == ["desk@canal.example"])
    assert notice.subject == f"Booking #{booking.pk} cancelled by Guest"
    merchant_facts = ("Its seat is free to sell again.\n\nNothing more is refunded: they cancelled after the free "
                      "cancellation deadline, and the €12.50 you had already refunded is at least what your policy "
                      "gives back.")
    assert merchant_facts in notice.body and "Nothing is refunded" not in notice.body
    assert "€12.50 you had already refunded" in readable(notice.alternatives[0][0])
    assert f"{starts:%H:%M} (Europe/Paris)" in notice.body
    mail.outbox.clear()

    stripe_emulator.advance_clock(60)
    with django_capture_on_commit_callbacks(execute=True):
        deliver_events(client, stripe_emulator, types={"refund.updated", "refund.failed"})

    booking.refresh_from_db()
    assert booking.status == BookingStatus.REFUND_FAILED
    assert booking.amount_refunded == 0
    assert [m.subject for m in mail.outbox if m.to == ["desk@canal.example"]] == [
        f"Action needed: a refund failed for booking #{booking.pk}"
    ]
    # The customer was told the €12.50 was refunded: now they are told it did not go through.
    failed = [m for m in mail.outbox if m.to == ["ines@example.com"]]
    assert [m.subject for m in failed] == ["Your refund did not go through: Canal walk"]
    sentence = ("Canal Tours's refund of €12.50 of your €25.00 payment did not go through. You cancelled this "
                "booking, so it holds no seats. Canal Tours has been alerted and will refund you; you can reach "
                "them at desk@canal.example.")
    assert sentence in " ".join(failed[0].body.split())
    html = readable(failed[0].alternatives[0][0])
    assert html.count("Your refund did not go through") == 1 and sentence in html
    assert f"{starts:%H:%M} (Europe/Paris)" in failed[0].body
    assert "has been made" not in failed[0].body
    page = " ".join(client.get(reverse("shop:booking", args=[booking.public_token])).content.decode().split())
    assert "Your refund did not go through" in page
    assert ("You cancelled this booking, so it holds no seats. The refund of €12.50 did not go through. "
            "Canal Tours has been alerted and will refund you; you can reach them at desk@canal.example.") in page
    assert f"{starts:%H:%M}" in page and "Europe/Paris" in page

    client.force_login(merchant.user)
    detail = " ".join(client.get(reverse("merchant:booking_detail", args=[booking.pk])).content.decode().split())
    assert "has not got back the €12.50 your cancellation policy gives back for their cancellation." in detail
    assert "Retry the refund of €12.50" in detail
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("merchant:booking_refund_retry", args=[booking.pk]))

    booking.refresh_from_db()
    again = booking.refunds.order_by("pk").last()
    assert (again.amount, again.reason, again.asked_again) == (1250, RefundReason.MERCHANT, True)
    assert [r["amount"] for r in stripe_refunds(booking)] == [1250, 1250]
    assert booking.amount_refunded == 1250 and booking.status == BookingStatus.REFUNDED


def test_a_late_cancellations_failed_refund_is_owed_and_asked_again_for_the_policys_share_only(
    stripe_emulator, pay, client, django_capture_on_commit_callbacks
):
    """A customer cancelled late under terms keeping 40% of €25.00: €15.00 came back, then that
    refund failed. The pages said "The refund of €25.00 did not go through" and the merchant's
    retry refunded €25.00, the kept share too. What is owed is the €15.00 the terms gave back."""
    from bookings.models import CancellationPolicy
    from bookings.policies import cancel_quote
    from bookings.services import booking_customer_cancel
    from tests.factories import make_listing, make_merchant

    merchant = make_merchant(timezone_name="America/New_York", display_name="Harbor Cruises")
    listing = make_listing(
        merchant=merchant, title="Harbor cruise", price_amount=2500, cancel_policy=CancellationPolicy.CUSTOMER_MAY_CANCEL,
        cancel_free_hours=2000, cancel_late_keep_percent=40,
    )
    booking = pay(make_slot(listing=listing), card=CARD_REFUND_FAILS_LATER, email="ana@example.com")
    assert cancel_quote(booking).refund == 1500
    with django_capture_on_commit_callbacks(execute=True):
        booking_customer_cancel(booking=booking, expected_refund=1500)
    booking.refresh_from_db()
    assert booking.status == BookingStatus.REFUNDED and booking.amount_refunded == 1500

    stripe_emulator.advance_clock(60)
    with django_capture_on_commit_callbacks(execute=True):
        deliver_events(client, stripe_emulator, types={"refund.updated", "refund.failed"})

    booking.refresh_from_db()
    assert booking.status == BookingStatus.REFUND_FAILED and booking.amount_refunded == 0
    page = " ".join(client.get(reverse("shop:booking", args=[booking.public_token])).content.decode().split())
    assert "You cancelled this booking, so it holds no seats. The refund of €15.00 did not go through." in page
    assert "€25.00 did not go through" not in page
    failed = [m for m in mail.outbox if m.subject == "Your refund did not go through: Harbor cruise"]
    assert len(failed) == 1 and failed[0].to == ["ana@example.com"]
    assert ("You cancelled this booking, so it holds no seats. The refund of €15.00 did not go through. Harbor "
            f"Cruises has been alerted and will refund you; you can reach them at {merchant.support_email}.") in " ".join(
        failed[0].body.split())
    starts = booking.slot.starts_at.astimezone(merchant.zone)
    assert f"{starts:%H:%M} (America/New_York)" in failed[0].body
    client.force_login(merchant.user)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("merchant:booking_refund_retry", args=[booking.pk]))
    booking.refresh_from_db()
    again = booking.refunds.order_by("pk").last()
    assert (again.amount, again.reason, again.asked_again) == (1500, RefundReason.CUSTOMER_CANCELLED, True)
    assert [r["amount"] for r in stripe_refunds(booking)] == [1500, 1500]
    assert booking.status == BookingStatus.REFUNDED and booking.amount_refunded == 1500


def test_a_partial_refund_of_a_standing_booking_that_fails_later_is_told_to_the_customer_once(
    stripe_emulator, pay, client, django_capture_on_commit_callbacks
):
    """The merchant gave back €5.00 and the customer was told it was made; it failed at the bank
    days later. The customer is told so, once, and that the booking still stands; the booking
    stays confirmed and keeps its seats."""
    from tests.factories import make_listing, make_merchant

    merchant = make_merchant(timezone_name="Asia/Tokyo", display_name="Sakura Tea")
    listing = make_listing(merchant=merchant, title="Tea ceremony", price_amount=2500)
    slot = make_slot(listing=listing, capacity=3)
    booking = pay(slot, card=CARD_REFUND_FAILS_LATER, email="ken@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        booking_refund(booking=booking, amount=500)
    assert [m.subject for m in mail.outbox if m.to == ["ken@example.com"]][-1] == "A refund for your booking: Tea ceremony"
    mail.outbox.clear()

    stripe_emulator.advance_clock(60)
    for _ in range(2):  # Stripe delivers its events again: nothing is told twice
        with django_capture_on_commit_callbacks(execute=True):
            deliver_events(client, stripe_emulator, types={"refund.updated", "refund.failed"})
        refund = Refund.objects.get(booking=booking)
        booking_follow_up(booking_id=booking.pk)

    booking.refresh_from_db()
    slot.refresh_from_db()
    assert booking.status == BookingStatus.CONFIRMED and slot.seats_left == 2
    assert refund.status == RefundStatus.FAILED and refund.customer_told_failed_at is not None
    told = [m for m in mail.outbox if m.to == ["ken@example.com"]]
    assert [m.subject for m in told] == ["Your refund did not go through: Tea ceremony"]
    assert ("Sakura Tea's refund of €5.00 of your €25.00 payment did not go through. Your booking still stands. "
            f"Sakura Tea has been alerted and will refund you; you can reach them at {merchant.support_email}.") in " ".join(
        told[0].body.split())
    starts = slot.starts_at.astimezone(merchant.zone)
    assert f"{starts:%H:%M} (Asia/Tokyo)" in told[0].body
    assert not told[0].attachments  # the booking stands: no calendar change
    page = " ".join(client.get(reverse("shop:booking", args=[booking.public_token])).content.decode().split())
    # The page lists the refund as failed and tells of no money back.
    assert "€5.00 — refunded by the merchant" in page and "(failed)" in page
    assert "Sakura Tea refunded" not in page and "Refunded</dt>" not in page
