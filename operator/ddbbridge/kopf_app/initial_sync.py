"""`spec.initialSync` in the operator: copy the pre-existing items once, in the background.

The health timer calls `tick()` every second for every pair; it is cheap unless a copy is pending.
- A copy starts only after this process reconciled the pair and saw, in the last observation, the
  sender and applier mappings of each copied direction Enabled (and the pair not paused): writes
  made during the scan are then replicated by the pipeline (`backfill.check_ready` re-checks the
  stream and the mapping itself), so nothing written meanwhile is lost.
- It runs `ddbbridge.backfill.backfill` on a thread of its own (never kopf's executor), so other
  pairs' reconciles and the health timer never wait for it.
- One run per request: status.initialSync records the mode and a run id (`g<generation>` when it was
  requested). A resync, a restart or another spec change does not copy again; a Completed or Failed
  run of the same mode stays done. Setting the field to `none` (or another mode) stops a run; a
  later request gets a new run id and so fresh checkpoints.
- Checkpoints live in the source region's stats table under the run id (`backfill_checkpoints`), so
  a restarted operator resumes a Running or Retrying run without rescanning finished segments.
- A failed attempt (region unreachable, throttling beyond the retries, a checkpoint it cannot
  write) is an Event plus phase Retrying with the error, and is resumed from the checkpoints after
  a backoff (5 s doubling to 120 s). Items the target rejects as poison end the run as Failed
  (reason ItemsRejected): retrying cannot fix them.
Progress goes to status.initialSync at most every PROGRESS_WRITE_SECONDS, phase changes at once.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from ddbbridge.backfill import (
    BackfillCancelledError,
    BackfillProgress,
    BackfillResult,
    backfill,
    directions_for,
)
from ddbbridge.backfill_checkpoints import stats_table_checkpoints
from ddbbridge.conditions import HealthFacts, Outcome, ReconcileFacts
from ddbbridge.kopf_app.credentials import SecretReader, region_credentials
from ddbbridge.kopf_app.settings import backoff
from ddbbridge.reconcile import PairClients
from ddbbridge.spec import (
    InitialSync,
    InitialSyncDirectionStatus,
    InitialSyncPhase,
    InitialSyncStatus,
    PairManifest,
)

PROGRESS_WRITE_SECONDS = 5.0
STOP_WAIT_SECONDS = 30.0  # a deletion waits this long for the scan threads to finish their page
MESSAGE_LIMIT = 1000
DONE = frozenset({InitialSyncPhase.COMPLETED, InitialSyncPhase.FAILED})


class EventSink(Protocol):
    def post(self, body: Any, kind: str, reason: str, message: str) -> None: ...


class SyncDeps(Protocol):
    """What `tick` uses of lifecycle.Deps."""

    @property
    def read_secret(self) -> SecretReader: ...
    @property
    def events(self) -> EventSink: ...
    @property
    def make_clients(self) -> Callable[[PairManifest, dict[str, dict[str, str]], bool], PairClients]: ...
    @property
    def backfill(self) -> Callable[..., BackfillResult]: ...
    @property
    def spawn(self) -> Callable[[Callable[[], None], str], None]: ...
    @property
    def clock(self) -> Callable[[], datetime]: ...
    @property
    def monotonic(self) -> Callable[[], float]: ...


def run_backfill(
    manifest: PairManifest,
    clients: PairClients,
    *,
    run: str,
    mode: InitialSync,
    progress: Callable[[BackfillProgress], None],
    stop: threading.Event,
) -> BackfillResult:
    """The operator's backfill: the pair's own clients, checkpoints in the stats tables."""
    return backfill(
        manifest,
        direction=mode.value,
        sessions=clients.sessions,
        checkpoints=stats_table_checkpoints(clients.sessions, manifest.name, run),
        progress=progress,
        stop=stop,
    )


def spawn_thread(target: Callable[[], None], name: str) -> None:
    # A daemon: an operator that exits leaves the copy to its checkpoints, resumed after the restart.
    threading.Thread(target=target, name=name, daemon=True).start()


@dataclass
class SyncRun:
    """One attempt running on its own thread."""

    mode: InitialSync
    document: InitialSyncStatus  # as of the start; progress is merged in by `current()`
    stop: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    outcome: BackfillResult | BaseException | None = None
    progress: dict[str, BackfillProgress] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, update: BackfillProgress) -> None:
        with self.lock:  # called from the scan threads
            self.progress[update.direction] = update

    def current(self) -> InitialSyncStatus:
        with self.lock:
            updates = dict(self.progress)
        directions = {d.direction: d for d in self.document.directions}
        for name, update in updates.items():
            directions[name] = _direction(
                name,
                total=update.segments_total,
                done=update.segments_done,
                scanned=update.scanned,
                estimated=update.estimated_total,
                outcomes=update.outcomes,
            )
        return self.document.model_copy(update={"directions": list(directions.values())})


@dataclass
class SyncState:
    """Initial-sync state of one pair in this process (PairRuntime.initial_sync)."""

    run: SyncRun | None = None
    retry_at: float | None = None  # monotonic time before which a Retrying run is not resumed
    document: InitialSyncStatus | None = None  # the latest document this process produced
    written: InitialSyncStatus | None = None  # the latest document handed out for writing
    written_at: float = float("-inf")


def _direction(
    name: str,
    *,
    total: int,
    done: int,
    scanned: int,
    estimated: int | None,
    outcomes: dict[str, int],
) -> InitialSyncDirectionStatus:
    return InitialSyncDirectionStatus(
        direction=name,
        segments_total=total,
        segments_done=done,
        scanned=scanned,
        estimated_total=estimated,
        written=outcomes.get("applied", 0),
        skipped_as_older=outcomes.get("discarded_older", 0) + outcomes.get("coalesced", 0),
        restamped=outcomes.get("restamped", 0),
        skipped_changed=outcomes.get("skipped_changed", 0),
        rejected=outcomes.get("rejected", 0),
    )


def requested_mode(body: Any) -> InitialSync:
    value = (body.get("spec") or {}).get("initialSync") or InitialSync.NONE.value
    try:
        return InitialSync(value)
    except ValueError:
        return InitialSync.NONE  # the CRD's enum refuses it; an invalid spec stalls elsewhere


def stored_document(body: Any) -> InitialSyncStatus | None:
    raw = (body.get("status") or {}).get("initialSync")
    if not raw:
        return None
    try:
        return InitialSyncStatus.model_validate(dict(raw))
    except ValueError:
        return None


def replicating(
    manifest: PairManifest, mode: InitialSync, facts: ReconcileFacts | None, health: HealthFacts | None
) -> bool:
    """Reconciled, observed, not paused, and both mappings of every copied direction Enabled."""
    if facts is None or facts.outcome is not Outcome.OK or health is None or health.paused or health.errors:
        return False
    wanted = {(d.source.name, d.target.name) for d in directions_for(manifest, mode.value)}
    seen = {
        (d.source, d.target)
        for d in health.directions
        if d.sender_mapping_state == "Enabled" and d.applier_mapping_state == "Enabled"
    }
    return wanted <= seen


def tick(
    body: Any,
    deps: SyncDeps,
    state: SyncState,
    *,
    facts: ReconcileFacts | None,
    health: HealthFacts | None,
    manifest: Callable[[], PairManifest | None],
) -> InitialSyncStatus | None:
    """Start, watch, finish or stop the pair's copy. Returns the document to write, or None."""
    mode = requested_mode(body)
    run = state.run
    if run is not None:
        if run.mode is not mode:
            run.stop.set()  # the request changed: this run ends after its pages in flight
        if not run.finished.is_set():
            return _throttled(state, deps, run.current())
        return _produce(state, deps, _settle(body, deps, state, run, mode))
    # What this process last produced is at least as new as the body (which may lag our own patch).
    stored = state.document if state.document is not None else stored_document(body)
    if mode is InitialSync.NONE:
        if stored is not None and stored.phase not in DONE and stored.phase is not InitialSyncPhase.CANCELLED:
            stopped = stored.model_copy(
                update={
                    "phase": InitialSyncPhase.CANCELLED,
                    "finished_time": deps.clock(),
                    "message": "spec.initialSync set to none before the copy finished",
                }
            )
            return _produce(state, deps, stopped)
        return None
    current = stored if stored is not None and stored.mode is mode else None
    if current is not None and current.phase is InitialSyncPhase.CANCELLED:
        current = None
    if current is not None and current.phase in DONE:
        return None
    if state.retry_at is not None and deps.monotonic() < state.retry_at:
        return None
    parsed = manifest()
    if parsed is None:
        return None
    generation = int((body.get("metadata") or {}).get("generation") or 0)
    if not replicating(parsed, mode, facts, health):
        if current is None:
            waiting = InitialSyncStatus(
                mode=mode,
                run=f"g{generation}",
                phase=InitialSyncPhase.WAITING,
                message="waits until both regions are reconciled and the copied directions' mappings "
                "are Enabled",
            )
            return _produce(state, deps, waiting)
        return None
    return _produce(
        state, deps, _start(body, deps, state, parsed, mode=mode, current=current, generation=generation)
    )


