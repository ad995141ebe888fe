"""Stream sources: list shards, open iterators, read pages of records as Lambda event records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from botocore.credentials import Credentials

from ddbbridge_dev.runner.events import StreamRecord, dynamodb_record, kinesis_record
from ddbbridge_dev.runner.wire import JsonApi


@dataclass(frozen=True)
class ShardInfo:
    shard_id: str
    parent_id: str | None
    closed: bool  # the shard has an ending sequence number: no new records will arrive


@dataclass(frozen=True)
class Position:
    """Where to open a shard iterator."""

    kind: str  # TRIM_HORIZON | LATEST | AT_TIMESTAMP | AFTER_SEQUENCE_NUMBER
    sequence: str | None = None
    timestamp: float | None = None


@dataclass(frozen=True)
class Page:
    records: list[StreamRecord]
    next_iterator: str | None  # None: the shard is closed and fully read


class StreamSource(Protocol):
    kind: str
    stream_arn: str
    max_page: int

    def list_shards(self) -> list[ShardInfo]: ...

    def open(self, shard_id: str, position: Position) -> str: ...

    def read(self, shard_id: str, iterator: str, limit: int) -> Page: ...


class DynamoStreamSource:
    kind = "dynamodb"
    max_page = 1000

    def __init__(self, stream_arn: str, region: str, endpoint: str, credentials: Credentials) -> None:
        self.stream_arn = stream_arn
        self.region = region
        self._api = JsonApi(
            endpoint,
            region,
            signing_name="dynamodb",
            target_prefix="DynamoDBStreams_20120810",
            json_version="1.0",
            credentials=credentials,
        )

    def list_shards(self) -> list[ShardInfo]:
        shards: list[ShardInfo] = []
        request: dict[str, object] = {"StreamArn": self.stream_arn}
        while True:
            description = self._api.call("DescribeStream", request)["StreamDescription"]
            for shard in description.get("Shards", []):
                shards.append(
                    ShardInfo(
                        shard_id=shard["ShardId"],
                        parent_id=shard.get("ParentShardId"),
                        closed="EndingSequenceNumber" in shard.get("SequenceNumberRange", {}),
                    )
                )
            last = description.get("LastEvaluatedShardId")
            if not last:
                return shards
            request["ExclusiveStartShardId"] = last

    def open(self, shard_id: str, position: Position) -> str:
        # DynamoDB Streams has no AT_TIMESTAMP: read from the trim horizon, the poller filters by time.
        kind = "TRIM_HORIZON" if position.kind == "AT_TIMESTAMP" else position.kind
        request = {"StreamArn": self.stream_arn, "ShardId": shard_id, "ShardIteratorType": kind}
        if position.sequence is not None:
            request["SequenceNumber"] = position.sequence
        return str(self._api.call("GetShardIterator", request)["ShardIterator"])

    def read(self, shard_id: str, iterator: str, limit: int) -> Page:
        response = self._api.call("GetRecords", {"ShardIterator": iterator, "Limit": limit})
        records = [
            dynamodb_record(wire, region=self.region, stream_arn=self.stream_arn)
            for wire in response.get("Records", [])
        ]
        return Page(records, response.get("NextShardIterator"))


class KinesisSource:
    kind = "kinesis"
    max_page = 10000

    def __init__(
        self,
        stream_arn: str,
        region: str,
        endpoint: str,
        credentials: Credentials,
        invoke_identity_arn: str,
    ) -> None:
        self.stream_arn = stream_arn
        self.region = region
        # moto's GetShardIterator by StreamARN yields iterators its GetRecords cannot resolve, so the
        # poller addresses streams by name (valid on AWS too).
        self.stream_name = stream_arn.split(":", 5)[5].split("/", 1)[1]
        self.invoke_identity_arn = invoke_identity_arn
        self._api = JsonApi(
            endpoint,
            region,
            signing_name="kinesis",
            target_prefix="Kinesis_20131202",
            json_version="1.1",
            credentials=credentials,
        )

    def list_shards(self) -> list[ShardInfo]:
        shards: list[ShardInfo] = []
        request: dict[str, object] = {"StreamName": self.stream_name}
        while True:
            response = self._api.call("ListShards", request)
            for shard in response.get("Shards", []):
                shards.append(
                    ShardInfo(
                        shard_id=shard["ShardId"],
                        parent_id=shard.get("ParentShardId"),
                        closed="EndingSequenceNumber" in shard.get("SequenceNumberRange", {}),
                    )
                )
            token = response.get("NextToken")
            if not token:
                return shards
            request = {"NextToken": token}

    def open(self, shard_id: str, position: Position) -> str:
        request: dict[str, object] = {
            "StreamName": self.stream_name,
            "ShardId": shard_id,
            "ShardIteratorType": position.kind,
        }
        if position.sequence is not None:
            request["StartingSequenceNumber"] = position.sequence
        if position.timestamp is not None:
            request["Timestamp"] = position.timestamp
        return str(self._api.call("GetShardIterator", request)["ShardIterator"])

    def read(self, shard_id: str, iterator: str, limit: int) -> Page:
        response = self._api.call("GetRecords", {"ShardIterator": iterator, "Limit": limit})
        records = [
            kinesis_record(
                wire,
                region=self.region,
                stream_arn=self.stream_arn,
                shard_id=shard_id,
                invoke_identity_arn=self.invoke_identity_arn,
            )
            for wire in response.get("Records", [])
        ]
        return Page(records, response.get("NextShardIterator"))
