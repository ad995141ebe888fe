"""Prometheus metrics of the operator: lag and dead letters per pair and direction, reconcile errors.

Served by prometheus_client on its own port (`--metrics-port`, default 9090): kopf's probe server
routes only its liveness path, so the two cannot share one port without reaching into kopf's internals.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, start_http_server

from ddbbridge.conditions import HealthFacts

LABELS = ("namespace", "pair")

LAG = Gauge(
    "ddbbridge_replication_lag_seconds",
    "Lag of the last applied batch, per direction.",
    [*LABELS, "direction"],
)
DLQ = Gauge(
    "ddbbridge_dead_letters",
    "Messages in the dead-letter queues, per direction and kind (on_failure: Lambda metadata only; "
    "payload: replayable by ddbbridge dlq redrive).",
    [*LABELS, "direction", "kind"],
)
REPLICATED = Gauge(
    "ddbbridge_replicated_changes",
    "Changes applied to the target table, per direction (from the stats tables).",
    [*LABELS, "direction"],
)
READY = Gauge("ddbbridge_pair_ready", "1 when the pair's Ready condition is True.", LABELS)
RECONCILE_ERRORS = Counter(
    "ddbbridge_reconcile_errors",
    "Failed reconcile passes, by kind (transient or terminal).",
    [*LABELS, "kind"],
)


def serve(port: int, address: str) -> None:
    start_http_server(port, addr=address)


def record_health(namespace: str, pair: str, health: HealthFacts) -> None:
    for d in health.directions:
        labels = (namespace, pair, d.name)
        if d.lag_seconds is not None:
            LAG.labels(*labels).set(d.lag_seconds)
        if d.replicated_count is not None:
            REPLICATED.labels(*labels).set(d.replicated_count)
        if d.on_failure_depth is not None:
            DLQ.labels(*labels, "on_failure").set(d.on_failure_depth)
        if d.dead_letter_depth is not None:
            DLQ.labels(*labels, "payload").set(d.dead_letter_depth)


def record_ready(namespace: str, pair: str, ready: bool) -> None:
    READY.labels(namespace, pair).set(1 if ready else 0)


def record_error(namespace: str, pair: str, kind: str) -> None:
    RECONCILE_ERRORS.labels(namespace, pair, kind).inc()


def forget(namespace: str, pair: str) -> None:
    """Drop a deleted pair's series so dashboards do not show it forever."""
    for metric in (LAG, DLQ, REPLICATED):
        for labels in list(metric._metrics):  # prometheus_client keeps no public listing
            if labels[:2] == (namespace, pair):
                metric.remove(*labels)
    for metric in (READY,):
        if (namespace, pair) in metric._metrics:
            metric.remove(namespace, pair)
