# The Celery app is made when Django's settings are, so that every task binds to it.
from .celery import app as celery_app

__all__ = ["celery_app"]
