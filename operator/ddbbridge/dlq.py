"""`ddbbridge dlq list|redrive -f pair.yaml`: the pair's dead letters, decoded, and their replay.

Two kinds per side X (NOTES section 8):
- our own dead letters (`ddbbridge-P-X-dead-letters`), written by the handlers WITH the record:
  split letters (`group`/`part`/`parts`, zlib+base64) are reassembled and decoded;
- Lambda's on-failure records (`ddbbridge-P-X-sender-failures`, `-applier-failures`): metadata only,
  shown as shard and sequence range.

Redrive, by the version order, deleting a message only after its replay succeeded:
- an applier dead letter (a Kinesis record of the peer's change) is re-applied through the
  applier's own code in X (`replay.RegionApplier`); an older version is discarded, never written;
- a sender dead letter (a stream record of X's table) names a key: that key is repaired from the
  CURRENT state of both regions (`repair.PairRepairer`), which is what re-sending would achieve,
  without replaying a stale image;
- an on-failure record is redriven by re-reading its sequence range from the source stream (the
  table's DynamoDB stream for the sender, 24 h retention; the inbound Kinesis stream for the
  applier, its retention period) and replaying those records as above. When the range is no longer
  retained the message is kept and the report says so: the changes can then only be recovered by
  `ddbbridge backfill` + `ddbbridge verify --repair`, because the records themselves are gone.
A replay that is still rejected leaves its message in the queue (visible again at once).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import zlib
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ddbbridge.aws import RegionSession, region_session
from ddbbridge.names import SideNames
from ddbbridge.repair import PairRepairer
from ddbbridge.replay import RegionApplier, ReplayError, kinesis_record
from ddbbridge.spec import PairManifest, SpecError, load_manifest
from ddbbridge_lambdas.codec import item_to_boto3, item_to_wire

LIST_VISIBILITY_SECONDS = 30
REDRIVE_VISIBILITY_SECONDS = 300


@dataclass
class Message:
    receipt: str
    body: dict[str, Any]


@dataclass
class DeadLetterEntry:
    """One dead-lettered record (its parts reassembled) or one on-failure metadata record."""

    side: str
    queue: str
    kind: str  # "dead-letter" | "on-failure"
    messages: list[Message]
    handler: str | None = None  # sender | applier
    reason: str | None = None
    error: str | None = None
    payload: Any = None  # decoded Lambda event record (dead letters)
    batch_info: dict[str, Any] | None = None  # shard + sequence range (on-failure)
    complete: bool = True  # every part of a split letter is present

    def summary(self) -> dict[str, Any]:
        document: dict[str, Any] = {"side": self.side, "queue": self.queue, "kind": self.kind}
        if self.kind == "dead-letter":
            document.update(
                handler=self.handler,
                reason=self.reason,
                error=self.error,
                parts=len(self.messages),
                complete=self.complete,
                record=describe_payload(self.handler, self.payload) if self.complete else None,
            )
        else:
            document.update(
                handler=self.handler, batch=self.batch_info, condition=self.reason, error=self.error
            )
        return document


def describe_payload(handler: str | None, payload: Any) -> Any:
    """What a dead-lettered record says, for people: the applier's wire record decoded from base64,
    or the sender's stream record (event name, keys, images)."""
    if not isinstance(payload, dict):
        return payload
    if handler == "applier":
        data = payload.get("kinesis", {}).get("data")
        try:
            return {
                "sequenceNumber": payload.get("kinesis", {}).get("sequenceNumber"),
                "wire": json.loads(base64.b64decode(data)),
            }
        except (TypeError, ValueError):
            return {"undecodable_data": data}
    return payload


# --- reading the queues ---------------------------------------------------------------------------


def queue_url(sqs: Any, name: str) -> str | None:
    try:
        url: str = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except ClientError as error:
        if "NonExistentQueue" in str(error.response.get("Error", {}).get("Code", "")):
            return None
        raise
    return url


