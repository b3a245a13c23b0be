import os

import pytest

from tests.connect_mode import connect_mode, connect_mode_on
from tests.factories import make_booking, make_listing, make_merchant, make_slot

TEST_WEBHOOK_SECRET = "whsec_slotbook_test_suite_secret"
TEST_SECRET_KEY = "sk_test_slotbook_suite"
# Retries, refund failures and expiries that take a fraction of a second instead of minutes.
EMULATOR_FAST_TUNING = {
    "webhook_retry_base": 0.05,
    "webhook_retry_factor": 2.0,
    "webhook_retry_max_delay": 0.4,
    "webhook_max_attempts": 6,
    "webhook_timeout": 5.0,
    "refund_failure_delay": 0.2,
    "refund_pending_delay": 0.2,
    "timer_poll_interval": 0.05,
}


def real_stripe_configured() -> str:
    """Why real Stripe runs cannot happen, or "" when they can (see DEVELOPERS.md)."""
    if os.environ.get("STRIPE_E2E_REAL", "").strip() != "1":
        return "real Stripe test mode runs only with STRIPE_E2E_REAL=1 (see DEVELOPERS.md)"
    if not os.environ.get("STRIPE_SECRET_KEY", "").strip().startswith(("sk_test_", "rk_test_")):
        return "STRIPE_E2E_REAL=1 needs a test-mode STRIPE_SECRET_KEY (sk_test_…)"
    if not os.environ.get("STRIPE_WEBHOOK_SECRET", "").strip():
        return "STRIPE_E2E_REAL=1 needs STRIPE_WEBHOOK_SECRET, the whsec_… printed by `stripe listen`"
    return ""


def pytest_collection_modifyitems(config, items):
    """Browser tests run last: pytest-playwright keeps an event loop running in the main thread
    from its first test to the end of the session, and Django's ORM should not run inside one.
    Real-Stripe runs are skipped here, before any browser or server starts, unless configured."""
    not_real = real_stripe_configured()
    connect = connect_mode(config)
    for item in items:
        if not_real and item.get_closest_marker("real_stripe"):
            item.add_marker(pytest.mark.skip(reason=not_real))
        if connect and item.get_closest_marker("platform_account"):
            item.add_marker(pytest.mark.skip(reason="about the platform's own account only (--connect)"))
    items.sort(key=lambda item: item.get_closest_marker("e2e") is not None)


@pytest.fixture(scope="session")
def stripe_emulator_server():
    """One in-process Stripe emulator for the whole run; each test starts from a reset."""
    from stripe_emulator import Emulator

    with Emulator(
        db=":memory:", port=0, webhook_secret=TEST_WEBHOOK_SECRET, account_name="Slotbook", **EMULATOR_FAST_TUNING
    ) as emulator:
        yield emulator


@pytest.fixture
def stripe_emulator(stripe_emulator_server, settings, request):
    """The site pointed at a freshly reset emulator. Returns its control client. With `--connect`
    (tests/connect_mode.py) the site sells through merchants' connected accounts on it."""
    from stripe_emulator.control import EmulatorControl

    control = EmulatorControl(stripe_emulator_server.url)
    control.reset()
    settings.STRIPE_SECRET_KEY = TEST_SECRET_KEY
    settings.STRIPE_API_BASE = stripe_emulator_server.url
    settings.STRIPE_WEBHOOK_SECRETS = [TEST_WEBHOOK_SECRET]
    undo = None
    if connect_mode(request.config) and not any(
        request.node.get_closest_marker(name) for name in ("platform_account", "own_connect_accounts")
    ):
        undo = connect_mode_on(request, settings, control)
    yield control
    if undo is not None:
        undo()
    control.reset()


@pytest.fixture
def merchant(db):
    return make_merchant()


@pytest.fixture
def listing(merchant):
    return make_listing(merchant=merchant)


@pytest.fixture
def slot(listing):
    return make_slot(listing=listing, capacity=5)


@pytest.fixture
def booking(slot):
    return make_booking(slot=slot)


@pytest.fixture
def stripe_settings_unset(settings):
    """No Stripe account configured: any attempt to call Stripe fails as PaymentsUnavailable."""
    settings.STRIPE_SECRET_KEY = ""


@pytest.fixture
def portals_opened(monkeypatch):
    """The Customer of every billing portal session the site (the live server's thread too) asks for."""
    from payments import stripe_api

    opened = []
    real = stripe_api.portal_url

    def spy(*, customer_id, return_url, stripe_account=""):
        opened.append(customer_id)
        return real(customer_id=customer_id, return_url=return_url, stripe_account=stripe_account)

    monkeypatch.setattr(stripe_api, "portal_url", spy)
    return opened
