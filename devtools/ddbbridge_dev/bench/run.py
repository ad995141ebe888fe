"""One bench run: emulated regions behind the WAN delay proxy, then the phases side by side.

(a) `ours`: our pipeline, both regions loaded at once with disjoint keys;
(b) `naive`: the seed's per-item design (`naive_sender`), deployed and triggered the same way;
(c) `conflicts`: our pipeline, a share of the writes going to keys both regions write.

Per phase and direction: throughput, apply lag percentiles (per version, from the two tables'
streams: see `streams`), tail after the load stops, target writes per change; per phase: AWS calls
by API from the launchers' request logs (minus the bench's own calls, counted client-side), handler
and runner CPU seconds (psutil), the runner's invocations. Everything lands in one JSON document.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ddbbridge.aws import CallCounter, region_session
from ddbbridge.comparison import Side
from ddbbridge.keyschema import read_key_schema
from ddbbridge.loader import RegionLoader, RegionLoadResult, Stamping
from ddbbridge.loadplan import KeyFactory, LoadMix, plan_operations, plan_rng
from ddbbridge.names import SideNames
from ddbbridge.ratelimit import TokenBucket
from ddbbridge.reconcile import PairClients, reconcile
from ddbbridge.spec import PairManifest, RegionSpec, parse_manifest
from ddbbridge.verify import TableSide, verify_pair
from ddbbridge_dev import environment, state
from ddbbridge_dev.bench import naive
from ddbbridge_dev.bench.ceiling import put_item_ceiling
from ddbbridge_dev.bench.cpu import CpuSampler
from ddbbridge_dev.bench.lag import lag_summary, match_versions, throughput, timeline
from ddbbridge_dev.bench.machine import machine_info
from ddbbridge_dev.bench.observe import (
    by_api,
    by_table,
    invocations_since,
    log_offset,
    request_mark,
    requests_since,
)
from ddbbridge_dev.bench.profile import Profiler
from ddbbridge_dev.bench.settings import BenchSettings
from ddbbridge_dev.bench.streams import StreamChange, read_stream

SIDE_NAMES = ("cn", "sg")
PHASE_LABELS = {
    "ours": "(a) ours",
    "naive": "(b) naive per-item",
    "conflicts": "(c) ours, 20% conflicting keys",
}
# The pair (and table prefix) of each phase; the naive tables get a manifest too (never reconciled)
# so the loader and verify treat them like any pair.
PHASE_PAIRS = {"ours": "bench", "naive": "naive", "conflicts": "benchc"}
ORIGIN_ATTRIBUTE = "last_updater_region"
TIMESTAMP_ATTRIBUTE = "last_update_timestamp"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def manifest_for(pair: str, regions: tuple[str, str]) -> PairManifest:
    return parse_manifest(
        {
            "apiVersion": "ddbbridge.io/v1alpha1",
            "kind": "TableReplicationPair",
            "metadata": {"name": pair},
            "spec": {
                "regions": [
                    {"name": name, "region": region, "tableName": f"{pair}-{name}"}
                    for name, region in zip(SIDE_NAMES, regions, strict=True)
                ],
                "replication": {
                    "originAttribute": ORIGIN_ATTRIBUTE,
                    "timestampAttribute": TIMESTAMP_ATTRIBUTE,
                },
                "deletionPolicy": "Delete",
            },
        }
    )


@dataclass
class Bench:
    settings: BenchSettings
    out_dir: Path
    manifests: dict[str, PairManifest] = field(default_factory=dict)
    counters: dict[str, CallCounter] = field(default_factory=dict)  # the bench's own calls, by region

    # --- clients ----------------------------------------------------------------------------
    def client(self, side: RegionSpec, service: str) -> Any:
        counter = self.counters.setdefault(side.region, CallCounter())
        return region_session(side, counter=counter).client(service)

    def local(self, region: str) -> str:
        return environment.endpoints("local")[region]

    # --- setup ------------------------------------------------------------------------------
    def create_tables(self, manifest: PairManifest) -> None:
        for side in manifest.spec.regions:
            self.client(side, "dynamodb").create_table(
                TableName=side.table_name,
                KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
                StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
            )

    def setup_ours(self, phase: str) -> None:
        manifest = manifest_for(PHASE_PAIRS[phase], self.settings.regions)
        self.manifests[phase] = manifest
        self.create_tables(manifest)
        result = reconcile(manifest, PairClients.from_environment(manifest))
        if not result.ok:
            raise RuntimeError(f"reconcile of {manifest.name} failed: {[str(e) for e in result.errors]}")

    def setup_naive(self) -> None:
        manifest = manifest_for(PHASE_PAIRS["naive"], self.settings.regions)
        self.manifests["naive"] = manifest
        self.create_tables(manifest)
        remote = environment.endpoints("remote")
        for side in manifest.spec.regions:
            peer = manifest.spec.peer_of(side)
            table = self.client(side, "dynamodb").describe_table(TableName=side.table_name)["Table"]
            naive.deploy_side(
                side=side.name,
                clients={"lambda": self.client(side, "lambda"), "iam": self.client(side, "iam")},
                table=side.table_name,
                stream_arn=table["LatestStreamArn"],
                peer={
                    "region": peer.region,
                    "endpoint": remote[peer.region],
                    "table": peer.table_name,
                    "name": peer.name,
                },
                origin_attribute=ORIGIN_ATTRIBUTE,
                timestamp_attribute=TIMESTAMP_ATTRIBUTE,
            )

    def wait_replicating(self, phase: str, timeout: float) -> None:
        """A probe write per side must show up on the peer: mappings found, workers warm."""
        manifest = self.manifests[phase]
        stamp = f"{time.time():.6f}"
        for side in manifest.spec.regions:
            self.client(side, "dynamodb").put_item(
                TableName=side.table_name,
                Item={
                    "PK": {"S": f"probe-{side.name}"},
                    ORIGIN_ATTRIBUTE: {"S": side.name},
                    TIMESTAMP_ATTRIBUTE: {"N": stamp},
                },
            )
        deadline = time.monotonic() + timeout
        for side in manifest.spec.regions:
            peer = manifest.spec.peer_of(side)
            while "Item" not in self.client(peer, "dynamodb").get_item(
                TableName=peer.table_name, Key={"PK": {"S": f"probe-{side.name}"}}, ConsistentRead=True
            ):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{phase}: {side.name} -> {peer.name} does not replicate")
                time.sleep(0.5)

    # --- a phase ----------------------------------------------------------------------------
    def loaders(
        self, manifest: PairManifest, count: int, rate: float, mix: LoadMix, stop: threading.Event
    ) -> list[tuple[RegionLoader, Any]]:
        prepared = []
        for position, side in enumerate(manifest.spec.regions):
            dynamodb = self.client(side, "dynamodb")
            schema = read_key_schema(dynamodb, side.table_name)
            stamping = Stamping(ORIGIN_ATTRIBUTE, side.name, TIMESTAMP_ATTRIBUTE, "seconds")
            loader = RegionLoader(
                dynamodb,
                side.table_name,
                stamping,
                workers=self.settings.loader_workers,
                bucket=TokenBucket(rate),
                stats=None,  # the bench counts the application's writes itself
                stop=stop,
                key_schema=schema,
                region=side.region,
            )
            keys = KeyFactory(schema, side.name, position, self.settings.seed)
            operations = plan_operations(keys, mix, count, plan_rng(self.settings.seed, side.name))
            prepared.append((loader, operations))
        return prepared

    def wait_equal(self, manifest: PairManifest, timeout: float) -> float | None:
        """Wall time (epoch) at which the two tables were found equal, or None at the deadline."""
        a, b = manifest.spec.side_a, manifest.spec.side_b
        sides = (
            TableSide(Side.A, a, self.client(a, "dynamodb")),
            TableSide(Side.B, b, self.client(b, "dynamodb")),
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            counts = [
                int(s.dynamodb.describe_table(TableName=s.spec.table_name)["Table"]["ItemCount"])
                for s in sides
            ]
            if counts[0] == counts[1]:
                checked_at = time.time()
                if verify_pair(manifest, progress=False, sides=sides).converged:
                    return checked_at
            time.sleep(1.0)
        return None

    def run_phase(
        self, phase: str, count: int, rate: float, mix: LoadMix, drain_timeout: float
    ) -> dict[str, Any]:
        manifest = self.manifests[phase]
        regions = [side.region for side in manifest.spec.regions]
        runner_log = Path(
            next(r["log"] for r in environment.recorded_processes() if r["component"] == "runner")
        )
        offset = log_offset(runner_log)
        marks = {region: request_mark(self.local(region)) for region in regions}
        self.counters = {}
        stop = threading.Event()
        prepared = self.loaders(manifest, count, rate, mix, stop)
        results: dict[str, RegionLoadResult] = {}
        ends: dict[str, float] = {}
        sampler = CpuSampler()
        sampler.start()
        profiler = None
        if self.settings.profile and phase == "ours":
            runner_pid = int((state.read_section("runner") or {})["pid"])
            profiler = Profiler(runner_pid, self.out_dir / "profile" / f"{phase}.txt")
        began = time.time()

        def load(loader: RegionLoader, operations: Any) -> None:
            results[loader.stamping.origin] = loader.run(operations)
            ends[loader.stamping.origin] = time.time()

        threads = [threading.Thread(target=load, args=item, daemon=True) for item in prepared]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        load_end = max(ends.values())
        log(f"{phase}: loaded {sum(r.total for r in results.values())} writes in {load_end - began:.1f}s")
        equal_at = self.wait_equal(manifest, drain_timeout)
        cpu = sampler.stop()
        profile = profiler.stop() if profiler is not None else None
        served: Counter[str] = Counter()
        tables: Counter[str] = Counter()
        for region in regions:
            entries = requests_since(self.local(region), marks[region])
            served.update(by_api(entries))
            tables.update(by_table(entries))
        stats_updates = sum(
            tables[f"UpdateItem {SideNames(manifest.name, side.name).stats_table}"]
            for side in manifest.spec.regions
        )
        own: Counter[str] = Counter()
        for counter in self.counters.values():
            own.update({f"{service}:{operation}": n for (service, operation), n in counter.counts.items()})
        invocations = invocations_since(runner_log, offset)
        log(f"{phase}: {'equal' if equal_at else 'NOT equal'} after the load; reading streams")
        streams = {
            side.name: [
                change
                for change in read_stream(
                    self.client(side, "dynamodb"),
                    self.client(side, "dynamodbstreams"),
                    side.table_name,
                    ORIGIN_ATTRIBUTE,
                    TIMESTAMP_ATTRIBUTE,
                )
                if change.at >= began
            ]
            for side in manifest.spec.regions
        }
        return phase_document(
            phase=phase,
            manifest=manifest,
            rate=rate,
            results=results,
            began=began,
            load_end=load_end,
            equal_at=equal_at,
            drain_timeout=drain_timeout,
            streams=streams,
            served=served,
            own=own,
            stats_updates=stats_updates,
            tables=tables,
            cpu=cpu,
            invocations={name: inv.to_json() for name, inv in invocations.items()},
            stats=self.stats(manifest),
        ) | ({"profile": profile} if profile is not None else {})

    def stats(self, manifest: PairManifest) -> dict[str, Any]:
        """The handlers' own counters (cumulative since the pair was made, probes included)."""
        found: dict[str, Any] = {}
        for side in manifest.spec.regions:
            table = SideNames(manifest.name, side.name).stats_table
            try:
                items = self.client(side, "dynamodb").scan(TableName=table, ConsistentRead=True)["Items"]
            except Exception:  # the naive tables have no stats table
                continue
            found[side.name] = {
                item["PK"]["S"]: {
                    name: value.get("N", value.get("S"))
                    for name, value in sorted(item.items())
                    if name != "PK"
                }
                for item in items
            }
        return found