def receive_all(sqs: Any, url: str, visibility: int) -> list[Message]:
    """Every message currently visible (each received once: they stay invisible `visibility` s)."""
    found: list[Message] = []
    while True:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=visibility)
        messages = batch.get("Messages", [])
        if not messages:
            return found
        for message in messages:
            try:
                body = json.loads(message["Body"])
            except ValueError:
                body = {"undecodable_body": message["Body"]}
            found.append(
                Message(message["ReceiptHandle"], body if isinstance(body, dict) else {"body": body})
            )


def release(sqs: Any, url: str, messages: list[Message]) -> None:
    """Make messages visible again now (a listing or a failed redrive must not hide them)."""
    for message in messages:
        try:
            sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message.receipt, VisibilityTimeout=0)
        except ClientError:
            continue  # already gone or expired: nothing to release


def assemble_letters(side: str, queue: str, messages: list[Message]) -> list[DeadLetterEntry]:
    """Our dead letters: one entry per record, split parts joined by group in part order."""
    entries: list[DeadLetterEntry] = []
    groups: dict[str, list[Message]] = {}
    for message in messages:
        body = message.body
        if body.get("payload_encoding") == "zlib+base64" and body.get("group"):
            groups.setdefault(str(body["group"]), []).append(message)
            continue
        entries.append(
            DeadLetterEntry(
                side,
                queue,
                "dead-letter",
                [message],
                handler=body.get("handler"),
                reason=body.get("reason"),
                error=body.get("error"),
                payload=body.get("payload"),
                complete="payload" in body,
            )
        )
    for parts in groups.values():
        parts.sort(key=lambda m: int(m.body.get("part", 0)))
        first = parts[0].body
        complete = len(parts) == int(first.get("parts", 0)) and [int(m.body["part"]) for m in parts] == list(
            range(len(parts))
        )
        payload = None
        if complete:
            packed = "".join(str(m.body.get("payload", "")) for m in parts)
            payload = json.loads(zlib.decompress(base64.b64decode(packed)))
        entries.append(
            DeadLetterEntry(
                side,
                queue,
                "dead-letter",
                parts,
                handler=first.get("handler"),
                reason=first.get("reason"),
                error=first.get("error"),
                payload=payload,
                complete=complete,
            )
        )
    return entries


def failure_entries(side: str, queue: str, messages: list[Message]) -> list[DeadLetterEntry]:
    entries = []
    for message in messages:
        body = message.body
        info = body.get("DDBStreamBatchInfo") or body.get("KinesisBatchInfo")
        context = body.get("requestContext") or {}
        response = body.get("responseContext") or {}
        entries.append(
            DeadLetterEntry(
                side,
                queue,
                "on-failure",
                [message],
                handler="sender" if "DDBStreamBatchInfo" in body else "applier",
                reason=context.get("condition"),
                error=response.get("functionError"),
                batch_info=info,
            )
        )
    return entries


@dataclass
class QueueContents:
    side: str
    name: str
    url: str
    entries: list[DeadLetterEntry]


def read_queues(
    manifest: PairManifest, sessions: dict[str, RegionSession], visibility: int
) -> list[QueueContents]:
    found = []
    for spec in manifest.spec.regions:
        names = SideNames(manifest.name, spec.name)
        sqs = sessions[spec.name].client("sqs")
        for name in (names.dead_letter_queue, names.sender_failures_queue, names.applier_failures_queue):
            url = queue_url(sqs, name)
            if url is None:
                continue
            messages = receive_all(sqs, url, visibility)
            if name == names.dead_letter_queue:
                entries = assemble_letters(spec.name, name, messages)
            else:
                entries = failure_entries(spec.name, name, messages)
            found.append(QueueContents(spec.name, name, url, entries))
    return found


def list_dead_letters(
    manifest: PairManifest, sessions: dict[str, RegionSession] | None = None
) -> list[DeadLetterEntry]:
    """Every dead letter of both sides, decoded; the messages stay in their queues."""
    clients = sessions or {side.name: region_session(side) for side in manifest.spec.regions}
    contents = read_queues(manifest, clients, LIST_VISIBILITY_SECONDS)
    for queue in contents:
        release(clients[queue.side].client("sqs"), queue.url, [m for e in queue.entries for m in e.messages])
    return [entry for queue in contents for entry in queue.entries]


# --- redrive --------------------------------------------------------------------------------------


