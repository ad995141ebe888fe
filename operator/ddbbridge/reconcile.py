"""Reconcile a pair in both regions: the one core behind `ddbbridge reconcile` and the operator.

Order matters: everything is discovered and validated in BOTH regions before anything is changed (a
spec that can never work leaves nothing behind), then per region: the user table's stream, the
bookkeeping tables, the inbound Kinesis stream, the queues; IAM roles and, per direction, either the
peer-writer user with its key in the peer's SSM (accessKey) or the peer issuer's OIDC provider and the
federated-writer role (federation); the functions; the mappings; last, the other mode's identities
once no sender can still use them (a mode switch).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ddbbridge.aws import PEER_ENDPOINTS_VARIABLE, CallCounter, RegionSession, parse_endpoints, region_session
from ddbbridge.credential_modes import ModeDecision, OutboundFederation, decide_mode
from ddbbridge.desired import RegionDesired, RegionFacts, desired_region
from ddbbridge.ensure.context import Action, EnsureContext
from ddbbridge.ensure.dynamodb_streams import (
    UserTable,
    check_stream_compatible,
    describe_user_table,
    ensure_table_stream,
)
from ddbbridge.ensure.dynamodb_tables import ensure_bookkeeping_table
from ddbbridge.ensure.event_source_mappings import MappingObserved, delete_mappings, ensure_mapping
from ddbbridge.ensure.federation import (
    enable_outbound_federation,
    ensure_issuer_provider,
    read_outbound_federation,
)
from ddbbridge.ensure.iam import ensure_role, ensure_user
from ddbbridge.ensure.kinesis import ensure_stream
from ddbbridge.ensure.lambda_functions import ensure_function
from ddbbridge.ensure.peer_credentials import PeerKeyObserved, ensure_peer_key
from ddbbridge.ensure.sqs import ensure_queue
from ddbbridge.ensure.table_claim import check_claim, claim_owner, ensure_claim
from ddbbridge.errors import ErrorReport, TerminalError, report
from ddbbridge.key_rotation import DEFAULT_OVERLAP
from ddbbridge.mode_switch import retire_other_mode
from ddbbridge.package import CodeBundle, build_zip
from ddbbridge.spec import CredentialsMode, PairManifest

PAIR_SCOPE = "pair"  # error "region" for checks that span both sides


@dataclass
class PairClients:
    """Clients for both sides, and the endpoints the functions use to reach each region (dev only)."""

    sessions: dict[str, RegionSession]  # by side name
    function_endpoints: dict[str, str] = field(default_factory=dict)  # AWS region -> URL

    @classmethod
    def from_environment(
        cls, manifest: PairManifest, credentials: dict[str, dict[str, str]] | None = None
    ) -> PairClients:
        """Endpoints from DDBBRIDGE_ENDPOINTS / DDBBRIDGE_PEER_ENDPOINTS; one call counter per side."""
        sessions = {
            side.name: region_session(
                side, counter=CallCounter(), credentials=(credentials or {}).get(side.name)
            )
            for side in manifest.spec.regions
        }
        return cls(sessions, parse_endpoints(os.environ.get(PEER_ENDPOINTS_VARIABLE)))

    def counters(self) -> dict[str, CallCounter]:
        return {name: session.counter for name, session in self.sessions.items()}


@dataclass
class RegionReport:
    """What one region holds after the run (ARNs and states; never a secret)."""

    side: str
    region: str
    account_id: str | None = None
    partition: str | None = None
    arns: dict[str, str] = field(default_factory=dict)
    stream_enabled_by_us: bool | None = None
    mappings: dict[str, str] = field(default_factory=dict)  # function -> state
    peer_key_id: str | None = None  # id of THIS side's peer-writer key (an id, not a secret)
    peer_key_created: datetime | None = None
    credentials_mode: CredentialsMode | None = None  # how THIS side's sender reaches the peer
    credentials_reason: str | None = None
    retiring: list[str] = field(default_factory=list)  # the other mode's identities, kept for an overlap


@dataclass
class RunResult:
    """Outcome of a reconcile or destroy: actions taken (or planned), per-region facts, errors."""

    pair: str
    operation: str
    dry_run: bool
    actions: list[Action] = field(default_factory=list)
    regions: dict[str, RegionReport] = field(default_factory=dict)
    errors: list[ErrorReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def terminal(self) -> bool:
        """True when some error cannot be fixed by retrying (the operator's Stalled)."""
        return any(error.terminal for error in self.errors)

    def to_json(self) -> dict[str, Any]:
        document = asdict(self)
        for region in document["regions"].values():
            created = region.get("peer_key_created")
            region["peer_key_created"] = created.isoformat() if created else None
        document["actions"] = [str(action) for action in self.actions]
        document["errors"] = [asdict(error) for error in self.errors]
        return document


class _Tracker:
    """Remembers which step runs where, so an exception is reported against the right place."""

    def __init__(self) -> None:
        self.region = PAIR_SCOPE
        self.step = "start"

    def at(self, region: str, step: str) -> None:
        self.region, self.step = region, step


def check_same_key_schema(tables: dict[str, UserTable]) -> None:
    (a_name, a), (b_name, b) = tables.items()
    if a.key_schema != b.key_schema:
        raise TerminalError(
            f"the two tables must have the same key schema: {a.name} ({a_name}) has "
            f"[{_show_keys(a)}], {b.name} ({b_name}) has [{_show_keys(b)}]",
            reason="KeySchemaMismatch",
        )


def _show_keys(table: UserTable) -> str:
    return ", ".join(f"{k.name} {k.type} {k.role}" for k in table.key_schema)


def reconcile(
    manifest: PairManifest,
    clients: PairClients,
    *,
    dry_run: bool = False,
    bundle: CodeBundle | None = None,
    force_key_rotation: bool = False,
    key_overlap: timedelta = DEFAULT_OVERLAP,
    now: datetime | None = None,
) -> RunResult:
    spec = manifest.spec
    result = RunResult(manifest.metadata.name, "reconcile", dry_run)
    contexts = {
        side.name: EnsureContext(clients.sessions[side.name], side.name, dry_run, result.actions)
        for side in spec.regions
    }
    for side in spec.regions:
        result.regions[side.name] = RegionReport(side.name, side.region)
    where = _Tracker()
    run = _Run(
        manifest, clients, contexts, result, where, force_key_rotation, now or datetime.now(UTC), key_overlap
    )
    try:
        _run(run, bundle)
    except Exception as error:  # every failure becomes a classified report; the caller decides
        result.errors.append(report(where.region, where.step, error))
    return result


@dataclass
class _Run:
    manifest: PairManifest
    clients: PairClients
    contexts: dict[str, EnsureContext]
    result: RunResult
    where: _Tracker
    force_key_rotation: bool
    now: datetime
    key_overlap: timedelta = DEFAULT_OVERLAP


def _run(run: _Run, bundle: CodeBundle | None) -> None:
    manifest, clients, contexts, result, where = (
        run.manifest,
        run.clients,
        run.contexts,
        run.result,
        run.where,
    )
    force_key_rotation, now = run.force_key_rotation, run.now
    spec = manifest.spec
    pair = manifest.metadata.name
    owner = claim_owner(manifest.metadata.namespace, pair)

    # 1. Discover and validate both sides before changing anything.
    accounts: dict[str, str] = {}
    tables: dict[str, UserTable] = {}
    for side in spec.regions:
        ctx = contexts[side.name]
        where.at(side.name, "discover account")
        accounts[side.name] = ctx.client("sts").get_caller_identity()["Account"]
        where.at(side.name, f"discover table {side.table_name}")
        tables[side.name] = describe_user_table(ctx, side.table_name)
        check_stream_compatible(tables[side.name])
        check_claim(tables[side.name], owner)
    where.at(PAIR_SCOPE, "compare key schemas")
    check_same_key_schema(tables)
    modes: dict[str, ModeDecision] = {}
    issuers: dict[str, str | None] = {}
    for side in spec.regions:
        where.at(side.name, "credentials mode")
        federation: OutboundFederation | None = None
        if spec.credentials.mode != CredentialsMode.ACCESS_KEY:
            federation = read_outbound_federation(contexts[side.name])
            issuers[side.name] = federation.issuer_url
        modes[side.name] = decide_mode(
            spec.credentials.mode,
            side=side.name,
            account_id=accounts[side.name],
            federation=federation,
            may_enable=spec.credentials.enable_outbound_federation,
        )
        result.regions[side.name].credentials_mode = modes[side.name].mode
        result.regions[side.name].credentials_reason = modes[side.name].reason

    def plan(side_name: str, stream_arn: str | None = None, dlq_url: str | None = None) -> RegionDesired:
        side = spec.side(side_name)
        peer_name = spec.peer_of(side).name
        facts = RegionFacts(
            accounts[side_name],
            tables[side_name].key_schema,
            stream_arn,
            dlq_url,
            sender_mode=modes[side_name].mode.value,
            inbound_mode=modes[peer_name].mode.value,
            peer_account_id=accounts[peer_name],
            peer_issuer_url=issuers.get(peer_name),
        )
        peer_url = clients.function_endpoints.get(spec.peer_of(side).region)
        return desired_region(manifest, side, facts, peer_endpoint_url=peer_url)

    # 2. Data path resources, per region.
    desired: dict[str, RegionDesired] = {}
    planned_with: dict[str, tuple[str | None, str | None]] = {}
    # A stream (re)created in this run makes any existing mapping from it stale: the mapping's
    # position belongs to the deleted stream, so it is replaced and starts at TRIM_HORIZON again.
    recreated_streams: dict[str, str] = {}
    for side in spec.regions:
        ctx, report_ = contexts[side.name], result.regions[side.name]
        report_.account_id = accounts[side.name]
        where.at(side.name, f"claim on {side.table_name}")
        ensure_claim(ctx, tables[side.name], owner)
        where.at(side.name, "table stream")
        stream = ensure_table_stream(ctx, tables[side.name], pair)
        report_.stream_enabled_by_us = stream.enabled_by_us
        report_.arns["table"] = stream.table_arn
        if stream.stream_arn:
            report_.arns["tableStream"] = stream.stream_arn
        early = plan(side.name, stream.stream_arn)
        report_.partition = early.partition
        for table in early.tables:
            where.at(side.name, f"table {table.name}")
            report_.arns[table.name] = ensure_bookkeeping_table(ctx, table).arn
        where.at(side.name, f"kinesis {early.inbound_stream.name}")
        before = len(ctx.actions)
        report_.arns[early.inbound_stream.name] = ensure_stream(ctx, early.inbound_stream).arn
        if any(a.verb == "create" and a.service == "kinesis" for a in ctx.actions[before:]):
            recreated_streams[side.name] = early.inbound_stream.arn
        urls: dict[str, str | None] = {}
        for queue in early.queues:
            where.at(side.name, f"queue {queue.name}")
            observed = ensure_queue(ctx, queue)
            report_.arns[queue.name] = observed.arn
            urls[queue.name] = observed.url
        planned_with[side.name] = (stream.stream_arn, urls[early.dead_letters.name])
        desired[side.name] = plan(side.name, *planned_with[side.name])

    # 3. Identities. The account switch first: it yields the issuer the peer's provider names.
    for side in spec.regions:
        if modes[side.name].enable_switch:
            where.at(side.name, "enable outbound identity federation")
            issuers[side.name] = enable_outbound_federation(contexts[side.name])
            # The issuer is known now: plan again so the peer's provider and trust name it.
            other = spec.peer_of(side).name
            desired[other] = plan(other, *planned_with[other])
    for side in spec.regions:
        ctx, want = contexts[side.name], desired[side.name]
        for role in want.roles:
            where.at(side.name, f"role {role.name}")
            result.regions[side.name].arns[f"role/{role.name}"] = ensure_role(ctx, role).arn
        if want.inbound_mode == CredentialsMode.FEDERATION.value:
            if want.issuer_provider is not None:
                where.at(side.name, f"OIDC provider {want.issuer_provider.url}")
                result.regions[side.name].arns["oidcProvider"] = ensure_issuer_provider(
                    ctx, want.issuer_provider
                )
            where.at(side.name, f"role {want.federated_writer.name}")
            result.regions[side.name].arns[f"role/{want.federated_writer.name}"] = ensure_role(
                ctx, want.federated_writer
            ).arn
        else:
            where.at(side.name, f"user {want.peer_writer.name}")
            result.regions[side.name].arns[f"user/{want.peer_writer.name}"] = ensure_user(
                ctx, want.peer_writer
            ).arn

    # 4. Each accessKey direction's peer-writer key, stored in the OTHER side's SSM.
    key_created: dict[str, datetime | None] = {}
    for side in spec.regions:
        peer = spec.peer_of(side)
        if desired[side.name].inbound_mode != CredentialsMode.ACCESS_KEY.value:
            continue
        where.at(side.name, f"peer key of {desired[side.name].peer_writer.name} in {peer.name}'s SSM")
        key: PeerKeyObserved = ensure_peer_key(
            contexts[side.name],
            contexts[peer.name],
            desired[side.name].peer_writer,
            desired[peer.name].peer_key_parameters,
            rotation_days=spec.credentials.rotation_days,
            force_rotation=force_key_rotation,
            overlap=run.key_overlap,
            now=now,
        )
        result.regions[side.name].peer_key_id = key.access_key_id
        result.regions[side.name].peer_key_created = key.created
        key_created[side.name] = key.created

    # 5. Functions, then 6. mappings (a mapping needs its function).
    code = bundle or build_zip()
    for side in spec.regions:
        ctx, want = contexts[side.name], desired[side.name]
        for function in want.functions:
            where.at(side.name, f"function {function.name}")
            result.regions[side.name].arns[function.name] = ensure_function(ctx, function, code).arn
    for side in spec.regions:
        ctx, want = contexts[side.name], desired[side.name]
        for mapping in want.mappings:
            where.at(side.name, f"mapping of {mapping.function_name}")
            if recreated_streams.get(side.name) == mapping.event_source_arn:
                delete_mappings(ctx, mapping.function_name)
            feed: MappingObserved = ensure_mapping(ctx, mapping)
            result.regions[side.name].mappings[mapping.function_name] = feed.state
            if feed.uuid:
                result.regions[side.name].arns[f"mapping/{mapping.function_name}"] = feed.uuid

    # 7. A mode switch: the other mode's identities go once no sender can still hold them.
    for side in spec.regions:
        where.at(side.name, "retire the other credentials mode")
        result.regions[side.name].retiring = retire_other_mode(
            contexts[side.name],
            contexts[spec.peer_of(side).name],
            desired[side.name],
            key_created=key_created.get(side.name),
            overlap=run.key_overlap,
            now=now,
        )
