"""The seam between a committed decision and the task that carries it out."""

import inspect
import logging

import pytest

from bookings import tasks
from bookings.models import Refund, RefundStatus
from bookings.services import booking_refund
from tests.celery_broker import celery_broker
from tests.factories import make_confirmed_booking

pytestmark = pytest.mark.django_db


def test_with_no_broker_the_task_runs_in_this_process_only_after_commit(
    django_capture_on_commit_callbacks, stripe_settings_unset
):
    booking = make_confirmed_booking()

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        booking_refund(booking=booking)
    assert Refund.objects.get(booking=booking).attempts == 0  # nothing asked before the commit

    for callback in callbacks:  # the commit: the follow-up runs here, and Stripe (unset) cannot be reached
        callback()

    refund = Refund.objects.get(booking=booking)
    assert (refund.status, refund.attempts) == (RefundStatus.REQUESTED, 1)


def test_a_broker_that_does_not_answer_after_commit_is_logged_and_leaves_the_work_to_reconcile(
    settings, caplog, django_capture_on_commit_callbacks
):
    booking = make_confirmed_booking()
    caplog.set_level(logging.ERROR, logger="bookings.background")

    with celery_broker(settings, "redis://127.0.0.1:9/0"):  # nothing listens on port 9
        with django_capture_on_commit_callbacks(execute=True):
            booking_refund(booking=booking)

    refund = Refund.objects.get(booking=booking)
    assert (refund.status, refund.attempts) == (RefundStatus.REQUESTED, 0)  # owed, for reconcile to ask
    assert "task_not_enqueued task=slotbook.booking_follow_up" in caplog.text


def test_task_arguments_are_ids_never_model_instances_nor_tokens(django_capture_on_commit_callbacks, monkeypatch):
    sent = []
    monkeypatch.setattr(tasks.customer_signin_link_send, "run", lambda **kwargs: sent.append(kwargs))
    from bookings.customers import customer_signin_link_send

    with django_capture_on_commit_callbacks(execute=True):
        link = customer_signin_link_send(email="Ada@Example.com")

    assert sent == [{"link_id": link.pk}]


def test_every_side_effect_of_the_domain_goes_through_the_one_seam():
    from bookings import customers
    from bookings.services import catalog, lifecycle, refunds, transitions

    sources = {module: inspect.getsource(module) for module in (customers, catalog, lifecycle, refunds, transitions)}
    for module, source in sources.items():
        assert "transaction.on_commit(" not in source, module.__name__
    for module in (customers, catalog, refunds):
        assert "enqueue_after_commit(tasks." in sources[module], module.__name__


@pytest.fixture
def published(settings, monkeypatch):
    """With a broker set, the tasks handed to it, in order (nothing reaches a broker)."""
    from bookings import background

    settings.CELERY_BROKER_URL = "redis://127.0.0.1:9/0"
    handed: list[tuple[str, dict]] = []
    monkeypatch.setattr(background, "_publish", lambda task, kwargs: handed.append((task.name, kwargs)))
    return handed


@pytest.mark.django_db(transaction=True)
def test_with_a_broker_a_webhooks_tasks_are_published_once_its_response_has_been_sent(settings, published):
    """The site's own WSGI handler, as gunicorn calls it: the response comes back with the booking
    confirmed and its e-mail not yet handed over; the server's closing of the sent response hands it."""
    from django.core.handlers.wsgi import WSGIHandler
    from django.test import RequestFactory

    from bookings.models import Booking, BookingStatus
    from tests.factories import make_booking
    from tests.payments.webhook_signing import event_payload, session_object, stripe_signature

    settings.STRIPE_WEBHOOK_SECRETS = ["whsec_after_response"]
    booking = make_booking()
    payload = event_payload("checkout.session.completed", session_object(booking))
    request = RequestFactory().post(
        "/stripe/webhook/", data=payload, content_type="application/json",
        HTTP_STRIPE_SIGNATURE=stripe_signature(payload, "whsec_after_response"), secure=True,
    )
    statuses = []

    response = WSGIHandler()(request.environ, lambda status, headers: statuses.append(status))

    assert statuses == ["200 OK"] and b"".join(response) == b"processed"
    assert Booking.objects.get(pk=booking.pk).status == BookingStatus.CONFIRMED  # committed
    assert published == []  # the answer went first
    response.close()
    assert published == [("slotbook.booking_confirmation_send", {"booking_id": booking.pk})]


@pytest.mark.django_db(transaction=True)
def test_a_request_that_fails_after_its_commit_still_hands_over_its_tasks_at_once(published):
    from django.db import transaction

    from bookings.background import TasksAfterResponseMiddleware, enqueue_after_commit

    def view(request):
        with transaction.atomic():
            enqueue_after_commit(tasks.booking_follow_up, booking_id=7)
        raise RuntimeError("after the commit")

    with pytest.raises(RuntimeError, match="after the commit"):
        TasksAfterResponseMiddleware(view)(object())
    assert published == [("slotbook.booking_follow_up", {"booking_id": 7})]


@pytest.mark.django_db(transaction=True)
def test_outside_a_request_a_task_is_handed_to_the_broker_at_the_commit(published):
    from django.db import transaction

    from bookings.background import enqueue_after_commit

    with transaction.atomic():
        enqueue_after_commit(tasks.booking_follow_up, booking_id=8)
        assert published == []
    assert published == [("slotbook.booking_follow_up", {"booking_id": 8})]
