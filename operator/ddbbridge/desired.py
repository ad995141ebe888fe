"""Desired AWS state of a pair, per region: a pure function of the spec and a few discovered facts.

No I/O here. Facts the spec cannot know (account id, the user table's key schema and stream ARN, the
dead-letter queue's URL) come in as `RegionFacts`; everything else is derived: names from the contract,
ARNs with the region's partition, IAM documents whose every statement names specific resources,
function configuration and event source mapping settings.

IAM exceptions and managed policies (documented in docs/iam.md):
- No statement uses Resource "*": DynamoDB's ListStreams is scoped to `table/<name>/stream/*` as AWS's
  own example for Lambda stream readers does.
- SSM SecureString parameters use the AWS managed key `alias/aws/ssm`, whose key policy already lets
  principals of the account decrypt through SSM, so no kms:Decrypt statement is needed.
- Federation mode: sts:GetWebIdentityToken has no resource type, so its statement names Resource "*"
  and is scoped by condition keys instead (our audience only, RS256, a bounded token lifetime).
- The only AWS-managed policy is AWSLambdaVPCAccessExecutionRole, attached to the sender role only
  when the side has a `vpc` (ENI management cannot be scoped to named resources). Logging uses an
  inline statement scoped to the function's own log group instead of AWSLambdaBasicExecutionRole.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ddbbridge.names import SideNames, log_group
from ddbbridge.spec import CredentialsMode, PairManifest, RegionSpec, partition_of
from ddbbridge_lambdas.config import HandlerConfig, KeyAttribute
from ddbbridge_lambdas.ledger import KEY as LEDGER_HASH_KEY

RUNTIME = "python3.12"
SENDER_HANDLER = "ddbbridge_lambdas.sender.handler"
APPLIER_HANDLER = "ddbbridge_lambdas.applier.handler"
STREAM_VIEW_TYPE = "NEW_AND_OLD_IMAGES"
LAMBDA_SERVICE_PRINCIPAL = "lambda.amazonaws.com"  # the same in aws-cn for Lambda
QUEUE_RETENTION_SECONDS = 14 * 24 * 3600  # SQS maximum: dead letters outlive a two-week absence
LEDGER_TTL_ATTRIBUTE = "expires_at"
LEDGER_KEY = (LEDGER_HASH_KEY, "S")  # canonical item key string, written by the handlers
STATS_KEY = ("PK", "S")
CREDENTIALS_TTL_SECONDS = 300
VPC_ACCESS_POLICY = "service-role/AWSLambdaVPCAccessExecutionRole"
# Federation mode. One audience for every pair: the destination role's trust pins `sub` to one pair's
# sender role, so the audience only has to say "meant for ddb-bridge" and the account's OIDC provider
# (one per issuer URL) never needs a client id per pair.
TOKEN_AUDIENCE = "ddbbridge.io"
TOKEN_SIGNING_ALGORITHM = "RS256"
# The token is exchanged at once; five minutes covers a slow cross-border hop and clock skew.
TOKEN_DURATION_SECONDS = 300
# IAM's default MaxSessionDuration; the sender caches the session until shortly before it ends.
FEDERATED_SESSION_SECONDS = 3600

TAG_PAIR = "ddbbridge.io/pair"
TAG_NAMESPACE = "ddbbridge.io/namespace"
TAG_UID = "ddbbridge.io/pair-uid"
TAG_MANAGED_BY = "ddbbridge.io/managed-by"
# On the USER table: set only when this pair enabled its stream, so destroy disables only that.
TAG_STREAM_ENABLED_BY = "ddbbridge.io/stream-enabled-by"

Policy = dict[str, Any]


@dataclass(frozen=True)
class RegionFacts:
    """What must be read from AWS before the desired state of a region can be written down."""

    account_id: str
    key_schema: tuple[KeyAttribute, ...]
    table_stream_arn: str | None = None  # None while the stream is not enabled yet (dry run)
    dead_letter_queue_url: str | None = None  # None until the queue exists (dry run)
    # Credentials of the two directions, as resolved from spec.credentials (never `auto` here).
    sender_mode: str = CredentialsMode.ACCESS_KEY.value  # this side's sender -> the peer
    inbound_mode: str = CredentialsMode.ACCESS_KEY.value  # the peer's sender -> this side
    peer_account_id: str | None = None  # needed in federation mode (the other side's role ARNs)
    peer_issuer_url: str | None = None  # the peer account's token issuer (inbound federation)


@dataclass(frozen=True)
class BookkeepingTable:
    name: str
    arn: str
    ttl_attribute: str | None
    tags: dict[str, str]
    hash_key: tuple[str, str]


@dataclass(frozen=True)
class KinesisStream:
    name: str
    arn: str
    shard_count: int
    retention_hours: int
    tags: dict[str, str]


@dataclass(frozen=True)
class Queue:
    name: str
    arn: str
    attributes: dict[str, str]
    tags: dict[str, str]


@dataclass(frozen=True)
class Role:
    name: str
    arn: str
    trust_policy: Policy
    inline_policy_name: str
    inline_policy: Policy
    managed_policy_arns: tuple[str, ...]
    tags: dict[str, str]


@dataclass(frozen=True)
class User:
    name: str
    arn: str
    inline_policy_name: str
    inline_policy: Policy
    tags: dict[str, str]


@dataclass(frozen=True)
class IssuerProvider:
    """IAM OIDC identity provider in X for the PEER account's token issuer (federation mode).

    One provider per issuer URL and account, shared by every pair whose sender lives in that peer
    account, so its tags carry no pair name and destroy removes it only when no role trusts it.
    """

    url: str  # https://... as the peer account's IAM reports it
    arn: str
    audience: str
    tags: dict[str, str]

    @property
    def condition_prefix(self) -> str:
        """`<host>/<path>`: the prefix of the `:aud` and `:sub` condition keys of a trust policy."""
        return issuer_host_path(self.url)


@dataclass(frozen=True)
class KeyParameters:
    """Where a peer-writer user's access key is stored (in the OTHER region's SSM)."""

    user_side: str  # the side whose IAM user the key belongs to
    access_key_parameter: str
    secret_key_parameter: str
    tags: dict[str, str]


@dataclass(frozen=True)
class Function:
    name: str
    arn: str
    role_arn: str
    handler: str
    runtime: str
    memory_mb: int
    timeout_seconds: int
    reserved_concurrency: int | None
    environment: dict[str, str]
    subnet_ids: tuple[str, ...]
    security_group_ids: tuple[str, ...]
    tags: dict[str, str]


@dataclass(frozen=True)
class Mapping:
    """An event source mapping, in the field names of Lambda's API."""

    function_name: str
    event_source_arn: str
    batch_size: int
    maximum_batching_window_seconds: int
    starting_position: str
    maximum_retry_attempts: int
    maximum_record_age_seconds: int
    bisect_batch_on_function_error: bool
    parallelization_factor: int
    function_response_types: tuple[str, ...]
    on_failure_arn: str
    enabled: bool


