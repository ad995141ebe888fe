"""`ddbbridge reconcile | destroy | status -f pair.yaml`: the one-shot control plane.

reconcile prints every action (or the plan with --dry-run) and the AWS calls it made by service,
mutating ones apart: an unchanged pair must show `mutating AWS calls: 0`. Exit codes: 0 done,
1 error (the message says whether retrying can help), 2 invalid manifest.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from typing import Any

from ddbbridge.aws import CallCounter
from ddbbridge.destroy import destroy
from ddbbridge.observe import observe_pair, render_status
from ddbbridge.reconcile import PairClients, RunResult, reconcile
from ddbbridge.spec import PairManifest, SpecError, load_manifest

EXIT_ERROR = 1
EXIT_INVALID = 2


def register(subparsers: Any) -> None:
    run = subparsers.add_parser("reconcile", help="create or update everything a pair needs in both regions")
    _manifest_argument(run)
    run.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    run.add_argument("-o", "--output", choices=("text", "json"), default="text")
    run.set_defaults(handler=run_reconcile)

    remove = subparsers.add_parser(
        "destroy", help="remove what reconcile created in both regions (never the user tables)"
    )
    _manifest_argument(remove)
    remove.add_argument("--dry-run", action="store_true", help="print what would be removed")
    remove.add_argument("-o", "--output", choices=("text", "json"), default="text")
    remove.set_defaults(handler=run_destroy)

    status = subparsers.add_parser(
        "status", help="replicated counts, lag, dead letters and mapping state per direction"
    )
    _manifest_argument(status)
    status.add_argument("-o", "--output", choices=("text", "json"), default="text")
    status.set_defaults(handler=run_status)


def _manifest_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--filename", required=True, help="pair.yaml (a TableReplicationPair)")


def _load(path: str) -> PairManifest | None:
    try:
        return load_manifest(path)
    except (SpecError, OSError) as error:
        print(f"error: invalid pair manifest: {error}", file=sys.stderr)
        return None


def run_reconcile(args: argparse.Namespace) -> int:
    manifest = _load(args.filename)
    if manifest is None:
        return EXIT_INVALID
    clients = PairClients.from_environment(manifest)
    result = reconcile(manifest, clients, dry_run=args.dry_run)
    return _finish(result, clients, args.output)


def run_destroy(args: argparse.Namespace) -> int:
    manifest = _load(args.filename)
    if manifest is None:
        return EXIT_INVALID
    clients = PairClients.from_environment(manifest)
    result = destroy(manifest, clients, dry_run=args.dry_run)
    return _finish(result, clients, args.output)


def run_status(args: argparse.Namespace) -> int:
    manifest = _load(args.filename)
    if manifest is None:
        return EXIT_INVALID
    clients = PairClients.from_environment(manifest)
    status = observe_pair(manifest, clients)
    if args.output == "json":
        print(json.dumps(status.to_json(), indent=2, sort_keys=True))
    else:
        print(render_status(status))
    return EXIT_ERROR if status.errors else 0


def call_summary(counters: dict[str, CallCounter]) -> dict[str, Any]:
    """Calls made, per side and in total, by service; mutating calls counted apart."""
    total: Counter[str] = Counter()
    mutating: Counter[str] = Counter()
    per_side: dict[str, Any] = {}
    for side, counter in counters.items():
        all_calls = counter.by_service()
        changes = counter.by_service(mutating_only=True)
        total.update(all_calls)
        mutating.update(changes)
        per_side[side] = {"calls": all_calls, "mutating": changes}
    return {
        "calls": dict(sorted(total.items())),
        "mutating": dict(sorted(mutating.items())),
        "total": sum(total.values()),
        "mutatingTotal": sum(mutating.values()),
        "bySide": per_side,
    }


def _format_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{service} {n}" for service, n in counts.items()) or "none"


def _finish(result: RunResult, clients: PairClients, output: str) -> int:
    calls = call_summary(clients.counters())
    if output == "json":
        document = result.to_json()
        document["awsCalls"] = calls
        print(json.dumps(document, indent=2, sort_keys=True))
    else:
        label = f"{result.operation}{' (dry run)' if result.dry_run else ''} of pair {result.pair}"
        print(label)
        verb = "planned" if result.dry_run else "taken"
        for action in result.actions:
            print(f"  {action}")
        print(f"actions {verb}: {len(result.actions)}")
        for side, report in result.regions.items():
            if report.account_id:
                print(f"  [{side}] {report.region} account {report.account_id} partition {report.partition}")
        print(f"AWS calls: {calls['total']} ({_format_counts(calls['calls'])})")
        print(f"mutating AWS calls: {calls['mutatingTotal']} ({_format_counts(calls['mutating'])})")
    for error in result.errors:
        advice = "fix the cause, then run again" if error.terminal else "transient: run again"
        print(f"error: {error} -- {advice}", file=sys.stderr)
    return 0 if result.ok else EXIT_ERROR
