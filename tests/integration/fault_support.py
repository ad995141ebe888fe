"""Helpers of the fault-injection suite: application writes whose final state the test knows, the
runner's worker processes, the records a side's inbound Kinesis stream holds, and the checks every
fault test ends with (converged, nothing lost, nothing dead-lettered or discarded).

Everything is read back from the emulators or the runner's own log; nothing here models replication.
"""

from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fixtures.runner import RunnerProcess
from tests.fixtures.waiting import scaled, wait_for
from tests.integration.replication_support import (
    SIDES,
    Pair,
    applier_equation,
    ddbbridge,
    sender_equation,
)

DRAIN_SECONDS = 300  # deadline (scaled) for `verify --wait` after a fault


def stamp(pair: Pair, side: str, epoch_seconds: float) -> dict[str, Any]:
    """The stamp attributes an application writes (seconds with a fraction, the default unit)."""
    return {
        pair.timestamp_attribute: {"N": f"{epoch_seconds:.6f}"},
        pair.origin_attribute: {"S": side},
    }


def without_stamp(pair: Pair, item: dict[str, Any] | None) -> dict[str, Any] | None:
    if item is None:
        return None
    return {k: v for k, v in item.items() if k not in (pair.timestamp_attribute, pair.origin_attribute)}


@dataclass
class Expected:
    """Final content (stamps aside) of keys only one region writes: None = deleted."""

    pair: Pair
    items: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def put(self, side: str, key: str, content: dict[str, Any], stamped_at: float | None = None) -> None:
        item = {"pk": {"S": key}, **content}
        extra = stamp(self.pair, side, stamped_at) if stamped_at is not None else {}
        self.pair.client(side, "dynamodb").put_item(TableName=self.pair.tables[side], Item={**item, **extra})
        with self.lock:
            self.items[key] = item

    def delete(self, side: str, key: str) -> None:
        self.pair.client(side, "dynamodb").delete_item(
            TableName=self.pair.tables[side], Key={"pk": {"S": key}}
        )
        with self.lock:
            self.items[key] = None

    def mismatches(self) -> list[str]:
        """Keys whose content differs from what was written last, in either region."""
        wrong = []
        scans = {side: self.pair.scan(side) for side in SIDES}
        with self.lock:
            expected = dict(self.items)
        for key, item in expected.items():
            for side in SIDES:
                found = without_stamp(self.pair, scans[side].get((key,)))
                if found != item:
                    wrong.append(f"{side} {key}: expected {item}, found {found}")
        return wrong


class Writers:
    """One thread per region writing unstamped puts and deletes on its own keys (known final state)
    and on a few keys both regions write (conflicts: only equality is checked there)."""

    def __init__(self, expected: Expected, prefix: str, keys: int = 30, shared: int = 4) -> None:
        self.expected = expected
        self.prefix = prefix
        self.keys = keys
        self.shared = shared
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.writes: dict[str, list[float]] = {side: [] for side in SIDES}  # wall clock of each write
        self.threads = [threading.Thread(target=self._run, args=(side,), daemon=True) for side in SIDES]

    def _run(self, side: str) -> None:
        rng = random.Random(f"{self.prefix}-{side}")
        pair = self.expected.pair
        step = 0
        try:
            while not self.stop.is_set():
                step += 1
                if step % 5 == 0:
                    key = f"{self.prefix}-shared-{rng.randrange(self.shared)}"
                    pair.client(side, "dynamodb").put_item(
                        TableName=pair.tables[side],
                        Item={"pk": {"S": key}, "from": {"S": side}, "step": {"N": str(step)}},
                    )
                else:
                    key = f"{self.prefix}-{side}-{rng.randrange(self.keys)}"
                    if rng.random() < 0.15:
                        self.expected.delete(side, key)
                    else:
                        self.expected.put(
                            side, key, {"step": {"N": str(step)}, "b": {"B": bytes([step % 256])}}
                        )
                self.writes[side].append(time.time())
                self.stop.wait(0.08)  # pacing: a steady trickle, not a flood
        except BaseException as error:  # reported by the test thread
            self.errors.append(error)

    def __enter__(self) -> Writers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(scaled(60))

    def written_between(self, side: str, start: float, end: float) -> int:
        return sum(1 for moment in list(self.writes[side]) if start <= moment <= end)


