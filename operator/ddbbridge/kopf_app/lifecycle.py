"""The operator's passes over one pair: reconcile, health check, delete. kopf-free, so tests call them.

Each pass reads the object (a `PairView`), calls the core (`ddbbridge.reconcile`, `observe`, `destroy`)
through `Deps` (fakes in unit tests), posts Events, and returns the new status and the outcome; the
kopf handlers (handlers.py) only translate that into a status patch and kopf's error types.

One pair runs one pass at a time (a lock per pair): the spec handlers and the health timer run in
different threads, and two concurrent reconciles could each create the same mapping. The copy of
pre-existing items (`spec.initialSync`, module `initial_sync`) runs on a thread of its own; the health
timer starts and watches it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from ddbbridge.backfill import BackfillResult
from ddbbridge.conditions import (
    HealthFacts,
    Outcome,
    ReconcileFacts,
    derive_conditions,
    replace_initial_sync_condition,
)
from ddbbridge.destroy import destroy as core_destroy
from ddbbridge.errors import ReconcileError
from ddbbridge.key_rotation import forced_rotation
from ddbbridge.kopf_app import initial_sync, metrics
from ddbbridge.kopf_app.credentials import SecretReader, region_credentials
from ddbbridge.kopf_app.settings import FORCE_DELETE_ANNOTATION, ROTATE_KEY_ANNOTATION, OperatorOptions
from ddbbridge.kopf_app.status import build_status, health_facts, parse_status, reconcile_facts, wire
from ddbbridge.leftovers import leftovers
from ddbbridge.observe import PairHealth, observe_pair
from ddbbridge.reconcile import PairClients, RunResult
from ddbbridge.reconcile import reconcile as core_reconcile
from ddbbridge.spec import (
    API_VERSION,
    KIND,
    ConditionStatus,
    DeletionPolicy,
    InitialSyncStatus,
    PairManifest,
    PairStatus,
    SpecError,
    parse_manifest,
)

EVENT_MESSAGE_LIMIT = 1000
QUICK_ATTEMPTS = 2  # botocore attempts per call while deleting (see RegionSession.max_attempts)


class EventSink(Protocol):
    def post(self, body: Any, kind: str, reason: str, message: str) -> None: ...


def make_clients(manifest: PairManifest, credentials: dict[str, dict[str, str]], quick: bool) -> PairClients:
    clients = PairClients.from_environment(manifest, credentials)
    if quick:
        for session in clients.sessions.values():
            session.max_attempts = QUICK_ATTEMPTS
    return clients


@dataclass
class Deps:
    """What the passes call outside themselves; the defaults are the real core."""

    read_secret: SecretReader
    events: EventSink
    reconcile: Callable[..., RunResult] = core_reconcile
    observe: Callable[[PairManifest, PairClients], PairHealth] = observe_pair
    destroy: Callable[..., RunResult] = core_destroy
    make_clients: Callable[[PairManifest, dict[str, dict[str, str]], bool], PairClients] = make_clients
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    monotonic: Callable[[], float] = time.monotonic
    backfill: Callable[..., BackfillResult] = initial_sync.run_backfill
    spawn: Callable[[Callable[[], None], str], None] = initial_sync.spawn_thread


@dataclass
class PairRuntime:
    """In-memory state of one pair in this operator process (gone after a restart, on purpose)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    last: ReconcileFacts | None = None  # None: not reconciled by this process yet
    next_health_check: float = 0.0
    last_warning: str | None = None  # reason of the last Warning posted by the health pass
    deletion_blocked_reported: bool = False
    health: HealthFacts | None = None  # the last observation of replication by this process
    initial_sync: initial_sync.SyncState = field(default_factory=initial_sync.SyncState)


_RUNTIME_KEY = "pair_runtime"
_runtime_creation = threading.Lock()


def runtime_of(memo: Any) -> PairRuntime:
    """The pair's runtime in kopf's per-object memo, created once even when two threads ask at once."""
    with _runtime_creation:
        found: PairRuntime | None = memo.get(_RUNTIME_KEY)
        if found is None:
            found = PairRuntime()
            memo[_RUNTIME_KEY] = found
        return found


