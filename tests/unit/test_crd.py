"""The CRD in crds/ is exactly what the spec model generates, is structural, and refuses what the
model refuses (offline admission: structural defaults, schema, strict fields, CEL rules)."""

from __future__ import annotations

import argparse
import copy
import io
import re
from collections.abc import Iterator
from contextlib import redirect_stdout
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from ddbbridge import crd
from ddbbridge.spec import PairSpec, PairStatus, SpecError, parse_manifest
from ddbbridge_dev.crd_validation import admission_errors, apply_defaults, default_errors, version_schema
from tests.pair_cases import ALLOWED_UPDATES, CRD_FILE, INVALID_PAIRS, InvalidPair, minimal_pair

Schema = dict[str, Any]


@pytest.fixture(scope="module")
def generated() -> Schema:
    return crd.crd()


def _nodes(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, child in node.items():
            yield from _nodes(child, f"{path}/{key}")
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from _nodes(child, f"{path}/{index}")


def _schema_nodes(schema: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from _schema_nodes(child, f"{path}.{name}")
    if "items" in schema:
        yield from _schema_nodes(schema["items"], f"{path}[]")


def test_committed_crd_is_what_the_model_generates() -> None:
    committed = CRD_FILE.read_text(encoding="utf-8")
    assert committed == crd.render(), "crds/ is stale: run `ddbbridge crd --write` and commit it"


def test_cli_prints_the_generated_crd() -> None:
    parser = argparse.ArgumentParser()
    crd.register(parser.add_subparsers())
    args = parser.parse_args(["crd"])
    out = io.StringIO()
    with redirect_stdout(out):
        assert args.handler(args) == 0
    assert yaml.safe_load(out.getvalue()) == generated_document()


def generated_document() -> Schema:
    return crd.crd()


def test_names_scope_and_status_subresource(generated: Schema) -> None:
    spec = generated["spec"]
    assert generated["metadata"]["name"] == "tablereplicationpairs.ddbbridge.io"
    assert spec["group"] == "ddbbridge.io"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "TableReplicationPair"
    assert spec["names"]["shortNames"] == ["trp"]
    assert "ddbbridge" in spec["names"]["categories"]
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}


def test_schema_is_structural(generated: Schema) -> None:
    schema = version_schema(generated)
    forbidden = {"$ref", "$defs", "anyOf", "allOf", "oneOf", "not", "nullable", "title"}
    for path, node in _nodes(schema):
        if isinstance(node, dict):
            assert not forbidden & node.keys() - {"properties"}, f"{path}: {forbidden & node.keys()}"
    for path, node in _schema_nodes(schema):
        assert "type" in node, f"{path} has no type"
        assert "x-kubernetes-preserve-unknown-fields" not in node, path
        assert not ("properties" in node and "additionalProperties" in node), path
    # Only name may be restricted under metadata in a structural schema.
    assert set(schema["properties"]["metadata"]["properties"]) == {"name"}


def _model_fields(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, Any]]:
    for name, field in model.model_fields.items():
        alias = field.alias or name
        yield f"{prefix}.{alias}", field


def test_every_field_of_the_model_is_described_in_the_schema(generated: Schema) -> None:
    nodes = dict(_schema_nodes(version_schema(generated)))
    for path, field in _model_fields(PairSpec, ".spec"):
        assert path in nodes, path
        assert nodes[path].get("description") == field.description, path
    for path, _field in _model_fields(PairStatus, ".status"):
        assert path in nodes, path
    missing = [
        path for path, node in nodes.items() if path.startswith(".spec") and not node.get("description")
    ]
    assert not [p for p in missing if not p.endswith("[]")], f"no description: {missing}"


def test_defaults_pass_their_own_rules(generated: Schema) -> None:
    """The API server refuses a CRD whose default breaks its node's rules (nested defaults unapplied)."""
    assert default_errors(generated) == []
    broken = copy.deepcopy(generated)
    version_schema(broken)["properties"]["spec"]["properties"]["replication"]["default"] = {}
    assert any("originAttribute" in error for error in default_errors(broken))


def test_status_has_no_defaults(generated: Schema) -> None:
    status = version_schema(generated)["properties"]["status"]
    assert not [path for path, node in _schema_nodes(status) if "default" in node]


def test_server_defaults_equal_the_model_defaults(generated: Schema) -> None:
    """Defaulting the minimal sample the way the API server does yields what the model fills in."""
    document = minimal_pair()
    defaulted = apply_defaults(version_schema(generated), document)
    model = parse_manifest(document).spec.model_dump(by_alias=True, mode="json", exclude_none=True)
    assert defaulted["spec"] == model
    # With the replication block omitted altogether the nested defaults still arrive.
    del document["spec"]["replication"]
    defaulted = apply_defaults(version_schema(generated), document)
    assert defaulted["spec"]["replication"] == PairSpec.model_fields["replication"].get_default(
        call_default_factory=True
    ).model_dump(by_alias=True, mode="json", exclude_none=True)


