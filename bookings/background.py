"""The one seam between a side effect decided in a transaction and where it runs.

A side effect (an e-mail, a refund at the payment provider, closing checkouts) is a Celery task
that carries out what a committed row already says, claiming it first, so that running it twice
does it once. `enqueue_after_commit` hands it over only once the transaction has committed: to
a worker through the broker when CELERY_BROKER_URL is set, else to this same process, right after
the commit (the demo, a laptop, the test suite), where it behaves as a plain function call:
no retries, its errors raised to the caller, and reconcile finishing what is left.
"""

import random
from typing import Any

from celery import Task
from django.conf import settings
from django.db import transaction


def enqueue_after_commit(task: Task, **kwargs: Any) -> None:
    """Run `task(**kwargs)` once the current transaction commits (at once outside one). The
    arguments are ids and plain values, never model instances nor secrets: a broker stores them."""
    if settings.CELERY_BROKER_URL:
        transaction.on_commit(lambda: task.apply_async(kwargs=kwargs))
    else:
        transaction.on_commit(lambda: task(**kwargs))


def on_worker(task: Task) -> bool:
    """Whether the running task was delivered by the broker (and may be retried), not called in-process."""
    return not task.request.called_directly


def retry_later(task: Task, error: Exception) -> Exception:
    """The Retry for `error`, after an exponential backoff with jitter: 2, 4, 8, ... seconds up to
    TASK_RETRY_BACKOFF_MAX_SECONDS. After TASK_RETRY_MAX retries `error` itself is raised, and
    reconcile finishes the work. Use as `raise retry_later(self, error)`."""
    ceiling = min(settings.TASK_RETRY_BACKOFF_MAX_SECONDS, 2 ** (task.request.retries + 1))
    countdown = random.uniform(ceiling / 2, ceiling)
    return task.retry(exc=error, countdown=countdown, max_retries=settings.TASK_RETRY_MAX)
