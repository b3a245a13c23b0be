import json
import re
import time

import pytest
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from bookings.models import BookingStatus
from payments.models import StripeEvent
from tests.payments.webhook_signing import event_payload, session_object, stripe_signature

pytestmark = pytest.mark.django_db

SECRET = "whsec_webhook_tests"
URL = reverse("payments:stripe_webhook")


@pytest.fixture(autouse=True)
def webhook_secret(settings):
    settings.STRIPE_WEBHOOK_SECRETS = [SECRET]


def post(client, payload: bytes, signature: str | None):
    headers = {"HTTP_STRIPE_SIGNATURE": signature} if signature is not None else {}
    return client.post(URL, data=payload, content_type="application/json", **headers)


def test_signed_completed_session_confirms_the_booking(client, booking, django_capture_on_commit_callbacks):
    payload = event_payload("checkout.session.completed", session_object(booking))

    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, payload, stripe_signature(payload, SECRET))

    booking.refresh_from_db()
    assert response.status_code == 200
    assert booking.status == BookingStatus.CONFIRMED
    assert StripeEvent.objects.get(event_id="evt_test_1").status == StripeEvent.Status.PROCESSED
    assert len(mail.outbox) == 1


def test_a_repeated_event_id_is_answered_200_and_changes_nothing(client, booking, django_capture_on_commit_callbacks):
    payload = event_payload("checkout.session.completed", session_object(booking))
    with django_capture_on_commit_callbacks(execute=True):
        post(client, payload, stripe_signature(payload, SECRET))
        response = post(client, payload, stripe_signature(payload, SECRET))

    booking.slot.refresh_from_db()
    assert response.status_code == 200
    assert response.content == b"duplicate"
    assert booking.slot.seats_left == booking.slot.capacity - 1
    assert len(mail.outbox) == 1
    assert StripeEvent.objects.count() == 1


@pytest.mark.parametrize(
    "signature_for",
    [
        pytest.param(lambda payload: stripe_signature(payload + b" ", SECRET), id="tampered_body"),
        pytest.param(lambda payload: stripe_signature(payload, "whsec_someone_else"), id="wrong_secret"),
        pytest.param(lambda payload: stripe_signature(payload, SECRET, timestamp=int(time.time()) - 600), id="stale"),
        pytest.param(lambda payload: None, id="missing_header"),
        pytest.param(lambda payload: "t=abc,v1=zz", id="garbled_header"),
    ],
)
def test_a_request_not_signed_by_stripe_is_refused_and_writes_nothing(client, booking, signature_for):
    payload = event_payload("checkout.session.completed", session_object(booking))

    response = post(client, payload, signature_for(payload))

    booking.refresh_from_db()
    assert response.status_code == 400
    assert booking.status == BookingStatus.PENDING
    assert not StripeEvent.objects.exists()


@pytest.mark.parametrize("odd", ["é", "\u00ff", "\x80", "\u2028"])
def test_a_signature_header_with_a_non_ascii_character_is_refused_with_a_sentence(client, booking, odd):
    payload = event_payload("checkout.session.completed", session_object(booking))
    signature = stripe_signature(payload, SECRET)

    response = post(client, payload, signature[:-1] + odd)

    assert response.status_code == 400
    assert response.content.decode() == "Webhook refused: the Stripe-Signature header is not ASCII."
    assert not StripeEvent.objects.exists()


def test_a_signed_body_that_is_not_json_is_refused(client):
    payload = b"{not json"

    response = post(client, payload, stripe_signature(payload, SECRET))

    assert response.status_code == 400
    assert not StripeEvent.objects.exists()


def test_a_signed_json_body_that_is_not_an_event_is_refused(client):
    payload = b'{"hello": "world"}'

    response = post(client, payload, stripe_signature(payload, SECRET))

    assert response.status_code == 400


def test_every_secret_of_a_rotation_is_accepted(client, settings, booking):
    settings.STRIPE_WEBHOOK_SECRETS = ["whsec_new_one", SECRET]
    payload = event_payload("checkout.session.completed", session_object(booking))

    response = post(client, payload, stripe_signature(payload, SECRET))

    assert response.status_code == 200


