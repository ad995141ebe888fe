"""The TableReplicationPair spec: the one schema used by the CRD, the operator and the CLI.

Field names are the manifest's (camelCase); Python attributes are snake_case. Every default and bound
lives here; the CRD in `crds/` is generated from this model.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

API_GROUP = "ddbbridge.io"
API_VERSION = "v1alpha1"
KIND = "TableReplicationPair"

# DNS-1123 label, short enough that derived AWS names stay within 64 characters.
PAIR_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,22}[a-z0-9])?$"
REGION_NAME_PATTERN = r"^[a-z][a-z0-9]{0,7}$"
AWS_REGION_PATTERN = r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$"
TABLE_NAME_PATTERN = r"^[a-zA-Z0-9_.-]{3,255}$"
ATTRIBUTE_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,254}$"

# Keys of the CRD schema that carry Kubernetes validation rules (CEL) and list semantics.
CEL_RULES = "x-kubernetes-validations"
LIST_TYPE = "x-kubernetes-list-type"
LIST_MAP_KEYS = "x-kubernetes-list-map-keys"


def cel(rule: str, message: str, field_path: str | None = None) -> JsonDict:
    """One CEL rule of the CRD. Each rule that needs no old object has a pydantic twin below."""
    entry: JsonDict = {"rule": rule, "message": message}
    if field_path is not None:
        entry["fieldPath"] = field_path
    return entry


def immutable(what: str) -> JsonDict:
    """A transition rule: the field keeps its value once set (only the API server can check it)."""
    return {CEL_RULES: [cel("self == oldSelf", f"{what} is immutable: {IMMUTABLE_REASON}")]}


IMMUTABLE_REASON = "changing it makes a different pair; create a new pair instead"


class SpecModel(BaseModel):
    """Base: camelCase in manifests, snake_case in code, unknown fields rejected."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class TimestampUnit(StrEnum):
    SECONDS = "seconds"  # epoch seconds with a fraction, the seed's Decimal(time.time())
    MILLISECONDS = "milliseconds"


class DeletionPolicy(StrEnum):
    DELETE = "Delete"
    RETAIN = "Retain"


class CredentialsMode(StrEnum):
    ACCESS_KEY = "accessKey"  # an IAM user's access key of the peer partition, stored in SSM
    FEDERATION = "federation"  # IAM outbound identity federation: a JWT exchanged for a role session
    AUTO = "auto"  # federation where the source account has it enabled, else accessKey


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
    profile: str | None = Field(default=None, description="AWS CLI profile name (CLI only).", max_length=128)


class RegionVpc(SpecModel):
    """VPC attachment of the sender in one region (the path to an HTTPS proxy for the peer hop)."""

    subnet_ids: list[str] = Field(min_length=1, max_length=16, description="Subnets of the sender.")
    security_group_ids: list[str] = Field(
        min_length=1, max_length=5, description="Security groups of the sender."
    )


class RegionSpec(SpecModel):
    """One side of the pair."""

    # maxLength bounds matter beyond AWS: the API server estimates CEL cost from them.
    name: str = Field(
        description="Short name of the side, used in resource names and status (e.g. cn, sg).",
        pattern=REGION_NAME_PATTERN,
        max_length=8,
    )
    region: str = Field(description="AWS region, e.g. cn-north-1.", pattern=AWS_REGION_PATTERN, max_length=32)
    table_name: str = Field(
        description="The user table in that region.", pattern=TABLE_NAME_PATTERN, max_length=255
    )
    credentials: RegionCredentials | None = Field(
        default=None,
        description="How the operator or CLI reaches this region; default credential chain when unset.",
    )
    vpc: RegionVpc | None = Field(
        default=None,
        description="Attach the sender to these subnets (adds AWSLambdaVPCAccessExecutionRole).",
    )

    @property
    def partition(self) -> str:
        return partition_of(self.region)