@dataclass(frozen=True)
class PairView:
    """What a pass needs from the object."""

    body: Any
    name: str
    namespace: str
    generation: int
    manifest: PairManifest | None  # None when the spec is invalid
    invalid_reason: str | None
    status: PairStatus
    annotations: Mapping[str, str]

    @classmethod
    def of(cls, body: Any) -> PairView:
        metadata = body.get("metadata", {})
        document = {
            "apiVersion": f"ddbbridge.io/{API_VERSION}",
            "kind": KIND,
            "metadata": {
                "name": metadata.get("name"),
                "namespace": metadata.get("namespace") or "default",
                "uid": metadata.get("uid"),
            },
            "spec": _plain(body.get("spec", {})),
        }
        manifest: PairManifest | None = None
        invalid: str | None = None
        try:
            manifest = parse_manifest(document)
        except SpecError as error:
            invalid = str(error)
        return cls(
            body=body,
            name=str(metadata.get("name")),
            namespace=str(metadata.get("namespace") or "default"),
            generation=int(metadata.get("generation") or 0),
            manifest=manifest,
            invalid_reason=invalid,
            status=parse_status(_plain(body.get("status"))),
            annotations=dict(metadata.get("annotations") or {}),
        )


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class PassResult:
    status: PairStatus | None  # None: nothing to write
    outcome: ReconcileFacts


def _post(deps: Deps, view: PairView, kind: str, reason: str, message: str) -> None:
    deps.events.post(view.body, kind, reason, message[:EVENT_MESSAGE_LIMIT])


def _action_reason(verb: str, resource: str, repair: bool) -> str:
    if resource.endswith("/access-key"):
        return {"create": "KeyCreated", "rotate": "KeyRotated", "delete": "OldKeyDeleted"}.get(
            verb, "KeyUpdated"
        )
    if repair:
        return "DriftRepaired"
    return {"create": "Created", "delete": "Deleted"}.get(verb, "Updated")


def _has_key(status: PairStatus) -> bool:
    return any(region.credential_key_created is not None for region in status.regions)


@dataclass(frozen=True)
class CoreRun:
    """One reconcile (and, when it succeeded, one observation) of both regions."""

    facts: ReconcileFacts
    result: RunResult | None = None
    health: HealthFacts | None = None
    observed_at: datetime | None = None
    handled_rotation: str | None = None  # rotate-key value counted as handled after this run


def _run_core(view: PairView, deps: Deps, options: OperatorOptions, *, repair: bool) -> CoreRun:
    manifest = view.manifest
    if manifest is None:
        facts = ReconcileFacts(Outcome.TERMINAL, "InvalidSpec", view.invalid_reason or "invalid spec")
        return CoreRun(facts, handled_rotation=view.status.key_rotation_request)
    requested = view.annotations.get(ROTATE_KEY_ANNOTATION)
    handled = view.status.key_rotation_request
    force = forced_rotation(requested, handled, _has_key(view.status))
    try:
        clients = deps.make_clients(manifest, region_credentials(manifest, deps.read_secret), False)
    except ReconcileError as error:
        kind = Outcome.TERMINAL if error.terminal else Outcome.TRANSIENT
        return CoreRun(ReconcileFacts(kind, error.reason, str(error)), handled_rotation=handled)
    result = deps.reconcile(manifest, clients, force_key_rotation=force, key_overlap=options.key_overlap)
    facts = reconcile_facts(result)
    for action in result.actions:
        reason = _action_reason(action.verb, action.resource, repair)
        _post(deps, view, "Warning" if reason == "DriftRepaired" else "Normal", reason, str(action))
    health: HealthFacts | None = None
    observed_at: datetime | None = None
    if facts.outcome is Outcome.OK:
        observed = deps.observe(manifest, clients)
        health = health_facts(manifest, observed)
        observed_at = deps.clock()
        metrics.record_health(view.namespace, view.name, health)
    else:
        metrics.record_error(view.namespace, view.name, facts.outcome.value)
    # A rotation request counts as handled once a reconcile succeeded with it (or none was needed).
    new_handled = requested if facts.outcome is Outcome.OK else handled
    return CoreRun(facts, result, health, observed_at, new_handled)


def _sync_document(view: PairView, runtime: PairRuntime) -> InitialSyncStatus | None:
    """This process's latest initial-sync document, else the stored one."""
    return runtime.initial_sync.document or view.status.initial_sync