def test_only_post_is_allowed(client):
    assert client.get(URL).status_code == 405


def test_an_event_type_the_site_does_not_use_is_ignored(client):
    payload = event_payload("customer.created", {"id": "cus_1", "object": "customer"})

    response = post(client, payload, stripe_signature(payload, SECRET))

    assert response.status_code == 200
    assert StripeEvent.objects.get().status == StripeEvent.Status.IGNORED


def test_an_ignored_event_is_recorded_with_its_outcome_in_one_write_and_once(client):
    payload = event_payload("customer.created", {"id": "cus_1", "object": "customer"}, event_id="evt_ignored_1")

    with CaptureQueriesContext(connection) as queries:
        response = post(client, payload, stripe_signature(payload, SECRET))
    writes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith(("INSERT", "UPDATE", "DELETE"))]
    again = post(client, payload, stripe_signature(payload, SECRET))

    assert [sql.split(" (", 1)[0] for sql in writes] == ['INSERT INTO "bookings_stripeevent"']
    assert response.status_code == again.status_code == 200
    event = StripeEvent.objects.get()
    assert (event.event_id, event.status, event.attempts) == ("evt_ignored_1", StripeEvent.Status.IGNORED, 1)
    assert event.processed_at is not None and event.processed_at == event.claimed_at


def statement_shape(sql: str) -> str:
    """`VERB table` of a statement: what it does to which rows."""
    verb = sql.split(" ", 1)[0]
    table = re.search(r'(?:FROM|UPDATE|INTO) "(\w+)"', sql).group(1)
    return f"{verb} {table}"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("event_type", ["checkout.session.completed", "checkout.session.expired"])
def test_a_checkout_event_is_recorded_with_its_outcome_in_the_transaction_that_settles_its_booking(client, event_type):
    from bookings.models import Booking
    from bookings.services import booking_start
    from tests.factories import make_slot

    slot = make_slot(capacity=3)
    booking = booking_start(slot=slot, quantity=2, customer_email="ada@example.com", customer_name="Ada")
    Booking.objects.filter(pk=booking.pk).update(checkout_session_id="cs_test_one_commit")
    booking.refresh_from_db()
    paid = event_type == "checkout.session.completed"
    obj = session_object(booking) if paid else session_object(booking, status="expired", payment_status="unpaid")
    payload = event_payload(event_type, obj, event_id="evt_one_commit")

    with CaptureQueriesContext(connection) as queries:
        response = post(client, payload, stripe_signature(payload, SECRET))

    statements = [q["sql"].split(" ", 1)[0] for q in queries.captured_queries]
    event_writes = [q["sql"].split(" (", 1)[0] for q in queries.captured_queries if '"bookings_stripeevent"' in q["sql"]]
    assert response.status_code == 200 and response.content == b"processed"
    # One commit for the event and the booking; the event is written once, already done. (With
    # no broker the confirmation e-mail is sent in this process after it, claimed by one UPDATE.)
    assert statements.count("COMMIT") == 1
    assert statements.index("BEGIN") < statements.index("INSERT") < statements.index("COMMIT")
    assert event_writes == ['INSERT INTO "bookings_stripeevent"']
    # The event's account is checked on the booking the settlement reads, not by a read of its own.
    booking_reads = [i for i, q in enumerate(queries.captured_queries[:statements.index("COMMIT")])
                     if q["sql"].startswith("SELECT") and 'FROM "bookings_booking"' in q["sql"]]
    assert statements.index("BEGIN") < booking_reads[0]
    assert len(booking_reads) == 1  # the settlement's own (FOR UPDATE; SQLite locks the database instead)
    assert "FOR UPDATE" in queries.captured_queries[booking_reads[0]]["sql"] or connection.vendor == "sqlite"
    # Nothing in it is caught and carried on from, so no savepoint: every statement is the work's.
    in_transaction = queries.captured_queries[statements.index("BEGIN") + 1:statements.index("COMMIT")]
    settled = [statement_shape(q["sql"]) for q in in_transaction]
    assert settled == [
        "INSERT bookings_stripeevent",
        "SELECT bookings_booking",
        "SELECT bookings_hold",
        *(
            ["UPDATE bookings_slot", "UPDATE bookings_hold"]  # the held seats sold
            if paid
            # the held seats free, and nobody waits for them: the time is neither read nor locked
            else ["UPDATE bookings_hold", "UPDATE bookings_slot", "SELECT bookings_waitlistentry"]
        ),
        "UPDATE bookings_booking",
    ]
    event = StripeEvent.objects.get()
    assert (event.event_id, event.status, event.attempts) == ("evt_one_commit", StripeEvent.Status.PROCESSED, 1)
    booking.refresh_from_db()
    slot.refresh_from_db()
    if paid:
        assert booking.status == BookingStatus.CONFIRMED and (slot.seats_left, slot.seats_held) == (1, 0)
        assert [m.to for m in mail.outbox] == [["ada@example.com"]]
    else:
        assert booking.status == BookingStatus.EXPIRED and (slot.seats_left, slot.seats_held) == (3, 0)
    assert post(client, payload, stripe_signature(payload, SECRET)).content == b"duplicate"


