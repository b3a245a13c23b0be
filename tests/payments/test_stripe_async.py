"""The SDK's async client (`stripe_api.customer_create_async`), used by the ASGI comparison of
benchmarks/stripe_wait.py: the same Customer as the blocking call, the same idempotency, and
Stripe's refusals turned into the same PaymentsUnavailable."""

import asyncio

import pytest

from payments import stripe_api


def test_awaited_customer_create_makes_the_customer_at_stripe(stripe_emulator):
    made = asyncio.run(
        stripe_api.customer_create_async(email="ada@example.com", name="Ada Lovelace", idempotency_key="async-ada-1")
    )

    customer = stripe_api.stripe_client().v1.customers.retrieve(made)
    assert (customer.email, customer.name) == ("ada@example.com", "Ada Lovelace")


def test_awaited_customer_create_is_idempotent_per_key(stripe_emulator):
    async def twice():
        first = await stripe_api.customer_create_async(email="b@example.com", name="B", idempotency_key="async-b")
        again = await stripe_api.customer_create_async(email="b@example.com", name="B", idempotency_key="async-b")
        other = await stripe_api.customer_create_async(email="b@example.com", name="B", idempotency_key="async-b2")
        return first, again, other

    first, again, other = asyncio.run(twice())

    assert first == again
    assert other != first


def test_awaited_call_that_cannot_reach_stripe_is_payments_unavailable(settings):
    settings.STRIPE_SECRET_KEY = "sk_test_unreachable"
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # nothing listens on the discard port
    settings.STRIPE_MAX_NETWORK_RETRIES = 0

    with pytest.raises(stripe_api.PaymentsUnavailable) as refused:
        asyncio.run(stripe_api.customer_create_async(email="c@example.com", name="C", idempotency_key="async-c"))

    assert str(refused.value) == "We could not reach our payment provider. Please try again in a moment."


def test_awaited_call_without_a_key_is_payments_unavailable(settings):
    settings.STRIPE_SECRET_KEY = ""

    with pytest.raises(stripe_api.PaymentsUnavailable, match="not set up"):
        asyncio.run(stripe_api.customer_create_async(email="d@example.com", name="D", idempotency_key="async-d"))


def test_benchmark_views_each_make_one_stripe_customer(stripe_emulator, rf):
    from shop.views import benchmark_stripe_call, benchmark_stripe_call_async

    blocking = benchmark_stripe_call(rf.get("/_benchmark/stripe-call/"))
    awaited = asyncio.run(benchmark_stripe_call_async(rf.get("/_benchmark/stripe-call-async/")))

    assert (blocking.status_code, blocking.content, awaited.status_code, awaited.content) == (200, b"ok", 200, b"ok")
    made = stripe_api.stripe_client().v1.customers.list(params={"limit": 10}).data
    assert [customer.email for customer in made] == ["wait@bench.example", "wait@bench.example"]


def test_benchmark_stripe_views_are_not_mounted_without_the_benchmark_setting(client):
    assert client.get("/_benchmark/stripe-call/", secure=True).status_code == 404
    assert client.get("/_benchmark/stripe-call-async/", secure=True).status_code == 404