@dataclass(frozen=True)
class RegionDesired:
    """Everything the pair wants in one region."""

    side: RegionSpec
    peer: RegionSpec
    names: SideNames
    partition: str
    account_id: str
    table_name: str
    table_arn: str
    table_stream_arn: str
    key_schema: tuple[KeyAttribute, ...]
    tags: dict[str, str]
    ledger: BookkeepingTable
    stats: BookkeepingTable
    inbound_stream: KinesisStream
    sender_failures: Queue
    applier_failures: Queue
    dead_letters: Queue
    sender_role: Role
    applier_role: Role
    peer_writer: User
    peer_key_parameters: KeyParameters  # the PEER's user key, stored here for this side's sender
    sender_mode: str  # accessKey or federation: how this side's sender reaches the peer
    inbound_mode: str  # how the PEER's sender reaches this side's inbound stream
    federated_writer: Role  # the role the peer's sender assumes here (federation)
    issuer_provider: IssuerProvider | None  # None unless inbound federation and the issuer is known
    sender: Function
    applier: Function
    sender_mapping: Mapping
    applier_mapping: Mapping
    queues: tuple[Queue, ...] = field(init=False)
    tables: tuple[BookkeepingTable, ...] = field(init=False)
    roles: tuple[Role, ...] = field(init=False)
    functions: tuple[Function, ...] = field(init=False)
    mappings: tuple[Mapping, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "queues", (self.sender_failures, self.applier_failures, self.dead_letters))
        object.__setattr__(self, "tables", (self.ledger, self.stats))
        object.__setattr__(self, "roles", (self.sender_role, self.applier_role))
        object.__setattr__(self, "functions", (self.sender, self.applier))
        object.__setattr__(self, "mappings", (self.sender_mapping, self.applier_mapping))


