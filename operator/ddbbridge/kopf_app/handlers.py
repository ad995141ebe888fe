"""kopf handlers for TableReplicationPair: thin glue over `lifecycle` (which calls the core).

- create / resume / update of `spec` / a new `ddbbridge.io/rotate-key` value: reconcile both regions.
- timer: the health check (drift repair, replication health) every spec.healthCheckIntervalSeconds;
  every tick it also starts and watches the copy of pre-existing items (spec.initialSync).
- delete (with the finalizer): remove or retain what the pair created.

Errors: a transient failure raises `kopf.TemporaryError` (retried with backoff, Ready=False with the
reason); a terminal one raises `kopf.PermanentError` (Stalled: no retry until the spec changes; the
health timer re-checks slowly). The operator-level memo carries `deps` (lifecycle.Deps) and `options`.
"""

from __future__ import annotations

from typing import Any

import kopf

from ddbbridge.conditions import Outcome
from ddbbridge.crd import PLURAL
from ddbbridge.kopf_app import lifecycle, metrics
from ddbbridge.kopf_app.settings import (
    HEALTH_TICK_SECONDS,
    ROTATE_KEY_ANNOTATION,
    OperatorOptions,
    backoff,
    configure,
)
from ddbbridge.kopf_app.status import wire
from ddbbridge.spec import API_GROUP, API_VERSION

RESOURCE = (API_GROUP, API_VERSION, PLURAL)


class KopfEvents:
    """Events through kopf's poster (batched in the background, safe from handler threads)."""

    def post(self, body: Any, kind: str, reason: str, message: str) -> None:
        kopf.event(body, type=kind, reason=reason, message=message)


def _deps(memo: Any) -> lifecycle.Deps:
    deps: lifecycle.Deps = memo["deps"]
    return deps


def _options(memo: Any) -> OperatorOptions:
    options: OperatorOptions = memo["options"]
    return options


def startup(settings: kopf.OperatorSettings, memo: Any, logger: Any, **_: Any) -> None:
    options = _options(memo)
    configure(settings, options)
    if options.metrics_port is not None:
        metrics.serve(options.metrics_port, options.bind_address)
        logger.info(f"metrics on {options.bind_address}:{options.metrics_port}/metrics")


def _write(patch: Any, result: lifecycle.PassResult | None) -> None:
    if result is not None and result.status is not None:
        patch.status.update(wire(result.status))


def _raise_for(outcome: Any, retry: int) -> None:
    if outcome.outcome is Outcome.TRANSIENT:
        raise kopf.TemporaryError(f"{outcome.reason}: {outcome.message}", delay=backoff(retry))
    if outcome.outcome is Outcome.TERMINAL:
        raise kopf.PermanentError(f"{outcome.reason}: {outcome.message}")


def reconcile(body: Any, patch: Any, memo: Any, retry: int, **_: Any) -> None:
    view = lifecycle.PairView.of(body)
    result = lifecycle.reconcile_pass(view, _deps(memo), _options(memo), lifecycle.runtime_of(memo))
    _write(patch, result)
    _raise_for(result.outcome, retry)


def health(body: Any, patch: Any, memo: Any, **_: Any) -> None:
    if body.get("metadata", {}).get("deletionTimestamp"):
        return
    deps, runtime = _deps(memo), lifecycle.runtime_of(memo)
    # Cheap unless a copy of pre-existing items is pending (spec.initialSync); never waits for it.
    sync = lifecycle.initial_sync_tick(body, deps, runtime)
    if lifecycle.health_due(runtime, deps):
        view = lifecycle.PairView.of(body)
        result = lifecycle.health_pass(view, deps, _options(memo), runtime)
        if result is not None and result.status is not None:
            _write(patch, result)  # carries the initial-sync document and condition too
            return
    if sync is not None:
        patch.status.update(sync)


def delete(body: Any, memo: Any, retry: int, runtime: Any, logger: Any, **_: Any) -> None:
    view = lifecycle.PairView.of(body)
    result = lifecycle.delete_pass(
        view, _deps(memo), _options(memo), lifecycle.runtime_of(memo), runtime.total_seconds()
    )
    if not result.done:
        raise kopf.TemporaryError(f"deletion incomplete: {result.message}", delay=backoff(min(retry, 2)))
    logger.info(f"pair released: {result.message}")


# Registration apart from the definitions: the module's functions keep their own signatures, so unit
# tests call them directly with fakes.
kopf.on.startup()(startup)
kopf.on.resume(*RESOURCE)(reconcile)
kopf.on.create(*RESOURCE)(reconcile)
kopf.on.update(*RESOURCE, field="spec")(reconcile)
kopf.on.update(*RESOURCE, id="rotate-key", field=["metadata", "annotations", ROTATE_KEY_ANNOTATION])(
    reconcile
)
kopf.timer(*RESOURCE, id="health", interval=HEALTH_TICK_SECONDS)(health)
kopf.on.delete(*RESOURCE)(delete)