class ReplicationSettings(SpecModel):
    """Conflict stamps, batching, retries and retention of the replication pipeline."""

    model_config = ConfigDict(
        json_schema_extra={
            CEL_RULES: [
                cel(
                    "self.originAttribute != self.timestampAttribute",
                    "originAttribute and timestampAttribute must differ",
                    ".timestampAttribute",
                ),
                cel(
                    "self.batchingWindowSeconds < self.lambdaTimeoutSeconds",
                    "batchingWindowSeconds must be shorter than lambdaTimeoutSeconds",
                    ".batchingWindowSeconds",
                ),
                cel(
                    "self.tombstoneRetentionDays * 24 > self.kinesisRetentionHours",
                    "tombstoneRetentionDays must outlive kinesisRetentionHours, or a replayed old "
                    "version could resurrect a deleted item",
                    ".tombstoneRetentionDays",
                ),
                cel(
                    "!has(self.reservedConcurrency) || "
                    "self.reservedConcurrency >= self.shardCount * self.parallelizationFactor",
                    "reservedConcurrency must be at least shardCount * parallelizationFactor, or "
                    "some shards are never processed",
                    ".reservedConcurrency",
                ),
            ]
        }
    )

    origin_attribute: str = Field(
        default="last_updater_region",
        description="Item attribute naming the side where a version was written.",
        pattern=ATTRIBUTE_NAME_PATTERN,
        max_length=255,
        json_schema_extra=immutable("originAttribute"),
    )
    timestamp_attribute: str = Field(
        default="last_update_timestamp",
        description="Item attribute holding the version's timestamp.",
        pattern=ATTRIBUTE_NAME_PATTERN,
        max_length=255,
        json_schema_extra=immutable("timestampAttribute"),
    )
    timestamp_unit: TimestampUnit = Field(
        default=TimestampUnit.SECONDS,
        description="Unit of the timestamp attribute: seconds (with a fraction) or milliseconds.",
        json_schema_extra=immutable("timestampUnit"),
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
        default=-1,
        ge=-1,
        le=10000,
        description="Retries of a failing batch before its position goes to the on-failure queue; "
        "-1 retries until the records expire. Only transient errors fail a batch (the handlers "
        "dead-letter poison records themselves), so a finite limit can drop changes during an outage.",
    )
    maximum_record_age_seconds: int = Field(
        default=-1,
        ge=-1,
        le=604800,
        description="Records older than this are dead-lettered; -1 keeps them until they expire.",
        json_schema_extra={
            CEL_RULES: [cel("self == -1 || self >= 60", "must be -1 (no limit) or between 60 and 604800")]
        },
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
        default=None,
        ge=1,
        le=1000,
        description="Reserved concurrency of each function; unset leaves the account's pool shared.",
    )
    peer_proxy: str | None = Field(
        default=None,
        description="HTTPS proxy URL the sender uses for the cross-border hop.",
        pattern=r"^https?://[^\s]+$",
    )

    @field_validator("maximum_record_age_seconds")
    @classmethod
    def _record_age_is_lambda_valid(cls, value: int) -> int:
        # Lambda accepts -1 (keep until the record expires) or 60..604800 seconds.
        if value != -1 and value < 60:
            raise ValueError("must be -1 (no limit) or between 60 and 604800")
        return value

    @model_validator(mode="after")
    def _numbers_fit_together(self) -> ReplicationSettings:
        # Twins of the CEL rules in model_config, so the CLI refuses what admission refuses.
        if self.batching_window_seconds >= self.lambda_timeout_seconds:
            raise ValueError("batchingWindowSeconds must be shorter than lambdaTimeoutSeconds")
        if self.tombstone_retention_days * 24 <= self.kinesis_retention_hours:
            raise ValueError("tombstoneRetentionDays must outlive kinesisRetentionHours")
        lanes = self.shard_count * self.parallelization_factor
        if self.reserved_concurrency is not None and self.reserved_concurrency < lanes:
            raise ValueError("reservedConcurrency must be at least shardCount * parallelizationFactor")
        return self


class PeerCredentials(SpecModel):
    """How each sender Lambda reaches the PEER partition's Kinesis stream."""

    mode: CredentialsMode = Field(
        default=CredentialsMode.ACCESS_KEY,
        description="accessKey: an IAM user per side that may only put records to that side's "
        "stream; its key is kept in the peer's SSM as a SecureString. federation: the sender gets a "
        "short-lived token from its own partition's STS (sts:GetWebIdentityToken) and exchanges it in "
        "the peer partition for a role that may only put records to that stream; nothing is stored. "
        "auto: federation for each direction whose source account has outbound identity federation "
        "enabled, accessKey otherwise.",
    )
    rotation_days: int = Field(
        default=30, ge=1, le=365, description="Age at which the peer access key is rotated (accessKey)."
    )
    enable_outbound_federation: bool = Field(
        default=False,
        description="Let the operator enable outbound identity federation on a source account where "
        "mode federation needs it. It is an account-wide switch (every principal allowed "
        "sts:GetWebIdentityToken can then get tokens), so it is never flipped unless this is true.",
    )


