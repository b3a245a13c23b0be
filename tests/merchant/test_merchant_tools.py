"""The merchant's tools: promotion codes made at Stripe for their own listings only, attendee
lists per time, and messages to a time's confirmed attendees sent once each."""

import csv
import datetime as dt
import io
import uuid

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from bookings import tasks
from bookings.models import AttendeeMessage, AttendeeMessageDelivery, BookingStatus, PromotionCode
from bookings.services import booking_refund
from bookings.services.messages import attendee_message_send
from payments import stripe_api
from stripe_emulator.control import ControlError
from tests.factories import make_booking, make_confirmed_booking, make_listing, make_merchant, make_slot
from tests.payments.stripe_flow import open_checkout

pytestmark = pytest.mark.django_db(transaction=True)


def on_account_of(promotion_or_listing) -> dict:
    """The SDK's request options reading a code's (or a listing's product's) Stripe objects where
    they live: on the merchant's connected account with Connect (`--connect`), else the platform."""
    account = getattr(promotion_or_listing, "stripe_account", None)
    if account is None:
        account = promotion_or_listing.stripe_product_account
    return {"stripe_account": account} if account else {}


def code_form(**overrides) -> dict:
    data = {"code": "SPRING20", "kind": "percent", "percent_off": "20", "amount_off": "", "currency": "eur",
            "max_redemptions": "", "expires_on": "", "request_key": str(uuid.uuid4())}
    data.update(overrides)
    return data


@pytest.fixture
def paris(db):
    return make_merchant(username="paris", timezone_name="Europe/Paris", support_email="atelier@example.com")


@pytest.fixture
def paris_listing(paris):
    return make_listing(merchant=paris, title="Wheel-throwing evening", price_amount=5500, currency="eur")


def test_a_merchant_makes_a_code_at_stripe_for_their_own_listings_only(client, stripe_emulator, paris, paris_listing):
    other = make_listing(merchant=make_merchant(username="other"), title="Kayak tour")
    client.force_login(paris.user)
    response = client.post(reverse("merchant:promotion_list"), code_form(max_redemptions="5"))
    assert response.status_code == 302

    promotion = PromotionCode.objects.get()
    assert (promotion.merchant, promotion.code, promotion.percent_off, promotion.max_redemptions) == (paris, "SPRING20", 20, 5)
    api = stripe_api.stripe_client().v1
    coupon = api.coupons.retrieve(promotion.stripe_coupon_id, params={"expand": ["applies_to"]},
                                  options=on_account_of(promotion))
    paris_listing.refresh_from_db()
    assert coupon.percent_off == 20 and coupon.applies_to.products == [paris_listing.stripe_product_id]
    assert paris_listing.stripe_product_account == promotion.stripe_account == paris.stripe_account_id
    assert api.promotion_codes.retrieve(promotion.stripe_promotion_code_id, options=on_account_of(promotion)).max_redemptions == 5

    page = client.get(reverse("merchant:promotion_list")).content.decode()
    assert "SPRING20" in page and "20% off" in page and "0 of 5" in page and "Wheel-throwing evening" in page
    assert "Kayak tour" not in page and other.stripe_product_id == ""


def test_a_code_works_on_its_merchants_listing_and_is_refused_on_anothers(client, stripe_emulator, paris, paris_listing):
    client.force_login(paris.user)
    client.post(reverse("merchant:promotion_list"), code_form(code="ATELIER50", percent_off="50"))
    client.logout()
    theirs = make_slot(listing=make_listing(merchant=make_merchant(username="harbour"), price_amount=4000))
    mine = make_slot(listing=paris_listing)

    booking, _ = open_checkout(client, theirs)
    with pytest.raises(ControlError) as refused:
        stripe_emulator.pay_session(booking.checkout_session_id, promotion_code="ATELIER50")
    # On the platform's one account Stripe finds the code but not for these items; with Connect the
    # other merchant's account has no such code at all.
    expected = "This code is invalid." if booking.stripe_account_id else "This code is not valid for the items in this order."
    assert refused.value.error["message"] == expected

    booking, _ = open_checkout(client, mine, quantity=2)
    paid = stripe_emulator.pay_session(booking.checkout_session_id, promotion_code="atelier50")
    assert paid["amount_total"] == 5500

    client.force_login(paris.user)
    page = client.get(reverse("merchant:promotion_list")).content.decode()
    assert PromotionCode.objects.get().times_redeemed == 1
    assert "1 <small" in page


