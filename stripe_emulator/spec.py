"""Stripe's OpenAPI spec (API version 2023-08-16, trimmed to the emulated paths), and the request
schemas derived from it that drive parameter validation.

Parameters newer than the spec that the emulator understands are added from ``NEWER_PARAMS``;
operations the trimmed spec lacks (retrieving a product, a price, ...) get the schemas in
``EXTRA_OPERATIONS``.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

SPEC_PATH = Path(__file__).with_name("openapi") / "spec3.trimmed.json"

EXPAND = {"type": "array", "items": {"type": "string", "maxLength": 5000}}
METADATA = {
    "anyOf": [
        {"type": "object", "additionalProperties": {"type": "string"}},
        {"type": "string", "enum": [""]},
    ]
}
ONLY_EXPAND = {"type": "object", "properties": {"expand": EXPAND}}

# Parameters added to Stripe's API after 2023-08-16 that the emulator accepts.
NEWER_PARAMS: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/v1/checkout/sessions"): {
        "ui_mode": {"type": "string", "enum": ["custom", "elements", "embedded", "embedded_page", "hosted", "hosted_page"]},
        "adaptive_pricing": {
            "type": "object",
            "properties": {"enabled": {"type": "boolean"}},
        },
        "origin_context": {"type": "string", "enum": ["mobile_app", "web"]},
    },
    ("post", "/v1/customers"): {
        "business_name": {"anyOf": [{"type": "string", "maxLength": 150}, {"type": "string", "enum": [""]}]},
        "individual_name": {"anyOf": [{"type": "string", "maxLength": 150}, {"type": "string", "enum": [""]}]},
    },
    ("post", "/v1/customers/{customer}"): {
        "business_name": {"anyOf": [{"type": "string", "maxLength": 150}, {"type": "string", "enum": [""]}]},
        "individual_name": {"anyOf": [{"type": "string", "maxLength": 150}, {"type": "string", "enum": [""]}]},
    },
    ("post", "/v1/accounts"): {
        # Since 2024 an account is described by who controls it instead of its `type`.
        "controller": {
            "type": "object",
            "properties": {
                "fees": {"type": "object", "properties": {"payer": {"type": "string", "enum": ["account", "application"]}}},
                "losses": {"type": "object", "properties": {"payments": {"type": "string", "enum": ["application", "stripe"]}}},
                "requirement_collection": {"type": "string", "enum": ["application", "stripe"]},
                "stripe_dashboard": {
                    "type": "object",
                    "properties": {"type": {"type": "string", "enum": ["express", "full", "none"]}},
                },
            },
        },
    },
    ("post", "/v1/promotion_codes"): {
        "promotion": {
            "type": "object",
            "properties": {
                "coupon": {"type": "string", "maxLength": 5000},
                "type": {"type": "string", "enum": ["coupon"]},
            },
            "required": ["type"],
        },
    },
    ("get", "/v1/checkout/sessions"): {
        "status": {"type": "string", "enum": ["complete", "expired", "open"]},
        "created": {
            "anyOf": [
                {
                    "type": "object",
                    "properties": {k: {"type": "integer"} for k in ("gt", "gte", "lt", "lte")},
                },
                {"type": "integer"},
            ]
        },
    },
    ("post", "/v1/products"): {
        "marketing_features": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string", "maxLength": 5000}},
                "required": ["name"],
            },
        },
    },
}

# Since 2025 a promotion code names its coupon under `promotion[coupon]`; `coupon` stays accepted
# for older API versions, so neither is required by the schema (the handler checks).
NO_LONGER_REQUIRED: dict[tuple[str, str], set[str]] = {
    ("post", "/v1/promotion_codes"): {"coupon"},
    # The 2023 spec requires success_url; current Stripe needs it only for hosted Checkout,
    # which the handler checks with Stripe's message.
    ("post", "/v1/checkout/sessions"): {"success_url"},
}

EXTRA_OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("get", "/v1/products/{id}"): ONLY_EXPAND,
    ("get", "/v1/prices/{price}"): ONLY_EXPAND,
    ("get", "/v1/coupons/{coupon}"): ONLY_EXPAND,
    ("get", "/v1/promotion_codes/{promotion_code}"): ONLY_EXPAND,
    ("get", "/v1/charges/{charge}"): ONLY_EXPAND,
    ("get", "/v1/invoices/{invoice}"): ONLY_EXPAND,
    ("get", "/v1/payment_methods/{payment_method}"): ONLY_EXPAND,
    # Updates, as Stripe's API reference lists their parameters (absent from the trimmed spec).
    ("post", "/v1/promotion_codes/{promotion_code}"): {
        "type": "object",
        "properties": {
            "active": {"type": "boolean"},
            "expand": EXPAND,
            "metadata": METADATA,
            "restrictions": {
                "type": "object",
                "properties": {"currency_options": {"type": "object", "additionalProperties": {
                    "type": "object", "properties": {"minimum_amount": {"type": "integer"}}}}},
            },
        },
        "additionalProperties": False,
    },
    ("post", "/v1/coupons/{coupon}"): {
        "type": "object",
        "properties": {
            "currency_options": {"type": "object", "additionalProperties": {
                "type": "object", "properties": {"amount_off": {"type": "integer"}}, "required": ["amount_off"]}},
            "expand": EXPAND,
            "metadata": METADATA,
            "name": {"type": "string", "maxLength": 40},
        },
        "additionalProperties": False,
    },
    ("post", "/v1/products/{id}"): {
        "type": "object",
        "properties": {
            "active": {"type": "boolean"},
            "default_price": {"type": "string", "maxLength": 5000},
            "description": {"anyOf": [{"type": "string", "maxLength": 40000}, {"type": "string", "enum": [""]}]},
            "expand": EXPAND,
            "images": {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string", "enum": [""]}]},
            "marketing_features": {"anyOf": [{"type": "array", "items": {"type": "object"}}, {"type": "string", "enum": [""]}]},
            "metadata": METADATA,
            "name": {"type": "string", "maxLength": 5000},
            "package_dimensions": {"anyOf": [{"type": "object"}, {"type": "string", "enum": [""]}]},
            "shippable": {"type": "boolean"},
            "statement_descriptor": {"type": "string", "maxLength": 22},
            "tax_code": {"anyOf": [{"type": "string"}, {"type": "string", "enum": [""]}]},
            "unit_label": {"anyOf": [{"type": "string", "maxLength": 12}, {"type": "string", "enum": [""]}]},
            "url": {"anyOf": [{"type": "string"}, {"type": "string", "enum": [""]}]},
        },
        "additionalProperties": False,
    },
}


class Spec:
    def __init__(self, path: Path = SPEC_PATH):
        with open(path, encoding="utf-8") as handle:
            self.document = json.load(handle)
        self.schemas: dict[str, Any] = self.document["components"]["schemas"]
        self._request_schemas: dict[tuple[str, str], dict[str, Any]] = {}
        for spec_path, operations in self.document["paths"].items():
            for method, operation in operations.items():
                self._request_schemas[(method, spec_path)] = self._build_request_schema(method, spec_path, operation)
        self._request_schemas.update(EXTRA_OPERATIONS)

    def _build_request_schema(self, method: str, spec_path: str, operation: dict[str, Any]) -> dict[str, Any]:
        if method == "get" or method == "delete":
            properties: dict[str, Any] = {}
            required: list[str] = []
            for parameter in operation.get("parameters", []):
                if parameter["in"] != "query":
                    continue
                properties[parameter["name"]] = parameter.get("schema", {})
                if parameter.get("required"):
                    required.append(parameter["name"])
            schema: dict[str, Any] = {"type": "object", "properties": properties, "required": required}
        else:
            content = operation.get("requestBody", {}).get("content", {})
            body = content.get("application/x-www-form-urlencoded", {}).get("schema", {"type": "object"})
            schema = copy.deepcopy(body)
            schema.setdefault("properties", {})
        schema["properties"].update(NEWER_PARAMS.get((method, spec_path), {}))
        dropped = NO_LONGER_REQUIRED.get((method, spec_path), set())
        schema["required"] = [name for name in schema.get("required", []) if name not in dropped]
        return schema

    def request_schema(self, method: str, spec_path: str) -> dict[str, Any]:
        return self._request_schemas[(method, spec_path)]

    def expandable_fields(self, object_name: str) -> list[str]:
        schema = self.schemas.get(object_name, {})
        return schema.get("x-expandableFields", [])


@lru_cache(maxsize=1)
def load_spec() -> Spec:
    return Spec()
