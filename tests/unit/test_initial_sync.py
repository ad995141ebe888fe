"""spec.initialSync in the operator, through the kopf handlers with fakes (no Kubernetes, no AWS).

The health timer starts the copy on a thread it never waits for (the fake `spawn` keeps the thread's
body so each test decides when it "runs"), progress and the outcome reach status.initialSync and the
InitialSyncComplete condition, errors become Events and a resume after a backoff, and a finished run
is never started again by a resync or a restarted operator.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import kopf
import pytest

from ddbbridge.backfill import BackfillCancelledError, BackfillProgress, BackfillResult, DirectionResult
from ddbbridge.kopf_app import handlers, initial_sync, lifecycle
from ddbbridge.kopf_app.settings import OperatorOptions
from ddbbridge.observe import DirectionHealth, PairHealth
from ddbbridge.spec import PairManifest
from tests.unit.test_operator_handlers import NOW, FakeCore, FakeEvents, body


@dataclass
class FakeBackfill:
    """Stands in for `initial_sync.run_backfill`; the spawned thread body is kept, not started."""

    threads: list[Callable[[], None]] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    answer: Callable[[dict[str, Any]], BackfillResult] | None = None

    def spawn(self, target: Callable[[], None], name: str) -> None:
        assert name == "initial-sync-users"
        self.threads.append(target)

    def run_thread(self) -> None:
        self.threads.pop(0)()

    def backfill(self, manifest: PairManifest, clients: Any, **options: Any) -> BackfillResult:
        self.calls.append(options)
        assert self.answer is not None
        return self.answer(options)


def result(*, rejected: int = 0) -> BackfillResult:
    letters = [
        {"key": {"id": {"S": f"k{n}"}}, "reason": "ItemTooLarge", "error": "too big"} for n in range(rejected)
    ]
    return BackfillResult(
        "users",
        [
            DirectionResult(
                direction="cn->sg",
                segments_total=8,
                segments_skipped=[],
                pages_this_run={0: 1},
                scanned_this_run=300,
                scanned_total=300,
                outcomes={"applied": 290, "discarded_older": 10 - rejected, "rejected": rejected},
                rejected=letters,
                elapsed=1.0,
            )
        ],
    )


class Operator:
    """One operator process: a memo with the fakes, the object as the API server holds it."""

    def __init__(self, core: FakeCore, fake: FakeBackfill, document: dict[str, Any]) -> None:
        self.core, self.fake, self.events = core, fake, FakeEvents()
        deps = lifecycle.Deps(
            read_secret=core.read_secret,
            events=self.events,
            reconcile=core.reconcile,
            observe=core.observe,
            destroy=core.destroy,
            make_clients=core.make_clients,
            clock=lambda: NOW,
            monotonic=core.monotonic,
            backfill=fake.backfill,
            spawn=fake.spawn,
        )
        self.memo = kopf.Memo(deps=deps, options=OperatorOptions(metrics_port=None, liveness_port=None))
        self.document = document

    def _apply(self, patch: kopf.Patch) -> dict[str, Any]:
        written = dict(patch.get("status") or {})
        self.document["status"] = {**(self.document.get("status") or {}), **written}
        return written

    def reconcile(self) -> dict[str, Any]:
        patch = kopf.Patch()
        handlers.reconcile(body=self.document, patch=patch, memo=self.memo, retry=0)
        return self._apply(patch)

    def tick(self) -> dict[str, Any]:
        patch = kopf.Patch()
        handlers.health(body=self.document, patch=patch, memo=self.memo)
        return self._apply(patch)

    def sync(self) -> dict[str, Any]:
        return dict(self.document["status"].get("initialSync") or {})

    def condition(self) -> dict[str, Any]:
        found = [c for c in self.document["status"]["conditions"] if c["type"] == "InitialSyncComplete"]
        assert len(found) == 1
        return dict(found[0])


def pair_with(mode: str, **spec: Any) -> dict[str, Any]:
    return body(spec={"initialSync": mode, **spec})


def progress_then(answer: BackfillResult) -> Callable[[dict[str, Any]], BackfillResult]:
    def run(options: dict[str, Any]) -> BackfillResult:
        options["progress"](
            BackfillProgress("cn->sg", 120, 300, 3, 8, {"applied": 100, "discarded_older": 20})
        )
        return answer

    return run


def test_none_copies_nothing_and_reports_the_condition_true() -> None:
    fake = FakeBackfill()
    op = Operator(FakeCore(), fake, pair_with("none"))
    op.reconcile()
    assert op.tick() == {}
    assert not fake.threads and "initialSync" not in op.document["status"]
    assert op.condition()["status"] == "True" and op.condition()["reason"] == "NotRequested"


def test_from_a_waits_for_replication_then_copies_once_on_its_own_thread() -> None:
    core, fake = FakeCore(), FakeBackfill(answer=progress_then(result()))
    op = Operator(core, fake, pair_with("fromA"))

    # Before this process reconciled the pair: nothing starts, the status says why.
    written = op.tick()
    assert written["initialSync"]["phase"] == "Waiting" and not fake.threads
    assert op.condition()["status"] == "False" and op.condition()["reason"] == "WaitingForReplication"

    op.reconcile()
    assert op.condition()["reason"] == "WaitingForReplication"
    written = op.tick()
    assert op.sync()["phase"] == "Running" and op.sync()["run"] == "g1" and op.sync()["attempts"] == 1
    assert len(fake.threads) == 1 and fake.calls == [], "the tick spawned the copy and did not wait"
    assert op.condition()["reason"] == "Copying"
    assert op.events.reasons()[-1] == "InitialSyncStarted"

    assert op.tick() == {}, "no progress to report"
    fake.run_thread()
    assert fake.calls[0]["run"] == "g1" and fake.calls[0]["mode"].value == "fromA"
    assert isinstance(fake.calls[0]["stop"], threading.Event)

    written = op.tick()
    sync = op.sync()
    assert sync["phase"] == "Completed" and sync["finishedTime"] and sync["startedTime"]
    (direction,) = sync["directions"]
    assert direction == {
        "direction": "cn->sg",
        "segmentsTotal": 8,
        "segmentsDone": 8,
        "scanned": 300,
        "estimatedTotal": 300,
        "written": 290,
        "skippedAsOlder": 10,
        "restamped": 0,
        "skippedChanged": 0,
        "rejected": 0,
    }
    assert op.condition()["status"] == "True" and op.condition()["reason"] == "Copied"
    assert op.events.reasons()[-1] == "InitialSyncCompleted"
    ready = [c for c in op.document["status"]["conditions"] if c["type"] == "Ready"]
    assert ready and ready[0]["status"] == "True", "Ready is about replication, true while copying"

    # A resync (health check), a spec change and a restarted operator never copy again.
    core.clock_offset = 31
    op.tick()
    op.document["metadata"]["generation"] = 2
    op.reconcile()
    restarted = Operator(core, fake, op.document)
    restarted.reconcile()
    restarted.tick()
    assert len(fake.calls) == 1 and not fake.threads
    assert restarted.condition()["status"] == "True"


def test_progress_is_written_at_most_every_few_seconds() -> None:
    core, fake = FakeCore(), FakeBackfill()
    release = threading.Event()

    def slow(options: dict[str, Any]) -> BackfillResult:
        options["progress"](BackfillProgress("cn->sg", 40, 300, 1, 8, {"applied": 40}))
        release.wait(5)
        return result()

    fake.answer = slow
    op = Operator(core, fake, pair_with("fromA"))
    op.reconcile()
    op.tick()
    worker = threading.Thread(target=fake.run_thread)
    worker.start()
    try:
        assert op.tick() == {}, "progress within PROGRESS_WRITE_SECONDS is held back"
        core.clock_offset = initial_sync.PROGRESS_WRITE_SECONDS
        written = op.tick()
        assert written["initialSync"]["directions"][0]["scanned"] == 40
        assert written["initialSync"]["phase"] == "Running"
        assert op.condition()["message"].startswith("cn->sg 40 of ~300 scanned")
    finally:
        release.set()
        worker.join()


def test_a_failed_attempt_is_an_event_and_resumes_the_same_run_after_a_backoff() -> None:
    core, fake = FakeCore(), FakeBackfill()
    answers: list[BackfillResult | Exception] = [RuntimeError("cn-north-1 unreachable"), result()]

    def flaky(options: dict[str, Any]) -> BackfillResult:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    fake.answer = flaky
    op = Operator(core, fake, pair_with("fromA"))
    op.reconcile()
    op.tick()
    fake.run_thread()
    op.tick()
    assert op.sync()["phase"] == "Retrying" and "unreachable" in op.sync()["message"]
    assert op.condition()["reason"] == "InitialSyncRetrying"
    kind, reason, message = op.events.posted[-1]
    assert (kind, reason) == (
        "Warning",
        "InitialSyncFailed",
    ) and "resuming from the checkpoints in 5s" in message

    core.clock_offset = 4
    op.tick()
    assert not fake.threads, "not before the backoff"
    core.clock_offset = 5
    op.tick()
    assert op.sync()["phase"] == "Running" and op.sync()["attempts"] == 2 and op.sync()["run"] == "g1"
    assert "resumed" in op.events.posted[-1][2]
    fake.run_thread()
    op.tick()
    assert op.sync()["phase"] == "Completed" and [c["run"] for c in fake.calls] == ["g1", "g1"]


def test_a_restarted_operator_resumes_a_running_copy_with_its_run_id() -> None:
    core, fake = FakeCore(), FakeBackfill(answer=progress_then(result()))
    document = pair_with("fromA")
    document["metadata"]["generation"] = 5
    document["status"] = {
        "initialSync": {"mode": "fromA", "run": "g3", "phase": "Running", "attempts": 1, "message": ""}
    }
    op = Operator(core, fake, document)
    op.reconcile()
    op.tick()
    assert op.sync()["run"] == "g3" and op.sync()["attempts"] == 2
    fake.run_thread()
    assert fake.calls[0]["run"] == "g3", "the checkpoints of the interrupted run are found again"


def test_rejected_items_fail_the_run_without_retrying() -> None:
    core, fake = FakeCore(), FakeBackfill(answer=progress_then(result(rejected=2)))
    op = Operator(core, fake, pair_with("fromA"))
    op.reconcile()
    op.tick()
    fake.run_thread()
    op.tick()
    assert op.sync()["phase"] == "Failed" and op.sync()["directions"][0]["rejected"] == 2
    assert op.condition()["status"] == "False" and op.condition()["reason"] == "ItemsRejected"
    assert op.events.posted[-1][:2] == ("Warning", "InitialSyncItemsRejected")
    core.clock_offset = 500
    op.tick()
    assert not fake.threads and len(fake.calls) == 1


def test_setting_none_stops_a_running_copy_and_a_new_request_starts_fresh() -> None:
    core, fake = FakeCore(), FakeBackfill()

    def until_stopped(options: dict[str, Any]) -> BackfillResult:
        assert options["stop"].wait(5)
        raise BackfillCancelledError("stopped")

    fake.answer = until_stopped
    op = Operator(core, fake, pair_with("fromA"))
    op.reconcile()
    op.tick()
    worker = threading.Thread(target=fake.run_thread)
    worker.start()
    op.document["spec"]["initialSync"] = "none"
    op.document["metadata"]["generation"] = 2
    op.tick()  # asks the run to stop
    worker.join(5)
    op.tick()
    assert op.sync()["phase"] == "Cancelled"
    assert op.condition()["reason"] == "NotRequested"

    fake.answer = progress_then(result())
    op.document["spec"]["initialSync"] = "fromA"
    op.document["metadata"]["generation"] = 3
    op.reconcile()
    op.tick()
    assert op.sync()["run"] == "g3" and op.sync()["attempts"] == 1, "a new run, fresh checkpoints"


@pytest.mark.parametrize("state", ["Creating", "Disabled"])
def test_no_copy_while_the_source_mappings_are_not_enabled(state: str) -> None:
    core, fake = FakeCore(), FakeBackfill(answer=progress_then(result()))

    def observe(manifest: PairManifest, clients: Any) -> PairHealth:
        a, b = manifest.spec.regions
        return PairHealth(
            manifest.metadata.name,
            [
                DirectionHealth(a.name, b.name, 0, 0.0, 0, 0, 0, state, "Enabled", "OK"),
                DirectionHealth(b.name, a.name, 0, 0.0, 0, 0, 0, "Enabled", "Enabled", "OK"),
            ],
        )

    core.observe = observe  # type: ignore[method-assign]
    op = Operator(core, fake, pair_with("fromA"))
    op.reconcile()
    op.tick()
    assert not fake.threads and op.sync()["phase"] == "Waiting"
    # fromB copies the other direction, whose mappings are enabled
    other = Operator(core, fake, pair_with("fromB"))
    other.reconcile()
    other.tick()
    assert len(fake.threads) == 1


def test_deletion_stops_a_running_copy_before_destroying() -> None:
    core, fake = FakeCore(), FakeBackfill()
    order: list[str] = []

    def until_stopped(options: dict[str, Any]) -> BackfillResult:
        assert options["stop"].wait(5)
        order.append("stopped")
        raise BackfillCancelledError("stopped")

    fake.answer = until_stopped
    original_destroy = core.destroy

    def destroy(manifest: PairManifest, clients: Any) -> Any:
        order.append("destroy")
        return original_destroy(manifest, clients)

    core.destroy = destroy  # type: ignore[method-assign]
    op = Operator(core, fake, pair_with("fromA"))
    op.reconcile()
    op.tick()
    worker = threading.Thread(target=fake.run_thread)
    worker.start()
    handlers.delete(body=op.document, memo=op.memo, retry=0, runtime=_Elapsed(), logger=_Logger())
    worker.join(5)
    assert order == ["stopped", "destroy"]


class _Elapsed:
    def total_seconds(self) -> float:
        return 0.0


class _Logger:
    def info(self, message: str) -> None:
        pass