def test_an_expired_session_expires_the_pending_booking(client, booking):
    obj = session_object(booking, status="expired", payment_status="unpaid", payment_intent=None)
    payload = event_payload("checkout.session.expired", obj)

    response = post(client, payload, stripe_signature(payload, SECRET))

    booking.refresh_from_db()
    assert response.status_code == 200
    assert booking.status == BookingStatus.EXPIRED


def test_an_expired_session_offers_its_freed_seats_to_the_first_in_line(client, django_capture_on_commit_callbacks):
    from bookings.models import Booking, WaitlistEntry
    from bookings.services import booking_start, waitlist_join
    from tests.factories import make_slot

    slot = make_slot(capacity=2)
    holder = booking_start(slot=slot, quantity=2, customer_email="holder@example.com", customer_name="Holder")
    Booking.objects.filter(pk=holder.pk).update(checkout_session_id="cs_test_freed")
    holder.refresh_from_db()
    grace = waitlist_join(slot=slot, quantity=2, customer_email="grace@example.com", customer_name="Grace")
    payload = event_payload(
        "checkout.session.expired", session_object(holder, status="expired", payment_status="unpaid", payment_intent=None)
    )

    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, payload, stripe_signature(payload, SECRET))

    assert response.status_code == 200 and response.content == b"processed"
    holder.refresh_from_db()
    grace.refresh_from_db()
    slot.refresh_from_db()
    assert holder.status == BookingStatus.EXPIRED
    assert grace.status == WaitlistEntry.Status.OFFERED and grace.offer_hold.quantity == 2
    assert (slot.seats_left, slot.seats_held) == (0, 2)  # held again, for Grace
    assert [m.to for m in mail.outbox if m.subject.startswith("Seats are free for you")] == [["grace@example.com"]]


def test_a_failed_async_payment_expires_the_pending_booking(client, booking):
    obj = session_object(booking, payment_status="unpaid")
    payload = event_payload("checkout.session.async_payment_failed", obj)

    post(client, payload, stripe_signature(payload, SECRET))

    booking.refresh_from_db()
    assert booking.status == BookingStatus.EXPIRED


def test_a_session_that_does_not_match_its_booking_is_recorded_as_failed_without_retry(client, booking):
    payload = event_payload("checkout.session.completed", session_object(booking, amount_subtotal=1, amount_total=1))

    response = post(client, payload, stripe_signature(payload, SECRET))

    booking.refresh_from_db()
    event = StripeEvent.objects.get()
    assert response.status_code == 200
    assert booking.status == BookingStatus.PENDING
    assert event.status == StripeEvent.Status.FAILED
    assert "PaymentFactsMismatch" in event.error


def test_a_session_of_another_application_is_ignored(client, booking):
    obj = session_object(booking, id="cs_test_not_ours", client_reference_id="order-7", metadata={})
    payload = event_payload("checkout.session.completed", obj)

    response = post(client, payload, stripe_signature(payload, SECRET))

    assert response.status_code == 200
    assert StripeEvent.objects.get().status == StripeEvent.Status.IGNORED