def _defaults_of(model: type[SpecModel]) -> JsonDict:
    """The manifest form of a settings block built from its defaults alone."""
    dumped: JsonDict = model().model_dump(by_alias=True, mode="json", exclude_none=True)
    return dumped


class PairSpec(SpecModel):
    """spec of a TableReplicationPair."""

    regions: list[RegionSpec] = Field(
        min_length=2,
        max_length=2,
        description="Exactly two sides, in different regions. A side's name, region and tableName "
        "cannot change: that would orphan its AWS resources.",
        json_schema_extra={
            # A map list keyed by name: server-side apply merges sides by name, and the API server
            # itself refuses two sides with one name.
            LIST_TYPE: "map",
            LIST_MAP_KEYS: ["name"],
            CEL_RULES: [
                cel("self.all(a, self.exists_one(b, b.name == a.name))", "regions[].name must be unique"),
                cel(
                    "self.all(a, self.exists_one(b, b.region == a.region))",
                    "regions[].region must differ: a pair replicates between two regions",
                ),
                cel(
                    "self.all(r, oldSelf.exists(o, o.name == r.name && o.region == r.region"
                    " && o.tableName == r.tableName))",
                    "a side's name, region and tableName are immutable: " + IMMUTABLE_REASON,
                ),
            ],
        },
    )
    # The API server checks a default against the block's CEL rules WITHOUT filling in the nested
    # defaults first, so an omitted block defaults to the whole default object, not to `{}`.
    replication: ReplicationSettings = Field(
        default_factory=ReplicationSettings,
        description="Conflict stamps, batching, retries and retention of the replication pipeline.",
        json_schema_extra={"default": _defaults_of(ReplicationSettings)},
    )
    credentials: PeerCredentials = Field(
        default_factory=PeerCredentials,
        description="How each sender Lambda reaches the peer partition's Kinesis stream.",
        json_schema_extra={"default": _defaults_of(PeerCredentials)},
    )
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
        default=InitialSync.NONE,
        description="Copy the items a table already holds to the peer, once, after the pair is first "
        "replicating: fromA copies regions[0] to regions[1], fromB the other way, both both ways. "
        "Progress in status.initialSync and the InitialSyncComplete condition; set none and back to "
        "copy again.",
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


# ---------------------------------------------------------------------------------------------------
# Status: written by the operator only. Typed here so the operator and the CRD agree on every field.
# ---------------------------------------------------------------------------------------------------

# metav1.Condition's own bounds, so `kubectl` tooling that knows conditions reads ours.
CONDITION_TYPE_PATTERN = r"^[A-Z][A-Za-z0-9]*$"
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


class ConditionType(StrEnum):
    READY = "Ready"  # every resource in both regions in place AND replication healthy
    SYNCED = "Synced"  # the last reconcile applied the current generation to AWS
    STALLED = "Stalled"  # terminal until the spec (or the world: a missing table) changes
    RESYNC_REQUIRED = "ResyncRequired"  # an outage outlived the stream retention: backfill + verify
    DEAD_LETTERS = "DeadLetters"  # changes that could not be applied wait in a dead-letter queue
    INITIAL_SYNC_COMPLETE = "InitialSyncComplete"  # spec.initialSync copied the pre-existing items


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


# Reasons of `Ready=False` that need a human although the spec is valid; every other reason means
# "still converging" (transient AWS errors included). Argo CD's health check maps the former to
# Degraded and the latter to Progressing; a test keeps argocd/health/.../health.lua in step.
DEGRADED_READY_REASONS: frozenset[str] = frozenset({"DeadLetters", "ReplicationFailing", "ResyncRequired"})
# Reasons of `InitialSyncComplete=False` that need a human (items the target rejected as poison);
# every other reason means the copy is still waiting, running or retrying (Progressing).
DEGRADED_INITIAL_SYNC_REASONS: frozenset[str] = frozenset({"ItemsRejected"})


