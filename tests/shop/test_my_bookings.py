"""My bookings and the customer's cancel and reschedule pages: only for the proven owner of the
e-mail address, times in each merchant's zone, the amount back in the booking's currency, the
policy shown before payment, bad input answered with a sentence and a 4xx, nothing changed."""

import datetime as dt
import html
import re
import time
import zoneinfo

import pytest
from django.core import mail, signing
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from bookings.models import Booking, BookingStatus, RefundReason, Slot
from shop.receipts import PROVEN_EMAIL_SESSION_KEY
from tests.factories import make_confirmed_booking, make_listing, make_merchant, make_slot
from tests.shop.customer_signin import ask_for_link, prove_email, signin_token_sent_to, use_link

pytestmark = pytest.mark.django_db(transaction=True)

PARIS = zoneinfo.ZoneInfo("Europe/Paris")
KOLKATA = zoneinfo.ZoneInfo("Asia/Kolkata")
ADA = "ada@example.com"


def text(response) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode())))


def long(wall: dt.datetime) -> str:
    """"l j F Y, H:i" of a wall-clock time, written from the wall clock alone."""
    return f"{wall:%A} {wall.day} {wall:%B} {wall.year}, {wall:%H:%M}"


@pytest.fixture
def two_merchants(db):
    paris = make_listing(
        merchant=make_merchant(timezone_name="Europe/Paris", display_name="Canal Tours"),
        title="Canal cruise",
        cancel_free_hours=24,
        cancel_late_keep_percent=20,
    )
    kolkata = make_listing(
        merchant=make_merchant(timezone_name="Asia/Kolkata", display_name="Spice Walks"),
        title="Spice walk",
        price_amount=150000,
        currency="inr",
    )
    return paris, kolkata


def test_my_bookings_shows_upcoming_soonest_first_then_past_across_merchants_in_each_merchants_zone(client, two_merchants):
    paris, kolkata = two_merchants
    year = timezone.now().year + 1
    later = make_confirmed_booking(
        slot=make_slot(listing=paris, starts_at=dt.datetime(year, 7, 14, 21, 0, tzinfo=PARIS)), customer_email="Ada@Example.com"
    )
    sooner = make_confirmed_booking(
        slot=make_slot(listing=kolkata, starts_at=dt.datetime(year, 2, 10, 2, 15, tzinfo=KOLKATA)), customer_email=ADA
    )
    past = make_confirmed_booking(slot=make_slot(listing=paris, starts_in=dt.timedelta(days=2)), customer_email=ADA)
    Slot.objects.filter(pk=past.slot_id).update(starts_at=dt.datetime(2025, 3, 1, 10, 0, tzinfo=PARIS))
    someone_else = make_confirmed_booking(slot=make_slot(listing=paris), customer_email="bob@example.com")
    prove_email(client, ADA)

    response = client.get(reverse("shop:my_bookings"))

    page = text(response)
    assert response.status_code == 200 and response["Cache-Control"] == "private, no-store"
    upcoming, past_part = page.split(" Past ")
    assert upcoming.index("Spice walk") < upcoming.index("Canal cruise")
    assert f"{long(dt.datetime(year, 2, 10, 2, 15))} (Asia/Kolkata)" in upcoming  # not 9 February, London's day
    assert f"{long(dt.datetime(year, 7, 14, 21, 0))} (Europe/Paris)" in upcoming
    assert "Saturday 1 March 2025, 10:00 (Europe/Paris)" in past_part
    for booking in (later, sooner):
        assert reverse("shop:booking_cancel", args=[booking.public_token]) in response.content.decode()
        assert reverse("shop:booking_reschedule", args=[booking.public_token]) in response.content.decode()
    assert reverse("shop:booking_cancel", args=[past.public_token]) not in response.content.decode()
    assert someone_else.public_token not in response.content.decode() and "bob@example.com" not in page


def test_without_a_proven_address_my_bookings_asks_for_a_link_that_comes_back_to_it(client, two_merchants):
    make_confirmed_booking(slot=make_slot(listing=two_merchants[0]), customer_email=ADA)

    response = client.get(reverse("shop:my_bookings"))

    assert response.status_code == 200
    assert "Canal cruise" not in text(response) and "E-mail me a sign-in link" in text(response)
    assert prove_email(client, ADA, next_path=reverse("shop:my_bookings"))["Location"] == reverse("shop:my_bookings")
    assert "Canal cruise" in text(client.get(reverse("shop:my_bookings")))


