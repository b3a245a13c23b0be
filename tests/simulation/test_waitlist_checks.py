"""The simulation's checks of the waitlist can fail: a site made to hold a customer's seats by
their offer and their checkout at once, to leave an offer's seats held for nobody, to send an
offer e-mail twice, to leave freed seats unoffered while someone waits, or to keep an offer past
its end, is reported by them (mutation tests); the same written-out scenarios pass on the real
site, through its join view, the offer e-mail's link and its leave link."""

import re

import pytest
from django.core import mail

from bookings import notifications
from bookings.models import Booking, BookingStatus, Hold, HoldEnd, HoldKind, WaitlistEntry, WaitlistStatus
from bookings.services import lifecycle, waitlist
from payments import reconcile
from tests.conftest import TEST_WEBHOOK_SECRET
from tests.simulation.runner import OFFER_SUBJECT, World
from tests.simulation.scenario import Customer, Scenario, SlotTime

pytestmark = pytest.mark.django_db(transaction=True)


def _customer(index: int, method: str = "pay", webhooks: str = "on_time") -> Customer:
    return Customer(index=index, slot=0, quantity=1, method=method, checkout_webhooks=webhooks,
                    refund_webhooks="on_time", pays_again_after_decline=False)


def _scenario(customers, steps, capacity: int = 1) -> Scenario:
    return Scenario(seed=-1, capacities=[capacity], customers=customers, status_check_seconds=0, steps=steps,
                    zone="America/New_York", slot_times=[SlotTime("ordinary", 18, 30)])


def _play(stripe_emulator, scenario: Scenario):
    world = World(stripe_emulator, TEST_WEBHOOK_SECRET)
    with world.running():
        return world.play(scenario)


def _violations(outcome) -> str:
    return "\n".join(re.sub(r"^\[step \d+\] ", "", v) for v in outcome.violations)


def _offer_taken_up(htmx: bool = True) -> Scenario:
    """c1 holds the one seat; c2 is told it is sold out and joins the waitlist; c1 cancels on
    Checkout; c2 gets the offer e-mail, opens its link and pays; c2's webhook arrives."""
    customers = [_customer(1, method="abandon"), _customer(2)]
    steps = [(("open", 1),), (("open", 2),), (("join", 2, htmx),), (("cancel", 1),), (("offer", 2, "pay"),),
             (("deliver", 2, 1, False, "checkout"),)]
    return _scenario(customers, steps)


def _offer_left_to_the_next() -> Scenario:
    """c2 and c3 wait for the one seat c1 holds; c1 cancels; c2 is offered it and leaves the
    waitlist from the e-mail; the seat passes to c3, who pays."""
    customers = [_customer(1, method="abandon"), _customer(2), _customer(3)]
    steps = [(("open", 1),), (("open", 2),), (("open", 3),), (("join", 2, False),), (("join", 3, True),),
             (("cancel", 1),), (("offer", 2, "leave"),), (("offer", 3, "pay"),), (("deliver", 3, 1, False, "checkout"),)]
    return _scenario(customers, steps)


def _offer_lapsing() -> Scenario:
    """c2 waits; the merchant adds a seat, offered to c2, who never opens the e-mail; 31 minutes pass."""
    customers = [_customer(1), _customer(2)]
    steps = [(("open", 1),), (("open", 2),), (("join", 2, True),), (("capacity", 0, 1),), (("wait", 1860, 40),)]
    return _scenario(customers, steps)


@pytest.mark.parametrize("scenario", [_offer_taken_up, _offer_left_to_the_next, _offer_lapsing])
def test_the_written_out_waitlist_scenarios_keep_every_invariant(stripe_emulator, scenario):
    outcome = _play(stripe_emulator, scenario())

    assert outcome.violations == []


def test_the_real_site_offers_a_cancelled_seat_and_the_offer_is_paid_for(stripe_emulator):
    outcome = _play(stripe_emulator, _offer_taken_up(htmx=False))

    booking = Booking.objects.get(customer_email="c2@sim.example")
    entry = WaitlistEntry.objects.get(customer_email="c2@sim.example")
    assert (booking.status, entry.status, entry.booking_id) == (BookingStatus.CONFIRMED, WaitlistStatus.BOOKED, booking.pk)
    assert Hold.objects.get(pk=entry.offer_hold_id).end == HoldEnd.CONVERTED
    assert [m.to for m in mail.outbox if m.subject == OFFER_SUBJECT] == [["c2@sim.example"]]
    assert (outcome.totals.waitlist_joins, outcome.totals.offers_made, outcome.totals.offers_booked) == (1, 1, 1)
    assert "c2 cannot start checkout (409)" in "\n".join(outcome.trace)


