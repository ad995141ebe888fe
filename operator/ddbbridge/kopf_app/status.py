"""Turn what the core returned (a reconcile RunResult, an observed PairHealth) into the typed status.

Pure: no I/O. The status is validated by the same `PairStatus` model the CRD schema comes from, then
dumped in its wire form (camelCase, no nulls) for kopf's merge patch.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ddbbridge.conditions import (
    DirectionFacts,
    HealthFacts,
    Outcome,
    ReconcileFacts,
    derive_conditions,
    retention_seconds,
)
from ddbbridge.names import SideNames
from ddbbridge.observe import PairHealth
from ddbbridge.reconcile import RegionReport, RunResult
from ddbbridge.spec import (
    DirectionStatus,
    InitialSyncStatus,
    PairManifest,
    PairStatus,
    RegionArns,
    RegionStatus,
)

MESSAGE_LIMIT = 2000


def reconcile_facts(result: RunResult) -> ReconcileFacts:
    if result.ok:
        return ReconcileFacts(Outcome.OK)
    terminal = [error for error in result.errors if error.terminal]
    chosen = terminal[0] if terminal else result.errors[0]
    message = "; ".join(str(error) for error in (terminal or result.errors))[:MESSAGE_LIMIT]
    reason = chosen.reason or ("SpecError" if terminal else "TransientError")
    return ReconcileFacts(Outcome.TERMINAL if terminal else Outcome.TRANSIENT, reason, message)


def health_facts(manifest: PairManifest, health: PairHealth) -> HealthFacts:
    return HealthFacts(
        directions=tuple(
            DirectionFacts(
                source=d.source,
                target=d.target,
                replicated_count=d.replicated_count,
                lag_seconds=d.lag_seconds,
                on_failure_depth=d.on_failure_depth,
                dead_letter_depth=d.dead_letter_depth,
                sender_mapping_state=d.sender_mapping_state,
                applier_mapping_state=d.applier_mapping_state,
                last_processing_result=d.last_processing_result,
            )
            for d in health.directions
        ),
        retention_seconds=retention_seconds(manifest.spec.replication.kinesis_retention_hours),
        paused=manifest.spec.paused,
        errors=tuple(str(error)[:MESSAGE_LIMIT] for error in health.errors),
    )


def region_status(manifest: PairManifest, report: RegionReport, now: datetime) -> RegionStatus:
    names = SideNames(manifest.metadata.name, report.side)
    arns = report.arns
    created = report.peer_key_created
    return RegionStatus(
        name=report.side,
        region=report.region,
        account=report.account_id,
        arns=RegionArns(
            table=arns.get("table"),
            table_stream=arns.get("tableStream"),
            kinesis_stream=arns.get(names.inbound_stream),
            sender_function=arns.get(names.sender_function),
            applier_function=arns.get(names.applier_function),
            sender_role=arns.get(f"role/{names.sender_role}"),
            applier_role=arns.get(f"role/{names.applier_role}"),
            ledger_table=arns.get(names.ledger_table),
            stats_table=arns.get(names.stats_table),
            sender_failure_queue=arns.get(names.sender_failures_queue),
            applier_failure_queue=arns.get(names.applier_failures_queue),
            dead_letter_queue=arns.get(names.dead_letter_queue),
            peer_writer_user=arns.get(f"user/{names.peer_writer_user}"),
            federated_writer_role=arns.get(f"role/{names.federated_writer_role}"),
            peer_issuer_provider=arns.get("oidcProvider"),
        ),
        stream_enabled_by_operator=report.stream_enabled_by_us,
        credential_key_created=created,
        credential_key_age_days=None if created is None else max(0, (now - created).days),
        credentials_mode=report.credentials_mode,
        credentials_reason=report.credentials_reason,
    )


def direction_status(facts: DirectionFacts) -> DirectionStatus:
    return DirectionStatus(
        source=facts.source,
        target=facts.target,
        replicated_count=facts.replicated_count,
        lag_seconds=facts.lag_seconds,
        on_failure_depth=facts.on_failure_depth,
        dead_letter_depth=facts.dead_letter_depth,
        dlq_depth=facts.dlq_depth,
    )


def build_status(
    *,
    manifest: PairManifest,
    generation: int,
    previous: PairStatus,
    reconcile: ReconcileFacts,
    result: RunResult | None,
    health: HealthFacts | None,
    observed_at: datetime | None,
    now: datetime,
    key_rotation_request: str | None,
    stalled_recheck_seconds: float,
    initial_sync: InitialSyncStatus | None = None,
) -> PairStatus:
    """The whole new status; parts the last pass could not see are carried over from `previous`."""
    regions = previous.regions
    if result is not None and all(r.account_id for r in result.regions.values()):
        regions = [region_status(manifest, result.regions[side.name], now) for side in manifest.spec.regions]
    directions = previous.directions
    lag, dlq = previous.lag_seconds, previous.dlq_depth
    if health is not None:
        directions = [direction_status(d) for d in health.directions]
        lags = [d.lag_seconds for d in health.directions if d.lag_seconds is not None]
        lag = max(lags) if lags else None
        dlq = health.dlq_depth
    return PairStatus(
        observed_generation=generation,
        conditions=derive_conditions(
            generation=generation,
            reconcile=reconcile,
            health=health,
            previous=previous.conditions,
            now=now,
            stalled_recheck_seconds=stalled_recheck_seconds,
            initial_sync_mode=manifest.spec.initial_sync,
            initial_sync=initial_sync or previous.initial_sync,
        ),
        regions=regions,
        directions=directions,
        lag_seconds=lag,
        dlq_depth=dlq,
        last_health_check_time=observed_at or previous.last_health_check_time,
        key_rotation_request=key_rotation_request,
        initial_sync=initial_sync or previous.initial_sync,
    )


def parse_status(raw: Any) -> PairStatus:
    """The status as stored; anything unreadable (an older schema, kopf's own keys) starts afresh."""
    if not isinstance(raw, dict):
        return PairStatus()
    known = {key: value for key, value in raw.items() if key in _WIRE_FIELDS}
    try:
        return PairStatus.model_validate(known)
    except ValueError:
        return PairStatus()


def wire(status: PairStatus) -> dict[str, Any]:
    """camelCase JSON for the merge patch; lists are replaced whole, None fields are omitted."""
    document: dict[str, Any] = status.model_dump(by_alias=True, mode="json", exclude_none=True)
    return document


_WIRE_FIELDS = frozenset(field.alias or name for name, field in PairStatus.model_fields.items())
