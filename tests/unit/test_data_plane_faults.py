"""Fault handling of the handlers with fake AWS clients (no network): partial PutRecords failures,
throttling, poison records, and the SSM credential cache."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from ddbbridge_lambdas.applier import Applier
from ddbbridge_lambdas.codec import WireRecord, encode_record
from ddbbridge_lambdas.config import HandlerConfig, KeyAttribute
from ddbbridge_lambdas.peer import OutgoingRecord, PeerCredentials, PeerKinesis, split_for_put_records
from ddbbridge_lambdas.versions import Version

CONFIG = HandlerConfig(
    pair="p",
    local_region_name="b",
    local_region="ap-southeast-1",
    peer_region_name="a",
    peer_region="cn-north-1",
    table_name="users",
    key_schema=(KeyAttribute("user_id", "S", "HASH"),),
    ledger_table="p-b-ledger",
    stats_table="p-b-stats",
    dead_letter_queue_url="http://sqs/dl",
    peer_stream_name="p-to-a",
)


def client_error(code: str, **extra: Any) -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": code}, **extra}
    return ClientError(response, "Operation")


class FakeKinesis:
    def __init__(self, failures: list[set[int]]) -> None:
        self.failures = failures  # per call: positions in that call's request that fail
        self.calls: list[list[bytes]] = []

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        failing = self.failures[len(self.calls)] if len(self.calls) < len(self.failures) else set()
        self.calls.append([r["Data"] for r in Records])
        return {
            "FailedRecordCount": len(failing),
            "Records": [
                {"ErrorCode": "ProvisionedThroughputExceededException"}
                if i in failing
                else {"SequenceNumber": "1"}
                for i in range(len(Records))
            ],
        }


def outgoing(count: int) -> list[OutgoingRecord]:
    return [OutgoingRecord(i, f"r{i}".encode(), f"pk{i}") for i in range(count)]


def peer_with(kinesis: Any) -> PeerKinesis:
    return PeerKinesis(CONFIG, lambda *a, **k: kinesis, None, sleep=lambda _: None)


def test_partial_put_records_failure_retries_only_the_failed_entries() -> None:
    kinesis = FakeKinesis([{1, 3}, set()])
    assert peer_with(kinesis).put_records(outgoing(5)) is None
    assert kinesis.calls == [[b"r0", b"r1", b"r2", b"r3", b"r4"], [b"r1", b"r3"]]


def test_records_still_failing_report_the_earliest_undelivered_index() -> None:
    kinesis = FakeKinesis([{2, 4}, {0}, {0}, {0}, {0}])  # record 4 succeeds on retry, record 2 never
    assert peer_with(kinesis).put_records(outgoing(6)) == 2
    assert len(kinesis.calls) == 5
    assert kinesis.calls[1] == [b"r2", b"r4"]


def test_put_records_split_by_count_and_size() -> None:
    assert [len(c) for c in split_for_put_records(outgoing(1001))] == [500, 500, 1]
    big = [OutgoingRecord(i, b"x" * (1024 * 1024 - 10), "k") for i in range(6)]
    chunks = split_for_put_records(big)
    assert [len(c) for c in chunks] == [5, 1]
    assert all(sum(r.size for r in c) <= 5 * 1024 * 1024 for c in chunks)


class FakeSsm:
    def __init__(self) -> None:
        self.values = {"/ak": "AKIA-OLD", "/sk": "secret-old"}
        self.calls = 0

    def get_parameters(self, Names: list[str], WithDecryption: bool) -> dict[str, Any]:  # noqa: N803
        assert WithDecryption
        self.calls += 1
        return {"Parameters": [{"Name": n, "Value": self.values[n]} for n in Names]}


def test_ssm_credentials_are_cached_until_the_ttl_then_the_rotated_key_is_used() -> None:
    ssm, now = FakeSsm(), [100.0]
    credentials = PeerCredentials(ssm, "/ak", "/sk", ttl_seconds=300, clock=lambda: now[0])
    assert credentials.get() == ("AKIA-OLD", "secret-old")
    ssm.values = {"/ak": "AKIA-NEW", "/sk": "secret-new"}  # rotation
    now[0] += 299
    assert credentials.get() == ("AKIA-OLD", "secret-old")
    assert ssm.calls == 1
    now[0] += 2
    assert credentials.get() == ("AKIA-NEW", "secret-new")
    assert ssm.calls == 2


def test_an_auth_error_drops_the_cached_key_at_once() -> None:
    ssm = FakeSsm()
    credentials = PeerCredentials(ssm, "/ak", "/sk", ttl_seconds=300, clock=lambda: 0.0)
    built: list[dict[str, Any]] = []

    class Rejecting:
        def put_records(self, **_: Any) -> dict[str, Any]:
            if len(built) == 1:
                raise client_error("UnrecognizedClientException")
            return {"Records": [{"SequenceNumber": "1"}]}

    def factory(*_: Any, **options: Any) -> Any:
        built.append(options)
        return Rejecting()

    peer = PeerKinesis(CONFIG, factory, credentials, sleep=lambda _: None)
    credentials.get()
    ssm.values = {"/ak": "AKIA-NEW", "/sk": "secret-new"}
    assert peer.put_records(outgoing(1)) is None
    assert [b["aws_access_key_id"] for b in built] == ["AKIA-OLD", "AKIA-NEW"]


# --- applier ------------------------------------------------------------------------------------


class FakeDynamo:
    """Empty tables; transactions recorded; chosen keys throttled or rejected."""

    def __init__(self, throttle: set[str] = frozenset(), invalid: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.throttle, self.invalid = throttle, invalid
        self.transactions: list[list[dict[str, Any]]] = []
        self.stats: list[dict[str, Any]] = []

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:  # noqa: N803
        return {"Responses": {table: [] for table in RequestItems}}

    def transact_write_items(self, TransactItems: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        users = [
            op["Put"]["Item"]["user_id"]["S"]
            for op in TransactItems
            if "Put" in op and "user_id" in op["Put"]["Item"]
        ]
        if any(u in self.invalid for u in users):
            raise client_error("ValidationException")
        if any(u in self.throttle for u in users):
            raise client_error("ProvisionedThroughputExceededException")
        self.transactions.append(TransactItems)
        return {}

    def update_item(self, **request: Any) -> dict[str, Any]:
        self.stats.append(request)
        return {}


class FakeSqs:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def send_message(self, QueueUrl: str, MessageBody: str) -> dict[str, Any]:  # noqa: N803
        self.bodies.append(json.loads(MessageBody))
        return {}


def kinesis_record(sequence: int, user: str, ts: int, payload: bytes | None = None) -> dict[str, Any]:
    if payload is None:
        item = {
            "user_id": {"S": user},
            "blob": {"B": base64.b64encode(b"\x00\x01").decode()},
            "last_update_timestamp": {"N": str(ts)},
            "last_updater_region": {"S": "a"},
        }
        payload = encode_record(
            WireRecord("a", {"user_id": {"S": user}}, Version(Decimal(ts), "a"), item, 1, 2)
        )
    return {
        "kinesis": {
            "data": base64.b64encode(payload).decode(),
            "sequenceNumber": str(sequence),
            "partitionKey": user,
        }
    }


def counters(dynamo: FakeDynamo) -> dict[str, int]:
    (request,) = dynamo.stats
    values = request["ExpressionAttributeValues"]
    return {
        name: int(values[placeholder.replace("#", ":")]["N"])
        for placeholder, name in request["ExpressionAttributeNames"].items()
        if placeholder.startswith("#a")
    }


def test_poison_is_dead_lettered_with_its_payload_and_the_rest_is_applied() -> None:
    dynamo, sqs = FakeDynamo(invalid={"too-big"}), FakeSqs()
    records = [
        kinesis_record(1, "u1", 10),
        kinesis_record(2, "x", 0, payload=b"{not json"),
        kinesis_record(3, "too-big", 11),
        kinesis_record(4, "u1", 12),
        kinesis_record(5, "u2", 13),
    ]
    result = Applier(CONFIG, dynamo, sqs, clock=lambda: 1000.0).handle({"Records": records})
    assert result == {"batchItemFailures": []}
    assert [b["payload"] for b in sqs.bodies] == [records[1], records[2]]
    assert all(b["reason"] and b["handler"] == "applier" for b in sqs.bodies)
    written = [op["Put"]["Item"] for t in dynamo.transactions for op in t if "user_id" in op["Put"]["Item"]]
    assert sorted((i["user_id"]["S"], i["last_update_timestamp"]["N"]) for i in written) == [
        ("u1", "12"),
        ("u2", "13"),
    ]
    # binary values are written as bytes, never as their base64 text
    assert all(i["blob"]["B"] == b"\x00\x01" for i in written)
    c = counters(dynamo)
    assert c["received"] == 5
    assert c["applied"] == 2 and c["coalesced"] == 1 and c["dead_lettered"] == 2
    assert c["received"] == c["applied"] + c["discarded_older"] + c["coalesced"] + c["dead_lettered"]


def test_throttling_returns_batch_item_failures_from_the_first_record_of_the_failed_key() -> None:
    dynamo, sqs = FakeDynamo(throttle={"u2"}), FakeSqs()
    # u1's records are all before u2's first one; u1 is written in its own transaction here
    # because the transaction holding u2 (with u3) is throttled as a whole.
    records = [
        kinesis_record(1, "u1", 10),
        kinesis_record(2, "u2", 10),
        kinesis_record(3, "u3", 10),
        kinesis_record(4, "u2", 11),
        kinesis_record(5, "x", 0, payload=b"garbage"),
    ]
    applier = Applier(CONFIG, dynamo, sqs, clock=lambda: 1000.0)
    applier.handle({"Records": records[:1]})
    dynamo.stats.clear()
    result = applier.handle({"Records": records[1:]})
    assert result == {"batchItemFailures": [{"itemIdentifier": "2"}]}
    # poison behind the failure is not dead-lettered now: it is redelivered with the retry
    assert sqs.bodies == []
    assert dynamo.stats == []  # nothing before the failure point, nothing counted
