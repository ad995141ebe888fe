"""Helpers of the day-2 tests (backfill, repair, dead letters, faults): application writers that
stamp like the seed's apps, bulk loads, and waits for convergence through `ddbbridge verify`.

Replication itself is never modelled here: tables are read back over HTTP and compared by the
product's own `verify` (whose comparison is tested against an independent oracle elsewhere).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest

from tests.fixtures.regions import Regions
from tests.fixtures.waiting import scaled
from tests.integration.replication_support import Pair, ddbbridge


@contextmanager
def pair_environment(regions: Regions) -> Iterator[None]:
    """The environment `ddbbridge dev env` would export, for CLI calls made in this process."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in regions.env().items():
            patch.setenv(name, value)
        patch.delenv("AWS_PROFILE", raising=False)
        yield


def reconcile(pair: Pair) -> None:
    run = ddbbridge("reconcile", "-f", str(pair.path))
    assert run.code == 0, run.out + run.err


def stamp(side: str, skew: float = 0.0) -> dict[str, Any]:
    """The two stamp attributes an application server with this clock skew writes (seconds unit)."""
    now = Decimal(repr(time.time() + skew)).quantize(Decimal("0.000001"))
    return {"last_update_timestamp": {"N": str(now)}, "last_updater_region": {"S": side}}


def bulk_put(pair: Pair, side: str, items: list[dict[str, Any]]) -> None:
    """BatchWriteItem in chunks of 25, retrying unprocessed items."""
    dynamodb = pair.client(side, "dynamodb")
    table = pair.tables[side]
    for start in range(0, len(items), 25):
        request = {table: [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]}
        while request:
            response = dynamodb.batch_write_item(RequestItems=request)
            request = response.get("UnprocessedItems") or {}


def verify_converged(pair: Pair, wait: float = 120.0) -> str:
    """`ddbbridge verify --wait`: exits 0 only when the tables are equal. Returns its output."""
    run = ddbbridge(
        "verify", "-f", str(pair.path), "--wait", f"{scaled(wait):g}", "--interval", "1", "--no-progress"
    )
    assert run.code == 0, f"tables did not converge:\n{run.out}\n{run.err[-3000:]}"
    return run.out


@dataclass
class AppWriters:
    """Application traffic in both regions on background threads until stopped: stamped puts of new
    and existing keys, updates, and deletes; every operation is recorded."""

    pair: Pair
    keys: list[str]  # existing hash keys the writers may update or delete
    seed: int = 7
    limit: int = 300  # operations per region at most: the pipeline on two moto servers drains slowly
    pace: float = 0.03  # seconds between operations: an app server's pace, not a test wait
    skew: dict[str, float] = field(default_factory=dict)
    done: dict[str, int] = field(default_factory=dict)
    errors: list[BaseException] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for side in ("cn", "sg"):
            thread = threading.Thread(target=self._run, args=(side,), name=f"app-{side}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> dict[str, int]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=scaled(60))
        if self.errors:
            raise self.errors[0]
        return dict(self.done)

    def _run(self, side: str) -> None:
        rng = random.Random(f"{self.seed}-{side}")
        dynamodb = self.pair.client(side, "dynamodb")
        table = self.pair.tables[side]
        hash_key = self.pair.key_names[0]
        counter = 0
        try:
            while not self._stop.is_set() and counter < self.limit:
                counter += 1
                choice = rng.random()
                if choice < 0.15 and self.keys:
                    key = rng.choice(self.keys)
                    dynamodb.delete_item(TableName=table, Key={hash_key: {"S": key}})
                    kind = "deletes"
                else:
                    key = rng.choice(self.keys) if choice < 0.6 and self.keys else f"new-{side}-{counter}"
                    item = {
                        hash_key: {"S": key},
                        "payload": {"S": f"{side}-{counter}"},
                        "blob": {"B": rng.randbytes(8)},
                        **stamp(side, self.skew.get(side, 0.0)),
                    }
                    dynamodb.put_item(TableName=table, Item=item)
                    kind = "puts"
                self.done[f"{side}_{kind}"] = self.done.get(f"{side}_{kind}", 0) + 1
                time.sleep(self.pace)
        except BaseException as error:  # surfaced by stop()
            self.errors.append(error)