def test_signing_out_shows_nothing_of_the_address_again(client, two_merchants):
    make_confirmed_booking(slot=make_slot(listing=two_merchants[0]), customer_email=ADA)
    prove_email(client, ADA)
    assert "Canal cruise" in text(client.get(reverse("shop:my_bookings")))

    client.post(reverse("shop:receipts_signout"))

    after = client.get(reverse("shop:my_bookings"))
    assert "Canal cruise" not in text(after) and ADA not in text(after)
    assert PROVEN_EMAIL_SESSION_KEY not in client.session


def test_a_used_or_expired_link_opens_no_bookings(client, monkeypatch, two_merchants):
    make_confirmed_booking(slot=make_slot(listing=two_merchants[0]), customer_email=ADA)
    ask_for_link(client, ADA, next_path=reverse("shop:my_bookings"))
    token = signin_token_sent_to(ADA)
    assert use_link(Client(), token).status_code == 302

    used = use_link(client, token)
    assert used.status_code == 410 and "This sign-in link has already been used" in text(used)
    assert "Canal cruise" not in text(client.get(reverse("shop:my_bookings")))

    monkeypatch.setattr(signing.TimestampSigner, "timestamp", lambda self: signing.b62_encode(int(time.time()) - 16 * 60))
    ask_for_link(client, ADA)
    monkeypatch.undo()
    expired = use_link(client, signin_token_sent_to(ADA))
    assert expired.status_code == 410 and "This sign-in link has expired" in text(expired)
    assert "Canal cruise" not in text(client.get(reverse("shop:my_bookings")))


def test_the_cancel_page_shows_the_amount_back_and_the_deadline_in_the_merchants_zone_then_cancels(
    client, two_merchants, stripe_settings_unset
):
    paris, _ = two_merchants
    year = timezone.now().year + 1
    slot = make_slot(listing=paris, capacity=3, starts_at=dt.datetime(year, 3, 2, 10, 0, tzinfo=PARIS))
    booking = make_confirmed_booking(slot=slot, customer_email=ADA, quantity=2)  # paid 50.00
    prove_email(client, ADA)
    url = reverse("shop:booking_cancel", args=[booking.public_token])

    shown = client.get(url)

    page = text(shown)
    assert "You get back €50.00" in page
    assert f"before free cancellation ends on {long(dt.datetime(year, 3, 1, 10, 0))} (Europe/Paris)" in page
    assert 'name="expected_refund" value="5000"' in shown.content.decode()

    done = client.post(url, {"expected_refund": "5000"}, follow=True)

    booking.refresh_from_db()
    assert (booking.status, booking.ended_reason) == (BookingStatus.REFUND_DUE, RefundReason.CUSTOMER_CANCELLED)
    assert Slot.objects.get(pk=slot.pk).seats_left == 3
    assert "Your booking is cancelled. A refund of €50.00 is on its way." in text(done)
    assert "You cancelled this booking — refunded" in text(done)
    assert "You cancelled this booking, so it holds no seats." in text(done)

    again = client.post(url, {"expected_refund": "5000"})
    assert again.status_code == 409
    assert "This booking is already cancelled, or was never paid: there is nothing to cancel." in text(again)
    assert booking.refunds.count() == 1


def test_a_late_cancel_shows_what_the_merchant_keeps(client, two_merchants):
    paris, _ = two_merchants
    booking = make_confirmed_booking(slot=make_slot(listing=paris, starts_in=dt.timedelta(hours=5)), customer_email=ADA)
    prove_email(client, ADA)

    page = text(client.get(reverse("shop:booking_cancel", args=[booking.public_token])))

    assert "You get back €20.00 : free cancellation ended on" in page.replace("€20.00:", "€20.00 :")
    assert "so Canal Tours keeps €5.00 (20%)" in page


def test_a_changed_policy_since_the_page_was_shown_is_refused_with_the_new_amount(client, two_merchants):
    paris, _ = two_merchants
    booking = make_confirmed_booking(slot=make_slot(listing=paris, starts_in=dt.timedelta(hours=5)), customer_email=ADA)
    prove_email(client, ADA)

    response = client.post(reverse("shop:booking_cancel", args=[booking.public_token]), {"expected_refund": "2500"})

    assert response.status_code == 409
    assert "What you get back has changed since you looked: it is now €20.00. Nothing was cancelled" in text(response)
    booking.refresh_from_db()
    assert booking.status == BookingStatus.CONFIRMED


@pytest.mark.parametrize("view", ["shop:booking_cancel", "shop:booking_reschedule"])
def test_another_address_cannot_cancel_or_move_and_is_offered_a_link_to_the_owner(client, two_merchants, view):
    booking = make_confirmed_booking(slot=make_slot(listing=two_merchants[0]), customer_email=ADA)
    prove_email(client, "mallory@example.com")
    url = reverse(view, args=[booking.public_token])

    for response in (client.get(url), client.post(url, {"expected_refund": "2500", "slot": "1"})):
        assert response.status_code == 403
        assert "open only for the owner of the booking's e-mail address" in text(response)
    booking.refresh_from_db()
    assert booking.status == BookingStatus.CONFIRMED and booking.reschedules == 0


