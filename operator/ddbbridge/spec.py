"""The TableReplicationPair spec: the one schema used by the CRD, the operator and the CLI.

Field names are the manifest's (camelCase); Python attributes are snake_case. Every default and bound
lives here; the CRD in `crds/` is generated from this model.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

API_GROUP = "ddbbridge.io"
API_VERSION = "v1alpha1"
KIND = "TableReplicationPair"

# DNS-1123 label, short enough that derived AWS names stay within 64 characters.
PAIR_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,22}[a-z0-9])?$"
REGION_NAME_PATTERN = r"^[a-z][a-z0-9]{0,7}$"
AWS_REGION_PATTERN = r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$"
TABLE_NAME_PATTERN = r"^[a-zA-Z0-9_.-]{3,255}$"
ATTRIBUTE_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,254}$"


class SpecModel(BaseModel):
    """Base: camelCase in manifests, snake_case in code, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class TimestampUnit(StrEnum):
    SECONDS = "seconds"  # epoch seconds with a fraction, the seed's Decimal(time.time())
    MILLISECONDS = "milliseconds"


class DeletionPolicy(StrEnum):
    DELETE = "Delete"
    RETAIN = "Retain"


class CredentialsMode(StrEnum):
    ACCESS_KEY = "accessKey"


class InitialSync(StrEnum):
    NONE = "none"
    FROM_A = "fromA"
    FROM_B = "fromB"
    BOTH = "both"


class RegionCredentials(SpecModel):
    """How the operator or CLI itself reaches one region (not how the sender reaches the peer)."""

    secret_name: str | None = Field(
        default=None,
        description="Kubernetes Secret in the pair's namespace with AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY (operator only).",
        max_length=253,
    )
    profile: str | None = Field(
        default=None, description="AWS CLI profile name (CLI only).", max_length=128
    )


class RegionSpec(SpecModel):
    """One side of the pair."""

    name: str = Field(
        description="Short name of the side, used in resource names and status (e.g. cn, sg).",
        pattern=REGION_NAME_PATTERN,
    )
    region: str = Field(description="AWS region, e.g. cn-north-1.", pattern=AWS_REGION_PATTERN)
    table_name: str = Field(description="The user table in that region.", pattern=TABLE_NAME_PATTERN)
    credentials: RegionCredentials | None = Field(
        default=None,
        description="How the operator or CLI reaches this region; default credential chain when unset.",
    )

    @property
    def partition(self) -> str:
        return partition_of(self.region)


class ReplicationSettings(SpecModel):
    """Conflict stamps, batching, retries and retention of the replication pipeline."""

    origin_attribute: str = Field(
        default="last_updater_region",
        description="Item attribute naming the side where a version was written.",
        pattern=ATTRIBUTE_NAME_PATTERN,
    )
    timestamp_attribute: str = Field(
        default="last_update_timestamp",
        description="Item attribute holding the version's timestamp.",
        pattern=ATTRIBUTE_NAME_PATTERN,
    )
    timestamp_unit: TimestampUnit = Field(
        default=TimestampUnit.SECONDS,
        description="Unit of the timestamp attribute: seconds (with a fraction) or milliseconds.",
    )
    sender_batch_size: int = Field(
        default=500, ge=1, le=10000, description="Stream records per sender invocation."
    )
    applier_batch_size: int = Field(
        default=500, ge=1, le=10000, description="Kinesis records per applier invocation."
    )
    batching_window_seconds: int = Field(
        default=0, ge=0, le=300, description="MaximumBatchingWindowInSeconds of both mappings."
    )
    maximum_retry_attempts: int = Field(
        default=10, ge=0, le=10000, description="Retries of a failing batch before it is dead-lettered."
    )
    maximum_record_age_seconds: int = Field(
        default=-1,
        ge=-1,
        le=604800,
        description="Records older than this are dead-lettered; -1 keeps them until they expire.",
    )
    parallelization_factor: int = Field(
        default=1, ge=1, le=10, description="Concurrent batches per shard (order kept per key)."
    )
    shard_count: int = Field(default=1, ge=1, le=64, description="Shards of each Kinesis stream.")
    kinesis_retention_hours: int = Field(
        default=24, ge=24, le=8760, description="Retention of each Kinesis stream."
    )
    tombstone_retention_days: int = Field(
        default=15,
        ge=1,
        le=365,
        description="How long deletes are remembered; must outlive the longest replication delay "
        "and the dead-letter retention (14 days).",
    )
    lambda_memory_mb: int = Field(default=256, ge=128, le=10240, description="Memory of both functions.")
    lambda_timeout_seconds: int = Field(default=60, ge=3, le=900, description="Timeout of both functions.")
    reserved_concurrency: int | None = Field(
        default=None, ge=0, le=1000, description="Reserved concurrency of each function."
    )
    peer_proxy: str | None = Field(
        default=None,
        description="HTTPS proxy URL the sender uses for the cross-border hop.",
        pattern=r"^https?://[^\s]+$",
    )


