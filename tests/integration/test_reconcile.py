"""`ddbbridge reconcile | destroy | status` against the emulated regions (real HTTP, one server each).

Mutating calls are counted from the LAUNCHER's request log (what the servers actually served), not
only from what the CLI prints.
"""

from __future__ import annotations

import io
import json
import urllib.request
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from ddbbridge.aws import is_mutating
from ddbbridge.cli import main as ddbbridge_main
from ddbbridge.names import SideNames
from ddbbridge.package import build_zip
from ddbbridge.reconcile import PairClients, reconcile
from ddbbridge.spec import load_manifest
from tests.fixtures.runner import endpoints_of

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_regions")]

CN, SG = "cn-north-1", "ap-southeast-1"


@dataclass
class CliRun:
    code: int
    out: str
    err: str

    def mutating_count(self) -> int:
        line = next(line for line in self.out.splitlines() if line.startswith("mutating AWS calls:"))
        return int(line.split(":")[1].split()[0])


def served_mutating(operation: str) -> bool:
    """An operation from the request log: an API name, or `METHOD /path` for REST APIs (Lambda)."""
    method, _, path = operation.partition(" ")
    if path.startswith("/"):
        return method != "GET"
    return is_mutating(operation)


@dataclass
class Emulators:
    endpoints: dict[str, str]

    def client(self, region: str, service: str) -> Any:
        session: Any = boto3.session.Session(region_name=region)  # Any: service is a plain str
        return session.client(service, endpoint_url=self.endpoints[region])

    def requests(self, region: str, since: int = 0) -> list[dict[str, Any]]:
        url = f"{self.endpoints[region]}/_ddbbridge/requests?since={since}"
        with urllib.request.urlopen(url, timeout=30) as response:
            entries: list[dict[str, Any]] = json.load(response)
        return entries

    def last_seq(self, region: str) -> int:
        entries = self.requests(region)
        return max((int(entry["seq"]) for entry in entries), default=0)

    def marks(self) -> dict[str, int]:
        return {region: self.last_seq(region) for region in self.endpoints}

    def served_since(self, marks: dict[str, int]) -> dict[str, list[str]]:
        return {
            region: [
                f"{e['service']}:{e['operation']}"
                for e in self.requests(region, since)
                if int(e["seq"]) > since
            ]
            for region, since in marks.items()
        }

    def mutating_since(self, marks: dict[str, int]) -> dict[str, list[str]]:
        return {
            region: [op for op in ops if served_mutating(op.split(":", 1)[1])]
            for region, ops in self.served_since(marks).items()
        }

    def function_code(self, region: str, name: str) -> bytes:
        url = f"{self.endpoints[region]}/_ddbbridge/lambda/functions/{name}/code"
        with urllib.request.urlopen(url, timeout=30) as response:
            body: bytes = response.read()
        return body


@pytest.fixture
def emulators(regions: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulators]:
    endpoints = endpoints_of(regions)
    assert {CN, SG} <= set(endpoints)
    monkeypatch.setenv("DDBBRIDGE_ENDPOINTS", ",".join(f"{r}={u}" for r, u in endpoints.items()))
    monkeypatch.delenv("DDBBRIDGE_PEER_ENDPOINTS", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    yield Emulators({CN: endpoints[CN], SG: endpoints[SG]})


def ddbbridge(*args: str) -> CliRun:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = ddbbridge_main(list(args))
    return CliRun(code, out.getvalue(), err.getvalue())


@dataclass
class Pair:
    name: str
    path: Path
    tables: dict[str, str]  # region -> user table

    def names(self, side: str) -> SideNames:
        return SideNames(self.name, side)


def write_pair(tmp_path: Path, name: str, cn_table: str, sg_table: str, extra: str = "") -> Pair:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"""apiVersion: ddbbridge.io/v1alpha1
kind: TableReplicationPair
metadata:
  name: {name}
spec:
  regions:
    - name: cn
      region: {CN}
      tableName: {cn_table}
    - name: sg
      region: {SG}
      tableName: {sg_table}
  replication:
    senderBatchSize: 200
    maximumRetryAttempts: 3
    parallelizationFactor: 2
{extra}"""
    )
    return Pair(name, path, {CN: cn_table, SG: sg_table})


