"""Replication end to end on the emulated regions: `reconcile`, the local Lambda runner executing the
deployed zips, concurrent load in both regions, `verify`.

Pairs (all reconciled by the CLI, all served by ONE runner process for the module):
- users: hash-only key `user_id` (S), the default stamp attributes and unit;
- events: hash `tenant` (S) + range `seq` (N), custom stamp attributes, milliseconds;
- poison: hash-only, for records that can never be applied;
- wan: like users, its senders reach the peer through a 150 ms RTT delay proxy.

What the reconcile integration tests already prove on idle pairs (0 mutating calls on a second run,
--dry-run, destroy) is not repeated; here the same promises are checked AFTER real traffic.
"""

from __future__ import annotations

import base64
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ddbbridge.aws import is_mutating
from ddbbridge.names import SideNames
from ddbbridge_dev import environment, processes
from ddbbridge_lambdas.codec import WireRecord, encode_record, item_to_boto3, partition_key
from ddbbridge_lambdas.versions import Version
from tests.fixtures.regions import CN, SG, Regions, WanLink, processes_gone
from tests.fixtures.runner import RunnerProcess, endpoints_of
from tests.fixtures.waiting import scaled, wait_for
from tests.integration.replication_support import (
    SIDES,
    CliRun,
    Pair,
    applier_equation,
    create_pair,
    ddbbridge,
    sender_equation,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_regions")]

LOAD_COUNT = 80  # writes per region per pair
WAN_RTT_MS = 150.0
DRAIN_SECONDS = 300  # deadline for `verify --wait` (scaled)
REPLICATION_SECONDS = 300  # one change reaching the peer behind the concurrent load (scaled)
MOTO_ITEM_LIMIT = 405_000  # bytes moto allows per item (names + values), like DynamoDB's 400 KB
EVENTS_REPLICATION = {
    "originAttribute": "written_in",
    "timestampAttribute": "written_at",
    "timestampUnit": "milliseconds",
}


def served_mutating(operation: str) -> bool:
    """An operation from the launcher's request log: an API name, or `METHOD /path` (REST: Lambda)."""
    method, _, path = operation.partition(" ")
    if path.startswith("/"):
        return method != "GET"
    return is_mutating(operation)


def marks(regions: Regions) -> dict[str, int]:
    return {r.name: max((int(e["seq"]) for e in r.requests()), default=0) for r in regions}


def mutating_since(regions: Regions, since: dict[str, int]) -> dict[str, list[str]]:
    return {
        r.name: [
            f"{e['service']}:{e['operation']}"
            for e in r.requests(since[r.name])
            if int(e["seq"]) > since[r.name] and served_mutating(e["operation"])
        ]
        for r in regions
    }


def cli_subprocess(environment_variables: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """The product CLI in a child process (loads run concurrently, each with its own stdout)."""
    return subprocess.Popen(
        [sys.executable, "-c", "import sys; from ddbbridge.cli import main; sys.exit(main())", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **environment_variables},
    )


def finish(process: subprocess.Popen[str], timeout: float) -> CliRun:
    try:
        out, err = process.communicate(timeout=scaled(timeout))
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        raise AssertionError(f"CLI did not finish in time: {err[-2000:]}") from None
    return CliRun(process.returncode, out, err)


def kinesis_record_count(pair: Pair, side: str) -> int:
    """Records stored in the side's inbound stream (everything the peer's sender delivered)."""
    kinesis = pair.client(side, "kinesis")
    stream = pair.names(side).inbound_stream
    total = 0
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10000)
            total += len(page["Records"])
            if not page["Records"]:
                break
            iterator = page["NextShardIterator"]
    return total


def reconcile(pair: Pair) -> CliRun:
    run = ddbbridge("reconcile", "-f", str(pair.path))
    assert run.code == 0, run.out + run.err
    return run


def verify_converged(pair: Pair, wait: float = DRAIN_SECONDS) -> CliRun:
    run = ddbbridge(
        "verify", "-f", str(pair.path), "--wait", f"{scaled(wait):g}", "--interval", "1", "--no-progress"
    )
    assert run.code == 0, run.out + run.err
    assert "EQUAL" in run.out
    return run


@dataclass
class Deployment:
    regions: Regions
    folder: Path
    runner: RunnerProcess
    pairs: dict[str, Pair]


@pytest.fixture(scope="module")
def deployment(regions: Regions, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    folder = tmp_path_factory.mktemp("replication-e2e")
    runner = RunnerProcess(endpoints_of(regions), folder / "runner-dev")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in regions.env().items():
            patch.setenv(name, value)
        patch.delenv("AWS_PROFILE", raising=False)
        pairs = {
            "users": create_pair(regions, folder, "us", (("user_id", "S"),)),
            "events": create_pair(regions, folder, "ev", (("tenant", "S"), ("seq", "N")), EVENTS_REPLICATION),
            "poison": create_pair(regions, folder, "po", (("user_id", "S"),)),
        }
        for pair in pairs.values():
            reconcile(pair)
        runner.start()
        try:
            yield Deployment(regions, folder, runner, pairs)
        finally:
            runner.close()
    assert runner.process is not None and runner.process.poll() is not None, "the runner is gone"


# --- explicit writes: equal timestamps, delete + re-insert, every attribute type ----------------


def every_type_item(rng: random.Random) -> dict[str, Any]:
    """Every attribute type, nested; binary values include zero bytes and invalid UTF-8."""

    def blob() -> bytes:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))) + b"\x00\xff\xfe"

    return {
        "s": {"S": "zhōngwén 中文 ✓"},
        "n": {"N": "-12.5"},
        "b": {"B": blob()},
        "ss": {"SS": ["a", "b", "c"]},
        "ns": {"NS": ["1", "2.5", "-3"]},
        "bs": {"BS": [blob(), blob()]},
        "nul": {"NULL": True},
        "flag": {"BOOL": False},
        "m": {
            "M": {
                "deep": {
                    "M": {"b": {"B": blob()}, "l": {"L": [{"B": blob()}, {"BS": [blob()]}, {"N": "7"}]}}
                },
                "empty": {"M": {}},
            }
        },
        "l": {
            "L": [
                {"S": "x"},
                {"NULL": True},
                {"BOOL": True},
                {"L": [{"B": blob()}]},
                {"M": {"b": {"B": blob()}}},
            ]
        },
    }


