"""Event building from wire records, compared with Lambda's documented samples."""

from __future__ import annotations

from ddbbridge_dev.runner.events import creation_seconds, dynamodb_record, event_payload, kinesis_record
from tests.fixtures.lambda_samples import sample, shape_of

STREAM = "arn:aws-cn:dynamodb:cn-north-1:123456789012:table/t/stream/2026-01-01T00:00:00.000"
KINESIS = "arn:aws:kinesis:ap-southeast-1:123456789012:stream/s"


def moto_dynamodb_wire(sequence: str, name: str = "MODIFY") -> dict[str, object]:
    """A record as moto's DynamoDB Streams GetRecords puts it on the wire."""
    return {
        "eventID": "37003207e0614439a8f1ba5a025fbbc7",
        "eventName": name,
        "eventVersion": "1.0",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": 1795836435.122,
            "Keys": {"pk": {"S": "a"}},
            "NewImage": {"pk": {"S": "a"}, "b": {"B": "AAE="}},
            "OldImage": {"pk": {"S": "a"}},
            "SequenceNumber": sequence,
            "SizeBytes": 254,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }


def test_dynamodb_record_matches_documented_shape_and_fixes_moto() -> None:
    record = dynamodb_record(
        moto_dynamodb_wire("1100000000017454423009"), region="cn-north-1", stream_arn=STREAM
    )
    documented = sample("dynamodb_stream_event.json")["Records"][1]  # the MODIFY sample
    assert shape_of(record.event_record) == shape_of(documented)
    event = record.event_record
    assert event["eventVersion"] == "1.1"
    assert event["awsRegion"] == "cn-north-1"
    assert event["eventSourceARN"] == STREAM
    assert event["dynamodb"]["ApproximateCreationDateTime"] == 1795836435.0
    assert event["dynamodb"]["NewImage"]["b"] == {"B": "AAE="}  # base64 text stays base64 text
    assert record.sequence == 1100000000017454423009
    assert record.arrival == 1795836435.122
    # Keys route a record to a lane regardless of attribute order.
    assert record.partition_key == '{"pk":{"S":"a"}}'


def test_creation_time_in_whole_seconds_from_seconds_or_milliseconds() -> None:
    assert creation_seconds(1795836435.999) == 1795836435.0
    assert creation_seconds(1795836435999) == 1795836435.0
    assert creation_seconds(1568013979) == 1568013979.0


def test_kinesis_record_matches_documented_shape() -> None:
    wire = {
        "SequenceNumber": "7",
        "ApproximateArrivalTimestamp": 1795836445.687,
        "Data": "aGVsbG8=",
        "PartitionKey": "p",
    }
    record = kinesis_record(
        wire,
        region="ap-southeast-1",
        stream_arn=KINESIS,
        shard_id="shardId-000000000000",
        invoke_identity_arn="arn:aws:iam::123456789012:role/r",
    )
    assert shape_of(record.event_record) == shape_of(sample("kinesis_event.json")["Records"][0])
    assert record.event_record["eventID"] == "shardId-000000000000:7"
    assert record.event_record["kinesis"]["data"] == "aGVsbG8="
    assert record.partition_key == "p"
    assert event_payload([record]) == {"Records": [record.event_record]}