def create_table(
    emulators: Emulators, region: str, name: str, *, range_key: bool = False, stream: str | None = None
) -> None:
    attributes = [{"AttributeName": "tenant", "AttributeType": "S"}]
    keys = [{"AttributeName": "tenant", "KeyType": "HASH"}]
    if range_key:
        attributes.append({"AttributeName": "seq", "AttributeType": "N"})
        keys.append({"AttributeName": "seq", "KeyType": "RANGE"})
    kwargs: dict[str, Any] = {}
    if stream:
        kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream}
    emulators.client(region, "dynamodb").create_table(
        TableName=name,
        AttributeDefinitions=attributes,
        KeySchema=keys,
        BillingMode="PAY_PER_REQUEST",
        **kwargs,
    )


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


@pytest.fixture
def pair(emulators: Emulators, tmp_path: Path) -> Pair:
    """A fresh pair over two fresh user tables holding a few items (including a binary value)."""
    name = unique("it")
    created = write_pair(tmp_path, name, f"{name}-cn", f"{name}-sg")
    for region, table in created.tables.items():
        create_table(emulators, region, table)
        ddb = emulators.client(region, "dynamodb")
        for n in range(3):
            ddb.put_item(
                TableName=table,
                Item={"tenant": {"S": f"t{n}"}, "blob": {"B": bytes([n, 255])}, "n": {"N": str(n)}},
            )
    return created