class StatusModel(BaseModel):
    """Base of the status schema: camelCase on the wire, unknown fields rejected."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Condition(StatusModel):
    """One condition, shaped like metav1.Condition."""

    type: str = Field(
        description="Ready, Synced, Stalled, DeadLetters, ResyncRequired or InitialSyncComplete.",
        pattern=CONDITION_TYPE_PATTERN,
        max_length=316,
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(
        description="One CamelCase word saying why.",
        pattern=CONDITION_REASON_PATTERN,
        min_length=1,
        max_length=1024,
    )
    message: str = Field(default="", description="What happened, for people.", max_length=32768)
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation this condition was computed for."
    )
    last_transition_time: datetime = Field(description="When status last changed.")


class RegionArns(StatusModel):
    """ARNs of what the pair uses in one region (the user's table included)."""

    table: str | None = Field(default=None, description="The user table.")
    table_stream: str | None = Field(default=None, description="The user table's DynamoDB stream.")
    kinesis_stream: str | None = Field(default=None, description="ddbbridge-P-to-X, fed by the peer.")
    sender_function: str | None = Field(default=None, description="ddbbridge-P-X-sender.")
    applier_function: str | None = Field(default=None, description="ddbbridge-P-X-applier.")
    sender_role: str | None = Field(default=None, description="Role of the sender.")
    applier_role: str | None = Field(default=None, description="Role of the applier.")
    ledger_table: str | None = Field(default=None, description="ddbbridge-P-X-ledger.")
    stats_table: str | None = Field(default=None, description="ddbbridge-P-X-stats.")
    sender_failure_queue: str | None = Field(default=None, description="ddbbridge-P-X-sender-failures.")
    applier_failure_queue: str | None = Field(default=None, description="ddbbridge-P-X-applier-failures.")
    dead_letter_queue: str | None = Field(default=None, description="ddbbridge-P-X-dead-letters.")
    peer_writer_user: str | None = Field(
        default=None, description="ddbbridge-P-X-peer-writer, whose key the peer's sender uses."
    )
    federated_writer_role: str | None = Field(
        default=None,
        description="ddbbridge-P-X-federated-writer, the role the peer's sender assumes (federation).",
    )
    peer_issuer_provider: str | None = Field(
        default=None, description="IAM OIDC provider of the peer account's token issuer (federation)."
    )


class RegionStatus(StatusModel):
    """What the operator observed in one region."""

    name: str = Field(description="spec.regions[].name of this side.", max_length=8)
    region: str = Field(description="AWS region.", max_length=32)
    account: str | None = Field(default=None, description="AWS account id.", pattern=r"^[0-9]{12}$")
    arns: RegionArns | None = Field(default=None, description="ARNs of the resources in this region.")
    stream_enabled_by_operator: bool | None = Field(
        default=None,
        description="The operator enabled the table's stream, so deletion may disable it again.",
    )
    credential_key_created: datetime | None = Field(
        default=None,
        description="Creation time of the peer-writer access key in this region (never the key itself).",
    )
    credential_key_age_days: int | None = Field(
        default=None, ge=0, description="Age in whole days of the peer-writer access key."
    )
    credentials_mode: CredentialsMode | None = Field(
        default=None,
        description="How this side's sender reaches the peer: accessKey or federation (never auto).",
    )
    credentials_reason: str | None = Field(
        default=None,
        max_length=1024,
        description="Why that mode: the spec asked for it, or what auto found in the source account.",
    )


class DirectionStatus(StatusModel):
    """Replication from one side to the other, from the stats the handlers write."""

    source: str = Field(description="Side the changes come from (spec.regions[].name).", max_length=8)
    target: str = Field(description="Side the changes are applied to.", max_length=8)
    replicated_count: int | None = Field(default=None, ge=0, description="Changes applied to the target.")
    lag_seconds: float | None = Field(
        default=None, ge=0, description="Age of the oldest change not yet applied to the target."
    )
    on_failure_depth: int | None = Field(
        default=None,
        ge=0,
        description="Messages in Lambda's on-failure queues (metadata only: shard, sequence range).",
    )
    dead_letter_depth: int | None = Field(
        default=None, ge=0, description="Dead letters with payload, replayable by `ddbbridge dlq redrive`."
    )
    dlq_depth: int | None = Field(default=None, ge=0, description="onFailureDepth + deadLetterDepth.")


class InitialSyncPhase(StrEnum):
    WAITING = "Waiting"  # requested; waits for both regions reconciled and the source mappings enabled
    RUNNING = "Running"
    RETRYING = "Retrying"  # the last attempt failed; resumes from its checkpoints after a backoff
    COMPLETED = "Completed"
    FAILED = "Failed"  # the target rejected items as poison: a person must look (not retried)
    CANCELLED = "Cancelled"  # spec.initialSync was set to none (or to another mode) while it ran


class InitialSyncDirectionStatus(StatusModel):
    """Progress of the copy in one direction (finished segments of earlier attempts included)."""

    direction: str = Field(description="source->target, by spec.regions[].name.", max_length=20)
    segments_total: int = Field(ge=0, description="Parallel scan segments.")
    segments_done: int = Field(ge=0, description="Segments scanned to the end.")
    scanned: int = Field(ge=0, description="Items scanned in the source.")
    estimated_total: int | None = Field(
        default=None, ge=0, description="The source table's ItemCount (DynamoDB updates it every ~6 h)."
    )
    written: int = Field(default=0, ge=0, description="Items written to the target.")
    skipped_as_older: int = Field(
        default=0, ge=0, description="Items the target already held at a newer version (left as they were)."
    )
    restamped: int = Field(
        default=0, ge=0, description="Unstamped source items given a version in the source before the copy."
    )
    skipped_changed: int = Field(
        default=0,
        ge=0,
        description="Unstamped items that changed during the scan (their stream record carries them).",
    )
    rejected: int = Field(default=0, ge=0, description="Items the target rejected as poison.")


class InitialSyncStatus(StatusModel):
    """The copy of pre-existing items that spec.initialSync asks for, run once per request."""

    mode: InitialSync = Field(description="The spec.initialSync value this run copies for.")
    run: str = Field(
        description="Run id (g<generation> when it was requested); names its checkpoints in the source "
        "region's stats table.",
        pattern=r"^g[0-9]+$",
        max_length=24,
    )
    phase: InitialSyncPhase = Field(description="Waiting, Running, Retrying, Completed, Failed or Cancelled.")
    attempts: int = Field(default=0, ge=0, description="Attempts started (a resume after an error counts).")
    started_time: datetime | None = Field(default=None, description="When the first attempt started.")
    finished_time: datetime | None = Field(default=None, description="When it completed, failed or stopped.")
    message: str = Field(default="", max_length=4096, description="The last error, or a summary.")
    directions: list[InitialSyncDirectionStatus] = Field(
        default_factory=list,
        max_length=2,
        description="Per direction copied.",
        json_schema_extra={LIST_TYPE: "atomic"},
    )


class PairStatus(StatusModel):
    """status of a TableReplicationPair."""

    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation the operator last acted on."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=16,
        description="Ready, Synced, Stalled, DeadLetters, ResyncRequired, InitialSyncComplete.",
        json_schema_extra={LIST_TYPE: "map", LIST_MAP_KEYS: ["type"]},
    )
    regions: list[RegionStatus] = Field(
        default_factory=list,
        max_length=2,
        description="Per side, in spec order.",
        json_schema_extra={LIST_TYPE: "map", LIST_MAP_KEYS: ["name"]},
    )
    directions: list[DirectionStatus] = Field(
        default_factory=list,
        max_length=2,
        description="Per direction: regions[0] to regions[1] first, then back.",
        json_schema_extra={LIST_TYPE: "atomic"},
    )
    lag_seconds: float | None = Field(default=None, ge=0, description="The larger lag of the two directions.")
    dlq_depth: int | None = Field(
        default=None, ge=0, description="Dead letters of both directions, both kinds."
    )
    last_health_check_time: datetime | None = Field(
        default=None, description="When the health timer last observed both regions."
    )
    key_rotation_request: str | None = Field(
        default=None,
        max_length=253,
        description="Value of the ddbbridge.io/rotate-key annotation the operator last acted on.",
    )
    initial_sync: InitialSyncStatus | None = Field(
        default=None, description="The copy of pre-existing items (spec.initialSync)."
    )

    def condition(self, kind: str) -> Condition | None:
        return next((item for item in self.conditions if item.type == kind), None)


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