def _status(
    view: PairView, deps: Deps, options: OperatorOptions, run: CoreRun, runtime: PairRuntime
) -> PairStatus:
    if view.manifest is None:
        # No model to build regions from: keep what was there, record the verdict.
        status = view.status.model_copy()
        status.observed_generation = view.generation
        status.conditions = derive_conditions(
            generation=view.generation,
            reconcile=run.facts,
            health=None,
            previous=view.status.conditions,
            now=deps.clock(),
            stalled_recheck_seconds=options.stalled_recheck_seconds,
            initial_sync_mode=initial_sync.requested_mode(view.body),
            initial_sync=_sync_document(view, runtime),
        )
        return status
    status = build_status(
        manifest=view.manifest,
        generation=view.generation,
        previous=view.status,
        reconcile=run.facts,
        result=run.result,
        health=run.health,
        observed_at=run.observed_at,
        now=deps.clock(),
        key_rotation_request=run.handled_rotation,
        stalled_recheck_seconds=options.stalled_recheck_seconds,
        initial_sync=_sync_document(view, runtime),
    )
    ready = status.condition("Ready")
    metrics.record_ready(
        view.namespace, view.name, ready is not None and ready.status is ConditionStatus.TRUE
    )
    return status


def reconcile_pass(view: PairView, deps: Deps, options: OperatorOptions, runtime: PairRuntime) -> PassResult:
    """create / resume / update / rotate-key: make both regions match the spec, then observe them."""
    with runtime.lock:
        run = _run_core(view, deps, options, repair=False)
        facts = run.facts
        runtime.last = facts
        runtime.health = run.health if facts.outcome is Outcome.OK else None
        interval = _interval(view, options, facts)
        runtime.next_health_check = deps.monotonic() + interval
    if facts.outcome is Outcome.TERMINAL:
        _post(deps, view, "Warning", "Stalled", facts.message)
    elif facts.outcome is Outcome.TRANSIENT:
        _post(deps, view, "Warning", "ReconcileFailed", facts.message)
    else:
        _post(deps, view, "Normal", "Reconciled", f"both regions match generation {view.generation}")
    status = _status(view, deps, options, run, runtime)
    runtime.last_warning = facts.reason if facts.outcome is not Outcome.OK else None
    return PassResult(status, facts)


def _interval(view: PairView, options: OperatorOptions, facts: ReconcileFacts) -> float:
    if facts.outcome is Outcome.TERMINAL or view.manifest is None:
        return options.stalled_recheck_seconds
    return float(view.manifest.spec.health_check_interval_seconds)


def health_due(runtime: PairRuntime, deps: Deps) -> bool:
    """Reconciled by this process already (resume runs first after a restart) and the interval is over."""
    return runtime.last is not None and deps.monotonic() >= runtime.next_health_check


def health_pass(
    view: PairView, deps: Deps, options: OperatorOptions, runtime: PairRuntime
) -> PassResult | None:
    """The timer: when this pair's interval has passed, repair drift and observe replication.

    Returns None when nothing was due (or another pass of the pair is running). A Stalled pair is
    re-checked every `stalled_recheck_seconds` only.
    """
    if not health_due(runtime, deps):
        return None
    if not runtime.lock.acquire(blocking=False):
        return None
    try:
        run = _run_core(view, deps, options, repair=True)
        facts = run.facts
        runtime.last = facts
        runtime.health = run.health if facts.outcome is Outcome.OK else None
        runtime.next_health_check = deps.monotonic() + _interval(view, options, facts)
    finally:
        runtime.lock.release()
    if facts.outcome is not Outcome.OK and facts.reason != runtime.last_warning:
        _post(
            deps,
            view,
            "Warning",
            "Stalled" if facts.outcome is Outcome.TERMINAL else "HealthCheckFailed",
            facts.message,
        )
    elif facts.outcome is Outcome.OK and runtime.last_warning is not None:
        _post(deps, view, "Normal", "Recovered", "both regions reachable and in place again")
    runtime.last_warning = facts.reason if facts.outcome is not Outcome.OK else None
    return PassResult(_status(view, deps, options, run, runtime), facts)


