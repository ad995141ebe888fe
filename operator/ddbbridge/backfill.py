"""Initial sync: copy the items a table held before the pair existed into the peer table.

`backfill(manifest, ...)` is the core (the operator calls it for `spec.initialSync`); `ddbbridge
backfill -f pair.yaml [--from A|B|both] [--segments N]` is the CLI over it.

Why nothing is lost or reordered:
- The source table's stream must already be enabled (NEW_AND_OLD_IMAGES) and the pair reconciled
  (its sender mapping exists) BEFORE the scan starts; otherwise the backfill refuses. Every write
  made during or after the scan is then carried by the stream, so the scan only has to cover what
  existed before.
- Every item is written through the applier's own code (`replay.RegionApplier`) with the version the
  item carries: an older scanned version never overwrites a newer one that replication (or the
  application in the target region) already wrote, and a key the target deleted (tombstone in its
  ledger) is never resurrected. Its echo in the target's stream is dropped by that region's sender
  as the applier's own write, exactly like a replicated change.
- Items without a valid stamp are first stamped in the SOURCE region with a version above that
  region's ledger (the sender's own rule for unstamped writes, `decisions.decide_change`), with an
  UpdateItem conditioned on the item still being unstamped that returns the item as stamped; that
  content and version is what is copied. If the item changed meanwhile, its stream record carries it.

Parallel segmented scan (`--segments`, `--workers` at a time), one checkpoint per segment with the
scan's LastEvaluatedKey, written after each page is durable in the target: a file for the CLI, an
item in the source region's stats table for the operator (`backfill_checkpoints`), whose pod has no
disk that outlives it. A restarted backfill skips finished segments and resumes the others from
their last key (one page may be applied twice: harmless, the version order discards duplicates).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from ddbbridge.aws import RegionSession, region_session
from ddbbridge.names import SideNames
from ddbbridge.progress import ProgressBar
from ddbbridge.replay import RegionApplier, ReplayError, deployed_config
from ddbbridge.restamp import restamp_item
from ddbbridge.spec import InitialSync, PairManifest, RegionSpec, SpecError, load_manifest
from ddbbridge_lambdas.codec import WireRecord, content_digest, extract_key, item_to_boto3, item_to_wire
from ddbbridge_lambdas.config import HandlerConfig
from ddbbridge_lambdas.decisions import ChangeAction, decide_change
from ddbbridge_lambdas.ledger import Ledger
from ddbbridge_lambdas.versions import Version, clock_stamp, version_from_attributes

DEFAULT_SEGMENTS = 8
DEFAULT_PAGE_SIZE = 250
CHECKPOINT_FORMAT = 1


class BackfillError(RuntimeError):
    """The backfill cannot start (stream off, pair not reconciled, checkpoint mismatch)."""


class BackfillCancelledError(RuntimeError):
    """`stop` was set: the scan threads stopped after their current page (checkpoints are kept)."""


@dataclass(frozen=True)
class Direction:
    source: RegionSpec
    target: RegionSpec

    @property
    def label(self) -> str:
        return f"{self.source.name}->{self.target.name}"


@dataclass
class SegmentCheckpoint:
    """What one scan segment has made durable in the target."""

    segment: int
    segments: int
    last_key: dict[str, Any] | None = None  # wire form (B as base64) of LastEvaluatedKey
    done: bool = False
    scanned: int = 0
    pages: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


@dataclass
class BackfillProgress:
    """Progress of one direction; handed to the progress callback after every page."""

    direction: str  # "cn->sg"
    scanned: int  # items scanned so far (finished segments from earlier runs included)
    estimated_total: int | None  # DescribeTable ItemCount of the source (approximate)
    segments_done: int
    segments_total: int
    outcomes: dict[str, int]  # applied / discarded_older / restamped / skipped_changed / rejected

    def to_status(self) -> dict[str, Any]:
        """A plain document for the CR status (the operator's `status.initialSync`)."""
        return asdict(self)


ProgressCallback = Callable[[BackfillProgress], None]


@dataclass
class DirectionResult:
    direction: str
    segments_total: int
    segments_skipped: list[int]  # finished in an earlier run: not scanned again
    pages_this_run: dict[int, int]  # segment -> Scan pages read by THIS run
    scanned_this_run: int
    scanned_total: int
    outcomes: dict[str, int]
    rejected: list[dict[str, Any]]  # poison items: key and reason
    elapsed: float

    @property
    def rate(self) -> float:
        return self.scanned_this_run / self.elapsed if self.elapsed > 0 else 0.0


@dataclass
class BackfillResult:
    pair: str
    directions: list[DirectionResult]

    @property
    def ok(self) -> bool:
        return not any(d.rejected for d in self.directions)


# --- choosing directions --------------------------------------------------------------------------


def directions_for(manifest: PairManifest, choice: str) -> list[Direction]:
    """`A`/`fromA`/side name of regions[0] -> A to B; `B`/... -> B to A; `both` -> both."""
    a, b = manifest.spec.side_a, manifest.spec.side_b
    normalized = choice.strip()
    if normalized in ("A", "a", InitialSync.FROM_A.value, a.name):
        return [Direction(a, b)]
    if normalized in ("B", "b", InitialSync.FROM_B.value, b.name):
        return [Direction(b, a)]
    if normalized == InitialSync.BOTH.value:
        return [Direction(a, b), Direction(b, a)]
    if normalized == InitialSync.NONE.value:
        return []
    raise ValueError(f"--from must be A, B, both, {a.name} or {b.name}; got {choice!r}")


# --- checkpoints ----------------------------------------------------------------------------------


def default_checkpoint_root() -> Path:
    return Path(os.environ.get("DDBBRIDGE_BACKFILL_DIR", ".ddbbridge/backfill"))


class SegmentStore(Protocol):
    """Where the segments of one direction keep their checkpoints (a folder, a stats table)."""

    segments: int

    def open(self, restart: bool) -> None:
        """Prepare; `restart` forgets every checkpoint. Raise BackfillError on a different plan."""

    def load(self, segment: int) -> SegmentCheckpoint: ...

    def save(self, checkpoint: SegmentCheckpoint) -> None: ...


# A store per direction and segment count; the operator passes one backed by the stats table.
CheckpointFactory = Callable[[Direction, int], SegmentStore]


def plan_of(pair: str, direction: Direction, segments: int) -> dict[str, Any]:
    """What a checkpoint was made for: resuming it with other tables or segments is refused."""
    return {
        "format": CHECKPOINT_FORMAT,
        "pair": pair,
        "source_table": direction.source.table_name,
        "source_region": direction.source.region,
        "target_table": direction.target.table_name,
        "target_region": direction.target.region,
        "segments": segments,
    }


class CheckpointStore:
    """One JSON file per segment under <root>/<pair>/<source>-to-<target>/, written atomically."""

    def __init__(self, root: Path, pair: str, direction: Direction, segments: int) -> None:
        self.folder = root / pair / f"{direction.source.name}-to-{direction.target.name}"
        self.segments = segments
        self.plan = plan_of(pair, direction, segments)

    def open(self, restart: bool) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        plan_path = self.folder / "plan.json"
        if restart:
            for path in self.folder.glob("segment-*.json"):
                path.unlink()
        elif plan_path.exists():
            existing = json.loads(plan_path.read_text(encoding="utf-8"))
            if existing != self.plan:
                raise BackfillError(
                    f"checkpoint in {self.folder} was made for {existing}; resume with the same "
                    "--segments and tables, or start over with --restart"
                )
        _write_atomically(plan_path, self.plan)

    def load(self, segment: int) -> SegmentCheckpoint:
        path = self.path(segment)
        if not path.exists():
            return SegmentCheckpoint(segment, self.segments)
        document = json.loads(path.read_text(encoding="utf-8"))
        return SegmentCheckpoint(**document)

    def save(self, checkpoint: SegmentCheckpoint) -> None:
        _write_atomically(self.path(checkpoint.segment), asdict(checkpoint))

    def path(self, segment: int) -> Path:
        return self.folder / f"segment-{segment:04d}.json"


def _write_atomically(path: Path, document: Any) -> None:
    temporary = path.with_suffix(path.suffix + f".{os.getpid()}.{threading.get_ident()}.tmp")
    temporary.write_text(json.dumps(document, sort_keys=True), encoding="utf-8")
    os.replace(temporary, path)


# --- preflight ------------------------------------------------------------------------------------


def check_ready(manifest: PairManifest, direction: Direction, source: RegionSession) -> None:
    """Refuse unless the source stream is on (NEW_AND_OLD_IMAGES) and its sender mapping reads it:
    only then is every write made during the scan replicated by the pipeline."""
    dynamodb = source.client("dynamodb")
    table = dynamodb.describe_table(TableName=direction.source.table_name)["Table"]
    stream = table.get("StreamSpecification") or {}
    arn = table.get("LatestStreamArn")
    if not stream.get("StreamEnabled") or stream.get("StreamViewType") != "NEW_AND_OLD_IMAGES" or not arn:
        raise BackfillError(
            f"the stream of {direction.source.table_name} in {direction.source.region} is not enabled "
            "with NEW_AND_OLD_IMAGES: writes made during the backfill would be lost. Run "
            "`ddbbridge reconcile` first"
        )
    sender = SideNames(manifest.name, direction.source.name).sender_function
    mappings = source.client("lambda").list_event_source_mappings(FunctionName=sender)
    if not any(m.get("EventSourceArn") == arn for m in mappings.get("EventSourceMappings", [])):
        raise BackfillError(
            f"no event source mapping of {sender} reads the current stream of "
            f"{direction.source.table_name}: run `ddbbridge reconcile` first"
        )


# --- the scan -------------------------------------------------------------------------------------


class _DirectionRun:
    def __init__(
        self,
        manifest: PairManifest,
        direction: Direction,
        source: RegionSession,
        target: RegionSession,
        store: SegmentStore,
        *,
        page_size: int,
        progress: ProgressCallback | None,
        clock: Callable[[], float],
        stop: threading.Event | None = None,
    ) -> None:
        self.direction = direction
        self.source = source
        self.store = store
        self.page_size = page_size
        self.progress = progress
        self.clock = clock
        self.stop = stop
        self.halt = threading.Event()
        self.source_config: HandlerConfig = deployed_config(source, manifest.name, direction.source.name)
        self.target = RegionApplier.deployed(target, manifest.name, direction.target.name)
        self.source_ledger = Ledger(
            source.client("dynamodb"),
            self.source_config.ledger_table,
            self.source_config.tombstone_retention_seconds,
        )
        self.lock = threading.Lock()
        self.checkpoints: dict[int, SegmentCheckpoint] = {}
        self.pages_this_run: Counter[int] = Counter()
        self.rejected: list[dict[str, Any]] = []
        table = source.client("dynamodb").describe_table(TableName=direction.source.table_name)["Table"]
        self.estimated_total = int(table.get("ItemCount", 0)) or None

    def report(self) -> None:
        if self.progress is None:
            return
        with self.lock:
            snapshot = BackfillProgress(
                direction=self.direction.label,
                scanned=sum(c.scanned for c in self.checkpoints.values()),
                estimated_total=self.estimated_total,
                segments_done=sum(1 for c in self.checkpoints.values() if c.done),
                segments_total=self.store.segments,
                outcomes=dict(sum((Counter(c.outcomes) for c in self.checkpoints.values()), Counter())),
            )
        self.progress(snapshot)

    def segment(self, checkpoint: SegmentCheckpoint) -> None:
        try:
            self._scan(checkpoint)
        except BaseException:
            self.halt.set()  # one segment failed: the others stop after their page, not at the end
            raise

    def _scan(self, checkpoint: SegmentCheckpoint) -> None:
        dynamodb = self.source.client("dynamodb")
        request: dict[str, Any] = {
            "TableName": self.direction.source.table_name,
            "ConsistentRead": True,
            "Segment": checkpoint.segment,
            "TotalSegments": checkpoint.segments,
            "Limit": self.page_size,
        }
        if checkpoint.last_key:
            request["ExclusiveStartKey"] = item_to_boto3(checkpoint.last_key)
        while not checkpoint.done:
            if self.halt.is_set() or (self.stop is not None and self.stop.is_set()):
                raise BackfillCancelledError(f"backfill {self.direction.label} stopped")
            page = dynamodb.scan(**request)
            with self.lock:
                self.pages_this_run[checkpoint.segment] += 1
            counts = self.copy(page.get("Items", []))
            last = page.get("LastEvaluatedKey")
            checkpoint.scanned += len(page.get("Items", []))
            checkpoint.pages += 1
            checkpoint.outcomes = dict(Counter(checkpoint.outcomes) + counts)
            checkpoint.last_key = item_to_wire(last) if last else None
            checkpoint.done = not last
            self.store.save(checkpoint)  # only after the page is durable in the target
            self.report()
            if last:
                request["ExclusiveStartKey"] = last

    def copy(self, items: list[dict[str, Any]]) -> Counter[str]:
        """Items of one page -> wire records at their version -> the target's applier."""
        config = self.source_config
        counts: Counter[str] = Counter()
        records: list[WireRecord] = []
        for scanned in items:
            item = scanned
            version = version_from_attributes(
                item.get(config.timestamp_attribute), item.get(config.origin_attribute)
            )
            if version is None:
                restamped = self.stamp_in_source(item)
                if restamped is None:
                    counts["skipped_changed"] += 1  # changed since the scan: its stream record carries it
                    continue
                item, version = restamped
                counts["restamped"] += 1
            wire_item = item_to_wire(item)
            records.append(
                WireRecord(
                    source=self.direction.source.name,
                    key=extract_key(wire_item, config.key_schema),
                    version=version,
                    item=wire_item,
                    created_ms=0,  # not a stream change: no replication lag to report
                    sent_ms=int(self.clock() * 1000),
                )
            )
        if records:
            outcome = self.target.apply_wire(records)
            counts.update(outcome.counts)
            # The applier's "dead_lettered" is "rejected" here: a replay never writes dead letters.
            rejected = counts.pop("dead_lettered", 0)
            if rejected:
                counts["rejected"] += rejected
            with self.lock:
                self.rejected.extend(
                    {"key": records[letter.index].key, "reason": letter.reason, "error": letter.error}
                    for letter in outcome.rejected
                )
        return counts

    def stamp_in_source(self, item: dict[str, Any]) -> tuple[dict[str, Any], Version] | None:
        """An unstamped source item gets the version the sender would give it (above the source
        ledger), written in the source region; returns (item as stamped, version)."""
        config = self.source_config
        wire_item = item_to_wire(item)
        key = extract_key(wire_item, config.key_schema)
        ledger = self.source_ledger.read(self.target.canonical(key))
        decision = decide_change(
            None,
            content_digest(wire_item),
            None,
            ledger.entry,
            local=config.local_region_name,
            now=clock_stamp(self.clock(), config.timestamp_unit),
            unit=config.timestamp_unit,
        )
        assert decision.action is ChangeAction.RESTAMP  # an unstamped write is always re-stamped
        stamped = restamp_item(self.source.client("dynamodb"), config, key, None, decision.version)
        return None if stamped is None else (stamped, decision.version)


def backfill(
    manifest: PairManifest,
    *,
    direction: str = "both",
    segments: int = DEFAULT_SEGMENTS,
    workers: int | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
    checkpoint_root: Path | None = None,
    restart: bool = False,
    progress: ProgressCallback | None = None,
    sessions: dict[str, RegionSession] | None = None,
    clock: Callable[[], float] = time.time,
    checkpoints: CheckpointFactory | None = None,
    stop: threading.Event | None = None,
) -> BackfillResult:
    """Copy pre-existing items by the version order; resumable. See the module docstring.

    `direction`: A, B, both (or fromA/fromB, or a side name). `sessions`: clients per side name
    (the operator passes its own, with the pair's credentials); default: from the environment.
    `progress` is called after every page with a `BackfillProgress` (thread-safe to call from the
    scan threads; keep it quick). `checkpoints` makes the store of each direction (default: files
    under `checkpoint_root`). Setting `stop` ends the scan after the pages in flight
    (BackfillCancelledError; the checkpoints stay). Raises BackfillError / ReplayError when it cannot
    proceed; items the target rejects as poison are reported in the result, never silently dropped.
    """
    if segments < 1 or page_size < 1 or (workers is not None and workers < 1):
        raise ValueError("--segments, --workers and --page-size must be >= 1")
    clients = sessions or {side.name: region_session(side) for side in manifest.spec.regions}
    root = checkpoint_root if checkpoint_root is not None else default_checkpoint_root()
    results: list[DirectionResult] = []
    for chosen in directions_for(manifest, direction):
        started = time.monotonic()
        source, target = clients[chosen.source.name], clients[chosen.target.name]
        check_ready(manifest, chosen, source)
        store: SegmentStore = (
            checkpoints(chosen, segments)
            if checkpoints is not None
            else CheckpointStore(root, manifest.name, chosen, segments)
        )
        store.open(restart)
        run = _DirectionRun(
            manifest,
            chosen,
            source,
            target,
            store,
            page_size=page_size,
            progress=progress,
            clock=clock,
            stop=stop,
        )
        loaded = [store.load(segment) for segment in range(segments)]
        run.checkpoints = {c.segment: c for c in loaded}
        skipped = [c.segment for c in loaded if c.done]
        todo = [c for c in loaded if not c.done]
        scanned_before = sum(c.scanned for c in loaded)
        run.report()
        with ThreadPoolExecutor(
            max_workers=workers or min(segments, 4), thread_name_prefix="backfill"
        ) as pool:
            futures = [pool.submit(run.segment, checkpoint) for checkpoint in todo]
        failures = [error for error in (f.exception() for f in futures) if error is not None]
        if failures:
            # The segment that failed first, not the ones it stopped (BackfillCancelledError).
            raise next((e for e in failures if not isinstance(e, BackfillCancelledError)), failures[0])
        scanned_total = sum(c.scanned for c in run.checkpoints.values())
        results.append(
            DirectionResult(
                direction=chosen.label,
                segments_total=segments,
                segments_skipped=skipped,
                pages_this_run=dict(run.pages_this_run),
                scanned_this_run=scanned_total - scanned_before,
                scanned_total=scanned_total,
                outcomes=dict(sum((Counter(c.outcomes) for c in run.checkpoints.values()), Counter())),
                rejected=run.rejected,
                elapsed=time.monotonic() - started,
            )
        )
    return BackfillResult(manifest.name, results)


# --- CLI ------------------------------------------------------------------------------------------


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "backfill",
        help="copy items that existed before the pair into the peer table, by the version order",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-f", "--file", required=True, help="pair manifest (TableReplicationPair YAML)")
    parser.add_argument(
        "--from",
        dest="direction",
        default=None,
        help="A (regions[0] to regions[1]), B (back), both, or a side name; "
        "default: spec.initialSync, or both when it is none",
    )
    parser.add_argument("--segments", type=int, default=DEFAULT_SEGMENTS, help="parallel scan segments")
    parser.add_argument("--workers", type=int, default=None, help="segments scanned at once (default 4)")
    parser.add_argument("--page-size", type=int, default=DEFAULT_PAGE_SIZE, help="items per Scan page")
    parser.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=None,
        help="where segment checkpoints live (default .ddbbridge/backfill or $DDBBRIDGE_BACKFILL_DIR)",
    )
    parser.add_argument("--restart", action="store_true", help="forget checkpoints and scan everything")
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        manifest = load_manifest(args.file)
        direction = args.direction
        if direction is None:
            sync = manifest.spec.initial_sync
            direction = InitialSync.BOTH.value if sync is InitialSync.NONE else sync.value
        bars: dict[str, ProgressBar] = {}

        def show(update: BackfillProgress) -> None:
            bar = bars.get(update.direction)
            if bar is None:
                bar = ProgressBar(
                    f"backfill {update.direction}",
                    update.estimated_total,
                    unit="items",
                    enabled=not args.no_progress,
                )
                bars[update.direction] = bar
            bar.advance(update.scanned - bar.count)

        try:
            result = backfill(
                manifest,
                direction=direction,
                segments=args.segments,
                workers=args.workers,
                page_size=args.page_size,
                checkpoint_root=args.checkpoint_dir,
                restart=args.restart,
                progress=show,
            )
        finally:
            for bar in bars.values():
                bar.close()
    except (SpecError, ValueError, OSError, BackfillError, ReplayError, ClientError, BotoCoreError) as error:
        print(f"ddbbridge backfill: {error}", file=sys.stderr)
        return 2
    if args.output == "json":
        print(json.dumps(result_document(result), indent=2, default=str))
    else:
        print(result_text(result))
    return 0 if result.ok else 1


