"""Settings every test run shares, applied before any test or live server starts."""

import os

import pytest

# Django's live_server runs in a thread next to Playwright's synchronous API, which Django
# would otherwise refuse as "async unsafe".
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def pytest_addoption(parser):
    parser.addoption(
        "--connect",
        action="store_true",
        default=False,
        help="Run the tests that use the Stripe emulator with Stripe Connect on: merchants sell through "
        "connected accounts onboarded on it (also SLOTBOOK_TEST_CONNECT=1; see tests/connect_mode.py).",
    )


@pytest.fixture(scope="session", autouse=True)
def plain_http_test_settings():
    """Tests talk plain HTTP to a local server, and static files come from the finders."""
    from django.test import override_settings

    from tests.local_settings import LOCAL_RUN_SETTINGS

    with override_settings(
        **LOCAL_RUN_SETTINGS,
        # Never the Stripe account of the developer's environment: a test that needs Stripe
        # points the site at the emulator, or asks for real Stripe explicitly (tests/e2e).
        STRIPE_SECRET_KEY="",
        STRIPE_WEBHOOK_SECRETS=[],
        STRIPE_API_BASE="",
        SITE_URL="",
        # Tests read pages straight from the database (their factories write rows without the
        # services that refresh cached fragments); tests of those caches turn them on.
        STOREFRONT_CACHE_SECONDS=0,
        FINAL_STATUS_CACHE_SECONDS=0,
    ):
        yield


@pytest.fixture(autouse=True)
def fresh_cache():
    """Rate-limit counters live in the cache: every test starts with none."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()
