"""The Celery app: `celery -A config worker` and `celery -A config beat` (see the Procfile).

Its configuration is Django's settings whose names start with CELERY_ (config/settings.py, from
the environment); tasks live in the `tasks` module of the app that owns the work.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("slotbook")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
