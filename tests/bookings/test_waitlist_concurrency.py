"""The waitlist under real concurrency (threads, each with its own connection; run on PostgreSQL
too): customers refused as sold out are offered the waitlist, a seat freed goes to the first in
line at once and is e-mailed once, and seats freed at the same moment are never offered twice."""

import re

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from bookings import selectors
from bookings.models import Booking, BookingStatus, Hold, HoldKind, Slot, WaitlistEntry, WaitlistStatus
from bookings.services import booking_expire, booking_start, waitlist_join
from payments.checkout import checkout_cancel
from tests.connect_mode import checkout_sessions_everywhere
from tests.concurrency import run_concurrently
from tests.factories import make_confirmed_booking, make_slot

pytestmark = pytest.mark.django_db(transaction=True)

W = WaitlistStatus


def sessions_created() -> int:
    """Checkout Sessions the (freshly reset) emulator holds, on whichever accounts they were made."""
    return checkout_sessions_everywhere()


def offer_emails() -> list:
    return [m for m in mail.outbox if m.subject.startswith("Seats are free for you")]


def test_50_checkout_starts_for_10_seats_reach_stripe_10_times_and_the_40_refused_are_offered_the_waitlist(
    stripe_emulator, settings
):
    settings.STRIPE_MAX_NETWORK_RETRIES = 2
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "checkout_per_ip": "1000/10m"}
    slot = make_slot(capacity=10)
    book_url = reverse("shop:checkout_create", args=[slot.listing.slug])
    before = sessions_created()

    def start(i: int):
        data = {"slot": slot.pk, "quantity": 1, "customer_name": f"Buyer {i}", "customer_email": f"buyer{i}@example.com"}
        response = Client().post(book_url, data)
        return i, response.status_code, response.headers.get("Location", ""), response.content.decode()

    results = run_concurrently([lambda i=i: start(i) for i in range(50)], timeout=180)

    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors[:3]
    to_stripe = [r for r in results if r[1] == 303]
    refused = [r for r in results if r[1] == 409]
    assert len(to_stripe) == 10 and len(refused) == 40, sorted({r[1] for r in results})
    assert all("/c/pay/cs_test_" in location for _, _, location, _ in to_stripe)
    assert sessions_created() - before == 10
    join_url = reverse("shop:waitlist_join", args=[slot.listing.slug])
    for i, _, _, page in refused:
        assert "This time is sold out for now" in page
        assert "waitlist and we will e-mail you if seats free up" in page
        form = re.search(r'<form method="post" action="' + re.escape(join_url) + r'".*?</form>', page, re.S).group(0)
        assert f'value="buyer{i}@example.com"' in form and f'name="slot" value="{slot.pk}"' in form
    slot.refresh_from_db()
    assert (slot.seats_sold, slot.seats_held, slot.seats_left) == (0, 10, 0)

    # Three of the refused join, in turn; one of the ten cancels on Checkout.
    waiting = [i for i, *_ in refused[:3]]
    for i in waiting:
        Client().post(join_url, {"slot": slot.pk, "quantity": 1, "customer_name": f"Buyer {i}", "customer_email": f"buyer{i}@example.com"})
    assert WaitlistEntry.objects.filter(slot=slot, status=W.WAITING).count() == 3
    cancelling = Booking.objects.filter(slot=slot, status=BookingStatus.PENDING).order_by("pk").first()

    checkout_cancel(booking=cancelling)

    cancelling.refresh_from_db()
    assert cancelling.status == BookingStatus.EXPIRED
    first = WaitlistEntry.objects.get(customer_email=f"buyer{waiting[0]}@example.com")
    assert first.status == W.OFFERED and first.offer_hold.kind == HoldKind.OFFER
    assert WaitlistEntry.objects.filter(slot=slot, status=W.WAITING).count() == 2
    [email] = offer_emails()
    assert email.to == [f"buyer{waiting[0]}@example.com"]
    slot.refresh_from_db()
    assert (slot.seats_sold, slot.seats_held, slot.seats_left) == (0, 10, 0)  # the freed seat is now the offer's