@dataclass
class ExplicitWrites:
    """Writes the test makes itself, with exactly the expected final state per key."""

    pair: Pair
    key_name: str
    range_key: dict[str, Any]
    expected: dict[str, dict[str, Any] | None]  # key value -> item (without stamps), None = deleted

    def key(self, value: str) -> dict[str, Any]:
        return {self.key_name: {"S": value}, **self.range_key}

    def stamp(self, side: str, millis: int) -> dict[str, Any]:
        pair = self.pair
        unit_ms = pair.timestamp_attribute == "written_at"
        value = str(millis) if unit_ms else f"{millis / 1000:.3f}"
        return {pair.timestamp_attribute: {"N": value}, pair.origin_attribute: {"S": side}}

    def run(self, seed: int) -> None:
        pair, rng = self.pair, random.Random(seed)
        tables = pair.tables
        dynamodb = {side: pair.client(side, "dynamodb") for side in SIDES}
        now_ms = int(time.time() * 1000)

        # Equal timestamps, different content: (T, "sg") orders after (T, "cn") everywhere.
        tie = self.key("equal-timestamps")
        for side in SIDES:
            dynamodb[side].put_item(
                TableName=tables[side],
                Item={**tie, "content": {"S": f"from {side}"}, **self.stamp(side, now_ms)},
            )
        self.expected["equal-timestamps"] = {**tie, "content": {"S": "from sg"}}

        # Every type, stamped (replicated as written) and unstamped (the sender stamps it).
        for side in SIDES:
            for stamped in (True, False):
                name = f"types-{side}-{'stamped' if stamped else 'unstamped'}"
                item = {**self.key(name), **every_type_item(rng)}
                stamp = self.stamp(side, now_ms + 1) if stamped else {}
                dynamodb[side].put_item(TableName=tables[side], Item={**item, **stamp})
                self.expected[name] = item

        # Insert in cn, delete in sg once replicated, re-insert in cn once the delete came back.
        cycle = self.key("delete-reinsert")
        first = {**cycle, "round": {"N": "1"}, "b": {"B": b"\x01first"}}
        dynamodb["cn"].put_item(TableName=tables["cn"], Item={**first, **self.stamp("cn", now_ms + 2)})
        wait_for(lambda: pair.get("sg", cycle), REPLICATION_SECONDS, "the first insert to reach sg")
        dynamodb["sg"].delete_item(TableName=tables["sg"], Key=cycle)
        wait_for(lambda: pair.get("cn", cycle) is None, REPLICATION_SECONDS, "the delete to reach cn")
        again = {**cycle, "round": {"N": "2"}, "b": {"B": b"\x02again"}}
        dynamodb["cn"].put_item(TableName=tables["cn"], Item=again)  # unstamped re-insert
        self.expected["delete-reinsert"] = again

        # An UpdateItem in sg that leaves cn's stamp in place must still replicate (and win).
        shared = self.key("update-keeps-peer-stamp")
        dynamodb["cn"].put_item(
            TableName=tables["cn"], Item={**shared, "v": {"N": "1"}, **self.stamp("cn", now_ms + 3)}
        )
        wait_for(lambda: pair.get("sg", shared), REPLICATION_SECONDS, "the stamped put to reach sg")
        dynamodb["sg"].update_item(
            TableName=tables["sg"],
            Key=shared,
            UpdateExpression="SET #v = :v, #b = :b",
            ExpressionAttributeNames={"#v": "v", "#b": "b"},
            ExpressionAttributeValues={":v": {"N": "2"}, ":b": {"B": b"\x00updated in sg\xff"}},
        )
        self.expected["update-keeps-peer-stamp"] = {
            **shared,
            "v": {"N": "2"},
            "b": {"B": b"\x00updated in sg\xff"},
        }

        # Deleted for good in one region after both wrote it.
        gone = self.key("deleted")
        for side in SIDES:
            dynamodb[side].put_item(TableName=tables[side], Item={**gone, "from": {"S": side}})
        wait_for(
            lambda: (
                all((pair.get(s, gone) or {}).get("from") == {"S": "sg"} for s in SIDES)
                or all((pair.get(s, gone) or {}).get("from") == {"S": "cn"} for s in SIDES)
            ),
            REPLICATION_SECONDS,
            "both regions to agree on the doubly written item",
        )
        dynamodb["sg"].delete_item(TableName=tables["sg"], Key=gone)
        self.expected["deleted"] = None

    def check(self) -> None:
        """Both regions hold exactly what was written (binary values byte for byte); stamps exist."""
        stamps = {self.pair.timestamp_attribute, self.pair.origin_attribute}
        for value, expected in self.expected.items():
            for side in SIDES:
                found = self.pair.get(side, self.key(value))
                if expected is None:
                    assert found is None, (side, value, found)
                    continue
                assert found is not None, (side, value)
                assert stamps <= found.keys(), (side, value, "every replicated item carries a stamp")
                assert {k: v for k, v in found.items() if k not in stamps} == expected, (side, value)