def initial_sync_tick(body: Any, deps: Deps, runtime: PairRuntime) -> dict[str, Any] | None:
    """Every health tick: start, watch or finish the pair's copy of pre-existing items. Returns the
    status patch (status.initialSync and the InitialSyncComplete condition), or None."""
    document = initial_sync.tick(
        body,
        deps,
        runtime.initial_sync,
        facts=runtime.last,
        health=runtime.health,
        manifest=lambda: PairView.of(body).manifest,
    )
    if document is None:
        return None
    metadata = body.get("metadata", {})
    conditions = replace_initial_sync_condition(
        parse_status(_plain(body.get("status"))).conditions,
        generation=int(metadata.get("generation") or 0),
        mode=initial_sync.requested_mode(body),
        sync=document,
        now=deps.clock(),
    )
    patch = wire(PairStatus(conditions=conditions, initial_sync=document))
    return {"initialSync": patch["initialSync"], "conditions": patch["conditions"]}


@dataclass(frozen=True)
class DeletePassResult:
    done: bool
    message: str


def delete_pass(
    view: PairView, deps: Deps, options: OperatorOptions, runtime: PairRuntime, blocked_seconds: float
) -> DeletePassResult:
    """Finalizer: remove (Delete) or keep (Retain) what the pair created, never the user tables.

    `blocked_seconds` is how long this deletion has been trying (kopf keeps it across restarts). Past
    `deletion_timeout_seconds` a Warning says what blocks it and how to force it; with the
    force-delete annotation the pass lets the pair go and lists what stays in AWS.
    """
    manifest = view.manifest
    if manifest is None:
        return DeletePassResult(True, "invalid spec: nothing was ever created")
    # A copy still running would outlive the pair, or write into tables the destroy removes.
    initial_sync.stop(runtime.initial_sync)
    if manifest.spec.deletion_policy is DeletionPolicy.RETAIN:
        _post(deps, view, "Normal", "Retained", "deletionPolicy Retain: every AWS resource of the pair stays")
        metrics.forget(view.namespace, view.name)
        return DeletePassResult(True, "retained")
    force = view.annotations.get(FORCE_DELETE_ANNOTATION, "").lower() == "true"
    with runtime.lock:
        try:
            credentials = region_credentials(manifest, deps.read_secret)
        except ReconcileError as error:
            if not any(region.account for region in view.status.regions):
                # Without credentials nothing can have been created: no reconcile ever got past
                # discovery (status would name the accounts), so there is nothing to remove.
                _post(deps, view, "Normal", "Deleted", f"nothing was created ({error})")
                return DeletePassResult(True, "nothing created")
            credentials = {}
            if not force:
                return _blocked(view, deps, options, runtime, Blocked(blocked_seconds, [str(error)]))
        result = deps.destroy(manifest, deps.make_clients(manifest, credentials, True))
    removed = [str(a) for a in result.actions]
    if result.ok:
        _post(deps, view, "Normal", "Deleted", f"removed {len(removed)} resource(s) in both regions")
        metrics.forget(view.namespace, view.name)
        return DeletePassResult(True, "deleted")
    left = leftovers(result)
    if force:
        _post(
            deps,
            view,
            "Warning",
            "ForceDeleted",
            f"{FORCE_DELETE_ANNOTATION}: finished without removing; left in AWS: " + "; ".join(left),
        )
        metrics.forget(view.namespace, view.name)
        return DeletePassResult(True, "forced; left behind: " + "; ".join(left))
    return _blocked(view, deps, options, runtime, Blocked(blocked_seconds, left))


@dataclass(frozen=True)
class Blocked:
    seconds: float  # since the deletion started
    left: list[str]  # what could not be removed yet


def _blocked(
    view: PairView, deps: Deps, options: OperatorOptions, runtime: PairRuntime, blocked: Blocked
) -> DeletePassResult:
    message, blocked_seconds = "; ".join(blocked.left), blocked.seconds
    if blocked_seconds >= options.deletion_timeout_seconds and not runtime.deletion_blocked_reported:
        runtime.deletion_blocked_reported = True
        _post(
            deps,
            view,
            "Warning",
            "DeletionBlocked",
            f"deletion blocked for {blocked_seconds:.0f}s (timeout {options.deletion_timeout_seconds:.0f}s); "
            f'to finish anyway and leave these in AWS, annotate {FORCE_DELETE_ANNOTATION}="true": {message}',
        )
    return DeletePassResult(False, message)
