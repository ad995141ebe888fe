"""Helpers of the replication tests: pairs over real user tables on the emulated regions, the CLI
run in-process, and what a pair leaves to inspect (stats items, dead letters, deployed config).

Everything is read back over HTTP from the emulators; nothing here models replication.
"""

from __future__ import annotations

import base64
import io
import json
import uuid
import zlib
from collections.abc import Iterable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ddbbridge.cli import main as ddbbridge_main
from ddbbridge.names import SideNames
from tests.fixtures.regions import CN, SG, Region, Regions

SIDES: dict[str, str] = {"cn": CN, "sg": SG}
PEER = {"cn": "sg", "sg": "cn"}
KeySchema = tuple[tuple[str, str], ...]  # ((name, S|N|B), ...), HASH first


@dataclass
class CliRun:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def mutating_count(self) -> int:
        """What the CLI printed as its mutating AWS calls."""
        line = next(line for line in self.out.splitlines() if line.startswith("mutating AWS calls:"))
        return int(line.split(":")[1].split()[0])


def ddbbridge(*args: str) -> CliRun:
    """The product CLI in this process (environment from the caller's monkeypatch)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = ddbbridge_main(list(args))
    return CliRun(code, out.getvalue(), err.getvalue())


def unique_name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


@dataclass
class Pair:
    """A TableReplicationPair manifest over two user tables created by the test."""

    name: str
    path: Path
    key_schema: KeySchema
    tables: dict[str, str]  # side -> user table
    regions: Regions
    origin_attribute: str = "last_updater_region"
    timestamp_attribute: str = "last_update_timestamp"
    _clients: dict[tuple[str, str], Any] = field(default_factory=dict, repr=False)

    @property
    def key_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.key_schema)

    def region(self, side: str) -> Region:
        return self.regions[SIDES[side]]

    def client(self, side: str, service: str) -> Any:
        if (side, service) not in self._clients:
            self._clients[(side, service)] = self.region(side).client(service, retries=8, read_timeout=120)
        return self._clients[(side, service)]

    def names(self, side: str) -> SideNames:
        return SideNames(self.name, side)

    def key_of(self, item: dict[str, Any]) -> tuple[Any, ...]:
        """A hashable key: the raw key values (bytes for B)."""
        return tuple(next(iter(item[name].values())) for name in self.key_names)

    def scan(self, side: str) -> dict[tuple[Any, ...], dict[str, Any]]:
        """Every item of one side's user table, strongly consistent, by key."""
        items: dict[tuple[Any, ...], dict[str, Any]] = {}
        request: dict[str, Any] = {"TableName": self.tables[side], "ConsistentRead": True}
        dynamodb = self.client(side, "dynamodb")
        while True:
            page = dynamodb.scan(**request)
            for item in page["Items"]:
                items[self.key_of(item)] = item
            if "LastEvaluatedKey" not in page:
                return items
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def get(self, side: str, key: dict[str, Any]) -> dict[str, Any] | None:
        response = self.client(side, "dynamodb").get_item(
            TableName=self.tables[side], Key=key, ConsistentRead=True
        )
        item: dict[str, Any] | None = response.get("Item")
        return item

    def stats(self, side: str, item: str) -> dict[str, int]:
        """Numeric attributes of one item of the side's stats table (sent_count, replicated_count,
        loaded_count); {} when it does not exist yet."""
        response = self.client(side, "dynamodb").get_item(
            TableName=self.names(side).stats_table, Key={"PK": {"S": item}}, ConsistentRead=True
        )
        found = response.get("Item") or {}
        return {name: int(value["N"]) for name, value in found.items() if "N" in value}

    def queue_url(self, side: str, queue: str) -> str:
        url: str = self.client(side, "sqs").get_queue_url(QueueName=queue)["QueueUrl"]
        return url

    def queue_depth(self, side: str, queue: str) -> int:
        attributes = self.client(side, "sqs").get_queue_attributes(
            QueueUrl=self.queue_url(side, queue),
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )

    def dead_letters(self, side: str) -> list[dict[str, Any]]:
        """Every message of the side's own dead-letter queue, payload reassembled and decoded.
        Messages are received (and left invisible), so call this once the expected depth is there."""
        sqs, url = self.client(side, "sqs"), self.queue_url(side, self.names(side).dead_letter_queue)
        bodies: list[dict[str, Any]] = []
        while True:
            batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=600)
            messages = batch.get("Messages", [])
            if not messages:
                return decode_dead_letters(bodies)
            bodies += [json.loads(message["Body"]) for message in messages]

    def deployed_environment(self, side: str, function: str) -> dict[str, str]:
        configuration = self.client(side, "lambda").get_function_configuration(FunctionName=function)
        variables: dict[str, str] = configuration["Environment"]["Variables"]
        return variables


