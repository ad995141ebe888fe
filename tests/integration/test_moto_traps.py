"""Each moto trap our launcher removes, proven both ways: the scenario passes on the launcher and FAILS on
a plain `moto_server` (strict xfail: if plain moto ever stops failing, this file says so).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.fixtures.regions import CN, SG
from tests.integration import emulators
from tests.integration.emulators import (
    Emulator,
    StreamReader,
    create_function,
    create_keyed_table,
    create_stream_table,
    launcher_fixes,
)

emulator = emulators.emulator  # fixtures, used by name
plain_moto = emulators.plain_moto

pytestmark = pytest.mark.integration


def keys(records: list[dict[str, Any]]) -> list[str]:
    return [record["dynamodb"]["Keys"]["pk"]["S"] for record in records]


@launcher_fixes(
    "with an event source mapping moto consumes the stream (and PutItem fails once the function is gone)"
)
def test_stream_records_stay_readable_after_a_mapping_exists(emulator: Emulator) -> None:
    ddb = emulator.client("dynamodb", CN, retries=1)
    streams = emulator.client("dynamodbstreams", CN)
    lambdas = emulator.client("lambda", CN, retries=1)
    stream_arn = create_stream_table(ddb, "esm-trap")
    create_function(emulator, CN, "esm-trap-fn")
    mapping = lambdas.create_event_source_mapping(
        EventSourceArn=stream_arn, FunctionName="esm-trap-fn", StartingPosition="TRIM_HORIZON", BatchSize=10
    )
    reader = StreamReader.open(streams, stream_arn)

    ddb.put_item(TableName="esm-trap", Item={"pk": {"S": "first"}})
    assert keys(reader.read()) == ["first"]

    lambdas.delete_event_source_mapping(UUID=mapping["UUID"])
    lambdas.delete_function(FunctionName="esm-trap-fn")
    ddb.put_item(TableName="esm-trap", Item={"pk": {"S": "after-delete"}})
    assert keys(reader.read()) == ["after-delete"]


@launcher_fixes("concurrent puts to one shard race on the next sequence number and overwrite records")
def test_eight_concurrent_writers_store_all_8000_kinesis_records(emulator: Emulator) -> None:
    writers, per_writer = 8, 1000
    kinesis = emulator.client("kinesis", SG)
    kinesis.create_stream(StreamName="busy", ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName="busy", WaiterConfig={"Delay": 0.2})
    clients = [emulator.client("kinesis", SG) for _ in range(writers)]  # boto3 clients: one per thread

    def write(writer: int) -> None:
        for start in range(0, per_writer, 50):  # PutRecords of 50: plain moto loses records this way too
            batch = [
                {"Data": f"{writer}:{index}".encode(), "PartitionKey": str(writer)}
                for index in range(start, start + 50)
            ]
            assert clients[writer].put_records(StreamName="busy", Records=batch)["FailedRecordCount"] == 0

    with ThreadPoolExecutor(writers) as pool:
        list(pool.map(write, range(writers)))

    shard = kinesis.describe_stream(StreamName="busy")["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(StreamName="busy", ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    position, stored = iterator["ShardIterator"], []
    while True:
        page = kinesis.get_records(ShardIterator=position, Limit=10000)
        stored += [record["Data"].decode() for record in page["Records"]]
        position = page["NextShardIterator"]
        if not page["Records"]:
            break
    expected = {f"{writer}:{index}" for writer in range(writers) for index in range(per_writer)}
    assert len(stored) == writers * per_writer
    assert set(stored) == expected
    for writer in range(writers):  # order per partition key is kept
        mine = [int(item.split(":")[1]) for item in stored if item.startswith(f"{writer}:")]
        assert mine == sorted(mine)


@launcher_fixes(
    "a cancelled transaction deep-copies and swaps tables: readers go blind, concurrent writes vanish or 500"
)
def test_cancelled_transactions_keep_stream_readers_and_concurrent_writes(emulator: Emulator) -> None:
    ddb = emulator.client("dynamodb", CN)
    stream_arn = create_stream_table(ddb, "tx-trap")
    ddb.put_item(TableName="tx-trap", Item={"pk": {"S": "guard"}, "v": {"N": "1"}})
    reader = StreamReader.open(emulator.client("dynamodbstreams", CN), stream_arn)
    assert keys(reader.read()) == ["guard"]

    writes = 300
    writer_client = emulator.client("dynamodb", CN)
    done = threading.Event()

    def write() -> None:
        try:
            for index in range(writes):
                writer_client.put_item(TableName="tx-trap", Item={"pk": {"S": f"w{index:04d}"}})
        finally:
            done.set()

    writer = threading.Thread(target=write)
    writer.start()
    cancelled = 0
    while not done.is_set() or cancelled == 0:
        with pytest.raises(ClientError) as caught:
            ddb.transact_write_items(
                TransactItems=[
                    {"Put": {"TableName": "tx-trap", "Item": {"pk": {"S": f"tx{cancelled}"}}}},
                    {
                        "ConditionCheck": {
                            "TableName": "tx-trap",
                            "Key": {"pk": {"S": "guard"}},
                            "ConditionExpression": "v = :two",
                            "ExpressionAttributeValues": {":two": {"N": "2"}},
                        }
                    },
                ]
            )
        assert caught.value.response["Error"]["Code"] == "TransactionCanceledException"
        cancelled += 1
    writer.join()

    expected = [f"w{index:04d}" for index in range(writes)]
    assert keys(reader.read()) == expected  # every write, in order, none of the cancelled puts
    stored = ddb.scan(TableName="tx-trap", ConsistentRead=True)["Items"]
    assert sorted(item["pk"]["S"] for item in stored) == ["guard", *expected]


@launcher_fixes(
    "a transaction failing half-way is undone by swapping tables: readers see the undone write, not later"
)
def test_failed_transaction_is_undone_in_place_with_its_stream_records(emulator: Emulator) -> None:
    ddb = emulator.client("dynamodb", CN, retries=1)
    stream_arn = create_stream_table(ddb, "undo", range_key=True)
    ddb.put_item(TableName="undo", Item={"pk": {"S": "b"}, "sk": {"S": "1"}, "n": {"S": "text"}})
    reader = StreamReader.open(emulator.client("dynamodbstreams", CN), stream_arn)
    assert keys(reader.read()) == ["b"]

    with pytest.raises(ClientError):  # the Put applies first, then the Update fails: adding to a string
        ddb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": "undo", "Item": {"pk": {"S": "a"}, "sk": {"S": "1"}}}},
                {
                    "Update": {
                        "TableName": "undo",
                        "Key": {"pk": {"S": "b"}, "sk": {"S": "1"}},
                        "UpdateExpression": "SET n = n + :one",
                        "ExpressionAttributeValues": {":one": {"N": "1"}},
                    }
                },
            ]
        )
    assert "Item" not in ddb.get_item(TableName="undo", Key={"pk": {"S": "a"}, "sk": {"S": "1"}})
    b = ddb.get_item(TableName="undo", Key={"pk": {"S": "b"}, "sk": {"S": "1"}})["Item"]
    assert b["n"] == {"S": "text"}

    ddb.put_item(TableName="undo", Item={"pk": {"S": "c"}, "sk": {"S": "1"}})
    assert keys(reader.read()) == ["c"]  # the undone Put left no stream record; the reader still follows


@launcher_fixes("UpdateItem creating an item emits two INSERT records (the first holds only the key)")
def test_update_creating_an_item_emits_one_insert(emulator: Emulator) -> None:
    ddb = emulator.client("dynamodb", SG)
    stream_arn = create_stream_table(ddb, "upsert")
    reader = StreamReader.open(emulator.client("dynamodbstreams", SG), stream_arn)
    ddb.update_item(
        TableName="upsert",
        Key={"pk": {"S": "k"}},
        UpdateExpression="SET v = :v",
        ExpressionAttributeValues={":v": {"S": "x"}},
    )
    records = reader.read()
    assert [(r["eventName"], r["dynamodb"]["NewImage"]) for r in records] == [
        ("INSERT", {"pk": {"S": "k"}, "v": {"S": "x"}})
    ]


@launcher_fixes("AWS-managed policies exist only with MOTO_IAM_LOAD_MANAGED_POLICIES=true")
@pytest.mark.parametrize(("region", "partition"), [(CN, "aws-cn"), (SG, "aws")])
def test_managed_policy_exists_in_each_partition(emulator: Emulator, region: str, partition: str) -> None:
    iam = emulator.client("iam", region, retries=1)
    arn = f"arn:{partition}:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
    assert iam.get_policy(PolicyArn=arn)["Policy"]["Arn"] == arn


@launcher_fixes("a segmented Scan of a table with a binary hash key answers 500 (`.encode` on bytes)")
def test_parallel_scan_of_a_binary_hash_key_table_returns_every_item_once(emulator: Emulator) -> None:
    ddb = emulator.client("dynamodb", SG, retries=1)
    create_keyed_table(ddb, "binary-hash", {"id": "B", "n": "N"}, stream=False)
    written = {(bytes([i, 0, 255 - i]), str(n)) for i in range(30) for n in range(2)}
    for raw, n in written:
        ddb.put_item(TableName="binary-hash", Item={"id": {"B": raw}, "n": {"N": n}})
    total_segments = 4
    found: list[tuple[bytes, str]] = []
    for segment in range(total_segments):
        page = ddb.scan(TableName="binary-hash", Segment=segment, TotalSegments=total_segments)
        found.extend((item["id"]["B"], item["n"]["N"]) for item in page["Items"])
    assert sorted(found) == sorted(written)  # each item in exactly one segment
    by_segment = [
        {item["id"]["B"] for item in ddb.scan(TableName="binary-hash", Segment=s, TotalSegments=2)["Items"]}
        for s in range(2)
    ]
    assert by_segment[0] and by_segment[1] and not by_segment[0] & by_segment[1]  # split by hash key
