"""`loaded_count` in the side's stats table: what the load generator wrote, in batched counter updates.

One UpdateItem (ADD) per flush, never one per item: the stats table must not become the load's
bottleneck or double its write cost. Counters: `cnt` (every successful write) and one per operation
kind (`put_cnt`, `update_cnt`, `delete_cnt`), plus `unstamped_cnt` (writes without a fresh stamp).
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

LOADED_COUNT_KEY = "loaded_count"
TOTAL_COUNTER = "cnt"


def counter_attribute(kind: str) -> str:
    return f"{kind}_cnt"


class LoaderStats:
    """Accumulates counts from worker threads; a background thread flushes them every `interval`."""

    def __init__(self, dynamodb: Any, table_name: str, *, interval: float = 1.0) -> None:
        self.dynamodb = dynamodb
        self.table_name = table_name
        self.interval = interval
        self.flushes = 0
        self.last_error: str | None = None
        self._pending: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> LoaderStats:
        self._thread = threading.Thread(target=self._run, name=f"loader-stats-{self.table_name}", daemon=True)
        self._thread.start()
        return self

    def record(self, kind: str, *, unstamped: bool = False) -> None:
        with self._lock:
            self._pending[TOTAL_COUNTER] += 1
            self._pending[counter_attribute(kind)] += 1
            if unstamped:
                self._pending[counter_attribute("unstamped")] += 1

    def close(self) -> bool:
        """Stop the flusher and flush what is left; False when counts could not be written."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self.flush()

    def flush(self) -> bool:
        with self._flush_lock:
            with self._lock:
                batch, self._pending = self._pending, Counter()
            if not batch:
                return True
            names = sorted(batch)
            try:
                self.dynamodb.update_item(
                    TableName=self.table_name,
                    Key={"PK": {"S": LOADED_COUNT_KEY}},
                    UpdateExpression="ADD " + ", ".join(f"#c{i} :c{i}" for i in range(len(names))),
                    ExpressionAttributeNames={f"#c{i}": name for i, name in enumerate(names)},
                    ExpressionAttributeValues={
                        f":c{i}": {"N": str(batch[name])} for i, name in enumerate(names)
                    },
                )
            except (ClientError, BotoCoreError) as error:
                # Keep the counts for the next flush: a throttled stats write must not lose them.
                with self._lock:
                    self._pending.update(batch)
                self.last_error = str(error)
                return False
            self.flushes += 1
            return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()


def read_loaded_count(dynamodb: Any, table_name: str) -> dict[str, int]:
    """The `loaded_count` counters (consistent read); empty when nothing was loaded."""
    item = dynamodb.get_item(
        TableName=table_name, Key={"PK": {"S": LOADED_COUNT_KEY}}, ConsistentRead=True
    ).get("Item", {})
    return {name: int(value["N"]) for name, value in item.items() if "N" in value}
