"""The demo's outbox: each e-mail the site sends is a file of its own, readable as it is."""

import pytest
from django.core import mail
from django.core.mail import EmailMultiAlternatives, EmailMessage

from tests.payments.stripe_flow import deliver_events, open_checkout


@pytest.fixture
def outbox(settings, tmp_path):
    settings.EMAIL_BACKEND = "shop.outbox.OutboxEmailBackend"
    settings.EMAIL_FILE_PATH = str(tmp_path / "outbox")
    return tmp_path / "outbox"


def test_each_message_is_its_own_file_named_by_order_recipient_and_subject_with_a_readable_body(outbox):
    first = EmailMultiAlternatives(
        "Café crème à 09:30", "Bonjour Zoë,\nvotre séance commence à 09:30 (Europe/Paris).\n",
        "Slotbook <bookings@localhost>", ["zoe@example.com"], reply_to=["atelier@example.com"],
    )
    first.attach_alternative("<p>Bonjour <b>Zoë</b></p>", "text/html")
    second = EmailMessage("Second one", "Plain only.", "Slotbook <bookings@localhost>", ["ada@example.com"])

    assert mail.get_connection().send_messages([first, second]) == 2

    texts = sorted(outbox.glob("*.txt"))
    assert len(texts) == 2
    assert texts[0].name.endswith("-zoe@example.com-cafe-creme-a-09-30.txt")
    assert texts[1].name.endswith("-ada@example.com-second-one.txt")
    content = texts[0].read_text(encoding="utf-8")
    assert content.splitlines()[:3] == [
        "From: Slotbook <bookings@localhost>", "To: zoe@example.com", "Reply-To: atelier@example.com"
    ]
    assert "Subject: Café crème à 09:30" in content
    assert "\n\nBonjour Zoë,\nvotre séance commence à 09:30 (Europe/Paris).\n" in content
    assert f"HTML version: {texts[0].with_suffix('.html').name}" in content
    assert texts[0].with_suffix(".html").read_text(encoding="utf-8") == "<p>Bonjour <b>Zoë</b></p>"
    assert "HTML version" not in texts[1].read_text(encoding="utf-8")
    assert not texts[1].with_suffix(".html").exists()


def test_the_same_subject_to_the_same_person_twice_is_two_files(outbox):
    for _ in range(2):
        mail.send_mail("Again", "Same words.", None, ["ada@example.com"])

    assert len(list(outbox.glob("*-ada@example.com-again.txt"))) == 2


@pytest.mark.django_db
def test_a_booking_confirmation_lands_in_the_outbox_as_the_customer_reads_it(
    outbox, client, slot, stripe_emulator, django_capture_on_commit_callbacks
):
    booking, _ = open_checkout(client, slot, email="grace@example.com", name="Grace Hopper")
    stripe_emulator.pay_session(booking.checkout_session_id, email="grace@example.com", name="Grace Hopper")
    with django_capture_on_commit_callbacks(execute=True):
        deliver_events(client, stripe_emulator, types={"checkout.session.completed"})

    [text] = outbox.glob("*.txt")
    assert text.name.endswith(f"-grace@example.com-you-re-booked-{slot.listing.title.lower().replace(' ', '-')}.txt")
    content = text.read_text(encoding="utf-8")
    assert f"Subject: You're booked: {slot.listing.title}" in content
    assert "Grace" in content.split("\n\n", 1)[1]
