"""The mapping settings the poller honours, and what to do after each invocation. Pure.

Semantics follow Lambda's documentation for stream event sources:
- a function error retries the batch until MaximumRetryAttempts (-1 = forever) or
  MaximumRecordAgeInSeconds (-1 = forever) is exceeded, then the batch goes to the on-failure
  destination (metadata only) and processing moves on;
- BisectBatchOnFunctionError splits a failing batch in two before retrying, and splitting does not
  consume retry quota;
- with ReportBatchItemFailures the function returns {"batchItemFailures": [{"itemIdentifier": seq}]}:
  the batch is checkpointed before the lowest reported sequence number and retried from there. An empty
  or null list, an empty or null response counts as full success; an empty or null identifier, a wrong
  key name, or an identifier that is not in the batch counts as a full failure. With bisect on, a
  partial response splits the batch at the returned sequence number and only the rest is retried.
"""

from __future__ import annotations

import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ddbbridge_dev.runner.events import StreamRecord

# Lambda's synchronous invocation payload limit.
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
REPORT_BATCH_ITEM_FAILURES = "ReportBatchItemFailures"


@dataclass(frozen=True)
class MappingPolicy:
    batch_size: int = 100
    batching_window: float = 0.0
    maximum_retry_attempts: int = -1
    maximum_record_age: int = -1
    bisect_on_error: bool = False
    report_batch_item_failures: bool = False
    parallelization_factor: int = 1
    on_failure_destination: str | None = None

    @classmethod
    def from_mapping(cls, mapping: dict[str, Any]) -> MappingPolicy:
        """Read the settings from a Lambda ESM description (missing/None fields take AWS defaults)."""

        def number(name: str, default: int) -> int:
            value = mapping.get(name)
            return default if value is None else int(value)

        destination = ((mapping.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
        return cls(
            batch_size=max(1, number("BatchSize", 100)),
            batching_window=float(number("MaximumBatchingWindowInSeconds", 0)),
            maximum_retry_attempts=number("MaximumRetryAttempts", -1),
            maximum_record_age=number("MaximumRecordAgeInSeconds", -1),
            bisect_on_error=bool(mapping.get("BisectBatchOnFunctionError") or False),
            report_batch_item_failures=REPORT_BATCH_ITEM_FAILURES
            in (mapping.get("FunctionResponseTypes") or []),
            parallelization_factor=min(10, max(1, number("ParallelizationFactor", 1))),
            on_failure_destination=destination or None,
        )


@dataclass(frozen=True)
class InvocationResult:
    """What one invocation of the handler produced."""

    ok: bool  # the handler returned (no exception, no timeout, no runtime error)
    payload: Any = None
    error_type: str | None = None
    error_message: str | None = None
    duration: float = 0.0
    request_id: str = ""

    @property
    def function_error(self) -> str | None:
        return None if self.ok else "Unhandled"


@dataclass(frozen=True)
class Verdict:
    """How many leading records of the batch are done, and whether the function itself failed."""

    succeeded: int
    function_error: bool
    outcome: str  # "ok" | "partial" | "error" | "invalid-response"


def judge(policy: MappingPolicy, batch: list[StreamRecord], result: InvocationResult) -> Verdict:
    if not result.ok:
        return Verdict(0, True, "error")
    if not policy.report_batch_item_failures:
        return Verdict(len(batch), False, "ok")
    payload = result.payload
    if not isinstance(payload, dict):
        return Verdict(len(batch), False, "ok")  # null or non-object response: nothing reported
    failures = payload.get("batchItemFailures")
    if not failures:
        return Verdict(len(batch), False, "ok")  # null or empty list
    if not isinstance(failures, list):
        return Verdict(0, False, "invalid-response")
    positions = {record.sequence_text: index for index, record in enumerate(batch)}
    lowest = len(batch)
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not isinstance(identifier, str) or identifier not in positions:
            return Verdict(0, False, "invalid-response")
        lowest = min(lowest, positions[identifier])
    return Verdict(lowest, False, "partial")


@dataclass
class WorkItem:
    """A batch (or part of one) on its way through retries and bisection."""

    records: list[StreamRecord]
    retries: int = 0  # failed invocations that consumed retry quota
    invocations: int = 0  # invocations of this item and the chain it continues (not of split parents)
    last_result: InvocationResult | None = None


@dataclass
class Step:
    done: list[StreamRecord] = field(default_factory=list)
    follow_up: list[WorkItem] = field(default_factory=list)  # processed next, in this order
    discarded: WorkItem | None = None  # retries exhausted -> on-failure destination


def next_step(policy: MappingPolicy, item: WorkItem, verdict: Verdict) -> Step:
    """Decide what happens after `item` was invoked (item.invocations already counts it)."""
    done = item.records[: verdict.succeeded]
    rest = item.records[verdict.succeeded :]
    if not rest:
        return Step(done=done)
    blind = verdict.function_error or verdict.succeeded == 0
    if policy.bisect_on_error and blind and len(rest) > 1:
        middle = len(rest) // 2
        halves = [
            WorkItem(rest[:middle], item.retries, 0, item.last_result),
            WorkItem(rest[middle:], item.retries, 0, item.last_result),
        ]
        return Step(done=done, follow_up=halves)
    if policy.bisect_on_error and not blind:
        # Split at the reported sequence number; progress was made, so no quota is consumed.
        return Step(done=done, follow_up=[WorkItem(rest, item.retries, 0, item.last_result)])
    retries = item.retries + 1
    continued = WorkItem(rest, retries, item.invocations, item.last_result)
    if 0 <= policy.maximum_retry_attempts < retries:
        return Step(done=done, discarded=continued)
    return Step(done=done, follow_up=[continued])


def split_expired(
    policy: MappingPolicy, records: list[StreamRecord], now: float
) -> tuple[list[StreamRecord], list[StreamRecord]]:
    """(expired, fresh) by MaximumRecordAgeInSeconds."""
    if policy.maximum_record_age < 0:
        return [], records
    oldest_allowed = now - policy.maximum_record_age
    expired = [record for record in records if record.arrival < oldest_allowed]
    if not expired:
        return [], records
    return expired, [record for record in records if record.arrival >= oldest_allowed]


def lane_of(partition_key: str, factor: int) -> int:
    """Lane of a record under ParallelizationFactor: one key always maps to one lane, keeping its order."""
    if factor <= 1:
        return 0
    return zlib.crc32(partition_key.encode()) % factor


def take_batch(pending: deque[StreamRecord], batch_size: int) -> list[StreamRecord]:
    """Up to `batch_size` records from the front of `pending`, within Lambda's payload limit."""
    batch: list[StreamRecord] = []
    size = 0
    while pending and len(batch) < batch_size:
        record = pending[0]
        if batch and size + record.size > MAX_PAYLOAD_BYTES:
            break
        batch.append(pending.popleft())
        size += record.size
    return batch


def retry_delay(retries: int, base: float, ceiling: float) -> float:
    """Backoff between retries of a failing batch."""
    return float(min(ceiling, base * (2 ** max(0, retries - 1))))
