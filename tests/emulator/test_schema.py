"""Every kind of object the emulator returns validates against Stripe's OpenAPI spec.

The spec is 2023-08-16 and the SDK speaks a 2026 version: newer fields are welcome (additional
properties stay allowed), but every field the spec requires must be there, with its type,
nullability and enum values.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests

from stripe_emulator.control import ControlError
from stripe_emulator.spec import SPEC_PATH

from .helpers import API_KEY, create_session, line_item, submit_card

SPEC_SHA256 = "fff3c43a10b1ee0607280507de26be14acbf1b98540cff5987958358a3ec8633"
# The project's reference folder, beside the clone (as CI lays it out).
SHARED_SPEC = Path(__file__).resolve().parents[3] / "shared" / "stripe-openapi" / "spec3.trimmed.json"
_SKIPPED = {"description", "title", "format", "maxLength"}


def to_json_schema(schema: Any) -> Any:
    """OpenAPI 3.0 schema → JSON Schema (2020-12): ``nullable`` becomes a null alternative,
    ``$ref``s point into ``$defs``, expandable fields keep their ``anyOf`` of id and object."""
    if not isinstance(schema, dict):
        return schema
    converted: dict[str, Any] = {}
    for key, value in schema.items():
        if key.startswith("x-") or key in _SKIPPED or key == "nullable":
            continue
        if key == "$ref":
            converted["$ref"] = "#/$defs/" + value.rsplit("/", 1)[1]
        elif key == "properties":
            converted["properties"] = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties"):
            converted[key] = to_json_schema(value)
        elif key in ("anyOf", "oneOf", "allOf"):
            converted[key] = [to_json_schema(sub) for sub in value]
        else:
            converted[key] = value
    if schema.get("nullable"):
        if "enum" in converted:
            converted["enum"] = [*converted["enum"], None]
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


@pytest.fixture(scope="module")
def spec_defs() -> dict[str, Any]:
    raw = SPEC_PATH.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == SPEC_SHA256, "the vendored spec differs from Stripe's trimmed spec"
    schemas = json.loads(raw)["components"]["schemas"]
    return {name: to_json_schema(schema) for name, schema in schemas.items()}


def test_the_vendored_spec_is_the_reference_folders_copy():
    if not SHARED_SPEC.exists():
        pytest.skip(f"no reference folder beside this clone ({SHARED_SPEC.parent})")
    assert hashlib.sha256(SHARED_SPEC.read_bytes()).hexdigest() == SPEC_SHA256, (
        "../shared/stripe-openapi/spec3.trimmed.json changed: vendor the new copy and update SPEC_SHA256"
    )


class Checker:
    def __init__(self, defs: dict[str, Any]):
        self.defs = defs
        self.checked: dict[str, int] = {}

    def __call__(self, obj: Any, schema_name: str | None = None) -> None:
        obj = obj.to_dict(for_json=True) if hasattr(obj, "to_dict") else obj
        name = schema_name or obj["object"]
        validator = jsonschema.Draft202012Validator({"$defs": self.defs, "$ref": f"#/$defs/{name}"})
        errors = sorted(validator.iter_errors(obj), key=lambda error: list(error.absolute_path))
        assert not errors, f"{name} {obj.get('id')}: " + "; ".join(
            f"{'/'.join(map(str, error.absolute_path))}: {error.message[:200]}" for error in errors[:5]
        )
        self.checked[name] = self.checked.get(name, 0) + 1


def test_every_object_kind_validates_against_the_spec(spec_defs, client, control, visitor, emulator):
    check = Checker(spec_defs)
    customer = client.v1.customers.create(params={"email": "schema@example.com", "name": "Schema", "metadata": {"k": "v"}})
    check(customer)
    product = client.v1.products.create(params={"name": "Tour", "default_price_data": {"currency": "eur", "unit_amount": 900}})
    check(product)
    check(client.v1.prices.retrieve(product.default_price, params={"expand": ["product"]}))
    coupon = client.v1.coupons.create(params={"percent_off": 50, "duration": "once"})
    check(coupon)
    check(client.v1.coupons.create(params={"amount_off": 100, "currency": "eur", "duration": "repeating", "duration_in_months": 3}))
    promotion_code = client.v1.promotion_codes.create(params={"coupon": coupon.id, "code": "HALF"})
    check(promotion_code)
    check(client.v1.promotion_codes.retrieve(promotion_code.id, params={"expand": ["customer"]}))
    check(client.v1.promotion_codes.update(promotion_code.id, params={"active": False, "metadata": {"m": "1"}}))
    check(client.v1.coupons.update(coupon.id, params={"name": "Half"}))
    check(client.v1.coupons.create(params={"percent_off": 5, "applies_to": {"products": [product.id]},
                                           "expand": ["applies_to"]}))
    check(client.v1.products.update(product.id, params={"name": "Tour at dusk"}))

    open_session = create_session(client, allow_promotion_codes=True, customer=customer.id,
                                  line_items=[{"price": product.default_price, "quantity": 2}, line_item()])
    check(open_session)
    check(client.v1.checkout.sessions.retrieve(open_session.id, params={"expand": ["line_items", "customer", "total_details.breakdown"]}))
    for item in client.v1.checkout.sessions.line_items.list(open_session.id, params={"expand": ["data.discounts", "data.taxes"]}).data:
        check(item, "item")

    declined = create_session(client)
    with pytest.raises(ControlError):
        control.pay_session(declined.id, "4000000000000002")
    failed_intent_id = control.events(type="payment_intent.payment_failed")[0]["data"]["object"]["id"]
    failed_intent = client.v1.payment_intents.retrieve(failed_intent_id, params={"expand": ["latest_charge", "payment_method"]})
    check(failed_intent)
    check(client.v1.charges.retrieve(failed_intent.latest_charge.id))

    challenged = create_session(client)
    submit_card(visitor, challenged, "4000002760003184")
    pending_intent_id = control.events(type="payment_intent.requires_action")[0]["data"]["object"]["id"]
    check(client.v1.payment_intents.retrieve(pending_intent_id, params={"expand": ["payment_method"]}))
    visitor.post(challenged.url + "/authenticate", data={"outcome": "fail"})
    check(client.v1.payment_intents.retrieve(pending_intent_id))
    check(client.v1.checkout.sessions.expire(challenged.id))
    check(client.v1.payment_intents.retrieve(pending_intent_id))

    paid = create_session(client, customer_creation="always", invoice_creation={"enabled": True},
                          discounts=[{"coupon": coupon.id}])
    control.pay_session(paid.id, email="paid@example.com", name="Paid Person")
    complete = client.v1.checkout.sessions.retrieve(
        paid.id, params={"expand": ["payment_intent.latest_charge", "payment_intent.payment_method", "invoice", "customer",
                                    "total_details.breakdown"]}
    )
    check(complete)
    check(complete.payment_intent)
    check(complete.payment_intent.latest_charge)
    check(complete.payment_intent.payment_method)
    check(complete.invoice)
    check(client.v1.invoices.retrieve(complete.invoice.id))

    three_ds = create_session(client)
    control.pay_session(three_ds.id, "4000002500003155", three_d_secure="complete")
    check(client.v1.payment_intents.retrieve(client.v1.checkout.sessions.retrieve(three_ds.id).payment_intent,
                                             params={"expand": ["latest_charge"]}))

    free = create_session(client, discounts=[{"coupon": client.v1.coupons.create(params={"percent_off": 100}).id}])
    check(control.pay_session(free.id), "checkout.session")

    for card in ("4242424242424242", "4000000000005126", "4000000000007726"):
        session = create_session(client)
        control.pay_session(session.id, card)
        intent_id = client.v1.checkout.sessions.retrieve(session.id).payment_intent
        check(client.v1.refunds.create(params={"payment_intent": intent_id, "amount": 100}))
        refund = client.v1.refunds.create(params={"payment_intent": intent_id, "amount": 200, "reason": "duplicate"})
        check(refund)
        check(client.v1.charges.retrieve(refund.charge, params={"expand": ["refunds"]}))
    assert control.wait_for_webhooks(timeout=10)["idle"]
    for refund in client.v1.refunds.list(params={"limit": 100}).data:
        check(refund)
    assert {r.status for r in client.v1.refunds.list(params={"limit": 100}).data} == {"succeeded", "failed"}

    check(client.v1.billing_portal.sessions.create(params={"customer": customer.id, "return_url": "https://shop.example/"}))
    doomed = client.v1.customers.create(params={"email": "doomed@example.com"})
    check(client.v1.customers.delete(doomed.id), "deleted_customer")
    check(client.v1.customers.retrieve(doomed.id), "deleted_customer")

    event_types = set()
    for event in client.v1.events.list(params={"limit": 100}).auto_paging_iter():
        check(event)
        check(event.data.object)
        event_types.add(event.type)
    for expected in ("checkout.session.completed", "checkout.session.expired", "payment_intent.succeeded",
                     "payment_intent.payment_failed", "charge.succeeded", "charge.refunded", "charge.refund.updated",
                     "refund.created", "refund.updated", "refund.failed", "customer.created", "invoice.paid"):
        assert expected in event_types

    for kind in ("checkout.session", "payment_intent", "charge", "refund", "customer", "billing_portal.session", "product",
                 "price", "coupon", "promotion_code", "event", "invoice", "payment_method", "item"):
        assert check.checked.get(kind), f"no {kind} was validated"


def test_errors_validate_against_the_error_schema(spec_defs, emulator):
    check = Checker(spec_defs)
    auth = {"Authorization": f"Bearer {API_KEY}"}
    answers = [
        requests.get(f"{emulator.url}/v1/customers"),
        requests.get(f"{emulator.url}/v1/customers/cus_missing", headers=auth),
        requests.post(f"{emulator.url}/v1/customers", data={"nope": "1"}, headers=auth),
        requests.post(f"{emulator.url}/v1/refunds", headers=auth),
    ]
    for answer in answers:
        assert answer.status_code >= 400
        check(answer.json(), "error")


def test_the_conversion_catches_missing_and_mistyped_fields(spec_defs, client):
    check = Checker(spec_defs)
    session = create_session(client).to_dict(for_json=True)
    check(session)
    for broken in ({k: v for k, v in session.items() if k != "payment_status"}, {**session, "amount_total": "12"},
                   {**session, "status": "paid"}, {**session, "customer_email": 5}):
        with pytest.raises(AssertionError):
            check(broken)
    check({**session, "a_field_from_2026": {"anything": True}})
    check({**session, "customer_email": None})