def load_args(pair: Pair, seed: int, count: int = LOAD_COUNT) -> list[str]:
    return [
        "load", "-f", str(pair.path), "--region", "all", "--count", str(count), "--workers", "4",
        "--conflict-keys", "15", "--conflict-ratio", "0.3", "--delete-ratio", "0.15",
        "--unstamped-ratio", "0.2", "--seed", str(seed), "--no-progress", "-o", "json",
    ]  # fmt: skip


def check_stats(pair: Pair, loaded: dict[str, Any] | None) -> None:
    """Per direction: the handlers' equations, the applier saw every record the peer delivered, and
    `loaded_count` counts the loader's writes."""
    for side in SIDES:
        delivered = kinesis_record_count(pair, side)

        def applier_caught_up(side: str = side, delivered: int = delivered) -> dict[str, int] | None:
            stats = pair.stats(side, "replicated_count")
            return stats if stats.get("received") == delivered else None

        applied = wait_for(applier_caught_up, 60, f"{pair.name} {side}: stats of every delivered record")
        received, outcomes = applier_equation(applied)
        assert received == outcomes > 0, (side, applied)
        assert applied.get("dead_lettered", 0) == 0, (side, applied)
        sent = pair.stats(side, "sent_count")
        received, outcomes = sender_equation(sent)
        assert received == outcomes > 0, (side, sent)
        peer_delivered = kinesis_record_count(pair, "sg" if side == "cn" else "cn")
        assert sent["sent"] + sent.get("tombstones", 0) <= peer_delivered, (side, sent, peer_delivered)
        if loaded is not None:
            entry = next(e for e in loaded["regions"] if e["side"] == side)
            assert pair.stats(side, "loaded_count")["cnt"] == entry["writes"] == LOAD_COUNT
        assert pair.queue_depth(side, pair.names(side).dead_letter_queue) == 0