def test_a_renamed_listing_renames_its_product_at_the_next_checkout(client, stripe_emulator, paris_listing):
    slot = make_slot(listing=paris_listing)
    open_checkout(client, slot)
    paris_listing.refresh_from_db()
    product_id = paris_listing.stripe_product_id
    paris_listing.title = "Pottery night"
    paris_listing.save()
    open_checkout(client, slot)
    paris_listing.refresh_from_db()
    assert paris_listing.stripe_product_id == product_id
    assert stripe_api.stripe_client().v1.products.retrieve(product_id, options=on_account_of(paris_listing)).name == "Pottery night"


def test_pausing_and_resuming_goes_through_stripe_and_another_merchant_gets_404(client, stripe_emulator, paris, paris_listing):
    client.force_login(paris.user)
    client.post(reverse("merchant:promotion_list"), code_form())
    promotion = PromotionCode.objects.get()
    url = reverse("merchant:promotion_active", args=[promotion.pk])
    api = stripe_api.stripe_client().v1

    intruder = make_merchant(username="intruder")
    client.force_login(intruder.user)
    assert client.post(url, {"active": "0"}).status_code == 404
    assert api.promotion_codes.retrieve(promotion.stripe_promotion_code_id, options=on_account_of(promotion)).active is True
    assert 'data-code="SPRING20"' not in client.get(reverse("merchant:promotion_list")).content.decode()

    client.force_login(paris.user)
    assert client.post(url, {"active": "0"}).status_code == 302
    assert api.promotion_codes.retrieve(promotion.stripe_promotion_code_id, options=on_account_of(promotion)).active is False
    promotion.refresh_from_db()
    assert promotion.active is False
    assert "Paused" in client.get(reverse("merchant:promotion_list")).content.decode()
    client.post(url, {"active": "1"})
    assert api.promotion_codes.retrieve(promotion.stripe_promotion_code_id, options=on_account_of(promotion)).active is True


def test_stripe_metadata_naming_a_merchant_gives_them_nothing(client, stripe_emulator, paris, paris_listing):
    """Ownership is the local record: a code at Stripe whose metadata names a merchant is not theirs."""
    api = stripe_api.stripe_client().v1
    coupon = api.coupons.create(params={"percent_off": 100, "metadata": {"merchant_id": str(paris.pk)}})
    api.promotion_codes.create(params={"coupon": coupon.id, "code": "FORGED", "metadata": {"merchant_id": str(paris.pk)}})
    client.force_login(paris.user)
    assert "FORGED" not in client.get(reverse("merchant:promotion_list")).content.decode()


@pytest.mark.parametrize(
    ("overrides", "sentence"),
    [
        ({"percent_off": "0"}, "A percentage off is a whole number from 1 to 100."),
        ({"percent_off": "101"}, "A percentage off is a whole number from 1 to 100."),
        ({"kind": "amount", "amount_off": "0"}, "An amount off must be more than zero."),
        ({"kind": "amount", "amount_off": "0.001"}, "EUR amounts have at most 2 decimals."),
        ({"code": "no spaces!"}, "A code is 3 to 40 letters and digits"),
        ({"max_redemptions": "0"}, "A limit is at least 1 use"),
    ],
)
def test_bad_codes_are_refused_with_a_sentence_and_nothing_is_made(client, stripe_emulator, paris, paris_listing,
                                                                   overrides, sentence):
    client.force_login(paris.user)
    response = client.post(reverse("merchant:promotion_list"), code_form(**overrides))
    assert response.status_code == 400
    assert sentence in response.content.decode()
    assert not PromotionCode.objects.exists()
    on_paris = {"stripe_account": paris.stripe_account_id} if paris.stripe_account_id else {}
    assert stripe_api.stripe_client().v1.coupons.list(options=on_paris).data == []


def test_an_amount_off_is_in_minor_units_of_the_listing_currency(client, stripe_emulator, paris, paris_listing):
    client.force_login(paris.user)
    client.post(reverse("merchant:promotion_list"), code_form(kind="amount", amount_off="12.50", code="TWELVE"))
    promotion = PromotionCode.objects.get()
    assert (promotion.amount_off, promotion.currency, promotion.percent_off) == (1250, "eur", None)
    coupon = stripe_api.stripe_client().v1.coupons.retrieve(promotion.stripe_coupon_id, options=on_account_of(promotion))
    assert (coupon.amount_off, coupon.currency) == (1250, "eur")