def result_document(result: BackfillResult) -> dict[str, Any]:
    return {
        "pair": result.pair,
        "ok": result.ok,
        "directions": [
            {**asdict(d), "elapsed": round(d.elapsed, 3), "items_per_second": round(d.rate, 1)}
            for d in result.directions
        ],
    }


def result_text(result: BackfillResult) -> str:
    lines = [f"pair {result.pair}: backfill {'done' if result.ok else 'done with rejected items'}"]
    for d in result.directions:
        outcomes = ", ".join(f"{name} {count}" for name, count in sorted(d.outcomes.items())) or "nothing"
        skipped = (
            f"; {len(d.segments_skipped)} segment(s) finished earlier, not rescanned"
            if d.segments_skipped
            else ""
        )
        lines.append(
            f"  {d.direction}: scanned {d.scanned_this_run} item(s) in {d.elapsed:.1f}s "
            f"({d.rate:.0f} items/s){skipped}; total {d.scanned_total}: {outcomes}"
        )
        for rejected in d.rejected[:10]:
            lines.append(
                f"    rejected {json.dumps(rejected['key'])}: {rejected['reason']}: {rejected['error']}"
            )
    lines.append("next: `ddbbridge verify -f <pair.yaml>` once the pipeline has drained")
    return "\n".join(lines)
