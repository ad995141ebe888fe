"""Fault injection on a live pair: emulated regions, the local Lambda runner executing the deployed
zips, and senders that reach the peer through the WAN delay proxy.

One pair (`reconcile`d by the CLI, hash key `pk`) serves the module; each test writes its own keys
and ends with `verify` equal plus the checks of `assert_nothing_lost` (every known key holds its last
write in both regions, stats equations, no dead letter, no batch given up to an on-failure queue).
Faults come from the dev infrastructure only: the launcher's fault book (errors, held requests), the
proxy's cut, the runner's clock skew and a SIGKILL to a worker process.

- applier worker SIGKILLed while its batch is half written -> the runner re-runs the batch in a new
  worker -> nothing lost;
- peer unreachable for 30 s while both regions keep writing -> nothing crosses during the cut ->
  backlog drains after the restore;
- throttling of the applier's transactions and of the sender's PutRecords, beyond what botocore's
  own retries absorb -> the batch is retried, nothing dead-lettered;
- clocks +5 s / -5 s -> the region whose clock runs ahead wins concurrent writes within the skew;
- duplicated and reordered delivery of already-applied records -> nothing changes, no delete undone.
"""

from __future__ import annotations

import itertools
import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ddbbridge_dev.runner.options import set_clock_skew
from ddbbridge_lambdas.applier import MAX_KEYS_PER_TRANSACTION
from tests.fixtures.regions import Regions, WanLink
from tests.fixtures.runner import RunnerProcess, endpoints_of
from tests.fixtures.waiting import wait_for
from tests.integration.fault_support import (
    Expected,
    Writers,
    applier_received,
    assert_nothing_lost,
    inbound_records,
    kill,
    live_workers,
    put_inbound,
    verify_equal,
    wait_applier_received,
    without_stamp,
)
from tests.integration.replication_support import SIDES, Pair, create_pair, ddbbridge

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_regions")]

APPLIER_BATCH = 100  # applierBatchSize of the pair (manifest_text's default)
CUT_SECONDS = 30.0
SKEW_SECONDS = 5.0


@dataclass
class Deployment:
    regions: Regions
    pair: Pair
    runner: RunnerProcess
    wan: WanLink