def test_the_expiry_is_the_end_of_the_day_on_the_merchants_clock(client, stripe_emulator):
    kolkata = make_merchant(username="kolkata", timezone_name="Asia/Kolkata")
    make_listing(merchant=kolkata, currency="inr", price_amount=90000)
    client.force_login(kolkata.user)
    today = timezone.now().astimezone(kolkata.zone).date()
    yesterday = today - dt.timedelta(days=1)
    refused = client.post(reverse("merchant:promotion_list"), code_form(expires_on=yesterday.isoformat(), currency="inr"))
    assert refused.status_code == 400 and "The expiry must be in the future." in refused.content.decode()

    assert client.post(reverse("merchant:promotion_list"), code_form(expires_on=today.isoformat(), currency="inr")).status_code == 302
    promotion = PromotionCode.objects.get()
    end_of_today = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(0), tzinfo=kolkata.zone)
    assert promotion.expires_at == end_of_today
    made = stripe_api.stripe_client().v1.promotion_codes.retrieve(promotion.stripe_promotion_code_id,
                                                                  options=on_account_of(promotion))
    assert made.expires_at == int(end_of_today.timestamp())
    page = client.get(reverse("merchant:promotion_list")).content.decode()
    assert end_of_today.astimezone(kolkata.zone).strftime("%-d %b %Y, 00:00") in page


def test_a_code_text_in_use_is_refused_before_stripe_is_asked(client, stripe_emulator, paris, paris_listing):
    client.force_login(paris.user)
    client.post(reverse("merchant:promotion_list"), code_form(code="SAME"))
    other = make_merchant(username="other")
    make_listing(merchant=other)
    client.force_login(other.user)
    response = client.post(reverse("merchant:promotion_list"), code_form(code="same"))
    assert response.status_code == 400 and "The code SAME is already in use. Please choose another." in response.content.decode()
    assert PromotionCode.objects.count() == 1


def test_a_form_sent_twice_makes_one_code(client, stripe_emulator, paris, paris_listing):
    client.force_login(paris.user)
    data = code_form(code="ONCE")
    client.post(reverse("merchant:promotion_list"), data)
    client.post(reverse("merchant:promotion_list"), data)  # refused: the code is taken by the first
    assert PromotionCode.objects.count() == 1
    listed = stripe_api.stripe_client().v1.promotion_codes.list(options=on_account_of(PromotionCode.objects.get()))
    assert len(listed.data) == 1


# Attendees


@pytest.fixture
def busy_slot(paris_listing, stripe_settings_unset):
    slot = make_slot(listing=paris_listing, capacity=8,
                     starts_at=dt.datetime(2031, 3, 30, 18, 30, tzinfo=paris_listing.merchant.zone))
    make_confirmed_booking(slot=slot, quantity=2, customer_name="Zoë Martin", customer_email="zoe@example.com")
    make_confirmed_booking(slot=slot, quantity=1, customer_name="Anaïs Petit", customer_email="anais@example.com")
    refunded = make_confirmed_booking(slot=slot, quantity=1, customer_name="Rémi Gone", customer_email="remi@example.com")
    booking_refund(booking=refunded)
    make_booking(slot=slot, quantity=1, customer_name="Paula Pending", customer_email="pending@example.com")
    mail.outbox.clear()  # the confirmations
    return slot


def test_the_attendee_list_shows_names_seats_and_status_confirmed_first(client, paris, busy_slot):
    client.force_login(paris.user)
    page = client.get(reverse("merchant:slot_attendees", args=[busy_slot.pk])).content.decode()
    assert page.index("Anaïs Petit") < page.index("Zoë Martin") < page.index("Rémi Gone")
    assert "Paula Pending" not in page
    assert "Sunday 30 March 2031, 18:30" in page and "Europe/Paris" in page
    assert '<strong data-testid="confirmed-seats">3</strong>' in page
    assert "Refund due" in page or "Refunded" in page


def test_the_attendee_csv_has_each_booking_with_the_time_on_the_merchants_clock(client, paris, busy_slot):
    client.force_login(paris.user)
    response = client.get(reverse("merchant:slot_attendees_export", args=[busy_slot.pk]))
    assert response["Content-Disposition"].endswith('-20310330-1830.csv"')
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [(r["name"], r["seats"], r["status"]) for r in rows][:2] == [("Anaïs Petit", "1", "Confirmed"), ("Zoë Martin", "2", "Confirmed")]
    assert {r["starts_at"] for r in rows} == {"2031-03-30 18:30"} and {r["timezone"] for r in rows} == {"Europe/Paris"}


