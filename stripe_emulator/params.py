"""Stripe's form encoding: bracket notation in, typed Python values out, refused like Stripe refuses.

``line_items[0][price_data][currency]=eur&expand[]=payment_intent&metadata[k]=v`` becomes a
nested structure of dicts, lists and strings (``parse_form``), which ``coerce`` then checks and
converts against the request schema of the operation, taken from Stripe's OpenAPI spec.
"""

from __future__ import annotations

import difflib
import re
from typing import Any
from urllib.parse import parse_qsl

from .errors import InvalidRequestError

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")
_INTEGER = re.compile(r"^-?\d+$")
_DECIMAL = re.compile(r"^-?(\d+(\.\d*)?|\.\d+)$")

MAX_BODY_BYTES = 1_000_000
MAX_DEPTH = 12


class ParamError(InvalidRequestError):
    pass


def parse_form(raw: bytes | str) -> dict[str, Any]:
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ParamError("Invalid request: the request body is not valid UTF-8.") from None
    try:
        pairs = parse_qsl(raw, keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise ParamError("Invalid request: the parameters are not valid UTF-8 after percent-decoding.") from None
    tree: dict[str, Any] = {}
    for key, value in pairs:
        match = _KEY.match(key)
        if not match:
            segments = [key]
        else:
            segments = [match.group(1)] + _SEGMENT.findall(match.group(2))
        if len(segments) > MAX_DEPTH:
            raise ParamError(f"Invalid request: the parameter {segments[0]} is nested more than {MAX_DEPTH} levels deep.",
                             param=segments[0])
        _assign(tree, segments, value, segments[0])
    return tree


def _assign(container: Any, segments: list[str], value: str, root: str) -> None:
    segment, rest = segments[0], segments[1:]
    if segment == "":
        if not isinstance(container, list):
            raise ParamError("Invalid array", param=root)
        if not rest:
            container.append(value)
            return
        last = container[-1] if container else None
        if isinstance(last, dict) and rest[0] != "" and rest[0] not in last:
            target = last
        else:
            target = [] if rest[0] == "" else {}
            container.append(target)
        _assign(target, rest, value, root)
        return
    if not isinstance(container, dict):
        raise ParamError("Invalid hash", param=root)
    if not rest:
        if isinstance(container.get(segment), (dict, list)):
            raise ParamError("Invalid hash", param=root)
        container[segment] = value
        return
    child = container.get(segment)
    wants_list = rest[0] == ""
    if child is None:
        child = [] if wants_list else {}
        container[segment] = child
    elif isinstance(child, str) or (wants_list != isinstance(child, list)):
        raise ParamError("Invalid array" if wants_list else "Invalid hash", param=root)
    _assign(child, rest, value, root)


def join(path: str, key: str | int) -> str:
    return f"{path}[{key}]" if path else str(key)


def _leaf(path: str) -> str:
    names = [name for name in re.findall(r"[^\[\]]+", path) if not name.isdigit()]
    return names[-1] if names else path


def _one_of(values: list[str]) -> str:
    shown = [value for value in values if value != ""]
    if len(shown) <= 2:
        return " or ".join(shown)
    return ", ".join(shown[:-1]) + ", or " + shown[-1]


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_describe(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_describe(v) for v in value) + "]"
    return str(value)


class Coercer:
    """Checks a parsed parameter tree against an OpenAPI 3.0 schema of Stripe's spec."""

    def __init__(self, schemas: dict[str, Any]):
        self._schemas = schemas

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = self._schemas[schema["$ref"].rsplit("/", 1)[1]]
        return schema

    def coerce(self, value: Any, schema: dict[str, Any], path: str = "") -> Any:
        schema = self.resolve(schema)
        if "anyOf" in schema:
            return self._any_of(value, schema["anyOf"], path)
        kind = schema.get("type")
        if kind == "object" or "properties" in schema or "additionalProperties" in schema:
            return self._object(value, schema, path)
        if kind == "array":
            return self._array(value, schema, path)
        if isinstance(value, (dict, list)):
            raise ParamError(f"Invalid {_scalar_name(kind)}: {_describe(value)}", param=path)
        if kind == "integer":
            return self._integer(value, schema, path)
        if kind == "number":
            if value == "":
                raise _empty(path)
            if not _DECIMAL.match(value):
                raise ParamError(f"Invalid decimal: {value}", param=path)
            return float(value)
        if kind == "boolean":
            if value == "true":
                return True
            if value == "false":
                return False
            if value == "":
                raise _empty(path)
            raise ParamError(f"Invalid boolean: {value}", param=path)
        return self._string(value, schema, path)

    def _any_of(self, value: Any, alternatives: list[dict[str, Any]], path: str) -> Any:
        failures: list[tuple[dict[str, Any], ParamError]] = []
        for alternative in alternatives:
            resolved = self.resolve(alternative)
            if resolved.get("enum") == [""] and value != "":
                continue
            try:
                return self.coerce(value, resolved, path)
            except ParamError as error:
                failures.append((resolved, error))
        # Report the failure of the alternative the value was meant for (a hash for a hash).
        for resolved, error in failures:
            if _matches_kind(value, resolved):
                raise error
        if failures:
            raise failures[0][1]
        raise ParamError(f"Invalid value: {_describe(value)}", param=path)

    def _object(self, value: Any, schema: dict[str, Any], path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            if value == "" and path:
                raise _empty(path)
            raise ParamError("Invalid hash", param=path or None)
        properties = schema.get("properties", {})
        additional = schema.get("additionalProperties")
        result: dict[str, Any] = {}
        for key, item in value.items():
            where = join(path, key)
            if key in properties:
                result[key] = self.coerce(item, properties[key], where)
            elif additional:
                result[key] = self.coerce(item, additional if isinstance(additional, dict) else {}, where)
            else:
                message = f"Received unknown parameter: {where}"
                close = difflib.get_close_matches(key, list(properties), n=1, cutoff=0.75)
                if close:
                    message += f". Did you mean {close[0]}?"
                raise ParamError(message, param=where, code="parameter_unknown")
        for key in schema.get("required", []):
            if key not in result:
                where = join(path, key)
                raise ParamError(f"Missing required param: {where}.", param=where, code="parameter_missing")
        return result

    def _array(self, value: Any, schema: dict[str, Any], path: str) -> list[Any]:
        if isinstance(value, dict) and value and all(key.isdigit() for key in value):
            items = [value[key] for key in sorted(value, key=int)]
        elif isinstance(value, list):
            items = value
        else:
            raise ParamError("Invalid array", param=path)
        item_schema = schema.get("items", {})
        return [self.coerce(item, item_schema, join(path, index)) for index, item in enumerate(items)]

    def _integer(self, value: str, schema: dict[str, Any], path: str) -> int:
        if value == "":
            raise _empty(path)
        if not _INTEGER.match(value):
            raise ParamError(f"Invalid integer: {value}", param=path, code="parameter_invalid_integer")
        number = int(value)
        if abs(number) > 2**63 - 1:
            raise ParamError(f"Invalid integer: {value}", param=path, code="parameter_invalid_integer")
        return number

    def _string(self, value: str, schema: dict[str, Any], path: str) -> str | None:
        enum = schema.get("enum")
        if enum is not None:
            if value in enum:
                return value
            if value == "":
                raise _empty(path)
            raise ParamError(f"Invalid {_leaf(path)}: must be one of {_one_of(enum)}", param=path)
        limit = schema.get("maxLength")
        if limit is not None and len(value) > limit:
            raise ParamError(
                f"Invalid string: {value[:40]}{'...' if len(value) > 40 else ''}; must be at most {limit} characters",
                param=path,
            )
        return value


def _scalar_name(kind: str | None) -> str:
    return {"integer": "integer", "number": "decimal", "boolean": "boolean"}.get(kind or "", "string")


def _matches_kind(value: Any, schema: dict[str, Any]) -> bool:
    kind = schema.get("type")
    if isinstance(value, dict):
        return kind == "object" or "properties" in schema
    if isinstance(value, list):
        return kind == "array"
    return kind not in ("object", "array")


def _empty(path: str) -> ParamError:
    return ParamError(
        f"You passed an empty string for '{path}'. We assume empty values are an attempt to unset a "
        f"parameter; however '{path}' cannot be unset. You should remove '{path}' from your request or "
        "supply a non-empty value.",
        param=path,
        code="parameter_invalid_empty",
    )


def empty_string_error(path: str) -> ParamError:
    return _empty(path)
