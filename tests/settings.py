"""The settings the test suite runs with: the site's own, with a secret key of the suite's own.
With DEBUG off (the default, as in production) config.settings refuses to start without
DJANGO_SECRET_KEY, so the suite gives it one explicitly."""

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "slotbook-test-suite-only-secret-key-never-used-for-a-real-site")

from config.settings import *  # noqa: E402, F403
