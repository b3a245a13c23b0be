"""Pointing this process's Celery app at a broker for one test, and back."""

from contextlib import contextmanager

from config import celery_app


@contextmanager
def celery_broker(settings, url: str, *, queue: str | None = None):
    """Enqueue to `url` (and `queue`) from this process while the block runs: the site decides by
    CELERY_BROKER_URL, the app publishes through its own configuration and connection pool."""
    previous = {"broker_url": celery_app.conf.broker_url, "task_default_queue": celery_app.conf.task_default_queue}
    settings.CELERY_BROKER_URL = url
    celery_app.conf.update(broker_url=url, task_default_queue=queue or previous["task_default_queue"])
    celery_publisher_reset()
    try:
        yield celery_app
    finally:
        celery_app.conf.update(previous)
        celery_publisher_reset()


def celery_publisher_reset() -> None:
    """Forget the app's broker connections, so the next task is published with its current
    configuration (Celery keeps a connection pool and a producer pool, each made on first use)."""
    if celery_app._pool is not None:
        celery_app._pool.force_close_all()
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