def test_concurrent_load_in_both_regions_converges_byte_for_byte(deployment: Deployment) -> None:
    users, events = deployment.pairs["users"], deployment.pairs["events"]
    env = deployment.regions.env()
    loads = {
        name: cli_subprocess(env, *load_args(pair, seed))
        for seed, (name, pair) in enumerate((("users", users), ("events", events)), start=7)
    }
    explicit = {
        "users": ExplicitWrites(users, "user_id", {}, {}),
        "events": ExplicitWrites(events, "tenant", {"seq": {"N": "1"}}, {}),
    }
    errors: list[BaseException] = []

    def write(name: str) -> None:
        try:
            explicit[name].run(seed=len(name))
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    writers = [threading.Thread(target=write, args=(name,)) for name in explicit]
    for thread in writers:
        thread.start()
    results = {name: finish(process, 600) for name, process in loads.items()}
    for thread in writers:
        thread.join(scaled(600))
    assert not errors, errors
    for run in results.values():
        assert run.code == 0, run.err[-3000:]

    for name, pair in (("users", users), ("events", events)):
        verify_converged(pair)
        explicit[name].check()
        check_stats(pair, json.loads(results[name].out))


def test_a_second_reconcile_after_traffic_makes_no_mutating_call(deployment: Deployment) -> None:
    """Counted from the launchers' request log, so the pipeline must be idle first (converged)."""
    for pair in (deployment.pairs["users"], deployment.pairs["events"]):
        verify_converged(pair)
        before = marks(deployment.regions)
        run = reconcile(pair)
        assert run.mutating_count() == 0, run.out
        assert mutating_since(deployment.regions, before) == {CN: [], SG: []}


# --- poison records -----------------------------------------------------------------------------


def oversized_unstamped_item(key: dict[str, Any]) -> dict[str, Any]:
    """An item that fits the table, but not once the sender adds the two stamp attributes."""
    key_bytes = sum(len(name) + len(next(iter(value.values()))) for name, value in key.items())
    padding = MOTO_ITEM_LIMIT - 10 - key_bytes - len("payload")
    return {**key, "payload": {"S": "p" * padding}}


