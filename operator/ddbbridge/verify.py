"""`ddbbridge verify`: prove the pair's two tables hold the same items, attribute by attribute.

Both tables are read with parallel segmented, strongly consistent scans. Each item is reduced to
(canonical key, digest) as it arrives and matched against the other side (`comparison.DigestMatcher`),
so memory holds digests of unmatched keys, never both tables' items. A few divergent keys per class
are re-read to name the attributes that differ. Exit 0 if and only if the tables are equal, 1 when
they differ, 2 when they cannot be compared.

Every attribute is compared, the origin and timestamp stamps included. Values compare as DynamoDB
holds them: numbers by value ("1.0" equals "1"; DynamoDB stores numbers normalised), sets and map
keys unordered, lists ordered, binary by its bytes.

`--wait SECONDS` repeats the comparison until the tables are equal or the time is up: what an operator
(or a test) runs after writes stop, while the pipeline drains.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ddbbridge.aws import region_session
from ddbbridge.comparison import (
    AttributeDifference,
    Comparison,
    DigestMatcher,
    Item,
    Side,
    attribute_differences,
    item_digest,
    key_of,
    plain_key,
)
from ddbbridge.errors import describe as describe_error
from ddbbridge.errors import is_terminal
from ddbbridge.keyschema import key_schema_of
from ddbbridge.progress import ProgressBar
from ddbbridge.repair import repair_divergence
from ddbbridge.spec import PairManifest, RegionSpec, SpecError, load_manifest
from ddbbridge_lambdas.config import KeyAttribute

DEFAULT_SEGMENTS = 4
# Items per Scan page. A full 1 MB page of a table still draining is one long request: on an
# emulator with one DynamoDB lock it stalled replication for minutes (and timed-out pages were
# retried as new scans). Short pages interleave with the replication's own writes.
SCAN_PAGE_ITEMS = 200
DEFAULT_EXAMPLES = 3
DEFAULT_WAIT_INTERVAL = 2.0


class VerifyError(RuntimeError):
    """The tables cannot be compared (missing table, different key schemas)."""


@dataclass(frozen=True)
class TableSide:
    side: Side
    spec: RegionSpec
    dynamodb: Any


@dataclass(frozen=True)
class Example:
    key: Item
    # For a different item: which attributes differ (re-read with consistent reads).
    attributes: tuple[AttributeDifference, ...] = ()
    note: str | None = None


@dataclass
class VerifyReport:
    pair: str
    side_a: RegionSpec
    side_b: RegionSpec
    comparison: Comparison
    scanned: dict[Side, int]
    elapsed: float
    examples: dict[str, list[Example]] = field(default_factory=dict)

    @property
    def converged(self) -> bool:
        return self.comparison.converged

    def summary_line(self) -> str:
        c = self.comparison
        verdict = "EQUAL" if self.converged else "DIFFERENT"
        return (
            f"{verdict}: {self.side_a.name}={self.scanned[Side.A]} items, "
            f"{self.side_b.name}={self.scanned[Side.B]} items, {c.equal} equal, "
            f"{len(c.missing_in_a)} missing in {self.side_a.name}, "
            f"{len(c.missing_in_b)} missing in {self.side_b.name}, {len(c.different)} different"
        )


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "verify",
        help="compare the pair's two tables item by item; exit 0 only if they are equal",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-f", "--file", required=True, help="pair manifest (TableReplicationPair YAML)")
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text")
    parser.add_argument(
        "--segments", type=int, default=DEFAULT_SEGMENTS, help="parallel scan segments per table (default 4)"
    )
    parser.add_argument(
        "--examples", type=int, default=DEFAULT_EXAMPLES, help="divergent keys shown per class (default 3)"
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=None,
        metavar="SECONDS",
        help="repeat until the tables are equal or SECONDS have passed",
    )
    parser.add_argument(
        "--interval", type=float, default=DEFAULT_WAIT_INTERVAL, help="seconds between --wait attempts"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument(
        "--repair",
        action="store_true",
        help="repair each divergent key by the version order (see `ddbbridge.repair`); exit 0 when "
        "every divergent key was repaired",
    )
    parser.add_argument(
        "--prefer",
        choices=("A", "B"),
        default="A",
        help="with --repair: the side whose content wins when both hold the same version (default A)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        manifest = load_manifest(args.file)
        if args.segments < 1 or args.examples < 0:
            raise ValueError("--segments must be >= 1 and --examples >= 0")
        options = {"segments": args.segments, "examples": args.examples, "progress": not args.no_progress}
        if args.wait is not None:
            report = wait_until_converged(manifest, args.wait, interval=args.interval, **options)
        else:
            report = verify_pair(manifest, **options)
    except (SpecError, ValueError, OSError, VerifyError, ClientError, BotoCoreError) as error:
        print(f"ddbbridge verify: {error}", file=sys.stderr)
        return 2
    if getattr(args, "repair", False):
        return run_repair(args, manifest, report)
    if args.output == "json":
        print(json.dumps(report_document(report), indent=2, ensure_ascii=False))
    else:
        print(report_text(report))
    return 0 if report.converged else 1


def run_repair(args: argparse.Namespace, manifest: PairManifest, report: VerifyReport) -> int:
    """Print the verify report, repair what differs, print what changed; 0 if all was repaired."""
    try:
        repaired = repair_divergence(
            manifest, report.comparison, prefer=Side.A if args.prefer == "A" else Side.B
        )
    except (ValueError, OSError, ClientError, BotoCoreError, RuntimeError) as error:
        print(f"ddbbridge verify --repair: {error}", file=sys.stderr)
        return 2
    if args.output == "json":
        document = {**report_document(report), "repair": repaired.document()}
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        print(report_text(report))
        print(repaired.text())
    return 0 if repaired.ok else 1


def open_sides(manifest: PairManifest) -> tuple[TableSide, TableSide]:
    a, b = manifest.spec.side_a, manifest.spec.side_b
    return (
        TableSide(Side.A, a, region_session(a).client("dynamodb")),
        TableSide(Side.B, b, region_session(b).client("dynamodb")),
    )


def describe(side: TableSide) -> dict[str, Any]:
    try:
        table: dict[str, Any] = side.dynamodb.describe_table(TableName=side.spec.table_name)["Table"]
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            raise VerifyError(f"table {side.spec.table_name} not found in {side.spec.region}") from None
        raise
    return table


def verify_pair(
    manifest: PairManifest,
    *,
    segments: int = DEFAULT_SEGMENTS,
    examples: int = DEFAULT_EXAMPLES,
    progress: bool = True,
    sides: tuple[TableSide, TableSide] | None = None,
) -> VerifyReport:
    """Scan both tables and compare every item."""
    started = time.monotonic()
    side_a, side_b = sides or open_sides(manifest)
    table_a, table_b = describe(side_a), describe(side_b)
    schema_a, schema_b = key_schema_of(table_a), key_schema_of(table_b)
    if schema_a != schema_b:
        raise VerifyError(
            f"key schemas differ: {side_a.spec.name} {schema_a} vs {side_b.spec.name} {schema_b}"
        )
    matcher = DigestMatcher(schema_a)
    lock = threading.Lock()
    expected = int(table_a.get("ItemCount", 0)) + int(table_b.get("ItemCount", 0))
    bar = ProgressBar(
        f"verify {side_a.spec.name}<->{side_b.spec.name}", expected or None, unit="items", enabled=progress
    )
    with bar, ThreadPoolExecutor(max_workers=2 * segments, thread_name_prefix="verify-scan") as pool:
        futures = [
            pool.submit(
                scan_segment,
                side,
                segment,
                total_segments=segments,
                key_schema=schema_a,
                matcher=matcher,
                lock=lock,
                bar=bar,
            )
            for side in (side_a, side_b)
            for segment in range(segments)
        ]
        for future in futures:
            future.result()
    comparison = matcher.result()
    report = VerifyReport(
        pair=manifest.name,
        side_a=side_a.spec,
        side_b=side_b.spec,
        comparison=comparison,
        scanned=dict(matcher.seen),
        elapsed=0.0,
    )
    report.examples = collect_examples(comparison, side_a, side_b, examples)
    report.elapsed = time.monotonic() - started
    return report


def scan_segment(
    side: TableSide,
    segment: int,
    *,
    total_segments: int,
    key_schema: tuple[KeyAttribute, ...],
    matcher: DigestMatcher,
    lock: threading.Lock,
    bar: ProgressBar,
) -> None:
    request: dict[str, Any] = {
        "TableName": side.spec.table_name,
        "ConsistentRead": True,
        "Segment": segment,
        "TotalSegments": total_segments,
        "Limit": SCAN_PAGE_ITEMS,
    }
    while True:
        page = side.dynamodb.scan(**request)
        # Digests are computed outside the lock; only the matching is serialised.
        observed = [(key_of(item, key_schema), item_digest(item)) for item in page.get("Items", [])]
        with lock:
            for key, digest in observed:
                matcher.observe(side.side, key, digest)
        bar.advance(len(observed))
        last = page.get("LastEvaluatedKey")
        if not last:
            return
        request["ExclusiveStartKey"] = last


def read_item(side: TableSide, key: Item) -> Item | None:
    item: Item | None = side.dynamodb.get_item(
        TableName=side.spec.table_name, Key=key, ConsistentRead=True
    ).get("Item")
    return item


def collect_examples(
    comparison: Comparison, side_a: TableSide, side_b: TableSide, limit: int
) -> dict[str, list[Example]]:
    """A few keys per class; different items are re-read to name the attributes that differ."""
    found: dict[str, list[Example]] = {
        "missing_in_a": [Example(key) for key in comparison.missing_in_a[:limit]],
        "missing_in_b": [Example(key) for key in comparison.missing_in_b[:limit]],
        "different": [],
    }
    for key in comparison.different[:limit]:
        item_a, item_b = read_item(side_a, key), read_item(side_b, key)
        if item_a is None or item_b is None:
            gone = side_a.spec.name if item_a is None else side_b.spec.name
            found["different"].append(Example(key, note=f"now missing in {gone} (changed during the scan)"))
            continue
        differences = tuple(attribute_differences(item_a, item_b))
        note = None if differences else "equal on re-read (changed during the scan)"
        found["different"].append(Example(key, differences, note))
    return found


def wait_until_converged(
    manifest: PairManifest,
    timeout: float,
    *,
    interval: float = DEFAULT_WAIT_INTERVAL,
    echo: bool = True,
    **options: Any,
) -> VerifyReport:
    """Verify repeatedly until equal or `timeout` seconds have passed; return the last report."""
    deadline = time.monotonic() + timeout
    sides = options.pop("sides", None) or open_sides(manifest)
    attempt = 0
    while True:
        attempt += 1
        try:
            report = verify_pair(manifest, sides=sides, **options)
        except (BotoCoreError, ClientError) as error:
            # A timeout or throttled scan on a busy region is no answer: try again until the
            # deadline. Anything terminal (no table, no permission) is raised at once.
            if is_terminal(error) or time.monotonic() + interval > deadline:
                raise
            if echo:
                print(f"verify attempt {attempt} failed, retrying: {describe_error(error)}", file=sys.stderr)
            time.sleep(interval)
            continue
        # Pause at least twice as long as the scan took: a table still draining needs its read
        # capacity (and an emulator its lock) for the replication more than for the check.
        pause = max(interval, 2 * report.elapsed)
        if report.converged or time.monotonic() + pause > deadline:
            return report
        if echo:
            print(f"verify attempt {attempt}: {report.summary_line()}", file=sys.stderr)
        time.sleep(pause)


def report_document(report: VerifyReport) -> dict[str, Any]:
    c = report.comparison

    def side_document(spec: RegionSpec, side: Side) -> dict[str, Any]:
        return {
            "name": spec.name,
            "region": spec.region,
            "table": spec.table_name,
            "items": report.scanned[side],
        }

    def example_document(example: Example) -> dict[str, Any]:
        document: dict[str, Any] = {"key": plain_key(example.key)}
        if example.attributes:
            document["attributes"] = [{"name": d.name, "kind": str(d.kind)} for d in example.attributes]
        if example.note:
            document["note"] = example.note
        return document

    return {
        "pair": report.pair,
        "converged": report.converged,
        "a": side_document(report.side_a, Side.A),
        "b": side_document(report.side_b, Side.B),
        "equal": c.equal,
        "missing_in_a": len(c.missing_in_a),
        "missing_in_b": len(c.missing_in_b),
        "different": len(c.different),
        "examples": {kind: [example_document(e) for e in found] for kind, found in report.examples.items()},
        "elapsed_seconds": round(report.elapsed, 3),
    }


def report_text(report: VerifyReport) -> str:
    a, b = report.side_a, report.side_b
    lines = [
        f"pair {report.pair}: {a.name} ({a.region}, {a.table_name}) vs {b.name} ({b.region}, {b.table_name})",
        report.summary_line() + f" ({report.elapsed:.1f}s)",
    ]
    headings = {
        "missing_in_a": f"missing in {a.name} (only in {b.name})",
        "missing_in_b": f"missing in {b.name} (only in {a.name})",
        "different": "different",
    }
    for kind, found in report.examples.items():
        if not found:
            continue
        lines.append(f"{headings[kind]}, e.g.:")
        for example in found:
            detail = ", ".join(f"{d.name} ({d.kind})" for d in example.attributes)
            if example.note:
                detail = f"{detail}; {example.note}" if detail else example.note
            key = json.dumps(plain_key(example.key), ensure_ascii=False)
            lines.append(f"  {key}" + (f": {detail}" if detail else ""))
    return "\n".join(lines)
