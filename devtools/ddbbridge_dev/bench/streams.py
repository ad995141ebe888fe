"""Read a table's whole DynamoDB stream after a phase: when each change happened, to the millisecond.

The emulator stamps every stream record with its own clock (`ApproximateCreationDateTime`), and both
emulated regions run on this machine's clock, so a source record and the target record of the same
version give that version's apply lag without polling anything during the load.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

MAX_PAGE = 100  # small pages: the emulator holds its DynamoDB lock while it serialises one


@dataclass(frozen=True)
class StreamChange:
    at: float  # epoch seconds
    event: str  # INSERT | MODIFY | REMOVE
    key: str
    origin: str | None  # of the new image (of the old image for REMOVE)
    stamp: Decimal | None


def _number(value: Any) -> Decimal | None:
    if not isinstance(value, dict) or "N" not in value:
        return None
    try:
        return Decimal(str(value["N"])).normalize()
    except InvalidOperation:
        return None


def change_from_record(
    record: dict[str, Any], origin_attribute: str, timestamp_attribute: str
) -> StreamChange:
    body = record["dynamodb"]
    image = body.get("OldImage") if record["eventName"] == "REMOVE" else body.get("NewImage")
    image = image or {}
    key = "|".join(f"{name}={next(iter(value.values()))}" for name, value in sorted(body["Keys"].items()))
    created = body["ApproximateCreationDateTime"]
    at = created.timestamp() if hasattr(created, "timestamp") else float(created)
    origin = image.get(origin_attribute, {}).get("S")
    return StreamChange(at, record["eventName"], key, origin, _number(image.get(timestamp_attribute)))


def read_stream(
    dynamodb: Any, streams: Any, table: str, origin_attribute: str, timestamp_attribute: str
) -> list[StreamChange]:
    """Every record of every shard of the table's current stream, in order."""
    arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    shards = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    changes: list[StreamChange] = []
    for shard in shards:
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = streams.get_records(ShardIterator=iterator, Limit=MAX_PAGE)
            records = page.get("Records", [])
            changes.extend(change_from_record(r, origin_attribute, timestamp_attribute) for r in records)
            if not records:
                break
            iterator = page.get("NextShardIterator")
    return changes