def _signed_post(client, body: bytes):
    return client.post(
        reverse("payments:stripe_webhook"),
        data=body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=stripe_signature(body, SECRET),
    )


@pytest.mark.parametrize("body", [b'""', b"[]", b"null", b"1", b'"evt_1"', b"\xff\xfe"])
def test_a_signed_webhook_that_is_not_a_json_object_is_refused_with_400(client, body):
    response = _signed_post(client, body)

    assert response.status_code == 400
    assert response.content.decode().startswith("Webhook refused: body is not")
    assert not StripeEvent.objects.exists()


@pytest.mark.parametrize(
    "event",
    [
        {"id": "evt_1", "type": "checkout.session.completed"},
        {"id": "evt_1", "type": "checkout.session.completed", "data": []},
        {"id": "evt_1", "type": "checkout.session.completed", "data": {"object": "cs_test_1"}},
        {"id": "", "type": "checkout.session.completed", "data": {"object": {}}},
        {"id": "evt_" + "x" * 300, "type": "checkout.session.completed", "data": {"object": {}}},
        {"id": "evt_1", "type": "x" * 101, "data": {"object": {}}},
        {"id": 1, "type": "checkout.session.completed", "data": {"object": {}}},
    ],
    ids=["no_data", "data_list", "object_text", "empty_id", "overlong_id", "overlong_type", "numeric_id"],
)
def test_a_signed_body_that_is_no_stripe_event_is_refused_with_400_and_nothing_recorded(client, event):
    # An id or type longer than its column was a database error on PostgreSQL, a 500.
    response = _signed_post(client, json.dumps(event).encode())

    assert response.status_code == 400
    assert not StripeEvent.objects.exists()


@pytest.mark.parametrize(
    "session",
    [
        {},
        {"id": ["cs_test_1"]},
        {"id": "{session}", "metadata": ["booking_id"]},
        {"id": "{session}", "metadata": {"booking_id": 1}},
        {"id": "{session}", "amount_total": "2500"},
        {"id": "{session}", "amount_subtotal": True},
        {"id": "{session}", "payment_intent": {"object": "payment_intent"}},
        {"id": "{session}", "status": {"complete": True}},
    ],
    ids=[
        "no_id", "id_list", "metadata_list", "metadata_number", "amount_text", "amount_bool", "intent_no_id", "status_object"
    ],
)
def test_a_signed_checkout_event_of_the_wrong_shape_is_recorded_as_failed_and_not_retried(
    client, booking, session
):
    # These crashed in processing and answered 500, so Stripe would have sent them again and again.
    session = {key: booking.checkout_session_id if value == "{session}" else value for key, value in session.items()}
    body = json.dumps({"id": "evt_odd", "type": "checkout.session.completed", "data": {"object": session}}).encode()

    response = _signed_post(client, body)

    assert response.status_code == 200
    assert response.content == b"failed_final"
    event = StripeEvent.objects.get(event_id="evt_odd")
    assert event.status == StripeEvent.Status.FAILED
    assert event.error.startswith("MalformedEvent: ")
    booking.refresh_from_db()
    assert booking.status == BookingStatus.PENDING


def test_a_refund_event_with_metadata_that_is_not_text_is_recorded_as_failed(client):
    body = json.dumps(
        {"id": "evt_r", "type": "refund.updated", "data": {"object": {"id": "re_1", "metadata": {"refund_id": 7}}}}
    ).encode()

    response = _signed_post(client, body)

    assert response.status_code == 200
    assert StripeEvent.objects.get(event_id="evt_r").status == StripeEvent.Status.FAILED


def test_nul_characters_in_a_signed_event_are_stored_as_replacement_characters(client):
    # PostgreSQL's jsonb cannot hold \u0000: storing the event was a database error, a 500.
    body = json.dumps(
        {"id": "evt_nul\x00", "type": "customer.created", "data": {"object": {"id": "cus_1", "name": "Ada\x00"}}}
    ).encode()

    response = _signed_post(client, body)

    assert response.status_code == 200
    event = StripeEvent.objects.get()
    assert event.event_id == "evt_nul\ufffd"
    assert event.payload["data"]["object"]["name"] == "Ada\ufffd"
