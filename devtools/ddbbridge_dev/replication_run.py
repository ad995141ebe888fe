"""`python -m ddbbridge_dev.replication_run`: replicated items/s per direction and the drain time.

A measurement, not a test (figures are printed, never asserted). One run:
1. starts its own dev environment (both emulated regions, the WAN delay proxy when --rtt-ms > 0,
   the local Lambda runner at Lambda's own polling rates) in a temporary dev dir;
2. creates a hash-only user table per region, writes a pair manifest and runs `reconcile`;
3. loads both regions at once (`ddbbridge load` machinery, shared-key share as given) while sampling
   each applier's `replicated_count` item in the stats tables;
4. after the load stops, waits until the senders' and appliers' counters stop moving (drained), then until
   `verify` finds the tables equal;
5. prints the figures (text, or JSON with -o json) and stops everything it started.

Direction cn->sg is measured in sg's stats table (its applier) and the other way round.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from ddbbridge.cli import main as ddbbridge_main
from ddbbridge.load import LoadOptions, load_pair
from ddbbridge.loadplan import LoadMix
from ddbbridge.names import SideNames
from ddbbridge.spec import load_manifest
from ddbbridge.verify import wait_until_converged
from ddbbridge_dev import environment

PAIR = "run"
SIDES = {"cn": "cn-north-1", "sg": "ap-southeast-1"}
SAMPLE_SECONDS = 0.5
QUIET_SECONDS = 10.0  # no sender or applier progress for this long = drained


@dataclass
class Direction:
    source: str
    target: str
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # (t, received, applied)
    last_batch_at: float | None = None  # epoch seconds of the applier's last batch
    sender_received: int = 0  # records the source's sender has taken from its stream so far

    def summary(self, load_started: float, load_stopped: float) -> dict[str, Any]:
        received = self.samples[-1][1] if self.samples else 0
        applied = self.samples[-1][2] if self.samples else 0
        moving = [
            t
            for (t, r, _), (_, previous, _) in zip(self.samples[1:], self.samples, strict=False)
            if r > previous
        ]
        first = next((t for t, r, _ in self.samples if r > 0), None)
        last = self.last_batch_at
        window = (last - first) if first is not None and last is not None and last > first else None
        during = [r for t, r, _ in self.samples if t <= load_stopped]
        return {
            "direction": f"{self.source}->{self.target}",
            "records_received": received,
            "items_applied": applied,
            "replicated_per_second": round(received / window, 1) if window else None,
            "applied_per_second": round(applied / window, 1) if window else None,
            "received_while_loading": during[-1] if during else 0,
            "first_batch_after_load_start_s": round(first - load_started, 2) if first else None,
            "last_batch_after_load_stop_s": round(last - load_stopped, 2) if last else None,
            "busy_samples": len(moving),
        }


def wait_until_quiet(directions: dict[str, Direction], quiet_seconds: float, deadline: float) -> None:
    """Until no sender's and no applier's received count has moved for `quiet_seconds` (or the
    deadline). Appliers alone are not enough: they go quiet between batches while a sender still
    works through its stream backlog."""
    last_counts: tuple[int, ...] | None = None
    last_change = time.monotonic()
    while time.monotonic() < deadline:
        counts = tuple(
            count
            for d in directions.values()
            for count in (d.samples[-1][1] if d.samples else 0, d.sender_received)
        )
        now = time.monotonic()
        if counts != last_counts:
            last_counts, last_change = counts, now
        elif now - last_change >= quiet_seconds:
            return
        time.sleep(SAMPLE_SECONDS)


def stats_reader(side: str, endpoint: str) -> Any:
    client = boto3.client("dynamodb", region_name=SIDES[side], endpoint_url=endpoint)
    table = SideNames(PAIR, side).stats_table

    def counters(item_name: str) -> dict[str, str]:
        item = (
            client.get_item(TableName=table, Key={"PK": {"S": item_name}}, ConsistentRead=True).get("Item")
            or {}
        )
        return {name: value["N"] for name, value in item.items() if "N" in value}

    def read() -> tuple[int, int, float | None, int]:
        """(applier received, applier applied, applier's last batch, this side's sender received)"""
        number = counters("replicated_count")
        last = int(number["last_batch_at"]) / 1000 if "last_batch_at" in number else None
        sent = counters("sent_count")
        return (
            int(number.get("received", 0)),
            int(number.get("applied", 0)),
            last,
            int(sent.get("received", 0)),
        )

    return read


def create_tables(endpoints: dict[str, str]) -> dict[str, str]:
    tables = {}
    for side, region in SIDES.items():
        name = f"users-{side}"
        boto3.client("dynamodb", region_name=region, endpoint_url=endpoints[region]).create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "user_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "user_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        tables[side] = name
    return tables


def write_manifest(folder: Path, tables: dict[str, str], batch_size: int) -> Path:
    path = folder / "pair.yaml"
    path.write_text(
        f"""apiVersion: ddbbridge.io/v1alpha1
kind: TableReplicationPair
metadata:
  name: {PAIR}
spec:
  regions:
    - name: cn
      region: {SIDES["cn"]}
      tableName: {tables["cn"]}
    - name: sg
      region: {SIDES["sg"]}
      tableName: {tables["sg"]}
  replication:
    senderBatchSize: {batch_size}
    applierBatchSize: {batch_size}