def test_the_real_site_passes_a_left_offer_to_the_next_in_line(stripe_emulator):
    outcome = _play(stripe_emulator, _offer_left_to_the_next())

    statuses = dict(WaitlistEntry.objects.values_list("customer_email", "status"))
    assert statuses == {"c2@sim.example": WaitlistStatus.LEFT, "c3@sim.example": WaitlistStatus.BOOKED}
    assert Booking.objects.get(customer_email="c3@sim.example").status == BookingStatus.CONFIRMED
    assert (outcome.totals.offers_made, outcome.totals.offers_left, outcome.totals.offer_emails) == (2, 1, 2)


def test_the_real_site_lapses_an_offer_within_a_minute(stripe_emulator):
    outcome = _play(stripe_emulator, _offer_lapsing())

    entry = WaitlistEntry.objects.get()
    assert (entry.status, entry.offer_hold.end) == (WaitlistStatus.LAPSED, HoldEnd.LAPSED)
    assert (entry.offer_hold.ended_at - entry.offer_hold.expires_at).total_seconds() <= 60
    assert outcome.totals.capacity_increases == 1


def test_seats_held_by_an_offer_and_its_checkout_at_once_are_a_violation(stripe_emulator, monkeypatch):
    """Taking up an offer opens the checkout hold but leaves the offer's hold open too."""

    def take_over_keeping_the_offer(*, booking, offer, expires_at):
        return Hold.objects.create(slot_id=offer.slot_id, booking=booking, kind=HoldKind.CHECKOUT,
                                   quantity=offer.quantity, expires_at=expires_at)

    monkeypatch.setattr(lifecycle, "hold_take_over_offer", take_over_keeping_the_offer)

    violations = _violations(_play(stripe_emulator, _offer_taken_up()))

    assert "during the run: c2's 1 seat(s) are held by their offer and by their checkout at once" in violations


def test_an_offer_held_for_nobody_in_line_is_a_violation(stripe_emulator, monkeypatch):
    """Leaving the waitlist marks the entry left but never ends its offer's hold: the seat stays
    promised to someone who is gone, while c3 waits for it."""

    def end_forgetting_the_hold(entry, *, status, now, pass_on=True):
        WaitlistEntry.objects.filter(pk=entry.pk).update(status=status, ended_at=now)
        entry.status, entry.ended_at = status, now

    monkeypatch.setattr(waitlist, "_offer_end", end_forgetting_the_hold)

    violations = _violations(_play(stripe_emulator, _offer_left_to_the_next()))

    assert re.search(r"during the run: an open offer of 1 seat\(s\) \(hold \d+\) is held for c2 \(left\), "
                     r"not for a customer offered seats", violations)


def test_an_offer_e_mailed_twice_is_a_violation(stripe_emulator, monkeypatch):
    """The offer e-mail goes out, and again without its claim (a retried task sending blindly)."""
    send = notifications.waitlist_offer_send

    def send_twice(*, entry):
        sent = send(entry=entry)
        WaitlistEntry.objects.filter(pk=entry.pk).update(offer_email_sent_at=None)
        send(entry=entry)
        return sent

    monkeypatch.setattr(notifications, "waitlist_offer_send", send_twice)

    violations = _violations(_play(stripe_emulator, _offer_taken_up()))

    assert "during the run: c2 got 2 offer e-mail(s) for 1 offer(s) sent" in violations


def test_freed_seats_not_offered_to_the_waitlist_are_a_violation(stripe_emulator, monkeypatch):
    """Seats freed by a cancel on Checkout (or added by the merchant) are never offered."""
    monkeypatch.setattr(waitlist, "waitlist_offers_make", lambda **kwargs: [])

    violations = _violations(_play(stripe_emulator, _offer_taken_up()))

    assert "during the run: c2 still waits for 1 seat(s) while slot 0 has 1 free" in violations


def test_an_offer_outliving_its_end_is_a_violation(stripe_emulator, monkeypatch):
    """Nothing scheduled ends offers whose time is up."""
    monkeypatch.setattr(reconcile, "waitlist_offers_lapse", lambda **kwargs: 0)

    violations = _violations(_play(stripe_emulator, _offer_lapsing()))

    assert re.search(r"during the run: c2's waitlist offer of 1 seat\(s\) is still open (\d+) s after its end", violations)
