"""Invalid TableReplicationPair manifests, shared by the offline CRD tests and the e2e admission tests.

Each case changes the minimal sample (`samples/pair.yaml`). `path` is the field the refusal must name;
`server_message` is a regex the real API server's refusal must match. Transition cases are valid on
their own and refused only as an UPDATE of the sample (immutability rules need `oldSelf`).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPOSITORY = Path(__file__).resolve().parents[1]
MINIMAL_SAMPLE = REPOSITORY / "samples" / "pair.yaml"
FULL_SAMPLE = REPOSITORY / "samples" / "pair-full.yaml"
CRD_FILE = REPOSITORY / "crds" / "tablereplicationpairs.ddbbridge.io.yaml"

Manifest = dict[str, Any]


@functools.cache
def _parsed_minimal_sample() -> Manifest:
    document: Manifest = yaml.safe_load(MINIMAL_SAMPLE.read_text(encoding="utf-8"))
    return document


def minimal_pair() -> Manifest:
    """A fresh copy of samples/pair.yaml (parsed once: callers mutate what they get)."""
    return copy.deepcopy(_parsed_minimal_sample())


@dataclass(frozen=True)
class InvalidPair:
    id: str
    change: Callable[[Manifest], None]
    path: str
    server_message: str
    transition: bool = False

    def manifest(self, name: str | None = None) -> Manifest:
        document = minimal_pair()
        if name is not None:
            document["metadata"]["name"] = name
        self.change(document)
        return document


def _set(path: str, value: Any) -> Callable[[Manifest], None]:
    """A change that sets one dotted path (list indexes as numbers), creating mappings on the way."""
    steps: list[str | int] = [int(step) if step.isdigit() else step for step in path.split(".")]

    def change(document: Manifest) -> None:
        node: Any = document
        for step in steps[:-1]:
            node = node.setdefault(step, {}) if isinstance(step, str) else node[step]
        node[steps[-1]] = value

    return change


def _third_region(document: Manifest) -> None:
    regions = document["spec"]["regions"]
    regions.append({"name": "us", "region": "us-east-1", "tableName": "user-us"})


def _one_region(document: Manifest) -> None:
    del document["spec"]["regions"][1]


def _no_table(document: Manifest) -> None:
    del document["spec"]["regions"][1]["tableName"]


def _replication(**values: Any) -> Callable[[Manifest], None]:
    def change(document: Manifest) -> None:
        document["spec"].setdefault("replication", {}).update(copy.deepcopy(values))

    return change


INVALID_PAIRS: tuple[InvalidPair, ...] = (
    InvalidPair(
        "same-region-twice",
        _set("spec.regions.1.region", "cn-north-1"),
        "spec.regions",
        r"regions\[\]\.region must differ",
    ),
    InvalidPair(
        "duplicate-side-names",
        _set("spec.regions.1.name", "cn"),
        "spec.regions",
        r"Duplicate value|regions\[\]\.name must be unique",
    ),
    InvalidPair("three-regions", _third_region, "spec.regions", r"spec\.regions: Too many: 3"),
    InvalidPair("one-region", _one_region, "spec.regions", r"spec\.regions.*should have at least 2 items"),
    InvalidPair(
        "missing-table-name", _no_table, "spec.regions", r"spec\.regions\[1\]\.tableName: Required value"
    ),
    InvalidPair(
        "sender-batch-size-zero",
        _replication(senderBatchSize=0),
        "spec.replication.senderBatchSize",
        r"senderBatchSize.*should be greater than or equal to 1",
    ),
    InvalidPair(
        "applier-batch-size-too-big",
        _replication(applierBatchSize=10001),
        "spec.replication.applierBatchSize",
        r"applierBatchSize.*should be less than or equal to 10000",
    ),
    InvalidPair(
        "bad-region-pattern",
        _set("spec.regions.0.region", "Beijing"),
        "spec.regions.0.region",
        r"spec\.regions\[0\]\.region.*should match",
    ),
    InvalidPair(
        "bad-side-name",
        _set("spec.regions.0.name", "Cn_1"),
        "spec.regions.0.name",
        r"spec\.regions\[0\]\.name.*should match",
    ),
    InvalidPair(
        "bad-deletion-policy",
        _set("spec.deletionPolicy", "Keep"),
        "spec.deletionPolicy",
        r'spec\.deletionPolicy: Unsupported value: "Keep"',
    ),
    InvalidPair(
        "bad-timestamp-unit",
        _replication(timestampUnit="hours"),
        "spec.replication.timestampUnit",
        r'spec\.replication\.timestampUnit: Unsupported value: "hours"',
    ),
    InvalidPair(
        "unknown-field",
        _replication(batchSize=100),
        "spec.replication.batchSize",
        r'unknown field "spec\.replication\.batchSize"',
    ),
    InvalidPair(
        "same-stamp-attribute",
        _replication(originAttribute="stamp", timestampAttribute="stamp"),
        "spec.replication.timestampAttribute",
        r"originAttribute and timestampAttribute must differ",
    ),
    InvalidPair(
        "batching-window-not-shorter-than-timeout",
        _replication(batchingWindowSeconds=60, lambdaTimeoutSeconds=60),
        "spec.replication.batchingWindowSeconds",
        r"batchingWindowSeconds must be shorter than lambdaTimeoutSeconds",
    ),
    InvalidPair(
        "tombstones-shorter-than-kinesis-retention",
        _replication(tombstoneRetentionDays=2, kinesisRetentionHours=72),
        "spec.replication.tombstoneRetentionDays",
        r"tombstoneRetentionDays must outlive kinesisRetentionHours",
    ),
    InvalidPair(
        "reserved-concurrency-below-shards",
        _replication(shardCount=4, parallelizationFactor=2, reservedConcurrency=5),
        "spec.replication.reservedConcurrency",
        r"reservedConcurrency must be at least shardCount \* parallelizationFactor",
    ),
    InvalidPair(
        "record-age-below-lambda-minimum",
        _replication(maximumRecordAgeSeconds=30),
        "spec.replication.maximumRecordAgeSeconds",
        r"must be -1 \(no limit\) or between 60 and 604800",
    ),
    InvalidPair(
        "rotation-days-zero",
        _set("spec.credentials.rotationDays", 0),
        "spec.credentials.rotationDays",
        r"rotationDays.*should be greater than or equal to 1",
    ),
    InvalidPair(
        "pair-name-too-long",
        _set("metadata.name", "a-pair-name-longer-than-24"),
        "metadata.name",
        r"metadata\.name.*(should match|24)",
    ),
    InvalidPair(
        "side-table-changed",
        _set("spec.regions.1.tableName", "user-sg-v2"),
        "spec.regions",
        r"a side's name, region and tableName are immutable",
        transition=True,
    ),
    InvalidPair(
        "side-region-changed",
        _set("spec.regions.1.region", "ap-northeast-1"),
        "spec.regions",
        r"a side's name, region and tableName are immutable",
        transition=True,
    ),
    InvalidPair(
        "side-renamed",
        _set("spec.regions.0.name", "bj"),
        "spec.regions",
        r"a side's name, region and tableName are immutable",
        transition=True,
    ),
    InvalidPair(
        "timestamp-unit-changed",
        _replication(timestampUnit="milliseconds"),
        "spec.replication.timestampUnit",
        r"timestampUnit is immutable",
        transition=True,
    ),
)

# Changes an existing pair may go through: refused by none of the rules.
ALLOWED_UPDATES: tuple[tuple[str, Callable[[Manifest], None]], ...] = (
    ("deletion-policy", _set("spec.deletionPolicy", "Retain")),
    ("paused", _set("spec.paused", True)),
    ("batch-size", _replication(senderBatchSize=100, applierBatchSize=1000)),
    ("operator-credentials", _set("spec.regions.0.credentials", {"secretName": "aws-cn"})),
    ("rotation", _set("spec.credentials.rotationDays", 7)),
)
