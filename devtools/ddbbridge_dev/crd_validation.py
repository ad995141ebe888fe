"""Offline admission for a CRD: defaulting, schema, strict unknown fields and CEL rules.

A stand-in for the API server's own checks, good enough to test a CRD and its samples without a
cluster (the e2e tests then prove the same cases on a real kube-apiserver). It follows the API
server's order: apply structural defaults, validate the schema (unknown fields refused, as
`kubectl apply` does with strict field validation), then evaluate `x-kubernetes-validations`
bottom-up, transition rules (those naming `oldSelf`) only where an old value correlates.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

import celpy
import jsonschema
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

Schema = dict[str, Any]

_OLD_SELF = re.compile(r"\boldSelf\b")


def version_schema(crd: Schema, version: str | None = None) -> Schema:
    """The openAPIV3Schema of one served version (the first when none is named)."""
    versions = crd["spec"]["versions"]
    chosen = next(v for v in versions if version is None or v["name"] == version)
    schema: Schema = chosen["schema"]["openAPIV3Schema"]
    return schema


def apply_defaults(schema: Schema, value: Any) -> Any:
    """A copy of `value` with every structural default filled in, top-down like the API server."""
    value = copy.deepcopy(value)
    _default_in_place(schema, value)
    return value


def _default_in_place(schema: Schema, value: Any) -> None:
    if isinstance(value, dict) and schema.get("type") == "object":
        properties = schema.get("properties", {})
        for name, child in properties.items():
            if name not in value and "default" in child:
                value[name] = copy.deepcopy(child["default"])
        for name, item in value.items():
            if name in properties:
                _default_in_place(properties[name], item)
    elif isinstance(value, list) and schema.get("type") == "array":
        for item in value:
            _default_in_place(schema["items"], item)


def admission_errors(crd: Schema, obj: Schema, old: Schema | None = None) -> list[str]:
    """Every reason the API server would refuse to store `obj` (an update of `old` when given)."""
    schema = version_schema(crd)
    new = apply_defaults(schema, obj)
    previous = apply_defaults(schema, old) if old is not None else None
    errors = list(_schema_errors(schema, new))
    errors.extend(_unknown_fields(schema, new, ""))
    errors.extend(_list_map_duplicates(schema, new, ""))
    errors.extend(_cel_errors(schema, new, previous, ""))
    return errors


def default_errors(crd: Schema) -> list[str]:
    """What the API server refuses when the CRD itself is created: every `default` must pass its
    own node's schema and CEL rules as written (nested defaults are NOT filled in first)."""
    errors: list[str] = []
    for path, node in _schema_nodes(version_schema(crd), ""):
        if "default" in node:
            value = node["default"]
            errors.extend(f"{path}.default: {error}" for error in _schema_errors(node, value))
            errors.extend(f"{path}.default: {error}" for error in _cel_errors(node, value, None, ""))
    return errors


def _schema_nodes(schema: Schema, path: str) -> Iterator[tuple[str, Schema]]:
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from _schema_nodes(child, f"{path}.{name}")
    if "items" in schema:
        yield from _schema_nodes(schema["items"], f"{path}[]")


def _schema_errors(schema: Schema, value: Any) -> Iterator[str]:
    validator = jsonschema.Draft7Validator(schema)
    for error in validator.iter_errors(value):
        path = ".".join(str(step) for step in error.absolute_path)
        yield f"{path}: {error.message}"


def _unknown_fields(schema: Schema, value: Any, path: str) -> Iterator[str]:
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(value, dict) and schema.get("type") == "object":
        properties = schema.get("properties", {})
        for name, item in value.items():
            child_path = f"{path}.{name}" if path else name
            if path == "" and name == "metadata":
                continue  # ObjectMeta is the API server's own, not this schema's
            if name not in properties:
                yield f'unknown field "{child_path}"'
            else:
                yield from _unknown_fields(properties[name], item, child_path)
    elif isinstance(value, list) and schema.get("type") == "array":
        for index, item in enumerate(value):
            yield from _unknown_fields(schema["items"], item, f"{path}[{index}]")


def _list_map_duplicates(schema: Schema, value: Any, path: str) -> Iterator[str]:
    if isinstance(value, dict) and schema.get("type") == "object":
        properties = schema.get("properties", {})
        for name, item in value.items():
            if name in properties:
                yield from _list_map_duplicates(properties[name], item, f"{path}.{name}" if path else name)
    elif isinstance(value, list) and schema.get("type") == "array":
        keys = schema.get("x-kubernetes-list-map-keys")
        if schema.get("x-kubernetes-list-type") == "map" and keys:
            seen: set[tuple[Any, ...]] = set()
            for index, item in enumerate(value):
                key = _map_key(item, keys)
                if key in seen:
                    yield f"{path}[{index}]: Duplicate value: {dict(zip(keys, key, strict=True))}"
                seen.add(key)
        for index, item in enumerate(value):
            yield from _list_map_duplicates(schema["items"], item, f"{path}[{index}]")


def _map_key(item: Any, keys: list[str]) -> tuple[Any, ...]:
    return tuple(item.get(key) if isinstance(item, dict) else None for key in keys)


def _cel_errors(schema: Schema, value: Any, old: Any, path: str) -> Iterator[str]:
    # Children first: the API server reports every failing rule, wherever it sits.
    if isinstance(value, dict) and schema.get("type") == "object":
        properties = schema.get("properties", {})
        for name, item in value.items():
            if name in properties:
                previous = old.get(name) if isinstance(old, dict) else None
                yield from _cel_errors(properties[name], item, previous, f"{path}.{name}" if path else name)
    elif isinstance(value, list) and schema.get("type") == "array":
        keys = schema.get("x-kubernetes-list-map-keys")
        # Only map lists correlate items with the old list; elsewhere transition rules cannot run.
        old_by_key = (
            {_map_key(item, keys): item for item in old}
            if isinstance(old, list) and schema.get("x-kubernetes-list-type") == "map" and keys
            else {}
        )
        for index, item in enumerate(value):
            previous = old_by_key.get(_map_key(item, keys)) if keys else None
            yield from _cel_errors(schema["items"], item, previous, f"{path}[{index}]")
    for entry in schema.get("x-kubernetes-validations", []):
        rule = entry["rule"]
        transition = bool(_OLD_SELF.search(rule))
        if transition and old is None:
            continue
        where = path + entry.get("fieldPath", "")
        try:
            passed = evaluate(rule, value, old if transition else None)
        except CELEvalError as error:
            yield f"{where}: rule {rule!r} failed to evaluate: {error}"
            continue
        if not passed:
            yield f"{where}: Invalid value: {entry.get('message', rule)}"


_ENVIRONMENT = celpy.Environment()


def evaluate(rule: str, value: Any, old: Any = None) -> bool:
    """Evaluate one CEL rule with `self` (and `oldSelf`) bound as the API server binds them."""
    program = _ENVIRONMENT.program(_ENVIRONMENT.compile(rule))
    activation: dict[str, Any] = {"self": json_to_cel(value)}
    if old is not None:
        activation["oldSelf"] = json_to_cel(old)
    result = program.evaluate(activation)
    if isinstance(result, CELEvalError):
        raise result
    return bool(result)