def verify_equal(pair: Pair, wait: float = DRAIN_SECONDS) -> None:
    run = ddbbridge(
        "verify", "-f", str(pair.path), "--wait", f"{scaled(wait):g}", "--interval", "1", "--no-progress"
    )
    assert run.code == 0 and "EQUAL" in run.out, run.out + run.err


def assert_nothing_lost(pair: Pair, expected: Expected | None = None) -> None:
    """The pipeline is drained (verify), every known key holds its last write in both regions, the
    stats equations hold with nothing dead-lettered, and no queue holds anything: neither our
    dead letters nor Lambda's on-failure destinations (a batch the runner gave up on)."""
    verify_equal(pair)
    if expected is not None:
        assert expected.mismatches() == []
    for side in SIDES:
        names = pair.names(side)

        def settled(side: str = side) -> list[dict[str, int]] | None:
            stats = pair.stats(side, "replicated_count")
            received, outcomes = applier_equation(stats)
            return [stats] if received == outcomes else None  # 0 == 0: a side nothing was sent to

        (applied,) = wait_for(settled, 60, f"{side}: the applier's stats equation")
        assert applied.get("dead_lettered", 0) == 0, (side, applied)
        sent = pair.stats(side, "sent_count")
        received, outcomes = sender_equation(sent)
        assert received == outcomes, (side, sent)
        assert sent.get("dead_lettered", 0) == 0, (side, sent)
        for queue in (names.dead_letter_queue, names.sender_failures_queue, names.applier_failures_queue):
            assert pair.queue_depth(side, queue) == 0, (side, queue)


# --- the runner's workers --------------------------------------------------------------------


def is_worker(pid: int) -> bool:
    """A live worker process of the runner (the pid was not reused by something else)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return b"worker_main.py" in command and state != "Z"


def live_workers(runner: RunnerProcess, function: str) -> list[int]:
    """Pids of `function`'s worker processes still alive, from the runner's worker-started events."""
    started = [
        int(line["pid"])
        for line in runner.lines()
        if line.get("event") == "worker-started" and line.get("function") == function
    ]
    return [pid for pid in started if is_worker(pid)]


def kill(pid: int) -> None:
    os.kill(pid, 9)  # SIGKILL: no cleanup, like Lambda losing the execution environment
    wait_for(lambda: not is_worker(pid), 30, f"worker {pid} to die")


# --- records of a side's inbound stream ------------------------------------------------------


def inbound_records(pair: Pair, side: str) -> list[tuple[bytes, str]]:
    """(data, partition key) of every record in the side's inbound Kinesis stream, in order."""
    kinesis = pair.client(side, "kinesis")
    stream = pair.names(side).inbound_stream
    found: list[tuple[bytes, str]] = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10000)
            found += [(record["Data"], record["PartitionKey"]) for record in page["Records"]]
            if not page["Records"]:
                break
            iterator = page["NextShardIterator"]
    return found


def put_inbound(pair: Pair, side: str, records: list[tuple[bytes, str]]) -> None:
    """Deliver records into the side's inbound stream (what the peer's sender would do), in order."""
    kinesis = pair.client(side, "kinesis")
    for start in range(0, len(records), 100):
        chunk = records[start : start + 100]
        response = kinesis.put_records(
            StreamName=pair.names(side).inbound_stream,
            Records=[{"Data": data, "PartitionKey": key} for data, key in chunk],
        )
        assert response.get("FailedRecordCount", 0) == 0, response


def applier_received(pair: Pair, side: str) -> int:
    return pair.stats(side, "replicated_count").get("received", 0)


def wait_applier_received(pair: Pair, side: str, count: int) -> dict[str, int]:
    """Wait until the side's applier has accounted for `count` records in total."""

    def reached() -> dict[str, int] | None:
        stats = pair.stats(side, "replicated_count")
        return stats if stats.get("received", 0) >= count else None

    return wait_for(reached, 120, f"{side}'s applier to account for {count} records")
