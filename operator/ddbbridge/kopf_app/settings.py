"""Every kopf setting and operator knob in ONE place: names under `ddbbridge.io`, timeouts, posting.

Names
- Finalizer `ddbbridge.io/finalizer`: deletion waits for the operator to remove (or retain) what the
  pair created in AWS.
- kopf's own bookkeeping (handler progress, last-handled spec) lives in annotations under
  `operator.ddbbridge.io/`. It must NOT be the bare `ddbbridge.io` prefix: kopf hides every annotation
  under its storage prefix from change detection and clears them, and the user-facing annotations
  below live under `ddbbridge.io/`.
- `ddbbridge.io/rotate-key: "<any new value>"` forces a rotation of both peer-writer keys.
- `ddbbridge.io/force-delete: "true"` lets a deletion that is blocked by an unreachable region finish,
  leaving what it could not remove in AWS (listed in an Event, IAM keys first).

Peering: the Deployment runs ONE replica with the `Recreate` strategy and `--standalone`, so two
operators never handle the same pair and no peering objects (or RBAC for them) are needed. Running
several replicas needs kopf peering (drop `--standalone`, install kopf's peering CRDs).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import kopf

from ddbbridge.key_rotation import DEFAULT_OVERLAP
from ddbbridge.spec import API_GROUP

FINALIZER = f"{API_GROUP}/finalizer"
STORAGE_PREFIX = f"operator.{API_GROUP}"
ROTATE_KEY_ANNOTATION = f"{API_GROUP}/rotate-key"
FORCE_DELETE_ANNOTATION = f"{API_GROUP}/force-delete"
REPORTING_COMPONENT = "ddbbridge-operator"

# Watches: the server ends a watch after WATCH_SERVER_TIMEOUT; the client gives up a little later, so a
# silently frozen connection (seen behind load balancers) is replaced instead of waiting forever.
WATCH_SERVER_TIMEOUT = 300  # an integer: the API server parses timeoutSeconds as one
WATCH_CLIENT_TIMEOUT = 330.0
WATCH_CONNECT_TIMEOUT = 10.0
REQUEST_TIMEOUT = 60.0

# The health timer wakes every tick and checks a pair only when its own
# spec.healthCheckIntervalSeconds has passed (kopf timers have one interval per handler).
HEALTH_TICK_SECONDS = 1.0
# A Stalled pair is not retried quickly, but re-checked this often (a table can be created, a
# permission granted, without touching the spec).
STALLED_RECHECK_SECONDS = 300.0
# A deletion blocked this long by an unreachable region says so in an Event and names the escape.
DELETION_TIMEOUT_SECONDS = 600.0
# Backoff of transient errors: first retry after BACKOFF_BASE seconds, doubling up to BACKOFF_MAX.
BACKOFF_BASE_SECONDS = 5.0
BACKOFF_MAX_SECONDS = 120.0
# Threads for the synchronous reconcile core (boto3); one pair holds one thread while it runs.
DEFAULT_WORKERS = 16

LIVENESS_PATH = "/healthz"
DEFAULT_LIVENESS_PORT = 8080
DEFAULT_METRICS_PORT = 9090


@dataclass(frozen=True)
class OperatorOptions:
    """What `ddbbridge operator` was started with (defaults are the production values)."""

    namespaces: tuple[str, ...] = ()
    all_namespaces: bool = True
    standalone: bool = True
    liveness_port: int | None = DEFAULT_LIVENESS_PORT
    metrics_port: int | None = DEFAULT_METRICS_PORT
    bind_address: str = "0.0.0.0"
    stalled_recheck_seconds: float = STALLED_RECHECK_SECONDS
    deletion_timeout_seconds: float = DELETION_TIMEOUT_SECONDS
    key_overlap_seconds: float = DEFAULT_OVERLAP.total_seconds()
    workers: int = DEFAULT_WORKERS
    log_format: str = "json"
    verbose: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key_overlap(self) -> timedelta:
        return timedelta(seconds=self.key_overlap_seconds)

    @property
    def liveness_endpoint(self) -> str | None:
        if self.liveness_port is None:
            return None
        return f"http://{self.bind_address}:{self.liveness_port}{LIVENESS_PATH}"


def backoff(retry: int) -> float:
    """Delay before retry number `retry` (0 = the first retry) of a transient error."""
    return float(min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, retry)))


def configure(settings: kopf.OperatorSettings, options: OperatorOptions) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=STORAGE_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=STORAGE_PREFIX, key="last-handled-configuration"
    )
    settings.watching.server_timeout = WATCH_SERVER_TIMEOUT
    settings.watching.client_timeout = WATCH_CLIENT_TIMEOUT
    settings.watching.connect_timeout = WATCH_CONNECT_TIMEOUT
    settings.networking.request_timeout = REQUEST_TIMEOUT
    # Only what the operator posts on purpose becomes an Event (create/update/repair/error), never
    # log lines: logs may carry details that have no place on the object.
    settings.posting.enabled = True
    settings.posting.loggers = False
    settings.posting.level = logging.INFO
    settings.posting.reporting_component = REPORTING_COMPONENT
    settings.peering.standalone = options.standalone
    settings.peering.clusterwide = options.all_namespaces
    settings.execution.max_workers = options.workers
    settings.queueing.error_delays = (1, 2, 5, 10, 30, 60)
