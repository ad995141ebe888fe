"""Both samples parse with the spec model and pass the CRD's offline admission; the full one sets and
explains every field of the spec."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ddbbridge import crd
from ddbbridge.spec import load_manifest
from ddbbridge_dev.crd_validation import admission_errors
from tests.pair_cases import FULL_SAMPLE, MINIMAL_SAMPLE

Schema = dict[str, Any]
KEY_LINE = re.compile(r"^\s*(?:-\s+)?([A-Za-z]\w*):")


def _spec_schema() -> Schema:
    return crd.spec_schema()


def _schema_paths(schema: Schema, path: str) -> Iterator[str]:
    for name, child in schema.get("properties", {}).items():
        child_path = f"{path}.{name}"
        yield child_path
        if child["type"] == "object":
            yield from _schema_paths(child, child_path)
        elif child["type"] == "array" and child["items"]["type"] == "object":
            yield from _schema_paths(child["items"], f"{child_path}[]")


def _value_paths(value: Any, path: str) -> Iterator[str]:
    if isinstance(value, dict):
        for name, child in value.items():
            yield f"{path}.{name}"
            yield from _value_paths(child, f"{path}.{name}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                yield from _value_paths(item, f"{path}[]")


@pytest.mark.parametrize("sample", [MINIMAL_SAMPLE, FULL_SAMPLE], ids=lambda p: p.name)
def test_sample_parses_and_is_admitted(sample: Path) -> None:
    manifest = load_manifest(sample)
    assert manifest.spec.side_a.name == "cn" and manifest.spec.side_b.name == "sg"
    document = yaml.safe_load(sample.read_text(encoding="utf-8"))
    assert admission_errors(crd.crd(), document) == []


def test_minimal_sample_stays_minimal() -> None:
    lines = MINIMAL_SAMPLE.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 25


def test_full_sample_sets_every_field() -> None:
    document = yaml.safe_load(FULL_SAMPLE.read_text(encoding="utf-8"))
    present = set(_value_paths(document["spec"], "spec"))
    missing = sorted(set(_schema_paths(_spec_schema(), "spec")) - present)
    assert not missing, f"samples/pair-full.yaml does not show {missing}"


def test_full_sample_explains_every_field() -> None:
    lines = FULL_SAMPLE.read_text(encoding="utf-8").splitlines()
    explained = set()
    for previous, line in itertools.pairwise(lines):
        match = KEY_LINE.match(line)
        if match and "#" in previous:
            explained.add(match.group(1))
    names = {path.rsplit(".", 1)[-1] for path in _schema_paths(_spec_schema(), "spec")}
    assert not sorted(names - explained), "fields without a comment right above them"
