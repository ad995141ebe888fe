"""Status conditions of a pair, derived in ONE place from what the operator last saw. Pure: no I/O.

Inputs are the outcome of the last reconcile (ok, transient error, terminal error, not yet run) and the
last health observation; the output is the full condition list, kstatus order first.

Semantics (the README's "Status and conditions" section says the same):
- `Stalled=True`: the spec or the account must change (table missing, key schemas differ, a stream of
  the wrong view type, no permission, the table already belongs to another pair, invalid credentials).
  No fast retry; the operator re-checks slowly and at once on any spec change.
- `Synced=True`: the last reconcile made both regions match the current generation.
- `Ready=True` only when every resource in both regions is in place (Synced) AND replication is
  healthy: both mappings of both directions enabled, no failing processing, no dead letters, lag
  within the retention window. `Ready=False` reasons that need a person: `DeadLetters`,
  `ReplicationFailing`, `ResyncRequired` (Argo CD maps them to Degraded); any other reason means
  "still converging" (transient errors included).
- Under a non-empty dead-letter queue Ready is False with reason `DeadLetters`: replication of every
  other change continues, but the dead-lettered changes are missing on one side, so the tables are
  not converging until someone fixes the cause and redrives (or purges) them. `DeadLetters=True`
  carries the count per direction, the two kinds apart.
- `ResyncRequired=True`: a direction's lag reached RESYNC_FRACTION of the shorter retention (the
  table stream's 24 h or the Kinesis stream's); changes older than that are lost, so the fix is a
  backfill plus `ddbbridge verify`.
- `InitialSyncComplete`: True when `spec.initialSync` is none (reason `NotRequested`) or its copy of
  the pre-existing items finished (`Copied`); False while it waits for replication, runs or retries
  (Argo CD: Progressing), and with reason `ItemsRejected` when the target rejected items as poison
  (Degraded). Ready says nothing about it: replication is healthy (and needed) while the copy runs.
`lastTransitionTime` changes only when a condition's status changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from ddbbridge.spec import (
    Condition,
    ConditionStatus,
    ConditionType,
    InitialSync,
    InitialSyncPhase,
    InitialSyncStatus,
)

RESYNC_FRACTION = 0.8
TABLE_STREAM_RETENTION_SECONDS = 24 * 3600
SETTLING_MAPPING_STATES = frozenset({"Creating", "Enabling", "Updating"})
DEGRADED_READY_REASONS = frozenset({"DeadLetters", "ReplicationFailing", "ResyncRequired"})
ORDER = (
    ConditionType.READY,
    ConditionType.SYNCED,
    ConditionType.STALLED,
    ConditionType.DEAD_LETTERS,
    ConditionType.RESYNC_REQUIRED,
    ConditionType.INITIAL_SYNC_COMPLETE,
)


class Outcome(StrEnum):
    OK = "ok"
    TRANSIENT = "transient"  # retried with backoff
    TERMINAL = "terminal"  # Stalled until the spec or the world changes
    PENDING = "pending"  # not reconciled yet for this generation


@dataclass(frozen=True)
class ReconcileFacts:
    outcome: Outcome
    reason: str = ""
    message: str = ""


@dataclass(frozen=True)
class DirectionFacts:
    source: str
    target: str
    replicated_count: int | None = None
    lag_seconds: float | None = None
    on_failure_depth: int | None = None
    dead_letter_depth: int | None = None
    sender_mapping_state: str | None = None
    applier_mapping_state: str | None = None
    last_processing_result: str | None = None

    @property
    def name(self) -> str:
        return f"{self.source}->{self.target}"

    @property
    def dlq_depth(self) -> int | None:
        if self.on_failure_depth is None or self.dead_letter_depth is None:
            return None
        return self.on_failure_depth + self.dead_letter_depth


@dataclass(frozen=True)
class HealthFacts:
    directions: tuple[DirectionFacts, ...]
    retention_seconds: float = TABLE_STREAM_RETENTION_SECONDS
    paused: bool = False
    errors: tuple[str, ...] = field(default=())  # what could not be observed

    @property
    def dlq_depth(self) -> int | None:
        depths = [d.dlq_depth for d in self.directions]
        return None if not depths or any(d is None for d in depths) else sum(d or 0 for d in depths)


@dataclass(frozen=True)
class Verdict:
    status: ConditionStatus
    reason: str
    message: str


def _true(reason: str, message: str) -> Verdict:
    return Verdict(ConditionStatus.TRUE, reason, message)


def _false(reason: str, message: str) -> Verdict:
    return Verdict(ConditionStatus.FALSE, reason, message)


def _unknown(reason: str, message: str) -> Verdict:
    return Verdict(ConditionStatus.UNKNOWN, reason, message)


def retention_seconds(kinesis_retention_hours: int) -> float:
    """The shorter of the two retention windows a change waits in."""
    return float(min(TABLE_STREAM_RETENTION_SECONDS, kinesis_retention_hours * 3600))


# ------------------------------------------------------------------------------------ one per type


def stalled(reconcile: ReconcileFacts, recheck_seconds: float) -> Verdict:
    if reconcile.outcome is Outcome.TERMINAL:
        return _true(
            reconcile.reason or "SpecError",
            f"{reconcile.message}; not retried until the spec changes (re-checked every "
            f"{recheck_seconds:.0f}s in case the cause is fixed outside the spec)",
        )
    return _false("NotStalled", "nothing blocks the pair that only a person can fix")


def synced(reconcile: ReconcileFacts, generation: int) -> Verdict:
    match reconcile.outcome:
        case Outcome.OK:
            return _true("ReconcileSucceeded", f"both regions match generation {generation}")
        case Outcome.TRANSIENT:
            return _false(reconcile.reason or "TransientError", f"retrying: {reconcile.message}")
        case Outcome.TERMINAL:
            return _false(reconcile.reason or "SpecError", reconcile.message)
        case _:
            return _unknown("Reconciling", f"generation {generation} is being applied")


def dead_letters(health: HealthFacts | None) -> Verdict:
    if health is None or health.dlq_depth is None:
        return _unknown("DepthUnknown", "dead-letter queues not observed yet")
    total = health.dlq_depth
    if total == 0:
        return _false("NoDeadLetters", "no dead letters in either direction")
    parts = [
        f"{d.name}: {d.dlq_depth} (on-failure {d.on_failure_depth}, with payload {d.dead_letter_depth})"
        for d in health.directions
        if d.dlq_depth
    ]
    return _true(
        "RecordsDeadLettered",
        f"{total} change(s) could not be replicated ({'; '.join(parts)}); fix the cause, then "
        "`ddbbridge dlq redrive`",
    )


def resync_required(health: HealthFacts | None) -> Verdict:
    if health is None:
        return _unknown("NotObserved", "lag not observed yet")
    limit = RESYNC_FRACTION * health.retention_seconds
    late = [d for d in health.directions if d.lag_seconds is not None and d.lag_seconds >= limit]
    if late:
        worst = max(late, key=lambda d: d.lag_seconds or 0.0)
        return _true(
            "RetentionNearlyExceeded",
            f"{worst.name} lags {worst.lag_seconds:.0f}s, past {RESYNC_FRACTION:.0%} of the "
            f"{health.retention_seconds:.0f}s retention: changes may be lost; run a backfill, then "
            "`ddbbridge verify`",
        )
    return _false("WithinRetention", "every direction's lag is well inside the retention window")


def _mapping_problem(health: HealthFacts) -> tuple[str, str] | None:
    """(reason, message) for mappings that keep a direction from flowing, or None."""
    settling: list[str] = []
    for d in health.directions:
        for role, state in (("sender", d.sender_mapping_state), ("applier", d.applier_mapping_state)):
            if state == "Enabled":
                continue
            if state in SETTLING_MAPPING_STATES:
                settling.append(f"{d.name} {role} mapping is {state}")
                continue
            return "ReplicationFailing", f"{d.name}: the {role} mapping is {state or 'missing'}"
        if (d.last_processing_result or "").startswith("PROBLEM"):
            return "ReplicationFailing", f"{d.name}: {d.last_processing_result}"
    if settling:
        return "MappingsSettling", "; ".join(settling)
    return None


def ready(reconcile: ReconcileFacts, health: HealthFacts | None, generation: int) -> Verdict:
    if reconcile.outcome is Outcome.TERMINAL:
        return _false(reconcile.reason or "SpecError", reconcile.message)
    if reconcile.outcome is Outcome.TRANSIENT:
        return _false(reconcile.reason or "TransientError", f"retrying: {reconcile.message}")
    if reconcile.outcome is Outcome.PENDING:
        return _false("Reconciling", f"generation {generation} is being applied")
    if health is None:
        return _unknown("AwaitingHealthCheck", "resources are in place; replication not observed yet")
    if health.errors:
        return _unknown("HealthCheckFailed", "could not observe: " + "; ".join(health.errors))
    resync = resync_required(health)
    if resync.status is ConditionStatus.TRUE:
        return _false("ResyncRequired", resync.message)
    if health.paused:
        return _false("Paused", "spec.paused: both directions' mappings are disabled on purpose")
    problem = _mapping_problem(health)
    if problem is not None:
        return _false(*problem)
    letters = dead_letters(health)
    if letters.status is ConditionStatus.TRUE:
        return _false("DeadLetters", f"replication continues, but {letters.message}")
    flows = ", ".join(
        f"{d.name} {d.replicated_count or 0} replicated"
        + (f" (lag {d.lag_seconds:.1f}s)" if d.lag_seconds is not None else "")
        for d in health.directions
    )
    return _true("ReplicationHealthy", f"replicating both ways: {flows}")


def _progress(sync: InitialSyncStatus) -> str:
    parts = []
    for d in sync.directions:
        total = f" of ~{d.estimated_total}" if d.estimated_total else ""
        parts.append(
            f"{d.direction} {d.scanned}{total} scanned, {d.written} written, "
            f"{d.segments_done}/{d.segments_total} segments"
        )
    return "; ".join(parts) or "nothing scanned yet"


def initial_sync_complete(mode: InitialSync, sync: InitialSyncStatus | None) -> Verdict:
    """From spec.initialSync and the run's status document (None: no run of this mode yet)."""
    if mode is InitialSync.NONE:
        return _true("NotRequested", "spec.initialSync is none: pre-existing items are not copied")
    if sync is None or sync.mode is not mode or sync.phase is InitialSyncPhase.CANCELLED:
        return _false("WaitingForReplication", f"{mode.value}: starts once both directions replicate")
    match sync.phase:
        case InitialSyncPhase.COMPLETED:
            return _true(
                "Copied", f"{mode.value} run {sync.run} copied the pre-existing items: {_progress(sync)}"
            )
        case InitialSyncPhase.FAILED:
            return _false("ItemsRejected", sync.message or "the target rejected items as poison")
        case InitialSyncPhase.RETRYING:
            return _false("InitialSyncRetrying", f"attempt {sync.attempts} failed: {sync.message}")
        case InitialSyncPhase.RUNNING:
            return _false("Copying", _progress(sync))
        case _:
            return _false("WaitingForReplication", sync.message or f"{mode.value}: waiting to start")