def test_poison_records_are_dead_lettered_with_payload_and_later_records_replicate(
    deployment: Deployment,
) -> None:
    pair = deployment.pairs["poison"]
    cn, sg = pair.client("cn", "dynamodb"), pair.client("sg", "dynamodb")

    # Sender side (cn): unstamped and too large to take the stamp -> ValidationException on re-stamp.
    big = oversized_unstamped_item({"user_id": {"S": "too-big"}})
    cn.put_item(TableName=pair.tables["cn"], Item=big)
    # Applier side (sg): a record keyed `user_id` N, what a peer table with another key type sends.
    wrong_key = WireRecord(
        source="cn",
        key={"user_id": {"N": "42"}},
        version=Version(Decimal(int(time.time() * 1000)) / 1000, "cn"),
        item={"user_id": {"N": "42"}, "v": {"S": "wrong key type"}},
        created_ms=int(time.time() * 1000),
        sent_ms=int(time.time() * 1000),
    )
    pair.client("sg", "kinesis").put_record(
        StreamName=pair.names("sg").inbound_stream,
        Data=encode_record(wrong_key),
        PartitionKey=partition_key('{"user_id":{"N":"42"}}'),
    )
    later = [{"user_id": {"S": f"after-{n}"}, "b": {"B": bytes([n, 0, 255])}} for n in range(5)]
    for item in later:
        cn.put_item(TableName=pair.tables["cn"], Item=item)

    wait_for(
        lambda: all(pair.get("sg", {"user_id": i["user_id"]}) for i in later), 180, "later records in sg"
    )
    for item in later:
        found = pair.get("sg", {"user_id": item["user_id"]})
        assert found is not None and found["b"] == item["b"]
    wait_for(lambda: pair.queue_depth("cn", pair.names("cn").dead_letter_queue) == 1, 60, "cn's dead letter")
    wait_for(lambda: pair.queue_depth("sg", pair.names("sg").dead_letter_queue) == 1, 60, "sg's dead letter")

    (sender_letter,) = pair.dead_letters("cn")
    assert (sender_letter["handler"], sender_letter["pair"], sender_letter["source"]) == (
        "sender",
        pair.name,
        "cn",
    )
    assert "ValidationException" in sender_letter["error"]
    record = sender_letter["payload"]
    assert record["eventSource"] == "aws:dynamodb" and record["eventName"] == "INSERT"
    assert item_to_boto3(record["dynamodb"]["NewImage"]) == big, "the payload is the whole item"
    assert sg.get_item(TableName=pair.tables["sg"], Key={"user_id": {"S": "too-big"}}).get("Item") is None

    (applier_letter,) = pair.dead_letters("sg")
    assert (applier_letter["handler"], applier_letter["source"]) == ("applier", "cn")
    data = base64.b64decode(applier_letter["payload"]["kinesis"]["data"])
    assert data == encode_record(wrong_key), "the payload is the record as delivered"
    assert json.loads(data)["key"] == {"user_id": {"N": "42"}}

    assert pair.stats("cn", "sent_count")["dead_lettered"] == 1
    assert pair.stats("sg", "replicated_count")["dead_lettered"] == 1
    received, outcomes = applier_equation(pair.stats("sg", "replicated_count"))
    assert received == outcomes


def our_resources(pair: Pair, side: str) -> list[str]:
    prefix = f"ddbbridge-{pair.name}-"
    found = [t for t in pair.client(side, "dynamodb").list_tables()["TableNames"] if t.startswith(prefix)]
    found += [s for s in pair.client(side, "kinesis").list_streams()["StreamNames"] if s.startswith(prefix)]
    found += pair.client(side, "sqs").list_queues(QueueNamePrefix=prefix).get("QueueUrls", [])
    iam = pair.client(side, "iam")
    found += [r["RoleName"] for r in iam.list_roles()["Roles"] if r["RoleName"].startswith(prefix)]
    found += [u["UserName"] for u in iam.list_users()["Users"] if u["UserName"].startswith(prefix)]
    lam = pair.client(side, "lambda")
    found += [
        f["FunctionName"] for f in lam.list_functions()["Functions"] if f["FunctionName"].startswith(prefix)
    ]
    found += [
        m["UUID"]
        for m in lam.list_event_source_mappings()["EventSourceMappings"]
        if prefix in m["FunctionArn"]
    ]
    parameters = pair.client(side, "ssm").get_parameters_by_path(
        Path=f"/ddbbridge/{pair.name}", Recursive=True
    )
    found += [p["Name"] for p in parameters["Parameters"]]
    return found


