"""Refunds: partial, repeated, never more than is left, the failing card, and concurrency."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import stripe

from .helpers import create_session, line_item


def paid_session(client, control, card="4242424242424242", amount=5000):
    session = create_session(client, line_items=[line_item(amount=amount)], customer_creation="always")
    control.pay_session(session.id, card, email="refund@example.com", name="Refund Me")
    return client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["payment_intent"]})


def test_partial_and_repeated_refunds_until_nothing_is_left(client, control):
    session = paid_session(client, control)
    intent = session.payment_intent
    first = client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 1200, "reason": "requested_by_customer",
                                             "metadata": {"booking": "42"}})
    assert (first.status, first.amount, first.reason, first.charge) == ("succeeded", 1200, "requested_by_customer", intent.latest_charge)
    assert first.metadata["booking"] == "42"
    second = client.v1.refunds.create(params={"charge": intent.latest_charge, "amount": 800})
    charge = client.v1.charges.retrieve(intent.latest_charge)
    assert (charge.amount_refunded, charge.refunded) == (2000, False)
    with pytest.raises(stripe.InvalidRequestError) as too_much:
        client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 3001})
    assert too_much.value.param == "amount"
    assert too_much.value.user_message == "Refund amount (€30.01) is greater than unrefunded amount on charge (€30.00)"
    rest = client.v1.refunds.create(params={"payment_intent": intent.id})
    assert rest.amount == 3000
    charge = client.v1.charges.retrieve(intent.latest_charge, params={"expand": ["refunds"]})
    assert (charge.amount_refunded, charge.refunded) == (5000, True)
    assert {r.id for r in charge.refunds.data} == {first.id, second.id, rest.id}
    with pytest.raises(stripe.InvalidRequestError) as already:
        client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 1})
    assert already.value.code == "charge_already_refunded"
    assert already.value.user_message == f"Charge {intent.latest_charge} has already been refunded."
    listed = client.v1.refunds.list(params={"payment_intent": intent.id})
    assert [r.id for r in listed.data] == [rest.id, second.id, first.id]
    assert client.v1.refunds.list(params={"charge": intent.latest_charge}).data[0].id == rest.id
    assert client.v1.refunds.retrieve(first.id).amount == 1200


def test_refund_events_and_metadata_update(client, control, receiver):
    session = paid_session(client, control)
    refund = client.v1.refunds.create(params={"payment_intent": session.payment_intent.id, "amount": 100})
    assert control.wait_for_webhooks(timeout=10)["idle"]
    types = [event["type"] for event in reversed(control.events())]
    assert types[-2:] == ["refund.created", "charge.refunded"]
    refunded = receiver.events("charge.refunded")[0].data.object
    assert refunded.amount_refunded == 100
    updated = client.v1.refunds.update(refund.id, params={"metadata": {"note": "late"}})
    assert updated.metadata["note"] == "late"
    assert control.wait_for_webhooks(timeout=10)["idle"]
    event = receiver.events("refund.updated")[0]
    assert event.data.previous_attributes.to_dict() == {"metadata": {"note": None}}


@pytest.mark.parametrize(
    "params, message, param, status",
    [
        ({}, "One of the following params should be provided for this request: payment_intent or charge.", None, 400),
        ({"charge": "ch_missing"}, "No such charge: 'ch_missing'", "id", 404),
        ({"payment_intent": "pi_missing"}, "No such payment_intent: 'pi_missing'", "payment_intent", 404),
        ({"payment_intent": "PI", "amount": 0}, "This value must be greater than or equal to 1.", "amount", 400),
        ({"payment_intent": "PI", "reason": "expired_uncaptured_charge"},
         "Invalid reason: must be one of duplicate, fraudulent, or requested_by_customer", "reason", 400),
    ],
)
def test_refusals(client, control, params, message, param, status):
    session = paid_session(client, control)
    params = {k: (session.payment_intent.id if v == "PI" else v) for k, v in params.items()}
    with pytest.raises(stripe.StripeError) as refused:
        client.v1.refunds.create(params=params)
    assert refused.value.http_status == status
    assert refused.value.user_message == message
    assert refused.value.error.param == param


def test_unpaid_intent_cannot_be_refunded(client, control):
    session = create_session(client)
    with pytest.raises(Exception):
        control.pay_session(session.id, "4000000000000002")
    intent_id = control.events(type="payment_intent.payment_failed")[0]["data"]["object"]["id"]
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.refunds.create(params={"payment_intent": intent_id})
    assert refused.value.user_message == f"This PaymentIntent ({intent_id}) does not have a successful charge to refund."


def test_refund_of_the_5126_card_fails_shortly_after(client, control, receiver):
    session = paid_session(client, control, card="4000000000005126")
    refund = client.v1.refunds.create(params={"payment_intent": session.payment_intent.id})
    assert refund.status == "succeeded"
    assert control.wait_for_webhooks(timeout=10)["idle"]
    failed = client.v1.refunds.retrieve(refund.id)
    assert (failed.status, failed.failure_reason) == ("failed", "expired_or_canceled_card")
    types = receiver.types()
    for expected in ("refund.created", "charge.refunded", "refund.updated", "refund.failed", "charge.refund.updated"):
        assert expected in types
    emitted = [event["type"] for event in reversed(control.events())]
    assert emitted[-3:] == ["refund.updated", "refund.failed", "charge.refund.updated"]
    update = receiver.events("charge.refund.updated")[0]
    assert update.data.previous_attributes.status == "succeeded"
    charge = client.v1.charges.retrieve(session.payment_intent.latest_charge)
    assert (charge.amount_refunded, charge.refunded) == (0, False)


def test_refund_of_the_7726_card_is_pending_then_succeeds(client, control, receiver):
    session = paid_session(client, control, card="4000000000007726")
    refund = client.v1.refunds.create(params={"payment_intent": session.payment_intent.id})
    assert refund.status == "pending"
    assert control.wait_for_webhooks(timeout=10)["idle"]
    assert client.v1.refunds.retrieve(refund.id).status == "succeeded"
    assert receiver.events("refund.updated")[0].data.previous_attributes.status == "pending"


def test_concurrent_refunds_never_exceed_the_charge(client, control):
    session = paid_session(client, control, amount=1000)
    intent_id = session.payment_intent.id

    def refund_300():
        try:
            return client.v1.refunds.create(params={"payment_intent": intent_id, "amount": 300}).amount
        except stripe.InvalidRequestError:
            return 0

    with ThreadPoolExecutor(max_workers=8) as pool:
        amounts = list(pool.map(lambda _: refund_300(), range(8)))
    assert sorted(amounts, reverse=True)[:4] == [300, 300, 300, 0]
    assert sum(amounts) == 900
    charge = client.v1.charges.retrieve(session.payment_intent.latest_charge)
    assert charge.amount_refunded == 900
    assert sum(r.amount for r in client.v1.refunds.list(params={"payment_intent": intent_id}).data) == 900
