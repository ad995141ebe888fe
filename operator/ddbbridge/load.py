"""`ddbbridge load`: write fake user records into one side (or both at once), as applications would.

The seed's load test, made repeatable: keys follow the table's own key schema, writes are stamped
with the side's origin and a timestamp (or not, for the unstamped share), a pool of keys shared by
both sides produces conflicts, and `loaded_count` in the side's stats table counts every write.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import threading
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from ddbbridge.aws import region_session
from ddbbridge.keyschema import read_key_schema
from ddbbridge.loader import RegionLoader, RegionLoadResult, Stamping
from ddbbridge.loaderstats import LoaderStats
from ddbbridge.loadplan import KeyFactory, LoadMix, OperationKind, plan_operations, plan_rng
from ddbbridge.names import SideNames
from ddbbridge.progress import ProgressBar
from ddbbridge.ratelimit import TokenBucket
from ddbbridge.spec import PairManifest, RegionSpec, SpecError, load_manifest

ALL_REGIONS = "all"


@dataclass(frozen=True)
class LoadOptions:
    count: int
    mix: LoadMix
    seed: int
    workers: int = 8
    rate: float | None = None
    progress: bool = True


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "load",
        help="write fake user records into a pair's tables (load generator)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-f", "--file", required=True, help="pair manifest (TableReplicationPair YAML)")
    parser.add_argument(
        "--region", required=True, help="side name (e.g. cn), AWS region, or 'all' for every side at once"
    )
    parser.add_argument("--count", type=int, required=True, help="writes to issue per side")
    parser.add_argument(
        "--rate", type=float, default=None, help="writes per second per side (default: no limit)"
    )
    parser.add_argument("--workers", type=int, default=8, help="writer threads per side (default 8)")
    parser.add_argument(
        "--conflict-keys", type=int, default=0, help="size of the key pool both sides write (default 0)"
    )
    parser.add_argument(
        "--conflict-ratio",
        type=float,
        default=0.2,
        help="share of writes that go to the shared pool when --conflict-keys > 0 (default 0.2)",
    )
    parser.add_argument("--delete-ratio", type=float, default=0.05, help="share of deletes (default 0.05)")
    parser.add_argument("--update-ratio", type=float, default=0.25, help="share of updates (default 0.25)")
    parser.add_argument(
        "--unstamped-ratio",
        type=float,
        default=0.1,
        help="share of puts and updates that do not stamp origin and timestamp (default 0.1)",
    )
    parser.add_argument("--seed", type=int, default=None, help="make keys and values reproducible")
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        manifest = load_manifest(args.file)
        sides = select_sides(manifest, args.region)
        if args.count < 0 or args.workers < 1 or (args.rate is not None and args.rate <= 0):
            raise ValueError("--count must be >= 0, --workers >= 1 and --rate > 0")
        mix = LoadMix(
            delete_ratio=args.delete_ratio,
            update_ratio=args.update_ratio,
            unstamped_ratio=args.unstamped_ratio,
            conflict_keys=args.conflict_keys,
            conflict_ratio=args.conflict_ratio,
        )
    except (SpecError, KeyError, ValueError, OSError) as error:
        print(f"ddbbridge load: {error}", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else secrets.randbelow(10**6)
    options = LoadOptions(
        count=args.count,
        mix=mix,
        seed=seed,
        workers=args.workers,
        rate=args.rate,
        progress=not args.no_progress,
    )
    try:
        results = load_pair(manifest, sides, options)
    except ClientError as error:
        print(f"ddbbridge load: {error}", file=sys.stderr)
        return 1
    if args.output == "json":
        print(json.dumps(summary_document(results, seed), indent=2))
    else:
        print(summary_text(results, seed))
    return 0 if all(not r.errors for r in results) else 1


def select_sides(manifest: PairManifest, region: str) -> list[RegionSpec]:
    if region == ALL_REGIONS:
        return list(manifest.spec.regions)
    return [manifest.spec.side(region)]


def load_pair(
    manifest: PairManifest, sides: list[RegionSpec], options: LoadOptions
) -> list[RegionLoadResult]:
    """Load every selected side at once (one thread per side) and return their results in order."""
    stop = threading.Event()
    loaders = [prepare_side(manifest, side, options, stop) for side in sides]
    label = "load " + "+".join(side.name for side in sides)
    progress = ProgressBar(label, options.count * len(sides), unit="writes", enabled=options.progress)
    results: list[RegionLoadResult | None] = [None] * len(loaders)

    def load_one(position: int) -> None:
        loader, operations, stats = loaders[position]
        loader.progress = progress
        if stats is not None:
            stats.start()
        try:
            results[position] = loader.run(operations)
        finally:
            if stats is not None:
                loader.result.stats_recorded = stats.close()
                loader.result.stats_error = stats.last_error
            results[position] = loader.result

    threads = [threading.Thread(target=load_one, args=(i,), daemon=True) for i in range(len(loaders))]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    except KeyboardInterrupt:
        stop.set()
        for thread in threads:
            thread.join()
        raise
    finally:
        progress.close()
    return [r for r in results if r is not None]


def prepare_side(
    manifest: PairManifest, side: RegionSpec, options: LoadOptions, stop: threading.Event
) -> tuple[RegionLoader, Any, LoaderStats | None]:
    session = region_session(side)
    dynamodb = session.client("dynamodb")
    schema = read_key_schema(dynamodb, side.table_name)
    stats_table = SideNames(manifest.name, side.name).stats_table
    stats: LoaderStats | None = None
    if table_exists(dynamodb, stats_table):
        stats = LoaderStats(dynamodb, stats_table)
    else:
        print(
            f"ddbbridge load: stats table {stats_table} not found in {side.region}; "
            "loaded_count is not recorded (reconcile the pair first)",
            file=sys.stderr,
        )
    replication = manifest.spec.replication
    stamping = Stamping(
        origin_attribute=replication.origin_attribute,
        origin=side.name,
        timestamp_attribute=replication.timestamp_attribute,
        timestamp_unit=str(replication.timestamp_unit),
    )
    loader = RegionLoader(
        dynamodb,
        side.table_name,
        stamping,
        workers=options.workers,
        bucket=TokenBucket(options.rate) if options.rate else None,
        stats=stats,
        stop=stop,
        key_schema=schema,
        region=side.region,
    )
    position = manifest.spec.regions.index(side)
    keys = KeyFactory(schema, side.name, position, options.seed)
    operations = plan_operations(keys, options.mix, options.count, plan_rng(options.seed, side.name))
    return loader, operations, stats


def table_exists(dynamodb: Any, table_name: str) -> bool:
    try:
        dynamodb.describe_table(TableName=table_name)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return False
        raise
    return True


def summary_document(results: list[RegionLoadResult], seed: int) -> dict[str, Any]:
    return {
        "seed": seed,
        "regions": [
            {
                "side": r.side,
                "region": r.region,
                "table": r.table,
                "writes": r.total,
                "by_operation": {kind: r.written[kind] for kind in OperationKind},
                "unstamped": r.written["unstamped"],
                "reinserts": r.written["reinsert"],
                "shared_key_writes": r.written["shared"],
                "errors": dict(r.errors),
                "error_examples": r.error_examples,
                "elapsed_seconds": round(r.elapsed, 3),
                "writes_per_second": round(r.rate, 1),
                "loaded_count_recorded": r.stats_recorded,
            }
            for r in results
        ],
    }


def summary_text(results: list[RegionLoadResult], seed: int) -> str:
    lines = [f"seed {seed}"]
    for r in results:
        by_kind = ", ".join(f"{r.written[kind]} {kind}s" for kind in OperationKind)
        lines.append(
            f"{r.side} ({r.region}, {r.table}): {r.total} writes ({by_kind}; "
            f"{r.written['unstamped']} unstamped, "
            f"{r.written['reinsert']} re-inserts, {r.written['shared']} to shared keys) "
            f"in {r.elapsed:.1f}s = {r.rate:.1f} writes/s"
        )
        if r.errors:
            lines.append(f"  errors: {dict(r.errors)}")
            lines.extend(f"    {example}" for example in r.error_examples)
        if not r.stats_recorded:
            detail = f": {r.stats_error}" if r.stats_error else ""
            lines.append(f"  loaded_count not recorded{detail}")
    if len(results) > 1:
        elapsed = max(r.elapsed for r in results)
        total = sum(r.total for r in results)
        lines.append(
            f"total: {total} writes in {elapsed:.1f}s = {total / elapsed if elapsed else 0:.1f} writes/s"
        )
    return "\n".join(lines)