def test_bad_confirmations_get_a_sentence_and_400(client, two_merchants):
    booking = make_confirmed_booking(slot=make_slot(listing=two_merchants[0]), customer_email=ADA)
    prove_email(client, ADA)
    cancel = reverse("shop:booking_cancel", args=[booking.public_token])
    move = reverse("shop:booking_reschedule", args=[booking.public_token])

    for response, sentence in [
        (client.post(cancel, {"expected_refund": "lots"}), "Please confirm the cancellation with the button below."),
        (client.post(move, {}), "Choose the time to move your booking to."),
        (client.post(move, {"slot": "x\x00"}), "Choose one of the times listed."),
        (client.post(move, {"slot": str(make_slot(listing=two_merchants[1]).pk)}), "That is not one of this listing's times."),
    ]:
        assert response.status_code == 400 and sentence in text(response)
    booking.refresh_from_db()
    assert booking.status == BookingStatus.CONFIRMED and booking.reschedules == 0


def test_the_reschedule_page_lists_times_with_room_and_moves_the_booking(client, two_merchants):
    paris, _ = two_merchants
    year = timezone.now().year + 1
    old = make_slot(listing=paris, capacity=4, starts_at=dt.datetime(year, 5, 1, 9, 0, tzinfo=PARIS))
    roomy = make_slot(listing=paris, capacity=4, starts_at=dt.datetime(year, 5, 3, 19, 45, tzinfo=PARIS))
    tight = make_slot(listing=paris, capacity=4, seats_left=1, starts_at=dt.datetime(year, 5, 4, 9, 0, tzinfo=PARIS))
    booking = make_confirmed_booking(slot=old, quantity=2, customer_email=ADA)
    prove_email(client, ADA)
    url = reverse("shop:booking_reschedule", args=[booking.public_token])

    shown = client.get(url)

    assert long(dt.datetime(year, 5, 3, 19, 45)) in text(shown) and f'value="{roomy.pk}"' in shown.content.decode()
    assert f'value="{tight.pk}"' not in shown.content.decode()  # one seat for a booking of two
    assert f"You can move it until {long(dt.datetime(year, 4, 30, 9, 0))} (Europe/Paris)" in text(shown)

    full = client.post(url, {"slot": tight.pk})
    assert full.status_code == 409 and "That time has 1 free seat, and your booking needs 2." in text(full)

    moved = client.post(url, {"slot": roomy.pk}, follow=True)

    booking.refresh_from_db()
    assert booking.slot_id == roomy.pk
    assert f"Your booking is moved to {long(dt.datetime(year, 5, 3, 19, 45))} (Europe/Paris)." in text(moved)
    assert [m.subject for m in mail.outbox if "moved" in m.subject] == ["Your booking is moved: Canal cruise"]


def test_the_booking_page_offers_cancel_and_move_to_the_owner_and_a_link_to_anyone_else(client, two_merchants):
    booking = make_confirmed_booking(slot=make_slot(listing=two_merchants[0]), customer_email=ADA)
    page_url = reverse("shop:booking", args=[booking.public_token])

    stranger = client.get(page_url).content.decode()
    assert "E-mail me a link to cancel or move this booking" in stranger
    assert reverse("shop:booking_cancel", args=[booking.public_token]) not in stranger
    assert "Free cancellation until" in stranger and "after that, 20% of the payment is kept." in stranger

    prove_email(client, ADA)
    owner = client.get(page_url).content.decode()
    assert reverse("shop:booking_cancel", args=[booking.public_token]) in owner
    assert reverse("shop:booking_reschedule", args=[booking.public_token]) in owner


def test_the_policy_is_shown_before_payment_on_the_listing_and_in_the_confirmation_email(client, two_merchants):
    paris, _ = two_merchants
    make_slot(listing=paris)

    listing_page = text(client.get(reverse("shop:listing", args=[paris.slug])))

    assert "Free cancellation until 24 hours before the start; after that, 20% of the payment is kept." in listing_page
    none = make_listing(cancel_policy="none")
    make_slot(listing=none)
    assert "No online cancellation: to cancel or change a booking, write to the host." in text(
        client.get(reverse("shop:listing", args=[none.slug]))
    )

    from bookings.services import booking_follow_up

    booking = make_confirmed_booking(slot=make_slot(listing=paris, starts_at=dt.datetime(timezone.now().year + 1, 8, 9, 8, 0, tzinfo=PARIS)))
    booking_follow_up(booking_id=booking.pk)
    confirmation = next(m for m in mail.outbox if m.subject == "You're booked: Canal cruise")
    # The start is the only time of day the e-mail states (the cancel page gives the deadline's).
    assert "Cancellation: Free cancellation until 24 hours before the start; after that, 20% of the payment is kept." in (
        confirmation.body
    )