def test_seats_freed_at_the_same_moment_are_each_offered_once(stripe_emulator):
    slot = make_slot(capacity=8)
    pending = [
        booking_start(slot=slot, quantity=1, customer_email=f"h{i}@example.com", customer_name=f"H{i}") for i in range(4)
    ]
    confirmed = [make_confirmed_booking(slot=slot) for _ in range(4)]
    entries = [
        waitlist_join(slot=slot, quantity=q, customer_email=f"w{i}@example.com", customer_name=f"W{i}")
        for i, q in enumerate([1, 2, 1, 1, 3, 1, 1])
    ]

    from bookings.services import booking_refund

    frees = [lambda b=b: booking_expire(booking=b) for b in pending] + [lambda b=b: booking_refund(booking=b) for b in confirmed]
    results = run_concurrently(frees, timeout=120)

    assert not [r for r in results if isinstance(r, BaseException)], results
    slot = Slot.objects.get(pk=slot.pk)
    offered = list(WaitlistEntry.objects.filter(slot=slot, status=W.OFFERED).order_by("pk"))
    still_waiting = list(WaitlistEntry.objects.filter(slot=slot, status=W.WAITING))
    # Which entries are offered depends on the order the seats came free (one at a time, a party
    # of 3 may be passed over); what never varies: every freed seat is offered or left free only
    # when nobody waiting fits, each entry holds one offer, and held seats are the open offers'.
    assert slot.seats_sold == 0 and slot.seats_held + slot.seats_left == 8
    assert sum(e.quantity for e in offered) == slot.seats_held
    assert all(e.quantity > slot.seats_left for e in still_waiting)
    assert len(offered) + len(still_waiting) == len(entries)
    assert selectors.seats_offered_per_slot() == {slot.pk: slot.seats_held}
    assert selectors.seats_held_per_slot() == {slot.pk: slot.seats_held}
    assert not selectors.waitlist_entries_offered_twice().exists()
    assert Hold.objects.filter(slot=slot, kind=HoldKind.OFFER).count() == len(offered)
    assert sorted(m.to[0] for m in offer_emails()) == sorted(e.customer_email for e in offered)
    assert offered[0].customer_email == "w0@example.com"  # the first in line fits any freed seat


def test_an_offer_taken_up_while_it_lapses_and_while_its_customer_leaves_ends_exactly_once(stripe_emulator):
    import datetime as dt

    from django.utils import timezone

    from bookings.services import booking_start_from_offer, waitlist_leave, waitlist_offers_lapse

    for _ in range(5):
        slot = make_slot(capacity=1)
        holder = booking_start(slot=slot, quantity=1, customer_email="h@example.com", customer_name="H")
        entry = waitlist_join(slot=slot, quantity=1, customer_email="w@example.com", customer_name="W")
        nxt = waitlist_join(slot=slot, quantity=1, customer_email="n@example.com", customer_name="N")
        booking_expire(booking=holder)
        entry.refresh_from_db()
        at = entry.offer_hold.expires_at

        def take():
            return booking_start_from_offer(entry=entry, customer_name="W")

        results = run_concurrently(
            [take, lambda: waitlist_offers_lapse(now=at), lambda: waitlist_leave(entry=entry)], timeout=60
        )

        slot = Slot.objects.get(pk=slot.pk)
        entry.refresh_from_db()
        nxt.refresh_from_db()
        assert (slot.seats_held, slot.seats_left) == (1, 0), results
        assert selectors.seats_held_per_slot().get(slot.pk) == 1
        if entry.status == W.BOOKED:
            assert nxt.status == W.WAITING
        else:
            assert entry.status in (W.LEFT, W.LAPSED) and nxt.status == W.OFFERED
        assert timezone.now() - at < dt.timedelta(hours=1)
