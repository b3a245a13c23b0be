"""The one seam between a side effect decided in a transaction and where it runs.

A side effect (an e-mail, a refund at the payment provider, closing checkouts) is a Celery task
that carries out what a committed row already says, claiming it first, so that running it twice
does it once. `enqueue_after_commit` hands it over only once the transaction has committed: to
a worker through the broker when CELERY_BROKER_URL is set, else to this same process, right after
the commit (the demo, a laptop, the test suite), where it behaves as a plain function call:
no retries, its errors raised to the caller, and reconcile finishing what is left.

While a web request is answered (`tasks_published_after_response`), what its commits hand to the
broker is published once its response has gone out: a webhook or a success page is not kept
waiting for the broker (about 1.5 ms a task), and the row already says what is owed if the
process dies in between, as when the broker cannot be reached.
"""

import logging
import random
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from celery import Task
from django.conf import settings
from django.db import transaction

from common.logs import log_event

log = logging.getLogger("bookings.background")

# A broker that does not answer is asked again this often before the task is given up to reconcile.
PUBLISH_RETRY_POLICY = {"max_retries": 3, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}


# The tasks committed during the response being made on this thread, to publish once it is sent.
_after_response: ContextVar[list[tuple[Task, dict[str, Any]]] | None] = ContextVar("tasks_after_response", default=None)


def enqueue_after_commit(task: Task, **kwargs: Any) -> None:
    """Run `task(**kwargs)` once the current transaction commits (at once outside one). The
    arguments are ids and plain values, never model instances nor secrets: a broker stores them."""
    if settings.CELERY_BROKER_URL:
        transaction.on_commit(lambda: _publish_now_or_after_response(task, kwargs))
    else:
        transaction.on_commit(lambda: task(**kwargs))


def tasks_published_after_response(make_response: Callable[[], Any]) -> Any:
    """The response `make_response` gives, with the tasks its commits hand to the broker published
    when the response is closed (after the server has sent it, as WSGI and ASGI servers close
    every response); at once when it raises instead."""
    waiting: list[tuple[Task, dict[str, Any]]] = []
    token = _after_response.set(waiting)
    try:
        response = make_response()
    except BaseException:
        _after_response.reset(token)
        _publish_all(waiting)
        raise
    _after_response.reset(token)
    if waiting:
        # Django's own list of what closing the response runs (its file, for a FileResponse).
        response._resource_closers.append(lambda: _publish_all(waiting))
    return response


class TasksAfterResponseMiddleware:
    """Django middleware, outermost: the tasks a request's commits hand to the broker are
    published once its response has been sent. Without a broker they run after the commit."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not settings.CELERY_BROKER_URL:
            return self.get_response(request)
        return tasks_published_after_response(lambda: self.get_response(request))


def _publish_now_or_after_response(task: Task, kwargs: dict[str, Any]) -> None:
    waiting = _after_response.get()
    if waiting is None:
        _publish(task, kwargs)
    else:
        waiting.append((task, kwargs))


def _publish_all(waiting: list[tuple[Task, dict[str, Any]]]) -> None:
    while waiting:
        _publish(*waiting.pop(0))


def _publish(task: Task, kwargs: dict[str, Any]) -> None:
    """Hand a task to the broker. The transaction has committed: a broker that cannot be reached
    must not turn the answer into an error, since the rows already say what is owed and reconcile
    does it within RECONCILE_EVERY_SECONDS."""
    try:
        task.apply_async(kwargs=kwargs, retry=True, retry_policy=PUBLISH_RETRY_POLICY)
    except Exception as error:  # noqa: BLE001 - any broker failure: the work is left to reconcile
        log_event(log, "task_not_enqueued", level=logging.ERROR, task=task.name, error=f"{type(error).__name__}: {str(error)[:200]}")


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