""",
        encoding="utf-8",
    )
    return path


def measure(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    began = time.monotonic()
    environment.up(environment.UpOptions(rtt_ms=args.rtt_ms, start_timeout=300))
    os.environ.update(environment.env_exports())
    started_in = time.monotonic() - began
    endpoints = environment.endpoints()
    tables = create_tables(endpoints)
    manifest_path = write_manifest(folder, tables, args.batch_size)
    with redirect_stdout(sys.stderr):
        if ddbbridge_main(["reconcile", "-f", str(manifest_path)]) != 0:
            raise RuntimeError("reconcile failed")
    manifest = load_manifest(manifest_path)
    directions = {side: Direction("sg" if side == "cn" else "cn", side) for side in SIDES}
    readers = {side: stats_reader(side, endpoints[SIDES[side]]) for side in SIDES}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            now = time.time()
            for side, read in readers.items():
                try:
                    received, applied, last, sender_received = read()
                except Exception:  # a busy emulator: skip this sample
                    continue
                directions[side].samples.append((now, received, applied))
                directions[side].last_batch_at = last
                # This side's sender feeds the other direction.
                directions[directions[side].source].sender_received = sender_received
            stop.wait(SAMPLE_SECONDS)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    mix = LoadMix(
        conflict_keys=max(1, int(args.items_per_region * args.shared_keys)),
        conflict_ratio=args.shared_keys,
    )
    options = LoadOptions(
        count=args.items_per_region, mix=mix, seed=args.seed, workers=args.workers, progress=False
    )
    load_started = time.time()
    results = load_pair(manifest, list(manifest.spec.regions), options)
    load_stopped = time.time()
    # Drained = the appliers' counters stopped moving. Only then one verify: scanning both tables
    # while the pipeline drains would compete with it for the emulators' single DynamoDB lock.
    deadline = time.monotonic() + args.drain_timeout
    wait_until_quiet(directions, QUIET_SECONDS, deadline)
    report = wait_until_converged(
        manifest, max(1.0, deadline - time.monotonic()), interval=5.0, echo=False, progress=False
    )
    equal_at = time.time()
    time.sleep(2 * SAMPLE_SECONDS)
    stop.set()
    sampler.join()
    return {
        "items_per_region": args.items_per_region,
        "shared_keys": args.shared_keys,
        "rtt_ms": args.rtt_ms,
        "batch_size": args.batch_size,
        "dev_up_seconds": round(started_in, 1),
        "load": [
            {
                "side": r.side,
                "writes": r.total,
                "writes_per_second": round(r.rate, 1),
                "errors": dict(r.errors),
            }
            for r in results
        ],
        "load_seconds": round(load_stopped - load_started, 1),
        "converged": report.converged,
        "items_per_table": sorted(report.scanned.values()),
        "verify_equal_after_load_stop_s": round(equal_at - load_stopped, 1),
        "directions": [
            directions["sg"].summary(load_started, load_stopped),
            directions["cn"].summary(load_started, load_stopped),
        ],
        "load_average": list(os.getloadavg()),
    }


def render(figures: dict[str, Any]) -> str:
    lines = [
        f"replication run: {figures['items_per_region']} items per region, "
        f"{figures['shared_keys']:.0%} shared keys, rtt {figures['rtt_ms']:g} ms, "
        f"batch {figures['batch_size']}",
        f"dev up {figures['dev_up_seconds']} s; load {figures['load_seconds']} s "
        + ", ".join(f"{entry['side']} {entry['writes_per_second']} writes/s" for entry in figures["load"]),
    ]
    for direction in figures["directions"]:
        lines.append(
            f"{direction['direction']}: {direction['records_received']} records received, "
            f"{direction['items_applied']} applied, {direction['replicated_per_second']} records/s "
            f"({direction['applied_per_second']} applied/s); last applier batch "
            f"{direction['last_batch_after_load_stop_s']} s after the load stopped"
        )
    lines.append(
        f"verify: {'EQUAL' if figures['converged'] else 'NOT EQUAL'} "
        f"{figures['verify_equal_after_load_stop_s']} s after the load stopped"
    )
    lines.append("load average (1, 5, 15 min): " + ", ".join(f"{x:.2f}" for x in figures["load_average"]))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ddbbridge_dev.replication_run", description=__doc__)
    parser.add_argument("--items-per-region", type=int, default=5000)
    parser.add_argument(
        "--shared-keys", type=float, default=0.1, help="share of writes to keys both regions write"
    )
    parser.add_argument("--rtt-ms", type=float, default=0.0, help="simulated round trip between the regions")
    parser.add_argument("--workers", type=int, default=8, help="loader threads per region")
    parser.add_argument(
        "--batch-size", type=int, default=500, help="sender and applier batch size (the seed's)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--drain-timeout", type=float, default=1800.0)
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)

    def interrupted(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt  # SIGTERM too: the environment we started is always torn down

    signal.signal(signal.SIGTERM, interrupted)
    with tempfile.TemporaryDirectory(prefix="ddbbridge-run-") as scratch:
        folder = Path(scratch)
        os.environ["DDBBRIDGE_DEV_DIR"] = str(folder / "dev")
        load_before = list(os.getloadavg())
        try:
            figures = measure(args, folder)
        finally:
            stopped = environment.down()
            print(f"stopped: {', '.join(stopped) or 'nothing'}", file=sys.stderr)
    figures["load_average_at_start"] = load_before
    print(json.dumps(figures, indent=2) if args.output == "json" else render(figures))
    return 0 if figures["converged"] else 1


if __name__ == "__main__":
    sys.exit(main())