# ------------------------------------------------------------------------------------ all together


def derive_conditions(
    *,
    generation: int,
    reconcile: ReconcileFacts,
    health: HealthFacts | None,
    previous: Sequence[Condition],
    now: datetime,
    stalled_recheck_seconds: float = 300.0,
    initial_sync_mode: InitialSync = InitialSync.NONE,
    initial_sync: InitialSyncStatus | None = None,
) -> list[Condition]:
    verdicts = {
        ConditionType.READY: ready(reconcile, health, generation),
        ConditionType.SYNCED: synced(reconcile, generation),
        ConditionType.STALLED: stalled(reconcile, stalled_recheck_seconds),
        ConditionType.DEAD_LETTERS: dead_letters(health),
        ConditionType.RESYNC_REQUIRED: resync_required(health),
        ConditionType.INITIAL_SYNC_COMPLETE: initial_sync_complete(initial_sync_mode, initial_sync),
    }
    before = {c.type: c for c in previous}
    return [_condition(kind, verdicts[kind], before.get(kind.value), generation, now) for kind in ORDER]


def replace_initial_sync_condition(
    previous: Sequence[Condition],
    *,
    generation: int,
    mode: InitialSync,
    sync: InitialSyncStatus | None,
    now: datetime,
) -> list[Condition]:
    """The stored conditions with InitialSyncComplete recomputed (progress between health checks)."""
    kind = ConditionType.INITIAL_SYNC_COMPLETE
    before = {c.type: c for c in previous}
    fresh = _condition(kind, initial_sync_complete(mode, sync), before.get(kind.value), generation, now)
    kept = [c for c in previous if c.type != kind.value]
    return [*kept, fresh]


def _condition(
    kind: ConditionType, verdict: Verdict, old: Condition | None, generation: int, now: datetime
) -> Condition:
    changed = old is None or old.status != verdict.status
    return Condition(
        type=kind.value,
        status=verdict.status,
        reason=verdict.reason,
        message=verdict.message,
        observed_generation=generation,
        last_transition_time=now if changed or old is None else old.last_transition_time,
    )