def test_destroy_after_traffic_keeps_user_tables_and_items(deployment: Deployment) -> None:
    """The poison pair has seen replication, re-stamps, dead letters and a running runner."""
    pair = deployment.pairs["poison"]
    items = {side: pair.scan(side) for side in SIDES}
    assert all(items.values()) and all(our_resources(pair, side) for side in SIDES)
    run = ddbbridge("destroy", "-f", str(pair.path))
    assert run.code == 0, run.out + run.err
    for side in SIDES:
        assert our_resources(pair, side) == [], side
        assert pair.scan(side) == items[side], f"{side}: user items changed"
        description = pair.client(side, "dynamodb").describe_table(TableName=pair.tables[side])["Table"]
        assert not (description.get("StreamSpecification") or {}).get("StreamEnabled")
        pair.client(side, "dynamodb").put_item(
            TableName=pair.tables[side], Item={"user_id": {"S": "after-destroy"}}
        )
    assert pair.get("cn", {"user_id": {"S": "after-destroy"}}) is not None


# --- 150 ms RTT between the regions -------------------------------------------------------------


@pytest.fixture
def wan_150(deployment: Deployment, tmp_path: Path) -> Iterator[WanLink]:
    """A delay proxy at 150 ms RTT in front of both regions (what `dev up --rtt-ms 150` starts)."""
    ready = tmp_path / "proxy.ready"
    argv = processes.python_module_argv(
        "ddbbridge_dev.proxy", "--rtt-ms", f"{WAN_RTT_MS:g}", "--ready-file", str(ready)
    )
    for region in deployment.regions:
        argv += ["--route", f"{region.name}={region.local.removeprefix('http://')}"]
    record = processes.spawn("proxy", "test-wan-150", argv, tmp_path / "proxy.log", env=dict(os.environ))
    try:
        info = json.loads(processes.wait_for_file(ready, record, scaled(60)))
        yield WanLink(
            record,
            {name: environment.url(int(port)) for name, port in info["ports"].items()},
            environment.url(int(info["control_port"])),
            WAN_RTT_MS,
        )
    finally:
        processes.stop(record)
        wait_for(lambda: processes_gone([record]), 30, "the WAN proxy to exit")


def test_replication_converges_through_a_150ms_wan(
    deployment: Deployment, wan_150: WanLink, monkeypatch: pytest.MonkeyPatch
) -> None:
    regions = deployment.regions
    peer_endpoints = ",".join(f"{name}={url}" for name, url in wan_150.endpoints.items())
    monkeypatch.setenv("DDBBRIDGE_PEER_ENDPOINTS", peer_endpoints)
    pair = create_pair(regions, deployment.folder, "wa", (("user_id", "S"),))
    reconcile(pair)
    for side, peer in (("cn", SG), ("sg", CN)):
        config = json.loads(
            pair.deployed_environment(side, SideNames(pair.name, side).sender_function)["DDBBRIDGE_CONFIG"]
        )
        assert config["peer_endpoint_url"] == wan_150.endpoints[peer], (
            "the sender reaches the peer via the WAN"
        )

    env = {**regions.env(), "DDBBRIDGE_PEER_ENDPOINTS": peer_endpoints}
    loaded = finish(cli_subprocess(env, *load_args(pair, seed=3, count=60)), 600)
    assert loaded.code == 0, loaded.err[-3000:]
    verify_converged(pair)
    check_stats_after_wan = json.loads(loaded.out)
    for side in SIDES:
        applied = pair.stats(side, "replicated_count")
        received, outcomes = applier_equation(applied)
        assert received == outcomes > 0
        entry = next(e for e in check_stats_after_wan["regions"] if e["side"] == side)
        assert pair.stats(side, "loaded_count")["cnt"] == entry["writes"] == 60