def _start(
    body: Any,
    deps: SyncDeps,
    state: SyncState,
    manifest: PairManifest,
    *,
    mode: InitialSync,
    current: InitialSyncStatus | None,
    generation: int,
) -> InitialSyncStatus:
    resumed = current is not None and current.attempts > 0
    document = InitialSyncStatus(
        mode=mode,
        run=current.run if current is not None else f"g{generation}",
        phase=InitialSyncPhase.RUNNING,
        attempts=(current.attempts if current is not None else 0) + 1,
        started_time=(current.started_time if current is not None else None) or deps.clock(),
        directions=current.directions if current is not None else [],
    )
    run = SyncRun(mode, document)
    state.run, state.retry_at = run, None

    def work() -> None:
        try:
            clients = deps.make_clients(manifest, region_credentials(manifest, deps.read_secret), False)
            run.outcome = deps.backfill(
                manifest, clients, run=document.run, mode=mode, progress=run.record, stop=run.stop
            )
        except BaseException as error:  # reported by the next tick, never lost in the thread
            run.outcome = error
        finally:
            run.finished.set()

    deps.spawn(work, f"initial-sync-{manifest.name}")
    verb = "resumed from its checkpoints" if resumed else "started"
    deps.events.post(
        body,
        "Normal",
        "InitialSyncStarted",
        f"{mode.value} copy of pre-existing items {verb} (run {document.run}, attempt {document.attempts})",
    )
    return document


