"""Stripe's pace in the emulator: per-request latency drawn from a log-normal distribution, and
the per-key rate limits answered with Stripe's 429 ``rate_limit`` error. Off by default."""

from __future__ import annotations

import math
import random
import threading

import pytest
import stripe

from stripe_emulator import Emulator
from stripe_emulator.__main__ import build_parser
from stripe_emulator.control import ControlError, EmulatorControl
from stripe_emulator.pace import Z99, Latency, Pace, RateLimited

from .helpers import API_KEY, sdk_client


def api_requests(control: EmulatorControl, *, path: str, status: int | None = None) -> list[dict]:
    return [r for r in control.requests() if r["path"] == path and (status is None or r["status"] == status)]


def test_pace_is_off_by_default(client, control):
    state = control.pace()
    assert state["active"] is False
    assert state["write_latency"] is None and state["read_latency"] is None
    assert state["rate_limit"] == 0 and state["endpoint_rate_limit"] == 0
    for _ in range(40):  # well beyond test mode's 25 per second
        client.v1.customers.create(params={"email": "a@example.com"})
    assert all(r["pace_delay_ms"] == 0 and r["status"] == 200 for r in api_requests(control, path="/v1/customers"))


def test_beyond_the_keys_rate_stripe_answers_429_rate_limit_and_the_sdk_does_not_retry(client, control):
    # One request per second per key: the second, made a few milliseconds after the first, is over.
    control.set_pace(rate_limit=1)
    client.v1.customers.create(params={"email": "first@example.com"})
    with pytest.raises(stripe.RateLimitError) as raised:
        client.v1.customers.create(params={"email": "second@example.com"})
    error = raised.value
    assert error.http_status == 429
    assert error.error.code == "rate_limit"
    assert error.error.type == "invalid_request_error"
    assert error.error.message.startswith("Request rate limit exceeded.")
    assert error.error.doc_url == "https://stripe.com/docs/error-codes/rate-limit"
    assert error.headers["Stripe-Rate-Limited-Reason"] == "global-rate"
    assert error.headers.get("Stripe-Should-Retry") != "true"
    assert error.request_id and error.request_id.startswith("req_")
    # The SDK (max_network_retries=2) gave up at once: Stripe's SDKs leave rate limits to the caller.
    refused = api_requests(control, path="/v1/customers", status=429)
    assert len(refused) == 1
    assert len(api_requests(control, path="/v1/customers", status=200)) == 1
    counts = control.pace()["counts"]
    assert counts["rate_limited"] == 1 and counts["rate_limited_global"] == 1
    # Nothing was created for the refused request.
    control.set_pace(rate_limit=0)
    assert [c.email for c in client.v1.customers.list().data] == ["first@example.com"]


def test_the_limit_is_counted_per_secret_key(emulator, control):
    control.set_pace(rate_limit=1)
    first = sdk_client(emulator.url)
    other = stripe.StripeClient("sk_test_another_merchant_key",
                                base_addresses={"api": emulator.url}, max_network_retries=0)
    first.v1.customers.create(params={"email": "a@example.com"})
    # Another key has its own budget...
    other.v1.customers.create(params={"email": "b@example.com"})
    # ...while the first key's is spent.
    with pytest.raises(stripe.RateLimitError):
        first.v1.customers.create(params={"email": "c@example.com"})
    with pytest.raises(stripe.RateLimitError):
        other.v1.customers.create(params={"email": "d@example.com"})
    assert control.pace()["counts"]["rate_limited"] == 2


def test_the_endpoint_limit_is_counted_per_endpoint(client, control):
    control.set_pace(endpoint_rate_limit=1)
    client.v1.customers.create(params={"email": "a@example.com"})
    client.v1.customers.list()  # another endpoint (GET /v1/customers) has its own budget
    with pytest.raises(stripe.RateLimitError) as raised:
        client.v1.customers.create(params={"email": "b@example.com"})
    assert raised.value.headers["Stripe-Rate-Limited-Reason"] == "endpoint-rate"
    assert control.pace()["counts"]["rate_limited_endpoint"] == 1


def test_a_rate_limited_request_does_not_use_its_idempotency_key(client, control):
    control.set_pace(rate_limit=1)
    client.v1.customers.create(params={"email": "a@example.com"})
    with pytest.raises(stripe.RateLimitError):
        client.v1.customers.create(params={"email": "b@example.com"}, options={"idempotency_key": "k-1"})
    control.set_pace(rate_limit=0)  # the caller slowed down: the same key now runs afresh
    created = client.v1.customers.create(params={"email": "b@example.com"}, options={"idempotency_key": "k-1"})
    assert created.email == "b@example.com"
    assert created.last_response.headers.get("Idempotent-Replayed") is None


def test_token_buckets_hold_one_seconds_worth_and_refill_continuously():
    pace = Pace(rate_limit=25)
    # A burst of 25 passes at one instant; the 26th is refused and takes no token.
    for _ in range(25):
        pace.admit("sk_test_a", "POST /v1/customers", now=100.0)
    with pytest.raises(RateLimited):
        pace.admit("sk_test_a", "POST /v1/customers", now=100.0)
    # 0.2 s later five tokens came back, no more.
    for _ in range(5):
        pace.admit("sk_test_a", "POST /v1/customers", now=100.2)
    with pytest.raises(RateLimited):
        pace.admit("sk_test_a", "POST /v1/customers", now=100.2)
    # Long idle: the bucket is full again but holds no more than one second's worth.
    for _ in range(25):
        pace.admit("sk_test_a", "POST /v1/customers", now=200.0)
    with pytest.raises(RateLimited):
        pace.admit("sk_test_a", "POST /v1/customers", now=200.0)
    assert pace.describe()["counts"]["rate_limited"] == 3