def replication_calls(served: Counter[str], own: Counter[str]) -> dict[str, int]:
    """What the regions served minus what the bench itself called (loader, verify, probes)."""
    calls = {api: served[api] - own.get(api, 0) for api in served}
    return {api: n for api, n in sorted(calls.items()) if n > 0}


def phase_document(
    *,
    phase: str,
    manifest: PairManifest,
    rate: float,
    results: dict[str, RegionLoadResult],
    began: float,
    load_end: float,
    equal_at: float | None,
    drain_timeout: float,
    streams: dict[str, list[StreamChange]],
    served: Counter[str],
    own: Counter[str],
    stats_updates: int,
    tables: Counter[str],
    cpu: dict[str, float],
    invocations: dict[str, dict[str, Any]],
    stats: dict[str, Any],
) -> dict[str, Any]:
    directions: dict[str, Any] = {}
    changes_total = 0
    for side in manifest.spec.regions:
        peer = manifest.spec.peer_of(side)
        source_writes = results[side.name].total
        target_app_writes = results[peer.name].total
        changes_total += source_writes
        matched = match_versions(streams[side.name], streams[peer.name], side.name)
        replicated_writes = max(0, len(streams[peer.name]) - target_app_writes)
        samples = matched.samples
        last_apply = max((s.applied_at for s in samples), default=None)
        if phase == "naive":
            functions = [naive.function_name(side.name)]
        else:
            functions = [
                SideNames(manifest.name, side.name).sender_function,
                SideNames(manifest.name, peer.name).applier_function,
            ]
        directions[f"{side.name}->{peer.name}"] = {
            "source_writes": source_writes,
            "load_errors": dict(results[side.name].errors),
            "offered_per_s": round(results[side.name].rate, 1),
            "versions_sampled": len(samples),
            "versions_written": matched.source_versions,
            "versions_not_applied": matched.unmatched,
            "throughput_per_s": _round(throughput(samples), 1),
            "lag_s": {k: _round(v, 3) for k, v in lag_summary(samples).items()},
            "tail_s": _round(max(0.0, last_apply - load_end) if last_apply is not None else None, 2),
            "target_writes": replicated_writes,
            "target_writes_per_change": _round(
                replicated_writes / source_writes if source_writes else None, 3
            ),
            "cpu_s": {f: cpu.get(f"worker:{f}", 0.0) for f in functions},
            "invocations": {f: invocations.get(f) for f in functions},
            "timeline": timeline(samples, began),
        }
    calls = replication_calls(served, own)
    return {
        "label": PHASE_LABELS[phase],
        "pair": manifest.name,
        "rate_per_side": round(rate, 1),
        "load_seconds": round(load_end - began, 2),
        "equal": equal_at is not None,
        "equal_after_s": _round(equal_at - load_end if equal_at is not None else None, 2),
        "drain_timeout_s": drain_timeout,
        "directions": directions,
        "changes": changes_total,
        "calls": calls,
        "calls_per_change": {api: round(n / changes_total, 4) for api, n in calls.items() if changes_total},
        "stats_updates": stats_updates,  # UpdateItem calls on the pair's stats tables (served)
        # Served single-item calls by table, the bench's own included (they are not told apart here).
        "single_item_calls_by_table": dict(sorted(tables.items())),
        "cpu_s": cpu,
        "invocations": invocations,
        "handler_stats": stats,
    }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def run_bench(settings: BenchSettings, out_dir: Path) -> dict[str, Any]:
    """Start a private dev environment under `out_dir`, run the phases, stop everything."""
    out_dir = out_dir.resolve()  # the runner's workers chdir into code under the dev dir
    out_dir.mkdir(parents=True, exist_ok=True)
    dev_dir = out_dir / "dev"
    shutil.rmtree(dev_dir, ignore_errors=True)
    saved = {name: os.environ.get(name) for name in ("DDBBRIDGE_DEV_DIR",)}
    os.environ["DDBBRIDGE_DEV_DIR"] = str(dev_dir)
    document: dict[str, Any] = {"schema": 1, "machine": machine_info(), "settings": settings.to_json()}
    started = time.monotonic()
    log(f"starting emulated regions {', '.join(settings.regions)} with {settings.rtt_ms:g} ms RTT")
    environment.up(environment.UpOptions(regions=settings.regions, rtt_ms=settings.rtt_ms))
    saved.update({name: os.environ.get(name) for name in environment.env_exports()})
    try:
        os.environ.update(environment.env_exports())
        bench = Bench(settings, out_dir)
        first = manifest_for("ceiling", settings.regions).spec.side_a
        ceiling = put_item_ceiling(
            bench.client(first, "dynamodb"),
            seconds=settings.ceiling_seconds,
            threads=settings.ceiling_threads,
        )
        document["ceiling"] = {"region": first.region, "put_item_per_s": round(ceiling, 1)}
        log(f"PutItem ceiling of {first.region}: {ceiling:.0f}/s")
        for phase in settings.phases:
            if phase == "naive":
                bench.setup_naive()
            else:
                bench.setup_ours(phase)
        for phase in settings.phases:
            bench.wait_replicating(phase, timeout=180.0)
        document["setup_s"] = round(time.monotonic() - started, 1)
        rate = max(1.0, settings.load_share * ceiling)
        count = int(rate * settings.load_seconds)
        plain = LoadMix(delete_ratio=0.05, update_ratio=0.25, unstamped_ratio=0.0)
        document["phases"] = {}
        for phase in settings.phases:
            log(f"phase {PHASE_LABELS[phase]}")
            if phase == "ours":
                result = bench.run_phase(phase, count, rate, plain, settings.drain_timeout)
            elif phase == "naive":
                result = bench.run_phase(
                    phase, settings.naive_writes, rate, plain, settings.naive_drain_timeout
                )
            else:
                mix = LoadMix(
                    delete_ratio=0.05,
                    update_ratio=0.25,
                    unstamped_ratio=0.0,
                    conflict_keys=settings.conflict_keys,
                    conflict_ratio=settings.conflict_ratio,
                )
                result = bench.run_phase(phase, count, rate, mix, settings.drain_timeout)
            document["phases"][phase] = result
        document["bench_s"] = round(time.monotonic() - started, 1)
    finally:
        for line in environment.down():
            log(line)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return document
