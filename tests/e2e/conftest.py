"""Fixtures of the browser tests.

A test gets pytest-playwright's `page` (or more contexts through `new_context`), the site on
pytest-django's `live_server` (the test database, in this process: `django.core.mail.outbox`
sees its e-mails), and `stripe`: the Stripe the site talks to, with webhooks forwarded to the
live server. By default that is the in-process emulator, whose control API is `stripe.control`;
tests parametrized with `both_stripes` also run against real Stripe test mode when
`STRIPE_E2E_REAL=1` and keys are set (see DEVELOPERS.md), and are skipped otherwise.

Every browser context is watched: a Content-Security-Policy violation, an uncaught script
error or a resource that fails to load on any of the site's pages fails the test.
"""

import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.db import connections
from playwright.sync_api import Error as PlaywrightError

from tests.conftest import real_stripe_configured
from tests.e2e.stripe_side import EmulatedStripe, RealStripe

CHROMIUM = Path("/usr/bin/chromium")
# Debian's Chromium as root in a container: no sandbox, no GPU, and nothing that phones home
# or updates itself while the tests run.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
DESKTOP = {"width": 1280, "height": 900}


def running_in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


# Browser


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if CHROMIUM.exists():
        return {**browser_type_launch_args, "executable_path": str(CHROMIUM), "args": CHROMIUM_ARGS}
    return browser_type_launch_args


@pytest.fixture(scope="session")
def browser(launch_browser):
    """pytest-playwright's browser, except that a missing one fails the run in CI and is a
    skip with instructions elsewhere."""
    try:
        browser = launch_browser()
    except PlaywrightError as error:
        reason = (
            f"No Chromium to drive ({str(error).strip().splitlines()[0]}). "
            "Install Debian's chromium (apt-get install -y chromium), or Playwright's own browser "
            "with `python -m playwright install chromium`."
        )
        if running_in_ci():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    yield browser
    browser.close()


class PageProblems:
    """Content-Security-Policy violations, uncaught script errors and resources that failed to
    load, on the site's pages (not on Stripe's: those are Stripe's business)."""

    def __init__(self, site_url: str):
        self.site_url = site_url
        self.csp_violations: list[str] = []
        self.script_errors: list[str] = []

    def watch(self, context) -> None:
        context.on("console", self._console)
        context.on("weberror", self._web_error)

    def _on_the_site(self, page) -> bool:
        return page is None or page.url.startswith(self.site_url)

    def _console(self, message) -> None:
        text = message.text
        if message.type != "error" or not self._on_the_site(message.page):
            return
        if "Content Security Policy" in text or text.startswith("Refused to"):
            self.csp_violations.append(f"{_page_url(message.page)}: {text}")
        elif text.startswith("Failed to load resource"):  # a missing stylesheet, script, icon…
            self.script_errors.append(f"{_page_url(message.page)}: {text} ({message.location.get('url')})")

    def _web_error(self, web_error) -> None:
        if self._on_the_site(web_error.page):
            self.script_errors.append(f"{_page_url(web_error.page)}: {web_error.error}")

    def clear(self) -> None:
        self.csp_violations.clear()
        self.script_errors.clear()


def _page_url(page) -> str:
    return page.url if page is not None else "(no page)"


@pytest.fixture
def page_problems(live_server):
    problems = PageProblems(live_server.url)
    yield problems
    # Torn down after the contexts are closed, so every message they sent has arrived.
    assert problems.csp_violations == [], "the page broke the Content-Security-Policy"
    assert problems.script_errors == [], "a page had a script error or a resource it could not load"


@pytest.fixture
def new_context(page_problems, new_context):
    """pytest-playwright's `new_context` (traces and failure screenshots included), watched."""

    def watched_context(**kwargs):
        context = new_context(**{"viewport": DESKTOP, "locale": "en-GB", **kwargs})
        page_problems.watch(context)
        return context

    return watched_context


@pytest.fixture(autouse=True)
def _close_connections_opened_inside_playwright():
    yield
    # Playwright's sync API runs an event loop in this thread, so the ORM queries a test makes
    # run in a context of their own with connections of their own: close them, or PostgreSQL
    # cannot drop the test database at the end.
    connections.close_all()


# The site and its Stripe


@pytest.fixture
def stripe_mode(request) -> str:
    """"emulator", or "real" for the second run of tests marked with `both_stripes`."""
    return getattr(request, "param", "emulator")


both_stripes = pytest.mark.parametrize(
    "stripe_mode", ["emulator", pytest.param("real", marks=pytest.mark.real_stripe)], indirect=True
)


@pytest.fixture
def stripe(stripe_mode, request, live_server, settings):
    """The Stripe the site talks to, with its webhooks forwarded to the live server."""
    settings.SITE_URL = live_server.url
    if stripe_mode == "real":
        yield from _real_stripe(request, live_server, settings)
    else:
        yield from _emulated_stripe(request, live_server)


def _emulated_stripe(request, live_server):
    control = request.getfixturevalue("stripe_emulator")  # reset, and the site's settings pointed at it
    control.set_forward_to(live_server.url + "/stripe/webhook/")
    # Connected accounts' events (Connect: `--connect`, or a test turning it on) reach their own endpoint.
    control.set_connect_forward_to(live_server.url + "/stripe/connect/webhook/")
    stripe = EmulatedStripe(control)
    yield stripe
    # Nothing may still be on its way to a live server whose database is about to be emptied.
    control.release_webhooks()
    control.wait_for_webhooks(timeout=10)
    control.set_forward_to(None)
    control.set_connect_forward_to(None)


def _real_stripe(request, live_server, settings):
    reason = real_stripe_configured()
    if reason:
        pytest.skip(reason)
    address = request.config.getoption("liveserver") or os.environ.get("DJANGO_LIVE_TEST_SERVER_ADDRESS")
    if not address:
        pytest.fail(
            "Real Stripe delivers webhooks through `stripe listen --forward-to`, which needs the live "
            "server on a fixed address: add --liveserver 127.0.0.1:8001 (see DEVELOPERS.md).",
            pytrace=False,
        )
    settings.STRIPE_SECRET_KEY = os.environ["STRIPE_SECRET_KEY"].strip()
    settings.STRIPE_WEBHOOK_SECRETS = [s.strip() for s in os.environ["STRIPE_WEBHOOK_SECRET"].split(",") if s.strip()]
    settings.STRIPE_API_BASE = ""
    yield RealStripe(webhook_url=f"{live_server.url}/stripe/webhook/", port=urlsplit(live_server.url).port)


@pytest.fixture
def shop(stripe, live_server):
    """The site's address, with its Stripe ready."""
    return Shop(live_server.url, stripe)


class Shop:
    def __init__(self, base_url: str, stripe):
        self.base_url = base_url
        self.stripe = stripe

    def url(self, path: str) -> str:
        return self.base_url + path