class Arns:
    """ARN builder for one region of one account, with the region's partition."""

    def __init__(self, region: str, account_id: str) -> None:
        self.region = region
        self.account_id = account_id
        self.partition = partition_of(region)

    def _regional(self, service: str, resource: str) -> str:
        return f"arn:{self.partition}:{service}:{self.region}:{self.account_id}:{resource}"

    def table(self, name: str) -> str:
        return self._regional("dynamodb", f"table/{name}")

    def table_streams(self, name: str) -> str:
        return self._regional("dynamodb", f"table/{name}/stream/*")

    def kinesis_stream(self, name: str) -> str:
        return self._regional("kinesis", f"stream/{name}")

    def queue(self, name: str) -> str:
        return self._regional("sqs", name)

    def function(self, name: str) -> str:
        return self._regional("lambda", f"function:{name}")

    def parameter(self, name: str) -> str:
        return self._regional("ssm", f"parameter/{name.lstrip('/')}")

    def log_group(self, function_name: str) -> str:
        return self._regional("logs", f"log-group:{log_group(function_name)}:*")

    def role(self, name: str) -> str:
        return f"arn:{self.partition}:iam::{self.account_id}:role/{name}"

    def user(self, name: str) -> str:
        return f"arn:{self.partition}:iam::{self.account_id}:user/{name}"

    def managed_policy(self, path_and_name: str) -> str:
        return f"arn:{self.partition}:iam::aws:policy/{path_and_name}"

    def oidc_provider(self, issuer_url: str) -> str:
        return f"arn:{self.partition}:iam::{self.account_id}:oidc-provider/{issuer_host_path(issuer_url)}"


def issuer_host_path(issuer_url: str) -> str:
    """An issuer URL without its scheme: how IAM names OIDC providers and their condition keys."""
    return issuer_url.split("://", 1)[-1]


def pair_tags(manifest: PairManifest) -> dict[str, str]:
    tags = {
        TAG_PAIR: manifest.metadata.name,
        TAG_NAMESPACE: manifest.metadata.namespace,
        TAG_MANAGED_BY: "ddbbridge",
    }
    if manifest.metadata.uid:
        tags[TAG_UID] = manifest.metadata.uid
    return tags


def placeholder_stream_arn(arns: Arns, table_name: str) -> str:
    """Stands in for a stream ARN that does not exist yet (plans only; never sent to AWS)."""
    return arns.table(table_name) + "/stream/(to-be-enabled)"


def statement(
    sid: str, actions: list[str], resources: list[str], condition: dict[str, Any] | None = None
) -> dict[str, Any]:
    document: dict[str, Any] = {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources}
    if condition:
        document["Condition"] = condition
    return document


def policy(*statements: dict[str, Any]) -> Policy:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def lambda_trust_policy() -> Policy:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": LAMBDA_SERVICE_PRINCIPAL},
                "Action": "sts:AssumeRole",
            }
        ],
    }


