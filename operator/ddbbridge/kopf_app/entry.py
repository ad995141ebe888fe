"""`ddbbridge operator [--namespace NS ... | --all-namespaces] [--standalone]`: run the kopf operator.

CONTAINER_COMMAND + CONTAINER_ARGS are what the Deployment runs (manifests/ takes them from here, and
the end-to-end tests start the operator with exactly these, plus test-only knobs). Configuration of
the regions comes from the environment: DDBBRIDGE_ENDPOINTS / DDBBRIDGE_PEER_ENDPOINTS when set
(emulated or private endpoints), AWS credentials per region from Secrets or the default chain.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from typing import Any

import kopf

from ddbbridge.key_rotation import DEFAULT_OVERLAP
from ddbbridge.kopf_app import handlers  # importing registers the handlers with kopf
from ddbbridge.kopf_app.credentials import kubernetes_secret_reader
from ddbbridge.kopf_app.lifecycle import Deps
from ddbbridge.kopf_app.memory import limit_malloc_arenas
from ddbbridge.kopf_app.settings import (
    DEFAULT_LIVENESS_PORT,
    DEFAULT_METRICS_PORT,
    DEFAULT_WORKERS,
    DELETION_TIMEOUT_SECONDS,
    STALLED_RECHECK_SECONDS,
    OperatorOptions,
)

CONTAINER_COMMAND: tuple[str, ...] = ("ddbbridge",)
CONTAINER_ARGS: tuple[str, ...] = (
    "operator",
    "--all-namespaces",
    "--standalone",
    "--liveness-port",
    str(DEFAULT_LIVENESS_PORT),
    "--metrics-port",
    str(DEFAULT_METRICS_PORT),
)
# Environment variables the operator reads (the dev overlay sets the first two).
ENVIRONMENT_VARIABLES = ("DDBBRIDGE_ENDPOINTS", "DDBBRIDGE_PEER_ENDPOINTS", "AWS_REGION")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "operator", help="run the Kubernetes operator for TableReplicationPair (kopf)"
    )
    add_arguments(parser)
    parser.set_defaults(handler=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", action="append", default=[], help="serve pairs in this namespace (repeatable)"
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="serve pairs in every namespace")
    parser.add_argument(
        "--standalone",
        action="store_true",
        help="no kopf peering: exactly one operator replica (the Deployment's Recreate strategy)",
    )
    parser.add_argument("--liveness-port", type=int, default=DEFAULT_LIVENESS_PORT, help="0 disables it")
    parser.add_argument("--metrics-port", type=int, default=DEFAULT_METRICS_PORT, help="0 disables it")
    parser.add_argument("--bind-address", default="0.0.0.0", help="address of the probe and metrics ports")
    parser.add_argument(
        "--stalled-recheck-seconds",
        type=float,
        default=STALLED_RECHECK_SECONDS,
        help="how often a Stalled pair is re-checked (a table created, a permission granted)",
    )
    parser.add_argument(
        "--deletion-timeout-seconds",
        type=float,
        default=DELETION_TIMEOUT_SECONDS,
        help="after this long blocked by an unreachable region, a deletion says so and names the escape",
    )
    parser.add_argument(
        "--key-overlap-seconds",
        type=float,
        default=DEFAULT_OVERLAP.total_seconds(),
        help="how long a rotated peer key stays valid; keep it above the senders' credential cache "
        "TTL (300 s) plus the Lambda timeout",
    )
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="threads for reconciles")
    parser.add_argument("--log-format", choices=("json", "plain", "full"), default="json")
    parser.add_argument("-v", "--verbose", action="store_true")


def options_from(args: argparse.Namespace) -> OperatorOptions:
    return OperatorOptions(
        namespaces=tuple(args.namespace),
        all_namespaces=bool(args.all_namespaces or not args.namespace),
        standalone=bool(args.standalone),
        liveness_port=args.liveness_port or None,
        metrics_port=args.metrics_port or None,
        bind_address=args.bind_address,
        stalled_recheck_seconds=args.stalled_recheck_seconds,
        deletion_timeout_seconds=args.deletion_timeout_seconds,
        key_overlap_seconds=args.key_overlap_seconds,
        workers=args.workers,
        log_format=args.log_format,
        verbose=args.verbose,
    )


class _QuietTimer(logging.Filter):
    """kopf logs every timer tick as succeeded; the health timer ticks every second per pair."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno <= logging.INFO and record.getMessage() == "Timer 'health' succeeded.")


def run(args: argparse.Namespace) -> int:
    options = options_from(args)
    limit_malloc_arenas()  # before kopf starts its threads
    log_format = {
        "json": kopf.LogFormat.JSON,
        "plain": kopf.LogFormat.PLAIN,
        "full": kopf.LogFormat.FULL,
    }[options.log_format]
    kopf.configure(verbose=options.verbose, log_format=log_format)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_QuietTimer())
    # boto's own loggers would print request details at DEBUG; keep them at WARNING even in -v.
    for name in ("botocore", "boto3", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)

    memo = kopf.Memo(
        options=options,
        deps=Deps(read_secret=kubernetes_secret_reader(), events=handlers.KopfEvents()),
    )
    kopf.run(
        standalone=options.standalone,
        clusterwide=options.all_namespaces,
        namespaces=options.namespaces,
        liveness_endpoint=options.liveness_endpoint,
        memo=memo,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ddbbridge.kopf_app", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))