def _settle(
    body: Any, deps: SyncDeps, state: SyncState, run: SyncRun, mode: InitialSync
) -> InitialSyncStatus:
    """The attempt's thread ended: Completed, Failed, Cancelled or Retrying."""
    state.run = None
    document = run.current()
    now = deps.clock()
    outcome = run.outcome
    if isinstance(outcome, BackfillResult):
        directions = [
            _direction(
                d.direction,
                total=d.segments_total,
                done=d.segments_total,
                scanned=d.scanned_total,
                estimated=next(
                    (x.estimated_total for x in document.directions if x.direction == d.direction), None
                ),
                outcomes=Counter(d.outcomes),
            )
            for d in outcome.directions
        ]
        summary = "; ".join(
            f"{d.direction}: {d.scanned} scanned, {d.written} written, {d.skipped_as_older} already newer"
            for d in directions
        )
        if outcome.ok:
            deps.events.post(body, "Normal", "InitialSyncCompleted", f"run {document.run}: {summary}")
            return document.model_copy(
                update={
                    "phase": InitialSyncPhase.COMPLETED,
                    "finished_time": now,
                    "message": summary,
                    "directions": directions,
                }
            )
        rejected = [r for d in outcome.directions for r in d.rejected]
        listed = "; ".join(f"{r['key']}: {r['reason']}" for r in rejected[:5])
        message = (
            f"the target rejected {len(rejected)} item(s) as poison ({listed}); fix them in the source "
            "(their next write replicates), check with `ddbbridge verify`, and set initialSync to none "
            "and back to copy again"
        )[:MESSAGE_LIMIT]
        deps.events.post(body, "Warning", "InitialSyncItemsRejected", message)
        return document.model_copy(
            update={
                "phase": InitialSyncPhase.FAILED,
                "finished_time": now,
                "message": message,
                "directions": directions,
            }
        )
    if isinstance(outcome, BackfillCancelledError) and run.mode is not mode:
        deps.events.post(body, "Normal", "InitialSyncCancelled", f"spec.initialSync is now {mode.value}")
        return document.model_copy(
            update={
                "phase": InitialSyncPhase.CANCELLED,
                "finished_time": now,
                "message": f"stopped: spec.initialSync changed to {mode.value}",
            }
        )
    delay = backoff(document.attempts - 1)
    state.retry_at = deps.monotonic() + delay
    error = f"{type(outcome).__name__}: {outcome}"[:MESSAGE_LIMIT]
    deps.events.post(
        body,
        "Warning",
        "InitialSyncFailed",
        f"attempt {document.attempts} failed, resuming from the checkpoints in {delay:.0f}s: {error}",
    )
    return document.model_copy(update={"phase": InitialSyncPhase.RETRYING, "message": error})


def _produce(state: SyncState, deps: SyncDeps, document: InitialSyncStatus) -> InitialSyncStatus:
    """A phase change: written at once."""
    state.document = state.written = document
    state.written_at = deps.monotonic()
    return document


def _throttled(state: SyncState, deps: SyncDeps, document: InitialSyncStatus) -> InitialSyncStatus | None:
    state.document = document
    if document == state.written or deps.monotonic() - state.written_at < PROGRESS_WRITE_SECONDS:
        return None
    return _produce(state, deps, document)


def stop(state: SyncState, timeout: float = STOP_WAIT_SECONDS) -> bool:
    """Stop a running copy (the pair is being deleted); True when its threads ended in time."""
    run = state.run
    if run is None:
        return True
    run.stop.set()
    ended = run.finished.wait(timeout)
    state.run = None
    return ended
