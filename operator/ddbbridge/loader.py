"""Runs a load plan against one side's table: worker threads, a rate limit, stamps, loader stats.

Operations are routed by key to one worker each, so every key's writes happen in plan order while
different keys proceed in parallel. Stamps are taken when a write is issued, as an application would
(origin = the side's short name; timestamp in the pair's unit).
"""

from __future__ import annotations

import queue
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ddbbridge.comparison import AttributeValue, Item, canonical_key
from ddbbridge.loaderstats import LoaderStats
from ddbbridge.loadplan import Operation, OperationKind
from ddbbridge.progress import ProgressBar
from ddbbridge.ratelimit import TokenBucket
from ddbbridge_lambdas.config import KeyAttribute

QUEUE_DEPTH = 256
ERROR_EXAMPLES = 5


@dataclass(frozen=True)
class Stamping:
    """How the application stamps its writes on this side."""

    origin_attribute: str
    origin: str
    timestamp_attribute: str
    timestamp_unit: str  # "seconds" | "milliseconds"

    def values(self, now: float) -> Item:
        return {
            self.origin_attribute: {"S": self.origin},
            self.timestamp_attribute: timestamp_value(self, now),
        }


def timestamp_value(stamping: Stamping, now: float) -> AttributeValue:
    if stamping.timestamp_unit == "milliseconds":
        return {"N": str(int(now * 1000))}
    # Seconds with a fraction, like the seed's Decimal(time.time()), but bounded to microseconds:
    # the exact binary expansion of a float has more digits than DynamoDB's 38.
    return {"N": f"{now:.6f}"}


@dataclass
class RegionLoadResult:
    side: str
    region: str
    table: str
    written: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    error_examples: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    stats_recorded: bool = False
    stats_error: str | None = None

    @property
    def total(self) -> int:
        return sum(self.written[kind] for kind in OperationKind)

    @property
    def rate(self) -> float:
        return self.total / self.elapsed if self.elapsed > 0 else 0.0


def update_request(operation: Operation, stamping: Stamping, now: float) -> dict[str, Any]:
    """UpdateItem arguments: SET the changes (and the stamp unless unstamped), ADD a visit counter."""
    names: dict[str, str] = {}
    values: dict[str, AttributeValue] = {":one": {"N": "1"}}
    sets: list[str] = []

    def set_path(path: tuple[str, ...], value: AttributeValue) -> None:
        placeholders = []
        for part in path:
            placeholder = f"#n{len(names)}"
            names[placeholder] = part
            placeholders.append(placeholder)
        value_name = f":v{len(values)}"
        values[value_name] = value
        sets.append(f"{'.'.join(placeholders)} = {value_name}")

    for name, value in operation.attributes.items():
        set_path((name,), value)
    for map_name, members in operation.nested.items():
        for member, value in members.items():
            set_path((map_name, member), value)
    if operation.stamped:
        for name, value in stamping.values(now).items():
            set_path((name,), value)
    names["#visits"] = "visits"
    return {
        "Key": operation.key,
        "UpdateExpression": f"SET {', '.join(sets)} ADD #visits :one",
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }


class RegionLoader:
    """Executes operations against one table with `workers` threads."""

    def __init__(
        self,
        dynamodb: Any,
        table: str,
        stamping: Stamping,
        *,
        workers: int = 8,
        bucket: TokenBucket | None = None,
        stats: LoaderStats | None = None,
        progress: ProgressBar | None = None,
        stop: threading.Event | None = None,
        key_schema: tuple[KeyAttribute, ...],
        region: str = "",
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.dynamodb = dynamodb
        self.table = table
        self.stamping = stamping
        self.workers = workers
        self.bucket = bucket
        self.stats = stats
        self.progress = progress
        self.stop = stop or threading.Event()
        self.key_schema = key_schema
        self.result = RegionLoadResult(side=stamping.origin, region=region, table=table)
        self._lock = threading.Lock()

    def run(self, operations: Iterable[Operation]) -> RegionLoadResult:
        started = time.monotonic()
        queues: list[queue.Queue[Operation | None]] = [queue.Queue(QUEUE_DEPTH) for _ in range(self.workers)]
        threads = [
            threading.Thread(
                target=self._work, args=(q,), name=f"load-{self.stamping.origin}-{i}", daemon=True
            )
            for i, q in enumerate(queues)
        ]
        for thread in threads:
            thread.start()
        try:
            for operation in operations:
                if self.stop.is_set():
                    break
                # Same key -> same worker, so per-key order is the plan's order.
                route = zlib.crc32(canonical_key(operation.key, self.key_schema).encode("utf-8"))
                queues[route % self.workers].put(operation)
        finally:
            for q in queues:
                q.put(None)
            for thread in threads:
                thread.join()
            self.result.elapsed = time.monotonic() - started
        return self.result

    def _work(self, inbox: queue.Queue[Operation | None]) -> None:
        while (operation := inbox.get()) is not None:
            if self.stop.is_set():
                continue  # drain without writing
            if self.bucket is not None:
                self.bucket.acquire()
            self._execute(operation)
            if self.progress is not None:
                self.progress.advance()

    def _execute(self, operation: Operation) -> None:
        now = time.time()
        try:
            if operation.kind is OperationKind.PUT:
                item = {**operation.attributes, **operation.key}
                if operation.stamped:
                    item.update(self.stamping.values(now))
                self.dynamodb.put_item(TableName=self.table, Item=item)
            elif operation.kind is OperationKind.UPDATE:
                self.dynamodb.update_item(
                    TableName=self.table, **update_request(operation, self.stamping, now)
                )
            else:
                self.dynamodb.delete_item(TableName=self.table, Key=operation.key)
        except (ClientError, BotoCoreError) as error:
            code = (
                error.response.get("Error", {}).get("Code", "ClientError")
                if isinstance(error, ClientError)
                else type(error).__name__
            )
            with self._lock:
                self.result.errors[code] += 1
                if len(self.result.error_examples) < ERROR_EXAMPLES:
                    self.result.error_examples.append(f"{operation.kind} {operation.key}: {error}")
            return
        unstamped = not operation.stamped and operation.kind is not OperationKind.DELETE
        with self._lock:
            self.result.written[operation.kind] += 1
            if unstamped:
                self.result.written["unstamped"] += 1
            if operation.reinsert:
                self.result.written["reinsert"] += 1
            if operation.shared:
                self.result.written["shared"] += 1
        if self.stats is not None:
            self.stats.record(operation.kind, unstamped=unstamped)