@pytest.fixture(scope="module")
def deployment(
    fresh_regions: Regions, wan: WanLink, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    folder: Path = tmp_path_factory.mktemp("faults")
    runner = RunnerProcess(endpoints_of(fresh_regions), folder / "runner-dev")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in fresh_regions.env().items():
            patch.setenv(name, value)
        # The senders reach the peer through the proxy, so the WAN can be cut under them.
        patch.setenv("DDBBRIDGE_PEER_ENDPOINTS", ",".join(f"{n}={u}" for n, u in wan.endpoints.items()))
        patch.delenv("AWS_PROFILE", raising=False)
        # The default maximumRetryAttempts (-1: until the records expire) is what is tested: a
        # finite limit (it was 10) let a sender batch failing fast during a ~40 s WAN cut exhaust
        # its retries and go to the on-failure queue (metadata only), losing the change.
        pair = create_pair(fresh_regions, folder, "fa", (("pk", "S"),), {})
        run = ddbbridge("reconcile", "-f", str(pair.path))
        assert run.code == 0, run.out + run.err
        runner.start()
        try:
            yield Deployment(fresh_regions, pair, runner, wan)
        finally:
            runner.close()
            for region in fresh_regions:
                region.clear_faults()


def request_mark(deployment: Deployment) -> dict[str, int]:
    return {r.name: max((int(e["seq"]) for e in r.requests()), default=0) for r in deployment.regions}


# --- 1. applier worker killed mid-batch -------------------------------------------------------------


def test_applier_worker_killed_mid_batch_loses_nothing(deployment: Deployment) -> None:
    """What guarantees "mid-batch": sg's applier is kept off its stream until one full batch of
    distinct keys is there, then the SECOND TransactWriteItems on sg's user table is held by the
    launcher (answered with an error much later, so the emulator never applies it). While it is held
    the first transaction's keys are in sg and the others are not; only then is the worker killed,
    and the runner's log must show that invocation ending in Runtime.ExitError."""
    pair, runner, regions = deployment.pair, deployment.runner, deployment.regions
    sg = pair.region("sg")
    applier = pair.names("sg").applier_function
    expected = Expected(pair)
    count = APPLIER_BATCH + 20

    sg.inject_fault("kinesis", "GetRecords", "ProvisionedThroughputExceededException", count=1_000_000)
    sent_before = pair.stats("cn", "sent_count").get("sent", 0)
    now = time.time()
    for n in range(count):
        expected.put("cn", f"kill-{n:03d}", {"n": {"N": str(n)}}, stamped_at=now + n / 1000)
    wait_for(
        lambda: pair.stats("cn", "sent_count").get("sent", 0) >= sent_before + count,
        120,
        "cn's sender to deliver every write to sg's stream",
    )

    mark = request_mark(deployment)
    sg.inject_fault(
        "dynamodb",
        "TransactWriteItems",
        "InternalServerError",
        status=500,
        delay_ms=120_000,
        after=1,
        contains=pair.tables["sg"],
    )
    sg.clear_faults("kinesis", "GetRecords")
    wait_for(
        lambda: [e for e in sg.requests(mark[sg.name]) if e["fault"] == "InternalServerError"],
        120,
        "the applier's second transaction to be held",
    )
    landed = [key for (key,) in pair.scan("sg") if str(key).startswith("kill-")]
    assert len(landed) == MAX_KEYS_PER_TRANSACTION, "first transaction durable, second in flight"
    (pid,) = live_workers(runner, applier)
    kill(pid)

    assert_nothing_lost(pair, expected)
    invocations = runner.invocations(applier)
    killed = [line for line in invocations if line.get("error_type") == "Runtime.ExitError"]
    assert len(killed) == 1 and killed[0]["records"] == APPLIER_BATCH, killed
    position = invocations.index(killed[0])
    rerun = [
        line
        for line in invocations[position + 1 :]
        if line["first_sequence"] == killed[0]["first_sequence"] and line["outcome"] == "ok"
    ]
    assert rerun, f"the same batch ran again to success: {invocations[position:]}"
    assert pid not in live_workers(runner, applier)
    held = [e for e in regions.sg.requests(mark[sg.name]) if e["fault"] == "InternalServerError"]
    assert len(held) == 1, "the re-run batch was not held: the fault applied once"


# --- 2. peer unreachable for 30 s -------------------------------------------------------------------


def test_peer_unreachable_for_30s_holds_records_back_then_drains(deployment: Deployment) -> None:
    pair, wan, regions = deployment.pair, deployment.wan, deployment.regions
    expected = Expected(pair)

    def delivered(region_name: str, since: int) -> int:
        """PutRecords the region's Kinesis served (the peer's sender reaching it)."""
        return sum(
            1
            for e in regions[region_name].requests(since)
            if e["service"] == "kinesis" and e["operation"] == "PutRecords" and not e["fault"]
        )

    with Writers(expected, "wan") as writers:
        wait_for(lambda: all(len(w) >= 10 for w in writers.writes.values()), 60, "traffic in both regions")
        wait_for(lambda: all(delivered(r.name, 0) for r in regions), 60, "records crossing before the cut")
        cut_started = time.monotonic()
        wan.cut()
        cut_wall = time.time()
        # Anything already past the proxy when it cut may still land: count from 2 s later on.
        wait_for(lambda: time.monotonic() - cut_started >= 2, 10, "in-flight calls to settle")
        mark = request_mark(deployment)
        wait_for(lambda: time.monotonic() - cut_started >= CUT_SECONDS, CUT_SECONDS + 10, "the cut")
        held = {r.name: delivered(r.name, mark[r.name]) for r in regions}
        during = {side: writers.written_between(side, cut_wall + 2, time.time()) for side in SIDES}
        wan.restore()
        cut_lasted = time.monotonic() - cut_started
        restored_at = time.time()
        wait_for(
            lambda: all(writers.written_between(s, restored_at, time.time()) >= 10 for s in SIDES),
            60,
            "traffic after the restore",
        )
    assert not writers.errors, writers.errors

    assert cut_lasted >= CUT_SECONDS
    assert held == {r.name: 0 for r in regions}, "nothing reached the peer while the WAN was cut"
    assert all(n >= 50 for n in during.values()), f"both regions kept writing during the cut: {during}"
    assert_nothing_lost(pair, expected)


# --- 3. throttling ----------------------------------------------------------------------------------


def test_throttled_applier_writes_and_sender_puts_are_retried_not_dead_lettered(
    deployment: Deployment,
) -> None:
    """Counts are above botocore's own attempts (4 per DynamoDB call, 3 per PutRecords call, which
    the sender repeats 5 times), so the handlers' batch-level retry is exercised too."""
    pair, runner, regions = deployment.pair, deployment.runner, deployment.regions
    expected = Expected(pair)
    faults = {"TransactWriteItems": 10, "PutRecords": 20}
    mark = request_mark(deployment)
    outcomes_before = {
        name: len(runner.invocations(name))
        for side in SIDES
        for name in (pair.names(side).applier_function, pair.names(side).sender_function)
    }
    for side in SIDES:
        region = pair.region(side)
        region.inject_fault(
            "dynamodb",
            "TransactWriteItems",
            "ProvisionedThroughputExceededException",
            count=faults["TransactWriteItems"],
            contains=pair.tables[side],  # the applier's writes: the user table is in them
        )
        region.inject_fault(
            "kinesis", "PutRecords", "ProvisionedThroughputExceededException", count=faults["PutRecords"]
        )
    now = time.time()
    for n in range(40):
        for side in SIDES:
            stamped_at = now + n / 1000 if n % 2 else None  # stamped and unstamped
            expected.put(side, f"throttle-{side}-{n:02d}", {"n": {"N": str(n)}}, stamped_at=stamped_at)

    assert_nothing_lost(pair, expected)
    for region in regions:
        assert region.pending_faults() == [], f"{region.name}: every injected fault was served"
        served: dict[str, int] = {}
        for entry in region.requests(mark[region.name]):
            if entry["fault"] == "ProvisionedThroughputExceededException":
                served[entry["operation"]] = served.get(entry["operation"], 0) + 1
        assert served == faults, region.name
    for side in SIDES:
        for name in (pair.names(side).applier_function, pair.names(side).sender_function):
            retried = [i for i in runner.invocations(name)[outcomes_before[name] :] if i["outcome"] != "ok"]
            assert retried, f"{name}: a throttled batch was handed back and run again"


# --- 4. clocks skewed +5 s / -5 s -------------------------------------------------------------------


def stamp_of(pair: Pair, item: dict[str, Any] | None) -> tuple[Decimal, str] | None:
    if item is None or pair.timestamp_attribute not in item:
        return None
    return Decimal(item[pair.timestamp_attribute]["N"]), item[pair.origin_attribute]["S"]


def unstamped_put(pair: Pair, side: str, key: str, content: str) -> float:
    """Write without a stamp (the sender stamps it with its own clock); returns the real time."""
    written = time.time()
    pair.client(side, "dynamodb").put_item(
        TableName=pair.tables[side], Item={"pk": {"S": key}, "content": {"S": content}}
    )
    return written


def stamp_written(pair: Pair, side: str, key: str) -> Decimal:
    """Wait for the side's sender to stamp `key` there; the stamp's timestamp."""

    def stamped() -> Decimal | None:
        found = stamp_of(pair, pair.get(side, {"pk": {"S": key}}))
        return found[0] if found else None

    return wait_for(stamped, 60, f"{side}'s sender to stamp {key}")


def unstamped_write(pair: Pair, side: str, key: str, content: str) -> tuple[float, Decimal]:
    written = unstamped_put(pair, side, key, content)
    return written, stamp_written(pair, side, key)


def test_clock_skew_the_region_whose_clock_runs_ahead_wins_within_the_skew(
    deployment: Deployment,
) -> None:
    """cn's handlers run 5 s ahead, sg's 5 s behind (the runner's clock skew). With the WAN cut, both
    regions write the same keys without stamps, so the senders stamp them with their own clocks and
    neither region sees the other's write first (concurrent). sg writes `window` LATER in real time
    but its stamp is lower: cn's write wins in both regions. sg writes `beyond` once its clock has
    passed cn's stamp (in a second cut): then sg wins. Documented in docs/operations.md ("Clock
    skew: who wins")."""
    pair, runner, wan = deployment.pair, deployment.runner, deployment.wan
    probes = itertools.count()
    try:
        set_clock_skew("cn-north-1", SKEW_SECONDS, home=runner.home)
        set_clock_skew("ap-southeast-1", -SKEW_SECONDS, home=runner.home)

        def offset(side: str) -> float:
            written, stamp = unstamped_write(pair, side, f"skew-probe-{side}-{next(probes)}", "probe")
            return float(stamp) - written

        # The handlers' stamps move with the skew (the runner applies it at its next relist).
        wait_for(lambda: offset("cn") >= SKEW_SECONDS - 0.5, 60, "cn's stamps to run 5 s ahead")
        wait_for(lambda: offset("sg") < 0, 60, "sg's stamps to run behind real time")

        # Two cuts, each starting from a drained pipeline: a sender stamps only the first write
        # it sees during a cut (later ones queue behind the batch it cannot deliver, in stream order).
        verify_equal(pair)
        wan.cut()
        try:
            cn_written, cn_window = unstamped_write(pair, "cn", "skew-window", "cn")
            sg_written, sg_window = unstamped_write(pair, "sg", "skew-window", "sg")
            assert sg_written > cn_written and sg_window < cn_window, "later in real time, lower stamp"
        finally:
            wan.restore()
        verify_equal(pair)
        wan.cut()
        try:
            _, cn_beyond = unstamped_write(pair, "cn", "skew-beyond", "cn")
            wait_for(
                lambda: Decimal(repr(time.time() - SKEW_SECONDS)) > cn_beyond + 1, 60, "sg's clock to pass"
            )
            _, sg_beyond = unstamped_write(pair, "sg", "skew-beyond", "sg")
            assert sg_beyond > cn_beyond
        finally:
            wan.restore()
        verify_equal(pair)
        for side in SIDES:
            window = pair.get(side, {"pk": {"S": "skew-window"}})
            beyond = pair.get(side, {"pk": {"S": "skew-beyond"}})
            assert window is not None and window["content"] == {"S": "cn"}, (side, window)
            assert stamp_of(pair, window) == (cn_window, "cn"), (side, window)
            assert beyond is not None and beyond["content"] == {"S": "sg"}, (side, beyond)
            assert stamp_of(pair, beyond) == (sg_beyond, "sg"), (side, beyond)
    finally:
        set_clock_skew("cn-north-1", 0, home=runner.home)
        set_clock_skew("ap-southeast-1", 0, home=runner.home)
    assert_nothing_lost(pair)


# --- 5. duplicated and reordered delivery -----------------------------------------------------------


def write_histories(expected: Expected, side: str) -> None:
    """Stamped versions in order: updated (3 puts), deleted (2 puts, delete), reinserted (put,
    delete, put). Every version reaches the peer as its own record."""
    now = time.time()
    tick = itertools.count()
    for n in range(8):
        for kind, steps in (
            ("updated", ("put", "put", "put")),
            ("deleted", ("put", "put", "delete")),
            ("reinserted", ("put", "delete", "put")),
        ):
            key = f"order-{side}-{kind}-{n}"
            for version, step in enumerate(steps, start=1):
                if step == "delete":
                    expected.delete(side, key)
                else:
                    content = {"version": {"N": str(version)}}
                    expected.put(side, key, content, stamped_at=now + next(tick) / 1000)


def record_version(data: bytes) -> tuple[str, Decimal, str]:
    document = json.loads(data)
    return json.dumps(document["key"], sort_keys=True), Decimal(document["ts"]), document["o"]


def test_duplicated_and_reordered_delivery_changes_nothing(deployment: Deployment) -> None:
    """Every record the peer delivered is delivered again: twice in a row, then the newest version of
    each key alone, then all older versions after it (older after newer, per key and across keys),
    then everything shuffled. Nothing may be applied again and no delete undone."""
    pair = deployment.pair
    expected = Expected(pair)
    for side in SIDES:
        write_histories(expected, side)
    verify_equal(pair)
    assert expected.mismatches() == []

    rng = random.Random(5)
    for side in SIDES:
        peer = "sg" if side == "cn" else "cn"
        ours = [r for r in inbound_records(pair, peer) if f'"order-{side}-' in r[0].decode()]
        assert len(ours) == 8 * 3 * 3, "every version crossed as its own record"
        before = pair.stats(peer, "replicated_count")
        received = applier_received(pair, peer)

        newest: dict[str, tuple[bytes, str]] = {}
        for record in sorted(ours, key=lambda r: record_version(r[0])[1:]):
            newest[record_version(record[0])[0]] = record
        older = [r for r in ours if r not in newest.values()]
        rounds = [
            [r for record in ours for r in (record, record)],  # each one twice in a row
            list(newest.values()),
            sorted(older, key=lambda r: record_version(r[0])[1:], reverse=True),  # newest first
            rng.sample(ours, len(ours)),
        ]
        for records in rounds:
            put_inbound(pair, peer, records)
            received += len(records)
            wait_applier_received(pair, peer, received)
            assert expected.mismatches() == []
        after = pair.stats(peer, "replicated_count")
        assert after.get("applied", 0) == before.get("applied", 0), (before, after)
        assert after.get("dead_lettered", 0) == 0
    for key, item in expected.items.items():
        if "-deleted-" in key:
            assert item is None and all(pair.get(s, {"pk": {"S": key}}) is None for s in SIDES), key
        else:
            assert without_stamp(pair, pair.get("sg", {"pk": {"S": key}})) == item, key
    assert_nothing_lost(pair, expected)