def test_the_print_stylesheet_hides_the_dashboard_around_the_list(client):
    from django.conf import settings

    css = (settings.BASE_DIR / "static" / "css" / "site.css").read_text()
    printed = css[css.index("@media print"):]
    assert ".no-print" in printed and ".tabs" in printed and ".print-only" in printed


# Messages


def test_a_message_goes_once_to_each_confirmed_attendee_with_the_merchant_as_reply_to(client, paris, busy_slot, settings):
    client.force_login(paris.user)
    form = {"subject": "Bring an apron", "body": "Clay gets everywhere.\nSee you soon!", "submission_key": str(uuid.uuid4())}
    response = client.post(reverse("merchant:slot_message", args=[busy_slot.pk]), form)
    assert response.status_code == 302
    assert sorted(m.to[0] for m in mail.outbox) == ["anais@example.com", "zoe@example.com"]
    sent = mail.outbox[0]
    assert sent.subject == "Bring an apron" and sent.reply_to == ["atelier@example.com"]
    assert "Clay gets everywhere." in sent.body
    assert "Sunday 30 March 2031, 18:30 (Europe/Paris)" in sent.body

    client.post(reverse("merchant:slot_message", args=[busy_slot.pk]), form)  # sent again: the same form
    tasks.attendee_message_deliver(message_id=AttendeeMessage.objects.get().pk)  # the task, retried
    assert len(mail.outbox) == 2
    assert AttendeeMessage.objects.count() == 1
    page = client.get(reverse("merchant:slot_message", args=[busy_slot.pk])).content.decode()
    assert "Bring an apron" in page and "2 of 2" in page


def test_a_delivery_that_failed_is_sent_by_the_retry_and_only_it(paris, busy_slot, monkeypatch):
    from django.core.mail import EmailMultiAlternatives

    real_send = EmailMultiAlternatives.send
    failing = {"zoe@example.com"}

    def send(self, *args, **kwargs):
        if self.to[0] in failing:
            raise OSError("SMTP down")
        return real_send(self, *args, **kwargs)

    monkeypatch.setattr(EmailMultiAlternatives, "send", send)
    message, _ = attendee_message_send(slot=busy_slot, subject="Hello", body="Hi", submission_key=uuid.uuid4())
    assert [m.to[0] for m in mail.outbox] == ["anais@example.com"]
    assert AttendeeMessageDelivery.objects.filter(message=message, sent_at__isnull=True).count() == 1
    failing.clear()
    tasks.attendee_message_deliver(message_id=message.pk)
    tasks.attendee_message_deliver(message_id=message.pk)
    assert sorted(m.to[0] for m in mail.outbox) == ["anais@example.com", "zoe@example.com"]


def test_messages_are_refused_without_a_support_email_or_anyone_confirmed(client, paris, busy_slot, paris_listing):
    client.force_login(paris.user)
    empty = make_slot(listing=paris_listing)
    form = {"subject": "Hi", "body": "Hello", "submission_key": str(uuid.uuid4())}
    response = client.post(reverse("merchant:slot_message", args=[empty.pk]), form)
    assert response.status_code == 400 and "Nobody is confirmed for this time" in response.content.decode()
    paris.support_email = ""
    paris.save()
    response = client.post(reverse("merchant:slot_message", args=[busy_slot.pk]), {**form, "submission_key": str(uuid.uuid4())})
    assert response.status_code == 400 and "Add a support e-mail to your profile first" in response.content.decode()
    blank = client.post(reverse("merchant:slot_message", args=[busy_slot.pk]), {"subject": "", "body": "", "submission_key": ""})
    assert blank.status_code == 400 and "Write a subject." in blank.content.decode()
    assert not AttendeeMessage.objects.exists() and mail.outbox == []


def test_another_merchants_attendees_and_messages_are_404(client, paris, busy_slot):
    client.force_login(make_merchant(username="nosy").user)
    for name in ("slot_attendees", "slot_attendees_export", "slot_message"):
        assert client.get(reverse(f"merchant:{name}", args=[busy_slot.pk])).status_code == 404
    form = {"subject": "Hi", "body": "Hello", "submission_key": str(uuid.uuid4())}
    assert client.post(reverse("merchant:slot_message", args=[busy_slot.pk]), form).status_code == 404
    assert mail.outbox == [] and not AttendeeMessage.objects.exists()
    assert BookingStatus.CONFIRMED  # the slot's bookings are untouched