def test_latency_distribution_parameters_through_the_control_api(control):
    state = control.set_pace(preset="stripe-test", seed=7)
    write, read = state["write_latency"], state["read_latency"]
    assert (write["median_ms"], write["p99_ms"]) == (250.0, 900.0)
    assert write["mu"] == pytest.approx(math.log(250))
    assert write["sigma"] == pytest.approx(math.log(900 / 250) / Z99)
    assert read["median_ms"] < write["median_ms"] and read["p99_ms"] < write["p99_ms"]
    assert (state["rate_limit"], state["endpoint_rate_limit"]) == (25, 25)
    live = control.set_pace(preset="stripe-live")
    assert (live["rate_limit"], live["endpoint_rate_limit"]) == (100, 25)
    custom = control.set_pace(write_latency={"median_ms": 80, "p99_ms": 300}, read_latency="20:60", rate_limit="test")
    assert custom["write_latency"]["median_ms"] == 80 and custom["read_latency"]["p99_ms"] == 60
    assert custom["rate_limit"] == 25
    off = control.set_pace(preset="off")
    assert off["active"] is False


def test_samples_follow_the_median_and_p99():
    latency = Latency(250, 900)
    rng = random.Random(1)
    samples = sorted(latency.sample_ms(rng) for _ in range(20_000))
    assert samples[len(samples) // 2] == pytest.approx(250, rel=0.05)
    assert samples[int(len(samples) * 0.99)] == pytest.approx(900, rel=0.1)
    assert samples[-1] <= 900 * 4  # the tail is capped


def test_each_request_takes_its_drawn_latency_reads_and_writes_apart(client, control):
    control.set_pace(write_latency="30:90", seed=3)
    client.v1.customers.create(params={"email": "a@example.com"})
    client.v1.customers.create(params={"email": "b@example.com"})
    client.v1.customers.list()
    writes = api_requests(control, path="/v1/customers")
    posts = [r for r in writes if r["method"] == "POST"]
    gets = [r for r in writes if r["method"] == "GET"]
    assert len(posts) == 2 and len(gets) == 1
    for entry in posts:
        assert 0 < entry["pace_delay_ms"] <= 90 * 4
        # The answer came no sooner than its drawn latency (a lower bound only: no timing race).
        assert entry["duration_ms"] >= entry["pace_delay_ms"] * 0.95
    assert gets[0]["pace_delay_ms"] == 0  # reads have no latency set
    counts = control.pace()["counts"]
    assert counts["delayed"] == 2
    assert counts["delayed_ms_total"] == pytest.approx(sum(r["pace_delay_ms"] for r in posts), abs=0.01)


def test_a_slow_request_does_not_hold_up_the_others(emulator, control):
    # Writes take ten seconds; a read made meanwhile is answered while the write still waits.
    control.set_pace(write_latency="10000:10000")
    slow = sdk_client(emulator.url, max_network_retries=0)
    outcome: dict = {}

    def write():
        try:
            outcome["customer"] = slow.v1.customers.create(params={"email": "slow@example.com"})
        except Exception as error:  # the emulator stops under it at the end of the test
            outcome["error"] = error

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    for _ in range(200):
        if any(r["path"] == "/v1/customers" for r in control.requests_in_flight()):
            break
        threading.Event().wait(0.02)
    else:
        pytest.fail("the slow write never reached the emulator")
    listed = sdk_client(emulator.url, max_network_retries=0).v1.customers.list()
    assert listed.data == []
    assert any(r["path"] == "/v1/customers" and r["method"] == "POST" for r in control.requests_in_flight())
    assert "customer" not in outcome


@pytest.mark.parametrize("body, message", [
    ({"write_latency": {"median_ms": 500, "p99_ms": 100}}, "p99 latency cannot be below the median"),
    ({"write_latency": "fast"}, "MEDIAN:P99"),
    ({"rate_limit": -3}, "between 0 and 100000"),
    ({"rate_limit": 2.5}, "whole number"),
    ({"preset": "warp"}, "preset is one of"),
    ({"latency": 5}, "Unknown pace setting(s): latency"),
])
def test_bad_pace_settings_are_refused_and_change_nothing(control, body, message):
    control.set_pace(rate_limit=7)
    with pytest.raises(ControlError) as raised:
        control.set_pace(**body)
    assert raised.value.status == 400 and message in str(raised.value)
    assert control.pace()["rate_limit"] == 7


def test_command_line_options_and_the_emulator_keyword():
    args = build_parser().parse_args(["--pace", "stripe-live", "--write-latency", "100:400", "--rate-limit", "test"])
    assert (args.pace, args.write_latency, args.rate_limit) == ("stripe-live", "100:400", "test")
    with Emulator(pace={"preset": "stripe-live", "write_latency": "100:400", "rate_limit": "test"}) as emu:
        state = EmulatorControl(emu.url).pace()
    assert state["write_latency"]["median_ms"] == 100 and state["read_latency"]["median_ms"] == 120
    assert (state["rate_limit"], state["endpoint_rate_limit"]) == (25, 25)
    assert API_KEY.startswith("sk_test_")


def test_a_reset_goes_back_to_the_pace_the_emulator_was_started_with():
    with Emulator(pace={"rate_limit": 40}) as emu:
        control = EmulatorControl(emu.url)
        control.set_pace(preset="stripe-test")
        control.reset()
        state = control.pace()
    assert (state["rate_limit"], state["endpoint_rate_limit"], state["write_latency"]) == (40, 0, None)
    with Emulator() as emu:
        control = EmulatorControl(emu.url)
        control.set_pace(preset="stripe-live")
        assert control.reset() and control.pace()["active"] is False