def decode_dead_letters(bodies: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Dead-letter messages -> one envelope per record, `payload` decoded (the format documented in
    `ddbbridge_lambdas.dead_letters`: json, or zlib+base64 split into parts by `group`)."""
    letters: list[dict[str, Any]] = []
    groups: dict[str, list[dict[str, Any]]] = {}
    for body in bodies:
        if body["payload_encoding"] == "json":
            letters.append(body)
        else:
            groups.setdefault(body["group"], []).append(body)
    for parts in groups.values():
        parts.sort(key=lambda part: int(part["part"]))
        assert len(parts) == parts[0]["parts"], "every part of a split dead letter arrived"
        packed = "".join(part["payload"] for part in parts)
        payload = json.loads(zlib.decompress(base64.b64decode(packed)))
        letters.append({**parts[0], "payload_encoding": "json", "payload": payload})
    return letters


def manifest_text(name: str, tables: dict[str, str], replication: dict[str, Any] | None = None) -> str:
    settings = {"senderBatchSize": 100, "applierBatchSize": 100, **(replication or {})}
    lines = "".join(f"    {key}: {value}\n" for key, value in settings.items())
    return f"""apiVersion: ddbbridge.io/v1alpha1
kind: TableReplicationPair
metadata:
  name: {name}
spec:
  regions:
    - name: cn
      region: {CN}
      tableName: {tables["cn"]}
    - name: sg
      region: {SG}
      tableName: {tables["sg"]}
  replication:
{lines}"""


def create_pair(
    regions: Regions,
    folder: Path,
    prefix: str,
    key_schema: KeySchema,
    replication: dict[str, Any] | None = None,
) -> Pair:
    """Two empty user tables (same key schema, no stream: reconcile enables it) and the manifest."""
    name = unique_name(prefix)
    tables = {side: f"{name}-users-{side}" for side in SIDES}
    roles = ("HASH", "RANGE")
    for side, table in tables.items():
        regions[SIDES[side]].client("dynamodb").create_table(
            TableName=table,
            KeySchema=[{"AttributeName": k, "KeyType": roles[i]} for i, (k, _) in enumerate(key_schema)],
            AttributeDefinitions=[{"AttributeName": k, "AttributeType": t} for k, t in key_schema],
            BillingMode="PAY_PER_REQUEST",
        )
    path = folder / f"{name}.yaml"
    path.write_text(manifest_text(name, tables, replication), encoding="utf-8")
    settings = replication or {}
    return Pair(
        name,
        path,
        key_schema,
        tables,
        regions,
        origin_attribute=settings.get("originAttribute", "last_updater_region"),
        timestamp_attribute=settings.get("timestampAttribute", "last_update_timestamp"),
    )


def applier_equation(stats: dict[str, int]) -> tuple[int, int]:
    """(received, applied + discarded_older + coalesced + dead_lettered) of a replicated_count item."""
    parts = ("applied", "discarded_older", "coalesced", "dead_lettered")
    return stats.get("received", 0), sum(stats.get(part, 0) for part in parts)


def sender_equation(stats: dict[str, int]) -> tuple[int, int]:
    """(received, sum of every outcome) of a sent_count item."""
    parts = ("sent", "loops_dropped", "restamped", "skipped", "tombstones", "dead_lettered")
    return stats.get("received", 0), sum(stats.get(part, 0) for part in parts)
