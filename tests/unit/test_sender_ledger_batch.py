"""The sender persists its ledger merges in TransactWriteItems of up to 100 keys (not one PutItem per
key), re-reads and re-merges only the keys another writer changed, and reports a transient failure
from the earliest record whose merge is not durable."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from ddbbridge_lambdas.codec import canonical_key
from ddbbridge_lambdas.config import HandlerConfig, KeyAttribute
from ddbbridge_lambdas.peer import PeerKinesis
from ddbbridge_lambdas.sender import MAX_LEDGER_WRITES_PER_TRANSACTION, Sender

CONFIG = HandlerConfig(
    pair="p",
    local_region_name="a",
    local_region="cn-north-1",
    peer_region_name="b",
    peer_region="ap-southeast-1",
    table_name="users",
    key_schema=(KeyAttribute("user_id", "S", "HASH"),),
    ledger_table="p-a-ledger",
    stats_table="p-a-stats",
    dead_letter_queue_url="http://sqs/dl",
    peer_stream_name="p-to-b",
)


U3 = canonical_key({"user_id": {"S": "u3"}}, CONFIG.key_schema)


def cancelled(codes: list[str]) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
            "CancellationReasons": [{"Code": code} for code in codes],
        },
        "TransactWriteItems",
    )


class FakeDynamo:
    """A ledger table held in memory with the `rev` condition enforced, like DynamoDB would."""

    def __init__(self) -> None:
        self.ledger: dict[str, dict[str, Any]] = {}
        self.transactions: list[int] = []
        self.puts = 0
        self.stats_updates = 0
        self.fail_next: Exception | None = None
        self.advance_before_write: str | None = None  # another writer bumps this key once

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:  # noqa: N803
        found = {
            table: [self.ledger[k["k"]["S"]] for k in entry["Keys"] if k["k"]["S"] in self.ledger]
            for table, entry in RequestItems.items()
        }
        return {"Responses": found}

    def _condition_holds(self, put: dict[str, Any]) -> bool:
        key = put["Item"]["k"]["S"]
        current = self.ledger.get(key)
        if put["ConditionExpression"].startswith("attribute_not_exists"):
            return current is None
        expected = next(v["N"] for v in put["ExpressionAttributeValues"].values())
        return current is not None and current["rev"]["N"] == expected

    def transact_write_items(self, TransactItems: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error
        if self.advance_before_write is not None:
            key, self.advance_before_write = self.advance_before_write, None
            item = dict(self.ledger.get(key) or {"k": {"S": key}, "ts": {"N": "1"}, "o": {"S": "b"}})
            item["rev"] = {"N": str(int(item.get("rev", {"N": "0"})["N"]) + 1)}
            self.ledger[key] = item
        puts = [op["Put"] for op in TransactItems]
        codes = ["None" if self._condition_holds(put) else "ConditionalCheckFailed" for put in puts]
        if "ConditionalCheckFailed" in codes:
            raise cancelled(codes)
        for put in puts:
            self.ledger[put["Item"]["k"]["S"]] = put["Item"]
        self.transactions.append(len(puts))
        return {}

    def put_item(self, **request: Any) -> dict[str, Any]:
        self.puts += 1
        self.ledger[request["Item"]["k"]["S"]] = request["Item"]
        return {}

    def update_item(self, **_: Any) -> dict[str, Any]:
        self.stats_updates += 1
        return {}


class FakeKinesis:
    def __init__(self) -> None:
        self.sent = 0

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        self.sent += len(Records)
        return {"Records": [{"SequenceNumber": "1"} for _ in Records]}


def stream_event(count: int) -> dict[str, Any]:
    return {
        "Records": [
            {
                "eventName": "INSERT",
                "dynamodb": {
                    "Keys": {"user_id": {"S": f"u{n}"}},
                    "NewImage": {
                        "user_id": {"S": f"u{n}"},
                        "last_updater_region": {"S": "a"},
                        "last_update_timestamp": {"N": f"1700000000.{n:06d}"},
                    },
                    "SequenceNumber": str(1000 + n),
                    "ApproximateCreationDateTime": 1700000000,
                },
            }
            for n in range(count)
        ]
    }


def sender(dynamo: FakeDynamo, kinesis: FakeKinesis) -> Sender:
    peer = PeerKinesis(CONFIG, lambda *a, **k: kinesis, None, sleep=lambda _: None)
    return Sender(CONFIG, dynamo, None, peer, clock=lambda: 1700000100.0)


def test_merges_are_written_in_transactions_of_up_to_100_keys() -> None:
    dynamo, kinesis = FakeDynamo(), FakeKinesis()
    assert sender(dynamo, kinesis).handle(stream_event(250)) == {"batchItemFailures": []}
    assert dynamo.transactions == [MAX_LEDGER_WRITES_PER_TRANSACTION, MAX_LEDGER_WRITES_PER_TRANSACTION, 50]
    assert dynamo.puts == 0
    assert len(dynamo.ledger) == 250
    assert kinesis.sent == 250
    assert dynamo.stats_updates == 1


def test_a_key_changed_by_another_writer_is_reread_and_merged_again() -> None:
    dynamo, kinesis = FakeDynamo(), FakeKinesis()
    dynamo.advance_before_write = U3
    assert sender(dynamo, kinesis).handle(stream_event(5)) == {"batchItemFailures": []}
    assert dynamo.transactions == [5]  # the cancelled attempt wrote nothing; the retry wrote all
    assert dynamo.ledger[U3]["rev"]["N"] == "2"  # merged on top of the other writer's entry
    assert dynamo.ledger[U3]["o"]["S"] == "a"
    assert kinesis.sent == 5


def test_a_transient_ledger_failure_retries_the_batch_from_its_first_record() -> None:
    dynamo, kinesis = FakeDynamo(), FakeKinesis()
    dynamo.fail_next = ClientError(
        {"Error": {"Code": "ProvisionedThroughputExceededException"}}, "TransactWriteItems"
    )
    result = sender(dynamo, kinesis).handle(stream_event(3))
    assert result == {"batchItemFailures": [{"itemIdentifier": "1000"}]}
    assert kinesis.sent == 0  # nothing at or after the failure is sent