def test_checkouts_description_carries_the_policy(two_merchants):
    from payments.stripe_api import _slot_description

    paris, _ = two_merchants
    year = timezone.now().year + 1
    booking = make_confirmed_booking(slot=make_slot(listing=paris, starts_at=dt.datetime(year, 9, 4, 18, 0, tzinfo=PARIS)))

    description = _slot_description(Booking.objects.select_related("slot__listing__merchant").get(pk=booking.pk))

    assert description == (
        f"{long(dt.datetime(year, 9, 4, 18, 0))} (Europe/Paris) · Canal Tours · "
        f"Free cancellation until {long(dt.datetime(year, 9, 3, 18, 0))} (Europe/Paris); after that, 20% of the payment is kept."
    )


def test_my_bookings_shows_each_place_and_the_online_link_only_while_confirmed(client, stripe_settings_unset):
    merchant = make_merchant(timezone_name="Europe/Paris", display_name="Canal Tours")
    online = make_listing(
        merchant=merchant, title="Online tasting", place_kind="online", online_url="https://meet.example.com/tasting-7"
    )
    harbour = make_listing(merchant=merchant, title="Harbour walk", place_kind="address", place_text="Quai des Belges, Marseille")
    meeting = make_listing(merchant=merchant, title="Night walk", place_kind="meeting_point", place_text="Under the clock")
    confirmed = make_confirmed_booking(slot=make_slot(listing=online), customer_email=ADA)
    make_confirmed_booking(slot=make_slot(listing=harbour), customer_email=ADA)
    make_confirmed_booking(slot=make_slot(listing=meeting), customer_email=ADA)
    cancelled = make_confirmed_booking(slot=make_slot(listing=online, starts_in=dt.timedelta(days=9)), customer_email=ADA)
    Booking.objects.filter(pk=cancelled.pk).update(status=BookingStatus.REFUNDED, amount_refunded=cancelled.amount_paid)
    prove_email(client, ADA)

    response = client.get(reverse("shop:my_bookings"))

    body = response.content.decode()
    rows = {
        booking: text_of(body.split(f'data-testid="my-booking-{booking.pk}"')[1].split("</li>")[0])
        for booking in (confirmed, cancelled)
    }
    assert "Online: https://meet.example.com/tasting-7" in rows[confirmed]
    assert "Online" in rows[cancelled] and "meet.example.com" not in rows[cancelled]
    assert body.count("https://meet.example.com/tasting-7") == 2  # the confirmed row's link and its text
    page = text(response)
    assert "Quai des Belges, Marseille · map" in page and "openstreetmap.org/search?query=Quai+des+Belges" in body
    assert "Meeting point: Under the clock" in page


def text_of(fragment: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", fragment)))


def test_a_booking_whose_refund_failed_says_so_in_my_bookings_with_what_is_owed(client, two_merchants):
    """Cancelled late by its customer under terms keeping 20%: €20.00 of €25.00 was owed back and
    that refund failed. The list says it did not go through, for €20.00, not the €25.00 paid."""
    from bookings.models import Refund, RefundStatus

    paris, _ = two_merchants
    booking = make_confirmed_booking(slot=make_slot(listing=paris, starts_in=dt.timedelta(hours=3)), customer_email=ADA)
    Booking.objects.filter(pk=booking.pk).update(
        status=BookingStatus.REFUND_FAILED, ended_reason=RefundReason.CUSTOMER_CANCELLED,
        cancelled_by_customer_at=timezone.now(),
    )
    Refund.objects.create(booking=booking, amount=2000, reason=RefundReason.CUSTOMER_CANCELLED,
                          status=RefundStatus.FAILED, stripe_refund_id="re_failed_1", failure_reason="expired_or_canceled_card")
    standing = make_confirmed_booking(slot=make_slot(listing=paris), customer_email=ADA)
    prove_email(client, ADA)

    response = client.get(reverse("shop:my_bookings"))
    page = text(response)

    assert reverse("shop:booking", args=[standing.public_token]) in response.content.decode()
    row = page[page.index("Cancelled by you"):]
    assert "The refund of €20.00 did not go through. Canal Tours has been alerted and will refund you." in row
    assert "€25.00 did not go through" not in page
    assert page.count("did not go through") == 1  # not on the booking that stands
