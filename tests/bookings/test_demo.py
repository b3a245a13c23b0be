"""`manage.py loaddemo`: two merchants with listings, slots and a few bookings, loaded once."""

import pytest
from django.core import mail
from django.core.management import call_command
from django.urls import reverse

from bookings.demo import DEMO_PASSWORD
from bookings.models import Booking, BookingStatus, Listing, Merchant, Slot

pytestmark = pytest.mark.django_db


def counts() -> tuple[int, ...]:
    return tuple(model.objects.count() for model in (Merchant, Listing, Slot, Booking))


def test_loading_the_demo_twice_adds_nothing_the_second_time(capsys):
    call_command("loaddemo", days=5)
    first = counts()
    call_command("loaddemo", days=5)

    assert counts() == first
    assert first[0] == 2 and first[3] > 0
    assert "0 merchants, 0 listings, 0 slots, 0 bookings created" in capsys.readouterr().out


def test_demo_bookings_are_confirmed_through_the_state_machine_and_e_mail_no_one(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        call_command("loaddemo", days=5)

    bookings = Booking.objects.select_related("slot")
    assert {b.status for b in bookings} == {BookingStatus.CONFIRMED}
    for slot in Slot.objects.filter(bookings__isnull=False).distinct():
        sold = sum(b.quantity for b in slot.bookings.all())
        assert slot.capacity - slot.seats_left == sold
    assert mail.outbox == []


def test_each_demo_merchant_sees_a_dashboard_with_only_their_own_bookings(client):
    call_command("loaddemo", days=5)

    for merchant in Merchant.objects.all():
        assert client.login(username=merchant.user.username, password=DEMO_PASSWORD)
        html = client.get(reverse("bookings:booking_list")).content.decode()
        theirs = Booking.objects.filter(slot__listing__merchant=merchant)
        others = Booking.objects.exclude(slot__listing__merchant=merchant)
        assert theirs.exists()
        assert all(f"#{b.pk}<" in html for b in theirs)
        assert not any(f"#{b.pk}<" in html for b in others)
        assert "seats sold" in client.get(reverse("bookings:dashboard")).content.decode()