class PeerCredentials(SpecModel):
    """How each sender Lambda reaches the PEER partition's Kinesis stream."""

    mode: CredentialsMode = Field(default=CredentialsMode.ACCESS_KEY, description="accessKey.")
    rotation_days: int = Field(
        default=30, ge=1, le=365, description="Age at which the peer access key is rotated."
    )


class PairSpec(SpecModel):
    """spec of a TableReplicationPair."""

    regions: list[RegionSpec] = Field(
        min_length=2, max_length=2, description="Exactly two sides, in different regions."
    )
    replication: ReplicationSettings = Field(default_factory=ReplicationSettings)
    credentials: PeerCredentials = Field(default_factory=PeerCredentials)
    deletion_policy: DeletionPolicy = Field(
        default=DeletionPolicy.DELETE,
        description="Delete removes what the operator created when the pair is deleted (never the "
        "user tables); Retain leaves it all.",
    )
    paused: bool = Field(default=False, description="Disable both event source mappings.")
    health_check_interval_seconds: int = Field(
        default=60, ge=10, le=3600, description="How often the operator observes replication health."
    )
    initial_sync: InitialSync = Field(
        default=InitialSync.NONE, description="Copy existing items when the pair is created."
    )

    @model_validator(mode="after")
    def _sides_are_distinct(self) -> PairSpec:
        a, b = self.regions
        if a.name == b.name:
            raise ValueError(f"regions[].name must be unique, both are {a.name!r}")
        if a.region == b.region:
            raise ValueError(f"regions[].region must differ, both are {a.region!r}")
        if self.replication.origin_attribute == self.replication.timestamp_attribute:
            raise ValueError("originAttribute and timestampAttribute must differ")
        return self

    @property
    def side_a(self) -> RegionSpec:
        return self.regions[0]

    @property
    def side_b(self) -> RegionSpec:
        return self.regions[1]

    def peer_of(self, side: RegionSpec) -> RegionSpec:
        return self.side_b if side.name == self.side_a.name else self.side_a

    def side(self, name: str) -> RegionSpec:
        for candidate in self.regions:
            if name in (candidate.name, candidate.region):
                return candidate
        raise KeyError(f"no region named {name!r} in this pair")


class PairMetadata(SpecModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)

    name: str = Field(pattern=PAIR_NAME_PATTERN)
    namespace: str = "default"
    uid: str | None = None


class PairManifest(SpecModel):
    """A whole TableReplicationPair document, as read from pair.yaml."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)

    api_version: Literal["ddbbridge.io/v1alpha1"]
    kind: Literal["TableReplicationPair"]
    metadata: PairMetadata
    spec: PairSpec

    @property
    def name(self) -> str:
        return self.metadata.name

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata_is_mapping(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError("metadata must be a mapping with a name")
        return value


class SpecError(ValueError):
    """A pair manifest that can never be valid as written."""


def partition_of(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def parse_manifest(document: dict[str, Any]) -> PairManifest:
    try:
        return PairManifest.model_validate(document)
    except ValidationError as error:
        raise SpecError(format_validation_error(error)) from None


def load_manifest(path: str | Path) -> PairManifest:
    """Read the single TableReplicationPair in a YAML file."""
    text = Path(path).read_text(encoding="utf-8")
    documents = [doc for doc in yaml.safe_load_all(text) if doc]
    pairs = [doc for doc in documents if isinstance(doc, dict) and doc.get("kind") == KIND]
    if len(pairs) != 1:
        raise SpecError(f"{path}: expected exactly one {KIND} document, found {len(pairs)}")
    return parse_manifest(pairs[0])


def format_validation_error(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        location = ".".join(str(step) for step in item["loc"]) or "spec"
        parts.append(f"{location}: {item['msg']}")
    return "; ".join(parts)


def is_valid_name(value: str, pattern: str) -> bool:
    return re.fullmatch(pattern, value) is not None