def scan(emulators: Emulators, region: str, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = emulators.client(region, "dynamodb").scan(TableName=table)["Items"]
    return sorted(items, key=lambda item: item["tenant"]["S"])


def assert_everything_exists(emulators: Emulators, pair: Pair) -> None:
    bundle = build_zip()
    for region, side, peer in ((CN, "cn", "sg"), (SG, "sg", "cn")):
        names, partition = pair.names(side), "aws-cn" if region == CN else "aws"
        ddb = emulators.client(region, "dynamodb")
        table = ddb.describe_table(TableName=pair.tables[region])["Table"]
        assert table["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
        stream_arn = table["LatestStreamArn"]
        assert stream_arn.startswith(f"arn:{partition}:dynamodb:{region}:")
        for bookkeeping, key in ((names.ledger_table, "k"), (names.stats_table, "PK")):
            assert ddb.describe_table(TableName=bookkeeping)["Table"]["KeySchema"] == [
                {"AttributeName": key, "KeyType": "HASH"}
            ]
        ttl = ddb.describe_time_to_live(TableName=names.ledger_table)["TimeToLiveDescription"]
        assert ttl["AttributeName"] == "expires_at"
        kinesis = emulators.client(region, "kinesis")
        summary = kinesis.describe_stream_summary(StreamName=names.inbound_stream)["StreamDescriptionSummary"]
        assert summary["StreamARN"].startswith(f"arn:{partition}:kinesis:{region}:")
        sqs = emulators.client(region, "sqs")
        queue_arns = {}
        for queue in (names.sender_failures_queue, names.applier_failures_queue, names.dead_letter_queue):
            url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
            queue_arns[queue] = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
                "Attributes"
            ]["QueueArn"]
        iam = emulators.client(region, "iam")
        for role in (names.sender_role, names.applier_role):
            assert iam.get_role(RoleName=role)["Role"]["Arn"].startswith(f"arn:{partition}:iam::")
            assert iam.list_role_policies(RoleName=role)["PolicyNames"] == [f"ddbbridge-{pair.name}"]
        policy = iam.get_user_policy(UserName=names.peer_writer_user, PolicyName=f"ddbbridge-{pair.name}")
        (statement,) = policy["PolicyDocument"]["Statement"]
        assert statement["Resource"] == [summary["StreamARN"]]
        (key,) = iam.list_access_keys(UserName=names.peer_writer_user)["AccessKeyMetadata"]
        # This side's key lives in the PEER's SSM: id as String, secret as SecureString.
        peer_region = SG if region == CN else CN
        ssm = emulators.client(peer_region, "ssm")
        stored_id = ssm.get_parameter(Name=names.access_key_parameter)["Parameter"]
        assert (stored_id["Type"], stored_id["Value"]) == ("String", key["AccessKeyId"])
        secret = ssm.get_parameter(Name=names.secret_key_parameter)["Parameter"]
        assert secret["Type"] == "SecureString"
        lam = emulators.client(region, "lambda")
        for function, handler in ((names.sender_function, "sender"), (names.applier_function, "applier")):
            config = lam.get_function(FunctionName=function)["Configuration"]
            assert config["Runtime"] == "python3.12"
            assert config["Handler"] == f"ddbbridge_lambdas.{handler}.handler"
            assert config["CodeSha256"] == bundle.code_sha256
            assert (
                json.loads(config["Environment"]["Variables"]["DDBBRIDGE_CONFIG"])["peer_region_name"] == peer
            )
            deployed = zipfile.ZipFile(io.BytesIO(emulators.function_code(region, function)))
            assert "ddbbridge_lambdas/config.py" in deployed.namelist()
        (sender_mapping,) = lam.list_event_source_mappings(FunctionName=names.sender_function)[
            "EventSourceMappings"
        ]
        assert sender_mapping["EventSourceArn"] == stream_arn
        assert sender_mapping["BatchSize"] == 200
        assert sender_mapping["ParallelizationFactor"] == 2
        assert sender_mapping["MaximumRetryAttempts"] == 3
        assert sender_mapping["BisectBatchOnFunctionError"] is True
        assert sender_mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert (
            sender_mapping["DestinationConfig"]["OnFailure"]["Destination"]
            == queue_arns[names.sender_failures_queue]
        )
        (applier_mapping,) = lam.list_event_source_mappings(FunctionName=names.applier_function)[
            "EventSourceMappings"
        ]
        assert applier_mapping["EventSourceArn"] == summary["StreamARN"]
        assert (
            applier_mapping["DestinationConfig"]["OnFailure"]["Destination"]
            == queue_arns[names.applier_failures_queue]
        )


def test_reconcile_creates_everything_and_a_second_run_changes_nothing(
    emulators: Emulators, pair: Pair
) -> None:
    before = emulators.marks()
    first = ddbbridge("reconcile", "-f", str(pair.path))
    assert first.code == 0, first.err
    served = emulators.mutating_since(before)
    assert first.mutating_count() > 0
    # What the CLI counted is what the servers served (no hidden writes, no phantom counts).
    assert first.mutating_count() == sum(len(ops) for ops in served.values()), served
    assert_everything_exists(emulators, pair)

    middle = emulators.marks()
    second = ddbbridge("reconcile", "-f", str(pair.path))
    assert second.code == 0, second.err
    assert second.mutating_count() == 0, second.out
    assert "actions taken: 0" in second.out
    served_second = emulators.served_since(middle)
    assert all(served_second.values()), "the request log saw the second run's reads"
    assert emulators.mutating_since(middle) == {CN: [], SG: []}


def test_dry_run_plans_and_changes_nothing(emulators: Emulators, pair: Pair) -> None:
    before = emulators.marks()
    plan = ddbbridge("reconcile", "-f", str(pair.path), "--dry-run")
    assert plan.code == 0, plan.err
    assert "reconcile (dry run)" in plan.out
    assert f"create lambda {pair.names('cn').sender_function}" in plan.out
    assert "enable dynamodb" in plan.out
    assert plan.mutating_count() == 0
    assert emulators.mutating_since(before) == {CN: [], SG: []}
    lam = emulators.client(CN, "lambda")
    assert pair.names("cn").sender_function not in [
        f["FunctionName"] for f in lam.list_functions()["Functions"]
    ]

    # A changed spec on an existing pair: the plan names the update, and still nothing changes.
    assert ddbbridge("reconcile", "-f", str(pair.path)).code == 0
    pair.path.write_text(pair.path.read_text().replace("senderBatchSize: 200", "senderBatchSize: 300"))
    middle = emulators.marks()
    changed = ddbbridge("reconcile", "-f", str(pair.path), "--dry-run")
    assert changed.code == 0, changed.err
    assert f"update lambda mapping {pair.names('cn').sender_function}: BatchSize" in changed.out
    assert emulators.mutating_since(middle) == {CN: [], SG: []}
    applied = ddbbridge("reconcile", "-f", str(pair.path))
    assert applied.mutating_count() == 2, applied.out  # one mapping update per region
    (mapping,) = lam.list_event_source_mappings(FunctionName=pair.names("cn").sender_function)[
        "EventSourceMappings"
    ]
    assert mapping["BatchSize"] == 300


def our_resources(emulators: Emulators, pair: Pair, region: str) -> list[str]:
    prefix = f"ddbbridge-{pair.name}-"
    found = [
        t for t in emulators.client(region, "dynamodb").list_tables()["TableNames"] if t.startswith(prefix)
    ]
    found += [
        s for s in emulators.client(region, "kinesis").list_streams()["StreamNames"] if s.startswith(prefix)
    ]
    found += [
        url
        for url in emulators.client(region, "sqs").list_queues(QueueNamePrefix=prefix).get("QueueUrls", [])
    ]
    iam = emulators.client(region, "iam")
    found += [r["RoleName"] for r in iam.list_roles()["Roles"] if r["RoleName"].startswith(prefix)]
    found += [u["UserName"] for u in iam.list_users()["Users"] if u["UserName"].startswith(prefix)]
    found += [
        f["FunctionName"]
        for f in emulators.client(region, "lambda").list_functions()["Functions"]
        if f["FunctionName"].startswith(prefix)
    ]
    parameters = emulators.client(region, "ssm").get_parameters_by_path(
        Path=f"/ddbbridge/{pair.name}", Recursive=True
    )
    found += [p["Name"] for p in parameters["Parameters"]]
    return found


def test_destroy_removes_ours_and_never_touches_the_user_tables(emulators: Emulators, pair: Pair) -> None:
    items_before = {region: scan(emulators, region, table) for region, table in pair.tables.items()}
    assert ddbbridge("reconcile", "-f", str(pair.path)).code == 0
    assert all(our_resources(emulators, pair, region) for region in (CN, SG))

    removed = ddbbridge("destroy", "-f", str(pair.path))
    assert removed.code == 0, removed.err
    for region, table in pair.tables.items():
        assert our_resources(emulators, pair, region) == [], region
        assert scan(emulators, region, table) == items_before[region]
        description = emulators.client(region, "dynamodb").describe_table(TableName=table)["Table"]
        assert not (description.get("StreamSpecification") or {}).get("StreamEnabled"), "we enabled it"
        # The user table still takes writes (no leftover mapping behind it).
        emulators.client(region, "dynamodb").put_item(TableName=table, Item={"tenant": {"S": "after"}})

    marks = emulators.marks()
    again = ddbbridge("destroy", "-f", str(pair.path))
    assert again.code == 0, again.err
    assert again.mutating_count() == 0
    assert emulators.mutating_since(marks) == {CN: [], SG: []}


def test_destroy_keeps_a_stream_the_user_enabled(emulators: Emulators, tmp_path: Path) -> None:
    name = unique("us")
    pair = write_pair(tmp_path, name, f"{name}-cn", f"{name}-sg")
    create_table(emulators, CN, pair.tables[CN], stream="NEW_AND_OLD_IMAGES")
    create_table(emulators, SG, pair.tables[SG])
    assert ddbbridge("reconcile", "-f", str(pair.path)).code == 0
    assert ddbbridge("destroy", "-f", str(pair.path)).code == 0
    cn = emulators.client(CN, "dynamodb").describe_table(TableName=pair.tables[CN])["Table"]
    assert cn["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    sg = emulators.client(SG, "dynamodb").describe_table(TableName=pair.tables[SG])["Table"]
    assert not (sg.get("StreamSpecification") or {}).get("StreamEnabled")


def test_a_stream_of_another_view_type_is_reported_and_nothing_is_created(
    emulators: Emulators, tmp_path: Path
) -> None:
    name = unique("vt")
    pair = write_pair(tmp_path, name, f"{name}-cn", f"{name}-sg")
    create_table(emulators, CN, pair.tables[CN])
    create_table(emulators, SG, pair.tables[SG], stream="KEYS_ONLY")
    marks = emulators.marks()
    run = ddbbridge("reconcile", "-f", str(pair.path))
    assert run.code == 1
    assert "KEYS_ONLY" in run.err and pair.tables[SG] in run.err and "terminal" in run.err
    assert emulators.mutating_since(marks) == {CN: [], SG: []}
    table = emulators.client(SG, "dynamodb").describe_table(TableName=pair.tables[SG])["Table"]
    assert table["StreamSpecification"]["StreamViewType"] == "KEYS_ONLY"


def test_a_missing_table_is_a_clear_error_with_nothing_left_behind(
    emulators: Emulators, tmp_path: Path
) -> None:
    name = unique("mt")
    pair = write_pair(tmp_path, name, f"{name}-cn", f"{name}-nowhere")
    create_table(emulators, CN, pair.tables[CN])
    marks = emulators.marks()
    run = ddbbridge("reconcile", "-f", str(pair.path))
    assert run.code == 1
    assert f"table '{name}-nowhere' does not exist in {SG}" in run.err
    assert "terminal" in run.err
    assert emulators.mutating_since(marks) == {CN: [], SG: []}


def test_different_key_schemas_are_refused(emulators: Emulators, tmp_path: Path) -> None:
    name = unique("ks")
    pair = write_pair(tmp_path, name, f"{name}-cn", f"{name}-sg")
    create_table(emulators, CN, pair.tables[CN])
    create_table(emulators, SG, pair.tables[SG], range_key=True)
    marks = emulators.marks()
    run = ddbbridge("reconcile", "-f", str(pair.path))
    assert run.code == 1
    assert "same key schema" in run.err
    assert emulators.mutating_since(marks) == {CN: [], SG: []}


def test_status_reports_each_direction(emulators: Emulators, pair: Pair) -> None:
    assert ddbbridge("reconcile", "-f", str(pair.path)).code == 0
    # A dead letter in sg's queue counts for the cn -> sg direction only, apart from on-failure ones.
    sqs = emulators.client(SG, "sqs")
    url = sqs.get_queue_url(QueueName=pair.names("sg").dead_letter_queue)["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="{}")
    marks = emulators.marks()
    run = ddbbridge("status", "-f", str(pair.path), "-o", "json")
    assert run.code == 0, run.err
    assert emulators.mutating_since(marks) == {CN: [], SG: []}
    status = json.loads(run.out)
    directions = {(d["source"], d["target"]): d for d in status["directions"]}
    assert set(directions) == {("cn", "sg"), ("sg", "cn")}
    to_sg, to_cn = directions[("cn", "sg")], directions[("sg", "cn")]
    assert (to_sg["dead_letter_depth"], to_sg["on_failure_depth"], to_sg["dlq_depth"]) == (1, 0, 1)
    assert (to_cn["dead_letter_depth"], to_cn["on_failure_depth"], to_cn["dlq_depth"]) == (0, 0, 0)
    assert status["dlqDepth"] == 1
    for direction in directions.values():
        assert direction["replicated_count"] == 0
        assert direction["sender_mapping_state"] == "Enabled"
        assert direction["applier_mapping_state"] == "Enabled"
    text = ddbbridge("status", "-f", str(pair.path))
    assert text.code == 0 and "cn->sg" in text.out and "sg->cn" in text.out


def test_peer_key_rotation_keeps_the_old_key_for_the_overlap(emulators: Emulators, pair: Pair) -> None:
    manifest = load_manifest(pair.path)
    first = reconcile(manifest, PairClients.from_environment(manifest))
    assert first.ok, first.errors
    old_key, created = first.regions["cn"].peer_key_id, first.regions["cn"].peer_key_created
    assert old_key and created

    iam, ssm = emulators.client(CN, "iam"), emulators.client(SG, "ssm")
    user, id_parameter = pair.names("cn").peer_writer_user, pair.names("cn").access_key_parameter

    def keys() -> list[str]:
        return sorted(k["AccessKeyId"] for k in iam.list_access_keys(UserName=user)["AccessKeyMetadata"])

    # Rotation is due (rotationDays defaults to 30): a new key is stored in the PEER's SSM and the
    # old one stays valid for the overlap (senders cache credentials).
    rotated = reconcile(manifest, PairClients.from_environment(manifest), now=created + timedelta(days=31))
    assert rotated.ok, rotated.errors
    new_key = rotated.regions["cn"].peer_key_id
    assert new_key and new_key != old_key
    assert ssm.get_parameter(Name=id_parameter)["Parameter"]["Value"] == new_key
    assert keys() == sorted([old_key, new_key])
    assert rotated.regions["sg"].peer_key_id != first.regions["sg"].peer_key_id  # due there too
    assert {(a.region, a.verb) for a in rotated.actions if a.service == "iam"} == {
        ("cn", "rotate"),
        ("sg", "rotate"),
    }

    # Once the overlap has passed the old key is deleted, and nothing else changes.
    later = reconcile(
        manifest, PairClients.from_environment(manifest), now=datetime.now(UTC) + timedelta(hours=1)
    )
    assert later.ok, later.errors
    assert keys() == [new_key]
    assert sorted((a.region, a.verb, a.service) for a in later.actions) == [
        ("cn", "delete", "iam"),
        ("sg", "delete", "iam"),
    ]