def token_statement() -> dict[str, Any]:
    """The sender may get web identity tokens for our audience only, RS256, at most 5 minutes long."""
    return statement(
        "PeerToken",
        ["sts:GetWebIdentityToken"],
        ["*"],  # the action has no resource type; the conditions are the scope
        {
            "ForAllValues:StringEquals": {"sts:IdentityTokenAudience": [TOKEN_AUDIENCE]},
            # ForAllValues holds for an absent key: require the audience to be there at all.
            "Null": {"sts:IdentityTokenAudience": "false"},
            # A string, as IAM's own examples write numbers in conditions (some validators refuse ints).
            "NumericLessThanEquals": {"sts:DurationSeconds": str(TOKEN_DURATION_SECONDS)},
            "StringEquals": {"sts:SigningAlgorithm": TOKEN_SIGNING_ALGORITHM},
        },
    )


def federated_trust_policy(provider_arn: str, condition_prefix: str, peer_sender_role_arn: str) -> Policy:
    """Only tokens from the peer account's issuer, for our audience, whose subject is the peer's sender."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "PeerSenderToken",
                "Effect": "Allow",
                "Principal": {"Federated": provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{condition_prefix}:aud": TOKEN_AUDIENCE,
                        f"{condition_prefix}:sub": peer_sender_role_arn,
                    }
                },
            }
        ],
    }


# Exactly the calls the handlers make (ddbbridge_lambdas); a TransactWriteItems needs the action of
# each of its parts (Put, Delete) on each table it touches.
LEDGER_ACTIONS = ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:PutItem"]
# The applier writes replicated versions and deletes (conditional Put/Delete in a transaction).
USER_TABLE_APPLY_ACTIONS = [
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:PutItem",
    "dynamodb:DeleteItem",
]
# The sender re-stamps unstamped application writes (conditional UpdateItem), writes back a pending
# write the applier displaced (conditional PutItem) and enforces a tombstone by deleting an older
# peer version applied in the meantime.
USER_TABLE_SENDER_ACTIONS = [
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:UpdateItem",
    "dynamodb:PutItem",
    "dynamodb:DeleteItem",
]
STATS_ACTIONS = ["dynamodb:UpdateItem"]
LOG_ACTIONS = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"]
PEER_WRITER_ACTIONS = ["kinesis:PutRecord", "kinesis:PutRecords"]
KINESIS_READ_ACTIONS = [
    "kinesis:DescribeStream",
    "kinesis:DescribeStreamSummary",
    "kinesis:GetRecords",
    "kinesis:GetShardIterator",
    "kinesis:ListShards",
    "kinesis:SubscribeToShard",
]


def desired_region(
    manifest: PairManifest,
    side: RegionSpec,
    facts: RegionFacts,
    *,
    peer_endpoint_url: str | None = None,
) -> RegionDesired:
    """The desired state of `side`; `peer_endpoint_url` is how its sender reaches the peer (dev)."""
    spec = manifest.spec
    settings = spec.replication
    peer = spec.peer_of(side)
    names = SideNames(manifest.metadata.name, side.name)
    peer_names = SideNames(manifest.metadata.name, peer.name)
    arns = Arns(side.region, facts.account_id)
    tags = pair_tags(manifest)
    stream_arn = facts.table_stream_arn or placeholder_stream_arn(arns, side.table_name)

    ledger = BookkeepingTable(
        names.ledger_table, arns.table(names.ledger_table), LEDGER_TTL_ATTRIBUTE, tags, LEDGER_KEY
    )
    stats = BookkeepingTable(names.stats_table, arns.table(names.stats_table), None, tags, STATS_KEY)
    inbound = KinesisStream(
        names.inbound_stream,
        arns.kinesis_stream(names.inbound_stream),
        settings.shard_count,
        settings.kinesis_retention_hours,
        tags,
    )
    queue_attributes = {"MessageRetentionPeriod": str(QUEUE_RETENTION_SECONDS)}
    sender_failures, applier_failures, dead_letters = (
        Queue(name, arns.queue(name), queue_attributes, tags)
        for name in (names.sender_failures_queue, names.applier_failures_queue, names.dead_letter_queue)
    )
    # The peer's user key lives in THIS region's SSM: this side's sender reads it.
    key_parameters = KeyParameters(
        user_side=peer.name,
        access_key_parameter=peer_names.access_key_parameter,
        secret_key_parameter=peer_names.secret_key_parameter,
        tags=tags,
    )
    federation_out = facts.sender_mode == CredentialsMode.FEDERATION.value
    federation_in = facts.inbound_mode == CredentialsMode.FEDERATION.value
    peer_account = facts.peer_account_id or "(peer-account)"
    peer_arns = Arns(peer.region, peer_account)
    # How this side's sender reaches the peer: read the stored key, or get a token (nothing stored).
    peer_access = (
        token_statement()
        if federation_out
        else statement(
            "ReadPeerCredentials",
            ["ssm:GetParameter", "ssm:GetParameters"],
            [
                arns.parameter(key_parameters.access_key_parameter),
                arns.parameter(key_parameters.secret_key_parameter),
            ],
        )
    )
    sender_policy = policy(
        statement(
            "ReadTableStream",
            ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"],
            [stream_arn],
        ),
        statement("ListTableStreams", ["dynamodb:ListStreams"], [arns.table_streams(side.table_name)]),
        statement("StampAndEnforce", USER_TABLE_SENDER_ACTIONS, [arns.table(side.table_name)]),
        statement("VersionLedger", LEDGER_ACTIONS, [ledger.arn]),
        statement("Stats", STATS_ACTIONS, [stats.arn]),
        peer_access,
        statement("DeadLetters", ["sqs:SendMessage"], [dead_letters.arn, sender_failures.arn]),
        statement("OwnLogs", LOG_ACTIONS, [arns.log_group(names.sender_function)]),
    )
    applier_policy = policy(
        statement("ReadInboundStream", KINESIS_READ_ACTIONS, [inbound.arn]),
        statement("ApplyToTable", USER_TABLE_APPLY_ACTIONS, [arns.table(side.table_name)]),
        statement("VersionLedger", LEDGER_ACTIONS, [ledger.arn]),
        statement("Stats", STATS_ACTIONS, [stats.arn]),
        statement("DeadLetters", ["sqs:SendMessage"], [dead_letters.arn, applier_failures.arn]),
        statement("OwnLogs", LOG_ACTIONS, [arns.log_group(names.applier_function)]),
    )
    sender_managed = (arns.managed_policy(VPC_ACCESS_POLICY),) if side.vpc else ()
    sender_role = Role(
        names.sender_role,
        arns.role(names.sender_role),
        lambda_trust_policy(),
        names.inline_policy,
        sender_policy,
        sender_managed,
        tags,
    )
    applier_role = Role(
        names.applier_role,
        arns.role(names.applier_role),
        lambda_trust_policy(),
        names.inline_policy,
        applier_policy,
        (),
        tags,
    )
    peer_writer = User(
        names.peer_writer_user,
        arns.user(names.peer_writer_user),
        names.inline_policy,
        policy(statement("PutIntoInboundStream", PEER_WRITER_ACTIONS, [inbound.arn])),
        tags,
    )
    issuer_url = facts.peer_issuer_url or f"https://(issuer-of-account-{peer_account})"
    provider = IssuerProvider(
        issuer_url,
        arns.oidc_provider(issuer_url),
        TOKEN_AUDIENCE,
        {TAG_MANAGED_BY: "ddbbridge"},
    )
    federated_writer = Role(
        names.federated_writer_role,
        arns.role(names.federated_writer_role),
        federated_trust_policy(
            provider.arn, provider.condition_prefix, peer_arns.role(peer_names.sender_role)
        ),
        names.inline_policy,
        policy(statement("PutIntoInboundStream", PEER_WRITER_ACTIONS, [inbound.arn])),
        (),
        tags,
    )

    base_config = HandlerConfig(
        pair=manifest.metadata.name,
        local_region_name=side.name,
        local_region=side.region,
        peer_region_name=peer.name,
        peer_region=peer.region,
        table_name=side.table_name,
        key_schema=facts.key_schema,
        ledger_table=ledger.name,
        stats_table=stats.name,
        dead_letter_queue_url=facts.dead_letter_queue_url or f"(url of {dead_letters.name})",
        origin_attribute=settings.origin_attribute,
        timestamp_attribute=settings.timestamp_attribute,
        timestamp_unit=settings.timestamp_unit.value,
        tombstone_retention_seconds=settings.tombstone_retention_days * 86400,
    )
    sender_config = replace(
        base_config,
        peer_stream_name=peer_names.inbound_stream,
        peer_endpoint_url=peer_endpoint_url,
        credentials_ttl_seconds=CREDENTIALS_TTL_SECONDS,
        peer_proxy=settings.peer_proxy,
    )
    if federation_out:
        sender_config = replace(
            sender_config,
            peer_credentials_mode=CredentialsMode.FEDERATION.value,
            peer_role_arn=peer_arns.role(peer_names.federated_writer_role),
            token_audience=TOKEN_AUDIENCE,
            token_duration_seconds=TOKEN_DURATION_SECONDS,
            peer_session_seconds=FEDERATED_SESSION_SECONDS,
        )
    else:
        sender_config = replace(
            sender_config,
            peer_access_key_parameter=key_parameters.access_key_parameter,
            peer_secret_key_parameter=key_parameters.secret_key_parameter,
        )
    common = {
        "runtime": RUNTIME,
        "memory_mb": settings.lambda_memory_mb,
        "timeout_seconds": settings.lambda_timeout_seconds,
        "reserved_concurrency": settings.reserved_concurrency,
        "tags": tags,
    }
    sender = Function(
        name=names.sender_function,
        arn=arns.function(names.sender_function),
        role_arn=sender_role.arn,
        handler=SENDER_HANDLER,
        environment={"DDBBRIDGE_CONFIG": sender_config.to_json()},
        subnet_ids=tuple(side.vpc.subnet_ids) if side.vpc else (),
        security_group_ids=tuple(side.vpc.security_group_ids) if side.vpc else (),
        **common,  # type: ignore[arg-type]
    )
    applier = Function(
        name=names.applier_function,
        arn=arns.function(names.applier_function),
        role_arn=applier_role.arn,
        handler=APPLIER_HANDLER,
        environment={"DDBBRIDGE_CONFIG": base_config.to_json()},
        subnet_ids=(),
        security_group_ids=(),
        **common,  # type: ignore[arg-type]
    )

    def mapping(function: Function, source_arn: str, batch_size: int, on_failure: Queue) -> Mapping:
        return Mapping(
            function_name=function.name,
            event_source_arn=source_arn,
            batch_size=batch_size,
            maximum_batching_window_seconds=settings.batching_window_seconds,
            starting_position="TRIM_HORIZON",
            maximum_retry_attempts=settings.maximum_retry_attempts,
            maximum_record_age_seconds=settings.maximum_record_age_seconds,
            bisect_batch_on_function_error=True,
            parallelization_factor=settings.parallelization_factor,
            function_response_types=("ReportBatchItemFailures",),
            on_failure_arn=on_failure.arn,
            enabled=not spec.paused,
        )

    return RegionDesired(
        side=side,
        peer=peer,
        names=names,
        partition=arns.partition,
        account_id=facts.account_id,
        table_name=side.table_name,
        table_arn=arns.table(side.table_name),
        table_stream_arn=stream_arn,
        key_schema=facts.key_schema,
        tags=tags,
        ledger=ledger,
        stats=stats,
        inbound_stream=inbound,
        sender_failures=sender_failures,
        applier_failures=applier_failures,
        dead_letters=dead_letters,
        sender_role=sender_role,
        applier_role=applier_role,
        peer_writer=peer_writer,
        peer_key_parameters=key_parameters,
        sender_mode=facts.sender_mode,
        inbound_mode=facts.inbound_mode,
        federated_writer=federated_writer,
        issuer_provider=provider if federation_in and facts.peer_issuer_url else None,
        sender=sender,
        applier=applier,
        sender_mapping=mapping(sender, stream_arn, settings.sender_batch_size, sender_failures),
        applier_mapping=mapping(applier, inbound.arn, settings.applier_batch_size, applier_failures),
    )
