"""Beat's fair-queue driver is taken before a backlog of other tasks: during an on-sale a
thousand confirmation e-mails queue up, and a driver waiting behind them would expire unrun
(benchmarks/onsale.py saw the line stand still for 30 s before this)."""

import os
import uuid

import pytest
from django.conf import settings

from config.celery import app

REDIS_URL = os.environ.get("QUEUE_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")


@pytest.fixture
def broker_queue():
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5)
    try:
        client.ping()
    except redis.RedisError:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no Redis at {REDIS_URL}")
    name = f"priority-test-{uuid.uuid4().hex}"
    app.conf.broker_url = REDIS_URL
    try:
        yield name
    finally:
        app.conf.broker_url = settings.CELERY_BROKER_URL or None
        for key in client.scan_iter(match=f"{name}*"):
            client.delete(key)


def test_the_queue_driver_is_taken_before_a_backlog_of_emails(broker_queue):
    from bookings.tasks import booking_confirmation_send
    from payments.tasks import checkout_queue_drive

    # As the site publishes its tasks (delay, after commit), then as beat publishes the driver
    # (the task's apply_async with its schedule entry's options).
    for booking in range(5):
        booking_confirmation_send.apply_async(kwargs={"booking_id": booking}, queue=broker_queue)
    driver = settings.CELERY_BEAT_SCHEDULE["checkout-queue"]
    assert driver["task"] == checkout_queue_drive.name
    checkout_queue_drive.apply_async(queue=broker_queue, **driver["options"])

    with app.connection_for_read() as connection:
        channel = connection.default_channel
        taken = [channel.basic_get(broker_queue, no_ack=True) for _ in range(6)]

    assert [message.headers["task"] for message in taken] == ["slotbook.checkout_queue_drive"] + [
        "slotbook.booking_confirmation_send"
    ] * 5
    assert [message.headers["kwargsrepr"] for message in taken[1:]] == [f"{{'booking_id': {n}}}" for n in range(5)]  # in order
    assert settings.CELERY_TASK_DEFAULT_PRIORITY > driver["options"]["priority"]
