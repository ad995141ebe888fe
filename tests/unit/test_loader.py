"""The loader's execution edge, against a recording stand-in for the DynamoDB client."""

from __future__ import annotations

import re
import threading
from collections import defaultdict
from typing import Any

import pytest
from botocore.exceptions import ClientError

from ddbbridge.comparison import canonical_key
from ddbbridge.loader import RegionLoader, Stamping, update_request
from ddbbridge.loaderstats import LoaderStats
from ddbbridge.loadplan import KeyFactory, LoadMix, Operation, OperationKind, plan_operations, plan_rng
from ddbbridge.ratelimit import TokenBucket
from ddbbridge_lambdas.config import KeyAttribute

SCHEMA = (KeyAttribute("tenant", "N", "HASH"), KeyAttribute("sk", "S", "RANGE"))
SECONDS = Stamping("last_updater_region", "cn", "last_update_timestamp", "seconds")
MILLIS = Stamping("origin", "sg", "ts", "milliseconds")


class RecordingDynamoDB:
    """Records every call; fails the calls `fail` selects with the given error code."""

    def __init__(self, fail: Any = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail = fail
        self._lock = threading.Lock()

    def _record(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.calls.append((operation, request))
        if self.fail is not None and self.fail(operation, request):
            raise ClientError({"Error": {"Code": "ValidationException", "Message": "no"}}, operation)
        return {}

    def put_item(self, **request: Any) -> dict[str, Any]:
        return self._record("PutItem", request)

    def update_item(self, **request: Any) -> dict[str, Any]:
        return self._record("UpdateItem", request)

    def delete_item(self, **request: Any) -> dict[str, Any]:
        return self._record("DeleteItem", request)


def operations(count: int, mix: LoadMix, seed: int = 3) -> list[Operation]:
    return list(plan_operations(KeyFactory(SCHEMA, "cn", 0, seed), mix, count, plan_rng(seed, "cn")))


def test_puts_are_stamped_as_an_application_would_or_not_at_all() -> None:
    client = RecordingDynamoDB()
    plan = operations(400, LoadMix(delete_ratio=0, update_ratio=0, unstamped_ratio=0.3))
    result = RegionLoader(client, "user-cn", SECONDS, workers=3, key_schema=SCHEMA).run(plan)
    assert result.written[OperationKind.PUT] == 400 and result.total == 400
    stamped = [r["Item"] for op, r in client.calls if "last_updater_region" in r["Item"]]
    unstamped = [r["Item"] for op, r in client.calls if "last_updater_region" not in r["Item"]]
    assert len(unstamped) == result.written["unstamped"] == sum(not op.stamped for op in plan)
    for item in stamped:
        assert item["last_updater_region"] == {"S": "cn"}
        # Seconds with a fraction, within DynamoDB's 38 digits.
        assert re.fullmatch(r"\d{10}\.\d{6}", item["last_update_timestamp"]["N"])
    for item in unstamped:
        assert "last_update_timestamp" not in item


def test_millisecond_stamps_are_integers() -> None:
    op = Operation(OperationKind.UPDATE, {"tenant": {"N": "1"}, "sk": {"S": "a"}}, {"age": {"N": "3"}})
    request = update_request(op, MILLIS, now=1_700_000_000.1234)
    values = {request["ExpressionAttributeNames"][n]: v for n, v in _assignments(request)}
    assert values["ts"] == {"N": "1700000000123"}
    assert values["origin"] == {"S": "sg"}


def test_updates_set_changes_nested_paths_and_stamp_unless_unstamped() -> None:
    key = {"tenant": {"N": "1"}, "sk": {"S": "a"}}
    nested = {"preferences": {"theme": {"S": "dark"}}}
    stamped = update_request(
        Operation(OperationKind.UPDATE, key, {"age": {"N": "3"}}, True, nested), SECONDS, 1.5
    )
    names = stamped["ExpressionAttributeNames"]
    assert stamped["Key"] == key
    assert stamped["UpdateExpression"].endswith("ADD #visits :one")
    paths = {".".join(names[p] for p in path.split(".")): value for path, value in _assignments(stamped)}
    assert paths == {
        "age": {"N": "3"},
        "preferences.theme": {"S": "dark"},
        "last_updater_region": {"S": "cn"},
        "last_update_timestamp": {"N": "1.500000"},
    }
    bare = update_request(Operation(OperationKind.UPDATE, key, {"age": {"N": "3"}}, False), SECONDS, 1.5)
    bare_paths = {bare["ExpressionAttributeNames"][p] for p, _ in _assignments(bare)}
    assert bare_paths == {"age"}, "an unstamped update leaves the previous stamp in place"


def test_each_keys_operations_run_in_plan_order_across_workers() -> None:
    client = RecordingDynamoDB()
    plan = operations(1500, LoadMix(delete_ratio=0.2, update_ratio=0.3, conflict_keys=5, conflict_ratio=0.3))
    RegionLoader(client, "t", SECONDS, workers=6, key_schema=SCHEMA).run(plan)
    planned: dict[str, list[str]] = defaultdict(list)
    for op in plan:
        planned[canonical_key(op.key, SCHEMA)].append(op.kind)
    executed: dict[str, list[str]] = defaultdict(list)
    kinds = {
        "PutItem": OperationKind.PUT,
        "UpdateItem": OperationKind.UPDATE,
        "DeleteItem": OperationKind.DELETE,
    }
    for operation, request in client.calls:
        key = request["Key"] if "Key" in request else {k.name: request["Item"][k.name] for k in SCHEMA}
        executed[canonical_key(key, SCHEMA)].append(kinds[operation])
    assert executed == planned


def test_failed_writes_are_counted_as_errors_not_as_loaded() -> None:
    client = RecordingDynamoDB(fail=lambda operation, _request: operation == "UpdateItem")
    stats_client = StatsTable()
    stats = LoaderStats(stats_client, "ddbbridge-p-cn-stats")
    plan = operations(300, LoadMix(delete_ratio=0.1, update_ratio=0.4))
    result = RegionLoader(client, "t", SECONDS, workers=2, key_schema=SCHEMA, stats=stats).run(plan)
    assert stats.close()
    updates = sum(op.kind is OperationKind.UPDATE for op in plan)
    assert result.errors == {"ValidationException": updates}
    assert result.written[OperationKind.UPDATE] == 0
    assert result.total == 300 - updates
    assert stats_client.counters["cnt"] == result.total
    assert len(result.error_examples) == 5


class StatsTable:
    """A stand-in stats table that applies ADD updates; can refuse the next N calls."""

    def __init__(self, refuse: int = 0) -> None:
        self.counters: dict[str, int] = defaultdict(int)
        self.calls = 0
        self.refuse = refuse

    def update_item(self, **request: Any) -> dict[str, Any]:
        self.calls += 1
        if self.refuse:
            self.refuse -= 1
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "UpdateItem")
        assert request["Key"] == {"PK": {"S": "loaded_count"}}
        assert request["UpdateExpression"].startswith("ADD ")
        for placeholder, name in request["ExpressionAttributeNames"].items():
            value = request["ExpressionAttributeValues"][":" + placeholder[1:]]
            self.counters[name] += int(value["N"])
        return {}


def test_loader_stats_are_batched_and_survive_a_failed_flush() -> None:
    table = StatsTable(refuse=1)
    stats = LoaderStats(table, "s", interval=3600)  # no background flush during the test
    for _ in range(700):
        stats.record("put")
    for _ in range(300):
        stats.record("update", unstamped=True)
    assert stats.flush() is False  # throttled: the counts are kept
    assert stats.last_error is not None
    stats.record("delete")
    assert stats.close() is True
    assert table.calls == 2, "one UpdateItem per flush, never one per item"
    assert dict(table.counters) == {
        "cnt": 1001,
        "put_cnt": 700,
        "update_cnt": 300,
        "delete_cnt": 1,
        "unstamped_cnt": 300,
    }


def test_token_bucket_paces_at_the_rate() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    bucket = TokenBucket(100.0, burst=1.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(201):
        bucket.acquire()
    # The first token is there at once; the next 200 take 2 s at 100/s.
    assert now[0] == pytest.approx(2.0)
    with pytest.raises(ValueError):
        TokenBucket(0)


def _assignments(request: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(path placeholders, value) pairs of the SET clause."""
    clause = request["UpdateExpression"].split(" ADD ")[0].removeprefix("SET ")
    pairs = []
    for assignment in clause.split(", "):
        path, value = assignment.split(" = ")
        pairs.append((path, request["ExpressionAttributeValues"][value]))
    return pairs
