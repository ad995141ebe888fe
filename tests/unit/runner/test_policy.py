"""Batching, retry, bisect and partial-response policy (pure)."""

from __future__ import annotations

from collections import deque

from ddbbridge_dev.runner.events import StreamRecord
from ddbbridge_dev.runner.policy import (
    InvocationResult,
    MappingPolicy,
    WorkItem,
    judge,
    lane_of,
    next_step,
    split_expired,
    take_batch,
)
from ddbbridge_dev.runner.progress import ShardProgress

OK = InvocationResult(ok=True)
ERROR = InvocationResult(ok=False, error_type="RuntimeError")


def records(count: int, *, start: int = 1, arrival: float = 1000.0) -> list[StreamRecord]:
    return [StreamRecord(n, str(n), f"k{n}", arrival + n, 10, {"n": n}) for n in range(start, start + count)]


def partial(*sequences: object) -> InvocationResult:
    return InvocationResult(
        ok=True, payload={"batchItemFailures": [{"itemIdentifier": s} for s in sequences]}
    )


def test_policy_defaults_follow_aws() -> None:
    policy = MappingPolicy.from_mapping({"BatchSize": None, "FunctionResponseTypes": None})
    assert policy == MappingPolicy(batch_size=100, maximum_retry_attempts=-1, maximum_record_age=-1)
    configured = MappingPolicy.from_mapping(
        {
            "BatchSize": 7,
            "ParallelizationFactor": 4,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "DestinationConfig": {"OnFailure": {"Destination": "arn:aws:sqs:r:1:q"}},
        }
    )
    assert configured.batch_size == 7 and configured.parallelization_factor == 4
    assert configured.report_batch_item_failures and configured.on_failure_destination == "arn:aws:sqs:r:1:q"


def test_partial_response_semantics_as_documented() -> None:
    policy = MappingPolicy(report_batch_item_failures=True)
    batch = records(5)
    for success in (None, {}, {"batchItemFailures": []}, {"batchItemFailures": None}, "done"):
        assert judge(policy, batch, InvocationResult(ok=True, payload=success)).succeeded == 5
    assert judge(policy, batch, partial("4", "2")).succeeded == 1  # the lowest reported sequence
    for invalid in (partial(""), partial(None), partial("99"), {"batchItemFailures": [{"id": "2"}]}):
        result = (
            invalid if isinstance(invalid, InvocationResult) else InvocationResult(ok=True, payload=invalid)
        )
        verdict = judge(policy, batch, result)
        assert verdict.succeeded == 0 and verdict.outcome == "invalid-response"
    # Without ReportBatchItemFailures on the mapping, a partial response is ignored.
    assert judge(MappingPolicy(), batch, partial("2")).succeeded == 5
    assert judge(policy, batch, ERROR).function_error


def test_retries_exhausted_after_maximum_retry_attempts() -> None:
    policy = MappingPolicy(maximum_retry_attempts=2)
    item = WorkItem(records(3))
    invocations = 0
    while True:
        invocations += 1
        item.invocations += 1
        step = next_step(policy, item, judge(policy, item.records, ERROR))
        if step.discarded:
            break
        (item,) = step.follow_up
    assert invocations == 3
    assert step.discarded.invocations == 3 and len(step.discarded.records) == 3


def test_bisect_plan_isolates_one_poison_record_without_consuming_quota() -> None:
    policy = MappingPolicy(bisect_on_error=True, maximum_retry_attempts=0)
    poison = 6
    queue = deque([WorkItem(records(8))])
    done: list[int] = []
    discarded: list[list[int]] = []
    batch_sizes = []
    while queue:
        item = queue.popleft()
        item.invocations += 1
        batch_sizes.append(len(item.records))
        failed = any(r.sequence == poison for r in item.records)
        step = next_step(policy, item, judge(policy, item.records, ERROR if failed else OK))
        done += [r.sequence for r in step.done]
        queue.extendleft(reversed(step.follow_up))
        if step.discarded:
            discarded.append([r.sequence for r in step.discarded.records])
    assert discarded == [[poison]]
    assert sorted(done) == [n for n in range(1, 9) if n != poison]
    assert batch_sizes == [8, 4, 4, 2, 1, 1, 2]


def test_partial_failure_retries_from_the_reported_record() -> None:
    policy = MappingPolicy(report_batch_item_failures=True)
    item = WorkItem(records(6))
    item.invocations = 1
    step = next_step(policy, item, judge(policy, item.records, partial("4")))
    assert [r.sequence for r in step.done] == [1, 2, 3]
    assert [r.sequence for r in step.follow_up[0].records] == [4, 5, 6]
    assert step.follow_up[0].retries == 1
    # With bisect on, the split at the reported record consumes no quota.
    bisecting = MappingPolicy(report_batch_item_failures=True, bisect_on_error=True, maximum_retry_attempts=0)
    step = next_step(bisecting, WorkItem(records(6)), judge(bisecting, records(6), partial("4")))
    assert step.discarded is None and step.follow_up[0].retries == 0


def test_record_age_lanes_and_batches() -> None:
    policy = MappingPolicy(maximum_record_age=60)
    expired, fresh = split_expired(policy, records(4, arrival=1000.0), now=1062.5)
    assert [r.sequence for r in expired] == [1, 2] and [r.sequence for r in fresh] == [3, 4]
    assert split_expired(MappingPolicy(), records(2), now=1e12) == ([], records(2))
    assert {lane_of("same-key", 4) for _ in range(10)} == {lane_of("same-key", 4)}
    assert lane_of("anything", 1) == 0
    assert len({lane_of(f"key-{n}", 4) for n in range(100)}) == 4
    pending = deque(records(12))
    assert [len(take_batch(pending, 5)) for _ in range(3)] == [5, 5, 2]


def test_progress_checkpoints_only_a_contiguous_prefix() -> None:
    progress = ShardProgress()
    progress.track([(n, str(n)) for n in (1, 2, 3, 4)])
    assert progress.finish([2, 3]) is None  # lane B finished before lane A
    assert progress.finish([1]) == "3"
    assert progress.outstanding == 1
    assert progress.finish([4]) == "4"
    assert progress.checkpoint == "4"
