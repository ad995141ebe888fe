"""`ddbbridge dlq list|redrive` with the local runner replicating: poison -> fixed -> redrive ->
converged, every queue empty.

Three dead letters, one of each kind:
- sender (cn): an unstamped item with ~400 KB of random text fits the table but not the stamps, so
  the re-stamp is refused (ValidationException): our dead letter, too large for one SQS message, so
  it arrives compressed and split into parts. Fixed by the application deleting the item.
- applier (sg): DynamoDB answers the write with ValidationException once (the emulator's fault
  injection): a dead letter carrying the Kinesis record. The cause is gone afterwards.
- on-failure (sg): the applier's writes are throttled until Lambda's retries are exhausted: the
  runner sends the metadata record (shard + sequence range) to the applier's on-failure queue.
Redrive re-applies the first two by the version order and re-reads the Kinesis range of the third.
"""

from __future__ import annotations

import random
import string
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.regions import Regions
from tests.fixtures.runner import RunnerProcess, endpoints_of
from tests.fixtures.waiting import wait_for
from tests.integration.day2_support import pair_environment, reconcile, stamp, verify_converged
from tests.integration.replication_support import Pair, create_pair, ddbbridge

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_regions")]

MOTO_ITEM_LIMIT = 405_000


@pytest.fixture
def pair(regions: Regions, tmp_path: Path) -> Iterator[Pair]:
    with pair_environment(regions):
        created = create_pair(regions, tmp_path, "dq", (("id", "S"),), {"maximumRetryAttempts": 1})
        reconcile(created)
        yield created


@pytest.fixture
def runner_process(regions: Regions, tmp_path: Path) -> Iterator[RunnerProcess]:
    runner = RunnerProcess(endpoints_of(regions), tmp_path / "runner-dev")
    runner.start()
    try:
        yield runner
    finally:
        runner.close()


def depth(pair: Pair, side: str, queue: str) -> int:
    return pair.queue_depth(side, queue)


def all_depths(pair: Pair) -> int:
    total = 0
    for side in ("cn", "sg"):
        names = pair.names(side)
        for queue in (names.dead_letter_queue, names.sender_failures_queue, names.applier_failures_queue):
            total += depth(pair, side, queue)
    return total


def test_poison_fixed_then_redrive_converges_and_empties_every_queue(
    regions: Regions, pair: Pair, runner_process: RunnerProcess
) -> None:
    cn, sg = pair.client("cn", "dynamodb"), pair.client("sg", "dynamodb")
    rng = random.Random(3)
    padding = MOTO_ITEM_LIMIT - 40
    big = {"id": {"S": "too-big"}, "payload": {"S": "".join(rng.choices(string.ascii_letters, k=padding))}}
    cn.put_item(TableName=pair.tables["cn"], Item=big)
    wait_for(lambda: depth(pair, "cn", pair.names("cn").dead_letter_queue) >= 2, 180, "split sender letter")

    regions.sg.inject_fault("dynamodb", "TransactWriteItems", "ValidationException", count=1)
    cn.put_item(TableName=pair.tables["cn"], Item={"id": {"S": "rejected-once"}, **stamp("cn")})
    wait_for(lambda: depth(pair, "sg", pair.names("sg").dead_letter_queue) == 1, 180, "applier letter")

    regions.sg.inject_fault(
        "dynamodb", "TransactWriteItems", "ProvisionedThroughputExceededException", count=10_000
    )
    cn.put_item(TableName=pair.tables["cn"], Item={"id": {"S": "throttled"}, **stamp("cn")})
    wait_for(
        lambda: depth(pair, "sg", pair.names("sg").applier_failures_queue) == 1, 240, "on-failure record"
    )
    regions.sg.clear_faults()
    assert sg.get_item(TableName=pair.tables["sg"], Key={"id": {"S": "throttled"}}).get("Item") is None

    listed = ddbbridge("dlq", "list", "-f", str(pair.path), "-o", "json")
    assert listed.code == 0, listed.err
    entries = listed.json()
    kinds = sorted((e["side"], e["kind"], e.get("handler")) for e in entries)
    assert kinds == [
        ("cn", "dead-letter", "sender"),
        ("sg", "dead-letter", "applier"),
        ("sg", "on-failure", "applier"),
    ]
    sender_letter = next(e for e in entries if e["handler"] == "sender")
    assert sender_letter["parts"] >= 2 and sender_letter["complete"]
    assert sender_letter["record"]["dynamodb"]["NewImage"]["payload"] == big["payload"]
    applier_letter = next(e for e in entries if e["kind"] == "dead-letter" and e["handler"] == "applier")
    assert applier_letter["record"]["wire"]["key"] == {"id": {"S": "rejected-once"}}
    failure = next(e for e in entries if e["kind"] == "on-failure")
    assert failure["batch"]["shardId"] and failure["batch"]["startSequenceNumber"]
    assert all_depths(pair) == 4, "list leaves every message in place (2 parts + 2)"

    # the fix of the sender's poison: the application removes the oversized item
    cn.delete_item(TableName=pair.tables["cn"], Key={"id": {"S": "too-big"}})
    wait_for(lambda: pair.get("sg", {"id": {"S": "too-big"}}) is None, 60, "the delete replicated")

    redriven = ddbbridge("dlq", "redrive", "-f", str(pair.path), "-o", "json")
    assert redriven.code == 0, redriven.out + redriven.err
    assert len(redriven.json()["results"]) == 3 and redriven.json()["ok"]
    assert all_depths(pair) == 0
    for key in ("rejected-once", "throttled"):
        assert pair.get("sg", {"id": {"S": key}}) is not None
    verify_converged(pair)
