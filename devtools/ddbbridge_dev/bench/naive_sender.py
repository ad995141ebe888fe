"""The naive design the seed warns against, as a Lambda handler: every change of the local table is
written straight into the PEER table over the WAN, one conditional PutItem/DeleteItem per item.

Deployed as a zip through the local runner exactly like our handlers (standard library + boto3
only). It follows the seed: last writer wins on the timestamp alone (`attribute_not_exists OR
ts < :ts`), deletes conditioned on the deleted image's timestamp, changes whose origin is the peer
dropped (loop prevention). Configuration: one env var `NAIVE_CONFIG` (JSON, see `NaiveConfig`).
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError


@dataclass(frozen=True)
class NaiveConfig:
    peer_region: str
    peer_endpoint_url: str
    peer_table: str
    peer_region_name: str  # the peer's origin value: its changes are not sent back
    key_names: tuple[str, ...]
    origin_attribute: str
    timestamp_attribute: str

    @classmethod
    def from_environment(cls) -> NaiveConfig:
        raw = json.loads(os.environ["NAIVE_CONFIG"])
        return cls(**{**raw, "key_names": tuple(raw["key_names"])})


def to_client_value(value: dict[str, Any]) -> dict[str, Any]:
    """A stream-event attribute value -> the client's form (events carry binary as base64 text)."""
    kind, inner = next(iter(value.items()))
    if kind == "B":
        return {"B": base64.b64decode(inner)}
    if kind == "BS":
        return {"BS": [base64.b64decode(part) for part in inner]}
    if kind == "M":
        return {"M": {name: to_client_value(part) for name, part in inner.items()}}
    if kind == "L":
        return {"L": [to_client_value(part) for part in inner]}
    return {kind: inner}


def to_client_item(image: dict[str, Any]) -> dict[str, Any]:
    return {name: to_client_value(value) for name, value in image.items()}


def origin_of(image: dict[str, Any] | None, config: NaiveConfig) -> str | None:
    value = (image or {}).get(config.origin_attribute, {})
    return value.get("S") if isinstance(value, dict) else None


class NaiveSender:
    def __init__(self, config: NaiveConfig, client: Any) -> None:
        self.config = config
        self.client = client

    def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        for record in event.get("Records") or []:
            self.send(record)
        return {"batchItemFailures": []}

    def send(self, record: dict[str, Any]) -> str:
        config = self.config
        body = record["dynamodb"]
        new, old = body.get("NewImage"), body.get("OldImage")
        image = new if record["eventName"] != "REMOVE" else old
        if origin_of(image, config) == config.peer_region_name:
            return "loop_dropped"
        stamp = (image or {}).get(config.timestamp_attribute)
        names = {"#k": config.key_names[0], "#ts": config.timestamp_attribute}
        try:
            if record["eventName"] == "REMOVE":
                self.client.delete_item(
                    TableName=config.peer_table,
                    Key=to_client_item(body["Keys"]),
                    ConditionExpression="attribute_not_exists(#k) OR #ts <= :ts",
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues={":ts": stamp or {"N": "0"}},
                )
                return "deleted"
            if stamp is None:
                self.client.put_item(TableName=config.peer_table, Item=to_client_item(new or {}))
                return "put"
            self.client.put_item(
                TableName=config.peer_table,
                Item=to_client_item(new or {}),
                ConditionExpression="attribute_not_exists(#k) OR #ts < :ts",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={":ts": stamp},
            )
            return "put"
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return "discarded"
            raise


_runtime: dict[str, NaiveSender] = {}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if "sender" not in _runtime:
        config = NaiveConfig.from_environment()
        client = boto3.session.Session().client(
            "dynamodb",
            region_name=config.peer_region,
            endpoint_url=config.peer_endpoint_url,
            config=Config(
                retries={"mode": "standard", "max_attempts": 4}, connect_timeout=5, read_timeout=20
            ),
        )
        _runtime["sender"] = NaiveSender(config, client)
    return _runtime["sender"].handle(event)
