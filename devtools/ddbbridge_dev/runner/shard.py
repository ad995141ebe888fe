"""One shard of one mapping: read pages, route records to lanes, invoke batches, checkpoint.

The shard's thread reads and dispatches; each lane (ParallelizationFactor) runs one batch at a time
in a small thread pool, so records of one partition key are delivered in order while lanes run
concurrently. A batch's retries, bisection and on-failure delivery happen inside its lane.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ddbbridge_dev.runner.checkpoints import Checkpoint, CheckpointStore
from ddbbridge_dev.runner.code import CodeFetchError
from ddbbridge_dev.runner.destinations import (
    RECORD_AGE_EXCEEDED,
    RETRY_ATTEMPTS_EXHAUSTED,
    failure_record,
)
from ddbbridge_dev.runner.events import StreamRecord, event_payload
from ddbbridge_dev.runner.mappings import MappingSpec
from ddbbridge_dev.runner.options import RunnerOptions
from ddbbridge_dev.runner.policy import (
    InvocationResult,
    WorkItem,
    judge,
    lane_of,
    next_step,
    retry_delay,
    split_expired,
    take_batch,
)
from ddbbridge_dev.runner.poll_budget import IdlePollBudget
from ddbbridge_dev.runner.progress import ShardProgress
from ddbbridge_dev.runner.sources import Position, ShardInfo, StreamSource
from ddbbridge_dev.runner.wire import WireError

log = logging.getLogger("ddbbridge.runner")
invocations_log = logging.getLogger("ddbbridge.runner.invocations")

# DynamoDB iterators are reused across empty polls (valid 15 minutes on AWS); moto stores every
# iterator it hands out, so taking a new one per empty poll would grow its memory without bound.
ITERATOR_REUSE_SECONDS = 300.0

Invoke = Callable[[dict[str, object]], InvocationResult]
Deliver = Callable[[str, dict[str, object]], None]


@dataclass
class Lane:
    pending: deque[StreamRecord] = field(default_factory=deque)
    busy: bool = False
    since: float = 0.0  # monotonic time the oldest pending record arrived in the lane


class ShardProcessor:
    def __init__(
        self,
        spec: MappingSpec,
        shard: ShardInfo,
        source: StreamSource,
        *,
        start: Position,
        skip_before: float | None,
        store: CheckpointStore,
        options: RunnerOptions,
        invoke: Invoke,
        deliver_failure: Deliver,
        idle_budget: IdlePollBudget | None = None,
    ) -> None:
        self.spec = spec
        self.shard = shard
        self.source = source
        self.store = store
        self.options = options
        self._invoke = invoke
        self._deliver_failure = deliver_failure
        self._position = start
        self._skip_before = skip_before
        self._policy = spec.policy
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._progress = ShardProgress()
        self._save_lock = threading.Lock()
        self._saved: str | None = None
        self._lanes = [Lane() for _ in range(self._policy.parallelization_factor)]
        self._executor = ThreadPoolExecutor(
            max_workers=self._policy.parallelization_factor,
            thread_name_prefix=f"lane-{spec.runtime.function_name}",
        )
        self._thread = threading.Thread(
            target=self._run, name=f"shard-{spec.uuid[:8]}-{shard.shard_id[-8:]}", daemon=True
        )
        self.finished = False
        base = options.dynamodb_poll if source.kind == "dynamodb" else options.kinesis_poll
        self._poll_interval = base
        self._idle_ceiling = max(base, options.idle_poll_ceiling)
        self._idle_budget = idle_budget

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)
        self._executor.shutdown(wait=True, cancel_futures=True)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- the shard loop ------------------------------------------------------------------------
    def _run(self) -> None:
        if self._idle_budget is not None:
            self._idle_budget.join()
        try:
            self._poll_until_stopped()
        finally:
            if self._idle_budget is not None:
                self._idle_budget.leave()

    def _poll_until_stopped(self) -> None:
        iterator: str | None = None
        iterator_born = 0.0
        next_poll = 0.0
        empty_polls = 0
        drained = False  # closed shard read to its end
        buffer_limit = max(self._policy.batch_size * self._policy.parallelization_factor * 2, 1000)
        while not self._stop.is_set():
            now = time.monotonic()
            room = buffer_limit - self._progress.outstanding
            if not drained and now >= next_poll and room > 0:
                try:
                    if iterator is None:
                        iterator = self.source.open(self.shard.shard_id, self._position)
                        iterator_born = now
                    limit = min(self.source.max_page, room)
                    page = self.source.read(self.shard.shard_id, iterator, limit)
                except WireError as error:
                    iterator = None
                    next_poll = now + self._read_error(error)
                else:
                    if page.records:
                        empty_polls = 0
                        self._position = Position("AFTER_SEQUENCE_NUMBER", page.records[-1].sequence_text)
                        iterator, iterator_born = page.next_iterator, now
                        self._accept(page.records)
                        drained = page.next_iterator is None
                        full = len(page.records) >= limit
                        next_poll = now if full else now + self._poll_interval
                    else:
                        empty_polls += 1
                        if page.next_iterator is None:
                            drained = True
                        elif self.source.kind != "dynamodb" or now - iterator_born > ITERATOR_REUSE_SECONDS:
                            iterator, iterator_born = page.next_iterator, now
                        next_poll = now + self._idle_interval(empty_polls)
            self._dispatch(now)
            if drained and self._progress.outstanding == 0 and not any(lane.busy for lane in self._lanes):
                self._save(Checkpoint(after=self._progress.checkpoint or self._saved, finished=True))
                self.finished = True
                log.info(json.dumps({"event": "shard-finished", **self._labels()}))
                return
            self._wake.wait(self._wait_time(next_poll, drained, room))
            self._wake.clear()

    def _idle_interval(self, empty_polls: int) -> float:
        # Lambda's base rate while records flow; stretch gradually on a quiet shard.
        if empty_polls <= 20:
            return self._poll_interval
        ceiling = self._idle_ceiling
        if self._idle_budget is not None:
            ceiling = self._idle_budget.ceiling(ceiling)
        return float(min(ceiling, self._poll_interval * 1.1 ** (empty_polls - 20)))

    def _wait_time(self, next_poll: float, drained: bool, room: int) -> float:
        now = time.monotonic()
        wait = 1.0 if drained or room <= 0 else max(0.0, next_poll - now)
        window = self._policy.batching_window
        for lane in self._lanes:
            if lane.pending and not lane.busy and window > 0:
                wait = min(wait, max(0.0, lane.since + window - now))
        return max(0.001, wait)

    def _read_error(self, error: WireError) -> float:
        """Handle a failed read; returns the delay before the next read."""
        if error.code == "ExpiredIteratorException":
            return 0.0
        if error.code == "TrimmedDataAccessException":
            log.warning(json.dumps({"event": "trimmed", "error": str(error), **self._labels()}))
            self._position = Position("TRIM_HORIZON")
            return 0.0
        level = logging.INFO if error.transient else logging.WARNING
        log.log(level, json.dumps({"event": "read-error", "error": str(error), **self._labels()}))
        return self.options.retry_ceiling if not error.transient else self.options.retry_base * 4

    def _accept(self, records: list[StreamRecord]) -> None:
        if self._skip_before is not None:
            records = [record for record in records if record.arrival >= self._skip_before]
            if not records:
                return
        self._progress.track([(record.sequence, record.sequence_text) for record in records])
        factor = self._policy.parallelization_factor
        now = time.monotonic()
        for record in records:
            lane = self._lanes[lane_of(record.partition_key, factor)]
            if not lane.pending:
                lane.since = now
            lane.pending.append(record)

    def _dispatch(self, now: float) -> None:
        policy = self._policy
        for lane in self._lanes:
            if lane.busy or not lane.pending:
                continue
            ready = (
                len(lane.pending) >= policy.batch_size
                or policy.batching_window <= 0
                or now - lane.since >= policy.batching_window
            )
            if not ready:
                continue
            batch = take_batch(lane.pending, policy.batch_size)
            lane.since = now
            lane.busy = True
            self._executor.submit(self._run_batch, lane, batch)

    # -- one batch, in its lane ----------------------------------------------------------------
    def _run_batch(self, lane: Lane, batch: list[StreamRecord]) -> None:
        try:
            self._process(batch)
        except Exception:  # a bug must not kill the lane silently
            log.exception("lane failed on shard %s", self.shard.shard_id)
        finally:
            lane.busy = False
            self._wake.set()

    def _process(self, batch: list[StreamRecord]) -> None:
        policy = self._policy
        queue: deque[WorkItem] = deque([WorkItem(batch)])
        infra_failures = 0
        while queue and not self._stop.is_set():
            item = queue[0]
            expired, fresh = split_expired(policy, item.records, time.time())
            if expired:
                self._discard(expired, RECORD_AGE_EXCEEDED, item.invocations, item.last_result)
                item.records = fresh
                if not fresh:
                    queue.popleft()
                    continue
            try:
                result = self._invoke(event_payload(item.records))
            except (CodeFetchError, OSError) as error:
                # Before invocation (code or worker unavailable): retried, never counted.
                infra_failures += 1
                log.warning(
                    json.dumps({"event": "invoke-unavailable", "error": str(error), **self._labels()})
                )
                self._stop.wait(
                    retry_delay(infra_failures, self.options.retry_base, self.options.retry_ceiling)
                )
                continue
            infra_failures = 0
            item.invocations += 1
            item.last_result = result
            verdict = judge(policy, item.records, result)
            self._log_invocation(item, result, verdict.outcome, verdict.succeeded)
            step = next_step(policy, item, verdict)
            queue.popleft()
            queue.extendleft(reversed(step.follow_up))
            if step.done:
                self._finish(step.done)
            if step.discarded is not None:
                discarded = step.discarded
                self._discard(
                    discarded.records, RETRY_ATTEMPTS_EXHAUSTED, discarded.invocations, discarded.last_result
                )
            elif step.follow_up and step.follow_up[0].retries > item.retries:
                # A retry that consumed quota (not a split): back off before trying again.
                self._stop.wait(
                    retry_delay(
                        step.follow_up[0].retries, self.options.retry_base, self.options.retry_ceiling
                    )
                )

    def _discard(
        self,
        records: list[StreamRecord],
        condition: str,
        invoke_count: int,
        last_result: InvocationResult | None,
    ) -> None:
        destination = self._policy.on_failure_destination
        if destination:
            message = failure_record(
                source=self.source.kind,
                function_arn=self.spec.runtime.function_arn,
                condition=condition,
                shard_id=self.shard.shard_id,
                stream_arn=self.spec.source_arn,
                records=records,
                invoke_count=invoke_count,
                last_result=last_result,
                now=time.time(),
            )
            attempt = 0
            while not self._stop.is_set():
                try:
                    self._deliver_failure(destination, message)
                    break
                except Exception as error:  # destination unreachable: Lambda keeps trying
                    attempt += 1
                    log.warning(
                        json.dumps({"event": "on-failure-error", "error": str(error), **self._labels()})
                    )
                    self._stop.wait(retry_delay(attempt, self.options.retry_base, self.options.retry_ceiling))
            else:
                return  # stopping: leave the records unfinished so a restart re-reads them
        log.warning(
            json.dumps(
                {
                    "event": "discarded",
                    "condition": condition,
                    "records": len(records),
                    "first_sequence": records[0].sequence_text,
                    "last_sequence": records[-1].sequence_text,
                    "destination": destination,
                    **self._labels(),
                }
            )
        )
        self._finish(records)

    def _finish(self, records: list[StreamRecord]) -> None:
        moved = self._progress.finish([record.sequence for record in records])
        if moved is not None:
            self._save(Checkpoint(after=moved))

    def _save(self, checkpoint: Checkpoint) -> None:
        with self._save_lock:
            current = self._progress.checkpoint
            if not checkpoint.finished and current is not None:
                checkpoint = Checkpoint(after=current)
            if not checkpoint.finished and checkpoint.after == self._saved:
                return
            self.store.save(self.spec.uuid, self.shard.shard_id, checkpoint)
            self._saved = checkpoint.after

    # -- logging -------------------------------------------------------------------------------
    def _labels(self) -> dict[str, object]:
        return {
            "region": self.spec.region,
            "function": self.spec.runtime.function_name,
            "mapping": self.spec.uuid,
            "shard": self.shard.shard_id,
        }

    def _log_invocation(self, item: WorkItem, result: InvocationResult, outcome: str, succeeded: int) -> None:
        line: dict[str, object] = {
            "event": "invocation",
            **self._labels(),
            "request_id": result.request_id,
            "outcome": outcome,
            "records": len(item.records),
            "succeeded": succeeded,
            "first_sequence": item.records[0].sequence_text,
            "last_sequence": item.records[-1].sequence_text,
            "attempt": item.invocations,
            "duration_ms": round(result.duration * 1000, 2),
        }
        if not result.ok:
            line["error_type"] = result.error_type
            line["error"] = (result.error_message or "")[:300]
        invocations_log.info(json.dumps(line))
