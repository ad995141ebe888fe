"""The TableReplicationPair CRD, generated from the spec model so the two can never disagree.

pydantic's JSON schema is turned into a Kubernetes *structural* schema: `$ref`s inlined, optional
fields made plain optional properties (no `anyOf` with null), titles and `additionalProperties: false`
dropped (the API server prunes or, with strict field validation, rejects unknown fields itself), and
the `x-kubernetes-*` keys the model declares (CEL rules, list types) kept as they are.
`ddbbridge crd --write` regenerates `crds/tablereplicationpairs.ddbbridge.io.yaml`; a unit test fails
when the committed file is stale.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from ddbbridge.spec import API_GROUP, API_VERSION, KIND, PAIR_NAME_PATTERN, PairSpec, PairStatus

PLURAL = "tablereplicationpairs"
SINGULAR = "tablereplicationpair"
SHORT_NAMES = ("trp",)
CATEGORIES = ("ddbbridge",)
CRD_NAME = f"{PLURAL}.{API_GROUP}"
CRD_PATH = Path("crds") / f"{CRD_NAME}.yaml"
HEADER = (
    "# Generated from operator/ddbbridge/spec.py by `ddbbridge crd --write`. Do not edit by hand:\n"
    "# change the model and regenerate (a unit test fails while this file is stale).\n"
)

Schema = dict[str, Any]

READY = '.status.conditions[?(@.type=="Ready")]'
PRINTER_COLUMNS: tuple[Schema, ...] = (
    {"name": "Ready", "type": "string", "jsonPath": f"{READY}.status", "description": "Ready condition."},
    {
        "name": "A",
        "type": "string",
        "jsonPath": ".spec.regions[0].region",
        "description": "Region of side A.",
    },
    {
        "name": "B",
        "type": "string",
        "jsonPath": ".spec.regions[1].region",
        "description": "Region of side B.",
    },
    {
        "name": "Lag",
        "type": "number",
        "jsonPath": ".status.lagSeconds",
        "description": "Seconds behind, the larger of the two directions.",
    },
    {
        "name": "DLQ",
        "type": "integer",
        "jsonPath": ".status.dlqDepth",
        "description": "Dead letters of both directions, both kinds.",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {
        "name": "A-to-B",
        "type": "integer",
        "jsonPath": ".status.directions[0].replicatedCount",
        "description": "Changes replicated from side A to side B.",
        "priority": 1,
    },
    {
        "name": "B-to-A",
        "type": "integer",
        "jsonPath": ".status.directions[1].replicatedCount",
        "description": "Changes replicated from side B to side A.",
        "priority": 1,
    },
    {
        "name": "Reason",
        "type": "string",
        "jsonPath": f"{READY}.reason",
        "description": "Reason of the Ready condition.",
        "priority": 1,
    },
    {"name": "Policy", "type": "string", "jsonPath": ".spec.deletionPolicy", "priority": 1},
    {"name": "Paused", "type": "boolean", "jsonPath": ".spec.paused", "priority": 1},
)


class SchemaError(ValueError):
    """The model uses a construct that has no structural-schema equivalent."""


def structural_schema(model: type[BaseModel], keep_defaults: bool = True) -> Schema:
    """The OpenAPI v3 structural schema of one pydantic model, as the API server wants it."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    definitions = raw.pop("$defs", {})
    return _convert(raw, definitions, keep_defaults, where=model.__name__)


def _convert(node: Schema, definitions: dict[str, Schema], keep_defaults: bool, where: str) -> Schema:
    node = dict(node)
    node.pop("title", None)
    if "$ref" in node:
        # A field-level description or default beside a $ref wins over the referenced model's own.
        target = definitions[node.pop("$ref").rsplit("/", 1)[-1]]
        node = {**_convert(target, definitions, keep_defaults, where), **node}
    if "allOf" in node:
        parts = node.pop("allOf")
        if len(parts) != 1:
            raise SchemaError(f"{where}: allOf with {len(parts)} parts")
        node = {**_convert(parts[0], definitions, keep_defaults, where), **node}
    if "anyOf" in node:
        # Only `X | None` is allowed: an optional field is simply a property that may be absent.
        choices = [choice for choice in node.pop("anyOf") if choice != {"type": "null"}]
        if len(choices) != 1:
            raise SchemaError(f"{where}: union types have no structural schema")
        if node.get("default", ...) is None:
            del node["default"]
        node = {**_convert(choices[0], definitions, keep_defaults, where), **node}
    if not keep_defaults:
        node.pop("default", None)
    if node.get("type") == "object":
        # Structural schemas forbid additionalProperties beside properties; the API server's
        # pruning and strict field validation refuse unknown fields instead.
        node.pop("additionalProperties", None)
        properties = node.get("properties", {})
        node["properties"] = {
            name: _convert(child, definitions, keep_defaults, f"{where}.{name}")
            for name, child in properties.items()
        }
    if node.get("type") == "array":
        node["items"] = _convert(node["items"], definitions, keep_defaults, f"{where}[]")
    if "type" not in node:
        raise SchemaError(f"{where}: every node of a structural schema needs a type")
    return _ordered(node)


# Keys in a stable, readable order; anything else follows alphabetically.
_KEY_ORDER = ("description", "type", "format", "enum", "default", "required", "properties", "items")


def _ordered(node: Schema) -> Schema:
    first = [key for key in _KEY_ORDER if key in node]
    rest = sorted(key for key in node if key not in _KEY_ORDER)
    return {key: node[key] for key in first + rest}


def spec_schema() -> Schema:
    return structural_schema(PairSpec)


def status_schema() -> Schema:
    # No defaults in status: a zero the operator never observed would be a lie in `kubectl get`.
    return structural_schema(PairStatus, keep_defaults=False)


def root_schema() -> Schema:
    return {
        "description": "Active-active replication between two DynamoDB tables in two regions, "
        "possibly in different AWS partitions.",
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {
                "type": "object",
                "properties": {
                    # Derived AWS names (roles, functions) must fit in 64 characters.
                    "name": {"type": "string", "maxLength": 24, "pattern": PAIR_NAME_PATTERN},
                },
            },
            "spec": spec_schema(),
            "status": status_schema(),
        },
    }


def crd() -> Schema:
    """The whole CustomResourceDefinition document."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": CRD_NAME,
            "labels": {"app.kubernetes.io/name": "ddbbridge", "app.kubernetes.io/component": "crd"},
        },
        "spec": {
            "group": API_GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": list(CATEGORIES),
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [dict(column) for column in PRINTER_COLUMNS],
                    "schema": {"openAPIV3Schema": root_schema()},
                }
            ],
        },
    }


def render() -> str:
    """The CRD as committed in crds/: header comment plus YAML in a stable order."""
    body = yaml.safe_dump(crd(), sort_keys=False, width=100, allow_unicode=True)
    return HEADER + body


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "crd", help="print the TableReplicationPair CRD generated from the spec model"
    )
    parser.add_argument(
        "--write", action="store_true", help=f"write it to {CRD_PATH} (relative to the current folder)"
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    text = render()
    if args.write:
        CRD_PATH.parent.mkdir(parents=True, exist_ok=True)
        CRD_PATH.write_text(text, encoding="utf-8")
        print(f"wrote {CRD_PATH}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