@dataclass
class RedriveResult:
    entry: DeadLetterEntry
    ok: bool
    detail: str


@dataclass
class RedriveReport:
    results: list[RedriveResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)


class Redriver:
    def __init__(self, manifest: PairManifest, sessions: dict[str, RegionSession]) -> None:
        self.manifest = manifest
        self.sessions = sessions
        self._appliers: dict[str, RegionApplier] = {}
        self._repairer: PairRepairer | None = None

    def applier(self, side: str) -> RegionApplier:
        if side not in self._appliers:
            self._appliers[side] = RegionApplier.deployed(self.sessions[side], self.manifest.name, side)
        return self._appliers[side]

    def repairer(self) -> PairRepairer:
        if self._repairer is None:
            self._repairer = PairRepairer(self.manifest, self.sessions)
        return self._repairer

    def redrive(self, entry: DeadLetterEntry) -> RedriveResult:
        if entry.kind == "dead-letter":
            if not entry.complete:
                return RedriveResult(entry, False, "parts missing: kept (the rest may still arrive)")
            if entry.handler == "applier":
                return self.apply_events(entry, entry.side, [entry.payload])
            return self.repair_stream_records(entry, [entry.payload])
        info = entry.batch_info or {}
        try:
            if entry.handler == "applier":
                records = self.read_kinesis_range(entry.side, info)
                events = [
                    kinesis_record(r["Data"], index, r.get("PartitionKey", ""), 0.0)
                    for index, r in enumerate(records)
                ]
                return self.apply_events(entry, entry.side, events)
            return self.repair_stream_records(entry, self.read_dynamodb_range(entry.side, info))
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            return RedriveResult(
                entry,
                False,
                f"the sequence range can no longer be read ({code}): kept; the records are gone, "
                "recover with `ddbbridge backfill` and `ddbbridge verify --repair`",
            )

    def apply_events(self, entry: DeadLetterEntry, side: str, events: list[dict[str, Any]]) -> RedriveResult:
        outcome = self.applier(side).apply_events(events)
        if outcome.rejected:
            return RedriveResult(entry, False, f"still rejected: {outcome.rejected[0].error}: kept")
        counts = ", ".join(f"{k} {v}" for k, v in sorted(outcome.counts.items()))
        return RedriveResult(entry, True, f"re-applied in {side}: {counts}")

    def repair_stream_records(self, entry: DeadLetterEntry, records: list[Any]) -> RedriveResult:
        repairer = self.repairer()
        details = []
        for record in records:
            keys = (record.get("dynamodb") or {}).get("Keys") if isinstance(record, dict) else None
            if not isinstance(keys, dict) or not keys:
                return RedriveResult(entry, False, "the record names no key: kept")
            result = repairer.repair_key(item_to_boto3(keys))
            if not result.ok:
                return RedriveResult(entry, False, f"{result.result}: kept")
            details.append(result.result)
        return RedriveResult(entry, True, "; ".join(details) or "empty range")

    def read_dynamodb_range(self, side: str, info: dict[str, Any]) -> list[dict[str, Any]]:
        """Stream records of [start, end] of one shard, in Lambda's event shape (Keys suffice)."""
        streams = self.sessions[side].client("dynamodbstreams")
        iterator = streams.get_shard_iterator(
            StreamArn=info["streamArn"],
            ShardId=info["shardId"],
            ShardIteratorType="AT_SEQUENCE_NUMBER",
            SequenceNumber=info["startSequenceNumber"],
        )["ShardIterator"]
        end = int(info["endSequenceNumber"])
        found: list[dict[str, Any]] = []
        while iterator:
            page = streams.get_records(ShardIterator=iterator, Limit=1000)
            records = page.get("Records", [])
            for record in records:
                if int(record["dynamodb"]["SequenceNumber"]) > end:
                    return found
                found.append(
                    {"eventName": record["eventName"], "dynamodb": _wire_stream_body(record["dynamodb"])}
                )
            if not records:
                return found
            iterator = page.get("NextShardIterator")
        return found

    def read_kinesis_range(self, side: str, info: dict[str, Any]) -> list[dict[str, Any]]:
        kinesis = self.sessions[side].client("kinesis")
        stream_name = info["streamArn"].split("/", 1)[-1]
        iterator = kinesis.get_shard_iterator(
            StreamName=stream_name,
            ShardId=info["shardId"],
            ShardIteratorType="AT_SEQUENCE_NUMBER",
            StartingSequenceNumber=info["startSequenceNumber"],
        )["ShardIterator"]
        end = int(info["endSequenceNumber"])
        found: list[dict[str, Any]] = []
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=1000)
            records = page.get("Records", [])
            for record in records:
                if int(record["SequenceNumber"]) > end:
                    return found
                found.append(record)
            if not records:
                return found
            iterator = page.get("NextShardIterator")
        return found