def test_minimal_sample_is_admitted(generated: Schema) -> None:
    assert admission_errors(generated, minimal_pair()) == []


def test_the_case_table_is_broad() -> None:
    admission = [case for case in INVALID_PAIRS if not case.transition]
    assert len(admission) >= 8
    assert len({case.id for case in INVALID_PAIRS}) == len(INVALID_PAIRS)


@pytest.mark.parametrize("case", [c for c in INVALID_PAIRS if not c.transition], ids=lambda c: c.id)
def test_invalid_pair_is_refused_by_the_crd_and_the_model(generated: Schema, case: InvalidPair) -> None:
    errors = admission_errors(generated, case.manifest())
    assert errors, f"{case.id} was admitted"
    wanted = _dotted(case.path)
    assert any(_dotted(error.split(":")[0]).startswith(wanted) or wanted in error for error in errors), errors
    with pytest.raises(SpecError):
        parse_manifest(case.manifest())


@pytest.mark.parametrize("case", [c for c in INVALID_PAIRS if c.transition], ids=lambda c: c.id)
def test_immutable_change_is_refused_only_as_an_update(generated: Schema, case: InvalidPair) -> None:
    changed = case.manifest()
    assert admission_errors(generated, changed) == [], "valid as a new pair"
    errors = admission_errors(generated, changed, old=minimal_pair())
    assert any(re.search(case.server_message, error) for error in errors), errors


@pytest.mark.parametrize(("name", "change"), ALLOWED_UPDATES, ids=[name for name, _ in ALLOWED_UPDATES])
def test_mutable_change_is_admitted_as_an_update(generated: Schema, name: str, change: Any) -> None:
    updated = minimal_pair()
    change(updated)
    assert admission_errors(generated, updated, old=minimal_pair()) == []
    parse_manifest(updated)


def _dotted(path: str) -> str:
    return re.sub(r"\[(\d+)\]", r".\1", path)


def _resolve(schema: Schema, json_path: str) -> Schema | None:
    """Follow a printer column's JSONPath through the schema (indexes and filters select items)."""
    node: Schema | None = schema
    for step in re.findall(r"\.(\w+)|\[[^\]]*\]", json_path):
        if node is None:
            return None
        node = node.get("properties", {}).get(step) if step else node.get("items")
    return node


def test_printer_columns(generated: Schema) -> None:
    columns = generated["spec"]["versions"][0]["additionalPrinterColumns"]
    default = [c["name"] for c in columns if c.get("priority", 0) == 0]
    wide = [c["name"] for c in columns if c.get("priority", 0) == 1]
    assert default == ["Ready", "A", "B", "Lag", "DLQ", "Age"]
    assert {"A-to-B", "B-to-A", "Reason"} <= set(wide)
    schema = version_schema(generated)
    kinds = {"string": {"string"}, "integer": {"integer"}, "number": {"number", "integer"}}
    for column in columns:
        if column["jsonPath"].startswith(".metadata"):
            continue
        target = _resolve(schema, column["jsonPath"])
        assert target is not None, f"{column['name']}: {column['jsonPath']} names no field"
        assert target["type"] in kinds.get(column["type"], {column["type"]}), column


def test_a_full_status_fits_the_model_and_the_schema(generated: Schema) -> None:
    status = {
        "observedGeneration": 3,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Replicating",
                "message": "both directions healthy",
                "observedGeneration": 3,
                "lastTransitionTime": "2025-01-02T03:04:05Z",
            }
        ],
        "regions": [
            {
                "name": "cn",
                "region": "cn-north-1",
                "account": "123456789012",
                "arns": {"table": "arn:aws-cn:dynamodb:cn-north-1:123456789012:table/user-cn"},
                "streamEnabledByOperator": True,
                "credentialKeyCreated": "2025-01-01T00:00:00Z",
                "credentialKeyAgeDays": 1,
            }
        ],
        "directions": [
            {
                "source": "cn",
                "target": "sg",
                "replicatedCount": 10,
                "lagSeconds": 0.5,
                "onFailureDepth": 0,
                "deadLetterDepth": 1,
                "dlqDepth": 1,
            }
        ],
        "lagSeconds": 0.5,
        "dlqDepth": 1,
        "lastHealthCheckTime": "2025-01-02T03:04:05Z",
    }
    model = PairStatus.model_validate(status)
    assert (
        model.model_dump(by_alias=True, mode="json", exclude_none=True)["directions"] == status["directions"]
    )
    document = {**minimal_pair(), "status": status}
    assert admission_errors(generated, document) == []
    document["status"]["regions"][0]["accessKey"] = "never"
    assert any("accessKey" in error for error in admission_errors(generated, document))
