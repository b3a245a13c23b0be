import pytest

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


@pytest.fixture(scope="session")
def stripe_emulator_server():
    """One in-process Stripe emulator for the whole run; each test starts from a reset."""
    from stripe_emulator import Emulator

    with Emulator(db=":memory:", port=0, webhook_secret=TEST_WEBHOOK_SECRET, **EMULATOR_FAST_TUNING) as emulator:
        yield emulator


@pytest.fixture
def stripe_emulator(stripe_emulator_server, settings):
    """The site pointed at a freshly reset emulator. Returns its control client."""
    from stripe_emulator.control import EmulatorControl

    control = EmulatorControl(stripe_emulator_server.url)
    control.reset()
    settings.STRIPE_SECRET_KEY = TEST_SECRET_KEY
    settings.STRIPE_API_BASE = stripe_emulator_server.url
    settings.STRIPE_WEBHOOK_SECRETS = [TEST_WEBHOOK_SECRET]
    yield control
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
