"""Lambda event records built from stream records as the stream APIs return them on the wire.

Pure functions. The wire form (JSON protocol) already carries binary attribute values as base64 text,
which is exactly what Lambda puts in events, so images pass through untouched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

DYNAMODB_EVENT_VERSION = "1.1"
KINESIS_EVENT_VERSION = "1.0"
KINESIS_SCHEMA_VERSION = "1.0"


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """One record as the runner tracks it: ordering, routing and age, plus its Lambda event record."""

    sequence: int
    sequence_text: str
    partition_key: str
    arrival: float  # epoch seconds, as precise as the source gives it
    size: int  # approximate payload bytes, for the invoke payload cap
    event_record: dict[str, Any]


def creation_seconds(value: Any) -> float:
    """ApproximateCreationDateTime in whole epoch seconds, as Lambda delivers it.

    moto returns epoch seconds with a millisecond fraction on the wire (or milliseconds in some
    versions); Lambda events carry whole seconds as a JSON number such as 1568013979.0.
    """
    seconds = float(value)
    if seconds > 1e11:  # milliseconds since the epoch
        seconds /= 1000.0
    return float(int(seconds))


def dynamodb_record(wire: dict[str, Any], *, region: str, stream_arn: str) -> StreamRecord:
    """A DynamoDB Streams wire record -> Lambda's DynamoDB event record."""
    body = wire["dynamodb"]
    raw_time = body.get("ApproximateCreationDateTime")
    arrival = float(raw_time) if raw_time is not None else 0.0
    if arrival > 1e11:
        arrival /= 1000.0
    dynamodb: dict[str, Any] = {}
    if raw_time is not None:
        dynamodb["ApproximateCreationDateTime"] = creation_seconds(raw_time)
    keys = body.get("Keys", {})
    dynamodb["Keys"] = keys
    if "NewImage" in body:
        dynamodb["NewImage"] = body["NewImage"]
    if "OldImage" in body:
        dynamodb["OldImage"] = body["OldImage"]
    sequence_text = str(body["SequenceNumber"])
    dynamodb["SequenceNumber"] = sequence_text
    size = int(body.get("SizeBytes", 0))
    dynamodb["SizeBytes"] = size
    dynamodb["StreamViewType"] = body.get("StreamViewType")
    record: dict[str, Any] = {
        "eventID": wire["eventID"],
        "eventName": wire["eventName"],
        "eventVersion": DYNAMODB_EVENT_VERSION,
        "eventSource": "aws:dynamodb",
        # moto stamps every record us-east-1; Lambda reports the stream's real region.
        "awsRegion": region,
        "dynamodb": dynamodb,
        "eventSourceARN": stream_arn,
    }
    if "userIdentity" in wire:  # TTL deletions carry the service identity
        record["userIdentity"] = wire["userIdentity"]
    return StreamRecord(
        sequence=int(sequence_text),
        sequence_text=sequence_text,
        # Order is kept per item key: the canonical JSON of Keys routes all versions of one item
        # to the same lane under ParallelizationFactor > 1.
        partition_key=json.dumps(keys, sort_keys=True, separators=(",", ":")),
        arrival=arrival,
        size=size,
        event_record=record,
    )


def kinesis_record(
    wire: dict[str, Any],
    *,
    region: str,
    stream_arn: str,
    shard_id: str,
    invoke_identity_arn: str,
) -> StreamRecord:
    """A Kinesis GetRecords wire record -> Lambda's Kinesis event record."""
    sequence_text = str(wire["SequenceNumber"])
    arrival = float(wire.get("ApproximateArrivalTimestamp", 0.0))
    data = wire.get("Data", "")
    kinesis: dict[str, Any] = {
        "kinesisSchemaVersion": KINESIS_SCHEMA_VERSION,
        "partitionKey": wire["PartitionKey"],
        "sequenceNumber": sequence_text,
        "data": data,  # base64 text on the wire, as in the event
        "approximateArrivalTimestamp": arrival,
    }
    if wire.get("EncryptionType") and wire["EncryptionType"] != "NONE":
        kinesis["encryptionType"] = wire["EncryptionType"]
    record = {
        "kinesis": kinesis,
        "eventSource": "aws:kinesis",
        "eventVersion": KINESIS_EVENT_VERSION,
        "eventID": f"{shard_id}:{sequence_text}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": invoke_identity_arn,
        "awsRegion": region,
        "eventSourceARN": stream_arn,
    }
    return StreamRecord(
        sequence=int(sequence_text),
        sequence_text=sequence_text,
        partition_key=str(wire["PartitionKey"]),
        arrival=arrival,
        size=len(data) * 3 // 4 + len(str(wire["PartitionKey"])),
        event_record=record,
    )


def event_payload(records: list[StreamRecord]) -> dict[str, Any]:
    """The invocation payload for one batch."""
    return {"Records": [record.event_record for record in records]}