def _wire_stream_body(body: dict[str, Any]) -> dict[str, Any]:
    """boto3's stream record body (B as bytes) -> the event form (B as base64 text)."""
    return {
        name: item_to_wire(value) if name in ("Keys", "NewImage", "OldImage") else value
        for name, value in body.items()
    }


def redrive_dead_letters(
    manifest: PairManifest, sessions: dict[str, RegionSession] | None = None
) -> RedriveReport:
    """Replay every dead letter of both sides by the version order; delete each only on success."""
    clients = sessions or {side.name: region_session(side) for side in manifest.spec.regions}
    redriver = Redriver(manifest, clients)
    report = RedriveReport()
    for queue in read_queues(manifest, clients, REDRIVE_VISIBILITY_SECONDS):
        sqs = clients[queue.side].client("sqs")
        for entry in queue.entries:
            try:
                result = redriver.redrive(entry)
            except (ReplayError, ClientError, BotoCoreError) as error:
                result = RedriveResult(entry, False, f"{error}: kept")
            if result.ok:
                for message in entry.messages:
                    sqs.delete_message(QueueUrl=queue.url, ReceiptHandle=message.receipt)
            else:
                release(sqs, queue.url, entry.messages)
            report.results.append(result)
    return report


# --- CLI ------------------------------------------------------------------------------------------


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "dlq",
        help="list or redrive the pair's dead letters",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="dlq_action", required=True, metavar="ACTION")
    for action, text in (("list", "show decoded dead letters"), ("redrive", "replay and remove them")):
        sub = actions.add_parser(action, help=text)
        sub.add_argument("-f", "--file", required=True, help="pair manifest (TableReplicationPair YAML)")
        sub.add_argument("-o", "--output", choices=("text", "json"), default="text")
        sub.set_defaults(handler=run_list if action == "list" else run_redrive)


def run_list(args: argparse.Namespace) -> int:
    try:
        entries = list_dead_letters(load_manifest(args.file))
    except (SpecError, OSError, ClientError, BotoCoreError) as error:
        print(f"ddbbridge dlq list: {error}", file=sys.stderr)
        return 2
    documents = [entry.summary() for entry in entries]
    if args.output == "json":
        print(json.dumps(documents, indent=2, default=str, ensure_ascii=False))
    else:
        print(f"{len(entries)} dead letter(s)")
        for document in documents:
            print(json.dumps(document, default=str, ensure_ascii=False))
    return 0


def run_redrive(args: argparse.Namespace) -> int:
    try:
        report = redrive_dead_letters(load_manifest(args.file))
    except (SpecError, OSError, ClientError, BotoCoreError, ReplayError) as error:
        print(f"ddbbridge dlq redrive: {error}", file=sys.stderr)
        return 2
    documents = [{**r.entry.summary(), "redriven": r.ok, "detail": r.detail} for r in report.results]
    if args.output == "json":
        print(json.dumps({"ok": report.ok, "results": documents}, indent=2, default=str, ensure_ascii=False))
    else:
        done = sum(1 for r in report.results if r.ok)
        print(f"redrive: {done} of {len(report.results)} dead letter(s) replayed and removed")
        for r in report.results:
            where = f"{r.entry.side}/{r.entry.queue}"
            print(f"  {where} {r.entry.kind} ({r.entry.handler}): {'ok' if r.ok else 'KEPT'}: {r.detail}")
    return 0 if report.ok else 1
