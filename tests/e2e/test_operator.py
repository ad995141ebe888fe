"""The kopf operator end to end: real kube-apiserver, emulated regions, the local Lambda runner.

The operator runs as a LOCAL PROCESS with the rendered dev overlay Deployment's command and arguments
(`ddbbridge_dev.local_operator`, which `make demo` uses too), pointed at the emulators through
DDBBRIDGE_ENDPOINTS / DDBBRIDGE_PEER_ENDPOINTS, plus test-only knobs (short overlap, recheck and
deletion timeout). One operator, one runner and one namespace serve the whole module; the tests run in
file order and build on each other (the `users` pair from samples/pair.yaml lives until the last test).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from ddbbridge.aws import is_mutating
from ddbbridge.crd import CRD_NAME
from ddbbridge.ensure.table_claim import TAG_REPLICATED_BY
from ddbbridge.names import SideNames
from ddbbridge_dev import local_operator
from tests.fixtures.kube import KubeClusterAccess
from tests.fixtures.regions import CN, SG, Regions
from tests.fixtures.runner import RunnerProcess
from tests.fixtures.waiting import scaled, wait_for
from tests.pair_cases import CRD_FILE, MINIMAL_SAMPLE, minimal_pair

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("fresh_regions")]

HEALTH_INTERVAL = 10  # seconds: the spec's minimum, so "within one health interval" stays short
KEY_OVERLAP = 20.0
STALLED_RECHECK = 15.0
DELETION_TIMEOUT = 8.0
SIDES = {"cn": CN, "sg": SG}
SAMPLE_TABLES = {"cn": "user-cn", "sg": "user-sg"}


# ------------------------------------------------------------------------------------------ helpers


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _deployment_argv(liveness_port: int, metrics_port: int) -> list[str]:
    """The dev overlay's rendered Deployment command and args (as `make demo` runs them), with free
    ports and this module's test-only knobs."""
    container = local_operator.operator_container(local_operator.render(local_operator.DEV_OVERLAY))
    test_knobs = [
        f"--key-overlap-seconds={KEY_OVERLAP}",
        f"--stalled-recheck-seconds={STALLED_RECHECK}",
        f"--deletion-timeout-seconds={DELETION_TIMEOUT}",
    ]
    return local_operator.local_argv(container, liveness_port, metrics_port, extra=test_knobs)


@dataclass
class OperatorProcess:
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    liveness_url: str
    metrics_url: str
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=self.env
            )
        wait_for(self._alive, 60, "the operator's liveness endpoint")

    def _alive(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"operator exited {self.process.returncode}: {self.tail()}")
        return _http_ok(self.liveness_url)

    def kill(self) -> None:
        """SIGKILL: no cleanup, no finalizer work, exactly like a node losing the pod."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=scaled(30))

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=scaled(60))
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _http_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


@dataclass
class Harness:
    kube: KubeClusterAccess
    regions: Regions
    namespace: str
    operator: OperatorProcess
    runner: RunnerProcess
    workdir: Path

    def kubectl(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.kube.kubectl(*args, **kwargs)

    def apply(self, document: dict[str, Any], check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.kubectl(
            "apply", "-n", self.namespace, "-f", "-", stdin=yaml.safe_dump(document), check=check
        )

    def get(self, name: str) -> dict[str, Any] | None:
        result = self.kubectl("get", "trp", name, "-n", self.namespace, "-o", "json", check=False)
        if result.returncode != 0:
            if "NotFound" in result.stderr:
                return None
            raise AssertionError(result.stderr)
        document: dict[str, Any] = json.loads(result.stdout)
        return document

    def condition(self, name: str, kind: str) -> dict[str, Any] | None:
        found = self.get(name)
        for condition in ((found or {}).get("status") or {}).get("conditions", []):
            if condition["type"] == kind:
                return dict(condition)
        return None

    def wait_condition(
        self, name: str, kind: str, status: str, deadline: float, reason: str | None = None
    ) -> dict[str, Any]:
        def met() -> dict[str, Any] | None:
            condition = self.condition(name, kind)
            if condition and condition["status"] == status and reason in (None, condition["reason"]):
                return condition
            return None

        try:
            return wait_for(met, deadline, f"{name}: {kind}={status} {reason or ''}", interval=0.5)
        except AssertionError as error:
            detail = f"{error}\nstatus: {self.get(name)}\noperator log:\n{self.operator.tail()}"
            raise AssertionError(detail) from None

    def events(self, name: str) -> list[dict[str, Any]]:
        result = self.kubectl(
            "get",
            "events",
            "-n",
            self.namespace,
            "--field-selector",
            f"involvedObject.name={name}",
            "-o",
            "json",
        )
        items: list[dict[str, Any]] = json.loads(result.stdout)["items"]
        return items

    def wait_event(self, name: str, reason: str, deadline: float, contains: str = "") -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            return next(
                (e for e in self.events(name) if e["reason"] == reason and contains in e.get("message", "")),
                None,
            )

        try:
            return wait_for(found, deadline, f"event {reason} on {name}", interval=0.5)
        except AssertionError as error:
            seen = [(e["reason"], e.get("message", "")[:200]) for e in self.events(name)]
            detail = f"{error}\nevents: {seen}\noperator log:\n{self.operator.tail()}"
            raise AssertionError(detail) from None

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **self.regions.env()}
        return subprocess.run(
            [sys.executable, "-m", "ddbbridge.cli", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=scaled(300),
            check=False,
        )

    def manifest_file(self, document: dict[str, Any]) -> Path:
        path = self.workdir / f"{document['metadata']['name']}-{uuid.uuid4().hex[:6]}.yaml"
        path.write_text(yaml.safe_dump(document), encoding="utf-8")
        return path


def _create_table(regions: Regions, side: str, table: str, key: tuple[str, str] = ("PK", "S")) -> None:
    regions[SIDES[side]].client("dynamodb").create_table(
        TableName=table,
        KeySchema=[{"AttributeName": key[0], "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": key[0], "AttributeType": key[1]}],
        BillingMode="PAY_PER_REQUEST",
    )


def _pair(name: str, tables: dict[str, str], **spec: Any) -> dict[str, Any]:
    document = minimal_pair()
    document["metadata"]["name"] = name
    for side in document["spec"]["regions"]:
        side["tableName"] = tables[side["name"]]
    document["spec"]["healthCheckIntervalSeconds"] = HEALTH_INTERVAL
    document["spec"].update(spec)
    return document


def aws_resources(regions: Regions, pair: str) -> dict[str, list[str]]:
    """Every AWS resource of `pair` in both regions, found by listing (not by what the operator says)."""
    found: dict[str, list[str]] = {}
    prefix = f"ddbbridge-{pair}-"
    for side, region_name in SIDES.items():
        region = regions[region_name]
        names: list[str] = []
        lam = region.client("lambda")
        for function in lam.list_functions().get("Functions", []):
            if function["FunctionName"].startswith(prefix):
                names.append(f"function {function['FunctionName']}")
                for mapping in lam.list_event_source_mappings(FunctionName=function["FunctionName"])[
                    "EventSourceMappings"
                ]:
                    names.append(f"mapping {function['FunctionName']} {mapping['UUID']}")
        names += [
            f"kinesis {s}"
            for s in region.client("kinesis").list_streams()["StreamNames"]
            if s.startswith(prefix)
        ]
        names += [
            f"queue {url.rsplit('/', 1)[-1]}"
            for url in region.client("sqs").list_queues(QueueNamePrefix=prefix).get("QueueUrls", [])
        ]
        names += [
            f"table {t}"
            for t in region.client("dynamodb").list_tables()["TableNames"]
            if t.startswith(prefix)
        ]
        iam = region.client("iam")
        names += [
            f"role {r['RoleName']}" for r in iam.list_roles()["Roles"] if r["RoleName"].startswith(prefix)
        ]
        for user in iam.list_users()["Users"]:
            if user["UserName"].startswith(prefix):
                names.append(f"user {user['UserName']}")
                for key in iam.list_access_keys(UserName=user["UserName"])["AccessKeyMetadata"]:
                    names.append(f"key {user['UserName']} {key['AccessKeyId']}")
        parameters = region.client("ssm").get_parameters_by_path(Path=f"/ddbbridge/{pair}/", Recursive=True)
        names += [f"parameter {p['Name']}" for p in parameters.get("Parameters", [])]
        found[side] = sorted(names)
    return found


def _count(resources: list[str], kind: str) -> int:
    return sum(1 for r in resources if r.startswith(kind + " "))


def _table_items(regions: Regions, side: str, table: str) -> dict[str, dict[str, Any]]:
    items = regions[SIDES[side]].client("dynamodb").scan(TableName=table, ConsistentRead=True)["Items"]
    return {item["PK"]["S"]: item for item in items}


def _table_tags(regions: Regions, side: str, table: str) -> dict[str, str]:
    ddb = regions[SIDES[side]].client("dynamodb")
    arn = ddb.describe_table(TableName=table)["Table"]["TableArn"]
    return {t["Key"]: t["Value"] for t in ddb.list_tags_of_resource(ResourceArn=arn)["Tags"]}


def _write_items(regions: Regions, side: str, table: str, prefix: str, count: int) -> None:
    ddb = regions[SIDES[side]].client("dynamodb")
    for index in range(count):
        ddb.put_item(TableName=table, Item={"PK": {"S": f"{prefix}-{index}"}, "value": {"N": str(index)}})


def _converged(harness: Harness, tables: dict[str, str], expected: int, manifest: Path) -> bool:
    counts = [len(_table_items(harness.regions, side, table)) for side, table in tables.items()]
    if counts != [expected, expected]:
        return False
    return harness.cli("verify", "-f", str(manifest), "--no-progress").returncode == 0


def _mutating(operation: str) -> bool:
    method, _, path = operation.partition(" ")
    if path.startswith("/"):  # REST APIs (Lambda) are logged as `METHOD /path`
        return method != "GET"
    return is_mutating(operation)


# ----------------------------------------------------------------------------------------- fixtures


def _release_all(harness: Harness) -> None:
    """Pairs still present are released with force so no finalizer outlives the module."""
    namespace = harness.namespace

    def remaining() -> list[str]:
        listed = json.loads(harness.kubectl("get", "trp", "-n", namespace, "-o", "json").stdout)["items"]
        return [item["metadata"]["name"] for item in listed]

    for name in remaining():
        harness.kubectl(
            "annotate",
            "trp",
            name,
            "-n",
            namespace,
            "ddbbridge.io/force-delete=true",
            "--overwrite",
            check=False,
        )
        harness.kubectl("delete", "trp", name, "-n", namespace, "--wait=false", check=False)
    wait_for(lambda: not remaining(), 300, "every pair of the module to be released", interval=1)


@pytest.fixture(scope="module")
def harness(
    kube_cluster: KubeClusterAccess, fresh_regions: Regions, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Harness]:
    workdir = tmp_path_factory.mktemp("operator")
    kube_cluster.kubectl("apply", "--server-side", "-f", str(CRD_FILE))
    wait_for(
        lambda: (
            "Established" in kube_cluster.kubectl("get", "crd", CRD_NAME, "-o", "json").stdout
            and kube_cluster.kubectl("get", "trp", "-A", check=False).returncode == 0
        ),
        60,
        "the CRD to be served",
    )
    namespace = f"operator-e2e-{uuid.uuid4().hex[:6]}"
    kube_cluster.kubectl("create", "namespace", namespace)

    runner = RunnerProcess(fresh_regions.endpoints(), workdir / "runner-dev")
    runner.start()
    liveness, metrics = _free_port(), _free_port()
    env = {
        **os.environ,
        **fresh_regions.env(),
        "KUBECONFIG": str(kube_cluster.kubeconfig),
        "PYTHONUNBUFFERED": "1",
    }
    operator = OperatorProcess(
        _deployment_argv(liveness, metrics),
        env,
        workdir / "operator.log",
        f"http://127.0.0.1:{liveness}/healthz",
        f"http://127.0.0.1:{metrics}/metrics",
    )
    operator.start()
    harness = Harness(kube_cluster, fresh_regions, namespace, operator, runner, workdir)
    try:
        yield harness
    finally:
        try:
            _release_all(harness)
        finally:
            # Whatever happened above, no process of the module outlives it.
            operator.stop()
            runner.close()
            if os.environ.get("DDBBRIDGE_KEEP_OPERATOR_LOG"):
                Path(os.environ["DDBBRIDGE_KEEP_OPERATOR_LOG"]).write_bytes(operator.log_path.read_bytes())
        kube_cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


# --------------------------------------------------------------------------------------------- tests


def test_sample_pair_becomes_ready_and_replicates(harness: Harness) -> None:
    for side, table in SAMPLE_TABLES.items():
        _create_table(harness.regions, side, table)
    harness.kubectl("apply", "-n", harness.namespace, "-f", str(MINIMAL_SAMPLE))
    ready = harness.wait_condition("users", "Ready", "True", 60)
    assert ready["observedGeneration"] == 1

    # A short health interval for the rest of the module: an update of the spec, reconciled at once.
    harness.kubectl(
        "patch",
        "trp",
        "users",
        "-n",
        harness.namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"healthCheckIntervalSeconds": HEALTH_INTERVAL}}),
    )
    wait_for(
        lambda: (harness.get("users") or {}).get("status", {}).get("observedGeneration") == 2,
        60,
        "generation 2 observed",
    )
    harness.wait_condition("users", "Ready", "True", 60)

    _write_items(harness.regions, "cn", "user-cn", "from-cn", 20)
    _write_items(harness.regions, "sg", "user-sg", "from-sg", 20)
    manifest = harness.manifest_file(yaml.safe_load(MINIMAL_SAMPLE.read_text()))
    wait_for(
        lambda: _converged(harness, SAMPLE_TABLES, 40, manifest), 90, "both tables to converge", interval=1
    )

    def counted() -> dict[str, Any] | None:
        status: dict[str, Any] = (harness.get("users") or {}).get("status", {})
        directions = status.get("directions", [])
        if len(directions) == 2 and all(
            d.get("replicatedCount", 0) >= 20 and "lagSeconds" in d for d in directions
        ):
            return status
        return None

    status = wait_for(counted, 3 * HEALTH_INTERVAL, "replicated counts and lag in status", interval=0.5)
    assert status["dlqDepth"] == 0
    assert [(d["source"], d["target"]) for d in status["directions"]] == [("cn", "sg"), ("sg", "cn")]
    for direction in status["directions"]:
        assert direction["dlqDepth"] == 0
        assert direction["onFailureDepth"] == 0 and direction["deadLetterDepth"] == 0
    for region in status["regions"]:
        assert region["account"] and region["arns"]["senderFunction"] and region["arns"]["kinesisStream"]
        assert region["credentialKeyAgeDays"] == 0 and "credentialKeyCreated" in region
        assert region["streamEnabledByOperator"] is True
    assert "SecretAccessKey" not in json.dumps(status)
    assert status["regions"][0]["arns"]["table"].startswith("arn:aws-cn:dynamodb:cn-north-1:")

    for wide in ((), ("-o", "wide")):
        table = harness.kubectl(
            "get", "tablereplicationpairs", "users", "-n", harness.namespace, *wide
        ).stdout
        header, row = table.strip().splitlines()
        cells = row.split()
        assert len(cells) == len(header.split()), table
        assert "<none>" not in cells, table
        assert cells[:4] == ["users", "True", CN, SG], table

    assert _http_ok(harness.operator.liveness_url)
    metrics = _http_text(harness.operator.metrics_url)
    assert (
        f'ddbbridge_replication_lag_seconds{{direction="cn->sg",namespace="{harness.namespace}",pair="users"}}'
        in metrics
    )
    assert f'ddbbridge_pair_ready{{namespace="{harness.namespace}",pair="users"}} 1.0' in metrics


class HealthChecks:
    """Counts distinct lastHealthCheckTime values of a pair seen after a start (poll often enough)."""

    def __init__(self, harness: Harness, name: str) -> None:
        self.harness, self.name = harness, name
        self.start = self._current()
        self.seen: set[str] = set()

    def _current(self) -> str | None:
        value = ((self.harness.get(self.name) or {}).get("status") or {}).get("lastHealthCheckTime")
        return str(value) if value else None

    def at_least(self, count: int) -> bool:
        current = self._current()
        if current and current != self.start:
            self.seen.add(current)
        return len(self.seen) >= count


def test_unchanged_pair_makes_no_mutating_aws_calls(harness: Harness) -> None:
    marks = {region.name: max((e["seq"] for e in region.requests()), default=0) for region in harness.regions}
    checks = HealthChecks(harness, "users")
    # Two more health checks: at least one whole interval lies between them.
    wait_for(lambda: checks.at_least(2), 3 * HEALTH_INTERVAL + 60, "two health checks", interval=0.5)
    for region in harness.regions:
        served = region.requests(since=marks[region.name])
        assert served, "the health checks read both regions"
        changes = [f"{e['service']}:{e['operation']}" for e in served if _mutating(e["operation"])]
        assert changes == [], f"{region.name}: {changes}"


def test_out_of_band_deletions_are_repaired(harness: Harness) -> None:
    cn, sg = harness.regions[CN], harness.regions[SG]
    names_cn, names_sg = SideNames("users", "cn"), SideNames("users", "sg")
    lam = sg.client("lambda")
    (mapping,) = lam.list_event_source_mappings(FunctionName=names_sg.applier_function)["EventSourceMappings"]
    lam.delete_event_source_mapping(UUID=mapping["UUID"])
    cn.client("kinesis").delete_stream(StreamName=names_cn.inbound_stream)

    harness.wait_event("users", "DriftRepaired", HEALTH_INTERVAL + 40, contains=names_cn.inbound_stream)
    harness.wait_event("users", "DriftRepaired", HEALTH_INTERVAL + 40, contains=names_sg.applier_function)
    assert names_cn.inbound_stream in cn.client("kinesis").list_streams()["StreamNames"]
    assert (
        len(lam.list_event_source_mappings(FunctionName=names_sg.applier_function)["EventSourceMappings"])
        == 1
    )
    harness.wait_condition("users", "Ready", "True", HEALTH_INTERVAL + 40)
    # Replication goes on through the repaired stream and mapping, both ways.
    _write_items(harness.regions, "cn", "user-cn", "after-repair-cn", 5)
    _write_items(harness.regions, "sg", "user-sg", "after-repair-sg", 5)
    manifest = harness.manifest_file(yaml.safe_load(MINIMAL_SAMPLE.read_text()))
    wait_for(
        lambda: _converged(harness, SAMPLE_TABLES, 50, manifest), 90, "convergence after repair", interval=1
    )


def test_poison_record_is_dead_lettered_and_reported(harness: Harness) -> None:
    sg = harness.regions[SG]
    names = SideNames("users", "sg")
    sg.client("kinesis").put_record(
        StreamName=names.inbound_stream, Data=b"not a replication record", PartitionKey="poison"
    )

    def dead_lettered() -> dict[str, Any] | None:
        status = (harness.get("users") or {}).get("status", {})
        return status if status.get("dlqDepth") == 1 else None

    # The runner delivers it within a second or two; then one health interval at most.
    status = wait_for(dead_lettered, HEALTH_INTERVAL + 30, "DLQ depth 1 in status", interval=0.5)
    into_sg = status["directions"][0]
    assert (into_sg["source"], into_sg["target"], into_sg["deadLetterDepth"], into_sg["dlqDepth"]) == (
        "cn",
        "sg",
        1,
        1,
    )
    letters = harness.condition("users", "DeadLetters")
    assert letters and letters["status"] == "True" and "cn->sg: 1" in letters["message"], letters
    ready = harness.condition("users", "Ready")
    assert ready and (ready["status"], ready["reason"]) == ("False", "DeadLetters"), ready
    assert "replication continues" in ready["message"]

    # Semantics: Ready comes back once the dead letters are dealt with (here: purged).
    queue = sg.client("sqs").get_queue_url(QueueName=names.dead_letter_queue)["QueueUrl"]
    sg.client("sqs").purge_queue(QueueUrl=queue)
    harness.wait_condition("users", "Ready", "True", HEALTH_INTERVAL + 30)
    assert harness.condition("users", "DeadLetters")["status"] == "False"  # type: ignore[index]


def test_forced_key_rotation_loses_no_change_and_retires_the_old_key(harness: Harness) -> None:
    before = aws_resources(harness.regions, "users")
    old_keys = {
        side: [r.split()[-1] for r in found if r.startswith("key ")] for side, found in before.items()
    }
    assert all(len(keys) == 1 for keys in old_keys.values()), old_keys

    harness.kubectl(
        "annotate", "trp", "users", "-n", harness.namespace, "ddbbridge.io/rotate-key=first", "--overwrite"
    )
    _write_items(harness.regions, "cn", "user-cn", "during-rotation-cn", 10)
    _write_items(harness.regions, "sg", "user-sg", "during-rotation-sg", 10)
    harness.wait_event("users", "KeyRotated", 120)
    status = wait_for(
        lambda: (
            (harness.get("users") or {})["status"]
            if (harness.get("users") or {})["status"].get("keyRotationRequest") == "first"
            else None
        ),
        60,
        "the rotation request to be handled",
    )
    for side in ("cn", "sg"):
        stored = (
            harness.regions[SIDES["sg" if side == "cn" else "cn"]]
            .client("ssm")
            .get_parameter(Name=f"/ddbbridge/users/{side}/access-key-id")["Parameter"]["Value"]
        )
        assert stored not in old_keys[side], f"{side}'s stored key was not replaced"
    _write_items(harness.regions, "cn", "user-cn", "after-rotation-cn", 10)
    _write_items(harness.regions, "sg", "user-sg", "after-rotation-sg", 10)
    manifest = harness.manifest_file(yaml.safe_load(MINIMAL_SAMPLE.read_text()))
    wait_for(
        lambda: _converged(harness, SAMPLE_TABLES, 90, manifest),
        90,
        "convergence across the rotation",
        interval=1,
    )

    # The old key stays during the overlap, then the health check deletes it.
    def retired() -> bool:
        keys = {
            side: [r.split()[-1] for r in found if r.startswith("key ")]
            for side, found in aws_resources(harness.regions, "users").items()
        }
        return all(len(keys[side]) == 1 and keys[side][0] not in old_keys[side] for side in keys)

    wait_for(
        retired, KEY_OVERLAP + 2 * HEALTH_INTERVAL + 40, "old keys deleted after the overlap", interval=1
    )
    harness.wait_event("users", "OldKeyDeleted", 10)
    assert status["regions"][0]["credentialKeyAgeDays"] == 0


def test_initial_sync_copies_pre_existing_items_both_ways(harness: Harness) -> None:
    """spec.initialSync: both over tables that already hold items (unstamped, as the seed's apps left
    them), with writes during the copy: the operator copies in the background, reports progress and
    completion in status, keeps its checkpoints in the stats tables, and the tables end up equal."""
    tables = {"cn": "seed-cn", "sg": "seed-sg"}
    for side, table in tables.items():
        _create_table(harness.regions, side, table)
    _write_items(harness.regions, "cn", tables["cn"], "old-cn", 200)
    _write_items(harness.regions, "sg", tables["sg"], "old-sg", 100)
    document = _pair("seed", tables, initialSync="both")
    harness.apply(document)
    harness.wait_condition("seed", "Ready", "True", 90)
    _write_items(harness.regions, "sg", tables["sg"], "during-sg", 10)  # replicated, never lost

    done = harness.wait_condition("seed", "InitialSyncComplete", "True", 240, reason="Copied")
    assert done["observedGeneration"] == 1
    sync = (harness.get("seed") or {})["status"]["initialSync"]
    assert sync["phase"] == "Completed" and sync["mode"] == "both" and sync["run"] == "g1"
    assert sync["startedTime"] <= sync["finishedTime"]
    copied = {d["direction"]: d for d in sync["directions"]}
    assert set(copied) == {"cn->sg", "sg->cn"}
    assert copied["cn->sg"]["scanned"] >= 200 and copied["sg->cn"]["scanned"] >= 100
    assert all(d["segmentsDone"] == d["segmentsTotal"] and d["rejected"] == 0 for d in copied.values())
    # Unstamped items were stamped in their own region, then copied at that version.
    assert copied["cn->sg"]["restamped"] >= 200 and copied["cn->sg"]["written"] >= 1
    started = harness.wait_event("seed", "InitialSyncStarted", 10)
    assert "run g1" in started["message"]
    harness.wait_event("seed", "InitialSyncCompleted", 10)

    # The checkpoints live in AWS (the pod has no disk): the source's stats table, per segment.
    stats = harness.regions[CN].client("dynamodb")
    key = {"PK": {"S": "backfill#g1#cn-to-sg#segment#0000"}}
    item = stats.get_item(TableName=SideNames("seed", "cn").stats_table, Key=key)["Item"]
    assert json.loads(item["checkpoint"]["S"])["done"] is True

    manifest = harness.manifest_file(
        {**document, "metadata": {"name": "seed", "namespace": harness.namespace}}
    )
    wait_for(
        lambda: _converged(harness, tables, 310, manifest), 180, "the seed tables to converge", interval=2
    )
    harness.kubectl("delete", "trp", "seed", "-n", harness.namespace, "--wait=false")


@dataclass(frozen=True)
class StalledCase:
    id: str
    tables: dict[str, str]
    reason: str
    extra: dict[str, Any]


def _prepare_stalled_cases(harness: Harness) -> list[StalledCase]:
    regions = harness.regions
    _create_table(regions, "cn", "km-cn")
    _create_table(regions, "sg", "km-sg", key=("id", "N"))
    _create_table(regions, "cn", "sc-cn")
    regions[CN].client("dynamodb").update_table(
        TableName="sc-cn", StreamSpecification={"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"}
    )
    _create_table(regions, "sg", "sc-sg")
    _create_table(regions, "cn", "ok-cn")
    _create_table(regions, "sg", "ok-sg")
    harness.kubectl(
        "create",
        "secret",
        "generic",
        "no-secret-key",
        "-n",
        harness.namespace,
        "--from-literal=AWS_ACCESS_KEY_ID=testing",
    )
    return [
        StalledCase("missing-a", {"cn": "nope-cn", "sg": "ok-sg"}, "TableMissing", {}),
        StalledCase("missing-b", {"cn": "ok-cn", "sg": "nope-sg"}, "TableMissing", {}),
        StalledCase("keys-differ", {"cn": "km-cn", "sg": "km-sg"}, "KeySchemaMismatch", {}),
        StalledCase("keys-only", {"cn": "sc-cn", "sg": "sc-sg"}, "StreamViewTypeConflict", {}),
        StalledCase("taken", SAMPLE_TABLES, "TableAlreadyReplicated", {}),
        StalledCase(
            "no-secret", {"cn": "ok-cn", "sg": "ok-sg"}, "CredentialsSecretMissing", {"secret": "absent"}
        ),
        StalledCase(
            "bad-secret",
            {"cn": "ok-cn", "sg": "ok-sg"},
            "CredentialsSecretInvalid",
            {"secret": "no-secret-key"},
        ),
    ]


ADMISSION_CASES = {
    "same-region": ({"regions.1.region": CN}, r"regions\[\]\.region must differ"),
    "same-side-name": ({"regions.1.name": "cn"}, r"Duplicate value|must be unique"),
    "same-attributes": ({"replication.timestampAttribute": "last_updater_region"}, "must differ"),
}


def test_invalid_specs_are_refused_or_stalled_without_leaving_aws_resources(harness: Harness) -> None:
    for case_id, (changes, message) in ADMISSION_CASES.items():
        document = _pair(f"bad-{case_id}", {"cn": "ok-cn", "sg": "ok-sg"})
        for path, value in changes.items():
            node: Any = document["spec"]
            steps = [int(s) if s.isdigit() else s for s in path.split(".")]
            for step in steps[:-1]:
                node = node[step]
            node[steps[-1]] = value
        refused = harness.apply(document, check=False)
        assert refused.returncode != 0 and re.search(message, refused.stderr), (case_id, refused.stderr)
        assert harness.get(f"bad-{case_id}") is None

    cases = _prepare_stalled_cases(harness)
    tags_before = {side: _table_tags(harness.regions, side, table) for side, table in SAMPLE_TABLES.items()}
    for case in cases:
        document = _pair(f"bad-{case.id}", case.tables)
        if "secret" in case.extra:
            document["spec"]["regions"][1]["credentials"] = {"secretName": case.extra["secret"]}
        harness.apply(document)
    for case in cases:
        stalled = harness.wait_condition(f"bad-{case.id}", "Stalled", "True", 60, reason=case.reason)
        assert stalled["message"], case.id
        ready = harness.condition(f"bad-{case.id}", "Ready")
        assert ready and (ready["status"], ready["reason"]) == ("False", case.reason), ready
        assert aws_resources(harness.regions, f"bad-{case.id}") == {"cn": [], "sg": []}, case.id
        harness.wait_event(f"bad-{case.id}", "Stalled", 10)
    for side, table in {"cn": "ok-cn", "sg": "ok-sg"}.items():
        assert TAG_REPLICATED_BY not in _table_tags(harness.regions, side, table)
        described = harness.regions[SIDES[side]].client("dynamodb").describe_table(TableName=table)["Table"]
        assert not (described.get("StreamSpecification") or {}).get("StreamEnabled"), table
    assert {
        side: _table_tags(harness.regions, side, table) for side, table in SAMPLE_TABLES.items()
    } == tags_before

    # Stalled is not final: creating the missing table is picked up by the slow re-check, no spec change.
    _create_table(harness.regions, "sg", "nope-sg")
    harness.wait_condition("bad-missing-b", "Ready", "True", STALLED_RECHECK + 90)
    assert harness.condition("bad-missing-b", "Stalled")["status"] == "False"  # type: ignore[index]

    for case in cases:
        harness.kubectl("delete", "trp", f"bad-{case.id}", "-n", harness.namespace, "--wait=false")
    wait_for(
        lambda: all(harness.get(f"bad-{case.id}") is None for case in cases),
        180,
        "the invalid pairs to be deleted",
        interval=1,
    )
    assert aws_resources(harness.regions, "bad-missing-b") == {"cn": [], "sg": []}


def test_operator_killed_mid_reconcile_converges_without_duplicates(harness: Harness) -> None:
    tables = {"cn": "crash-cn", "sg": "crash-sg"}
    for side, table in tables.items():
        _create_table(harness.regions, side, table)
    harness.apply(_pair("crash", tables))
    names = SideNames("crash", "cn")
    ddb = harness.regions[CN].client("dynamodb")
    wait_for(
        lambda: names.ledger_table in ddb.list_tables()["TableNames"],
        60,
        "the reconcile to start",
        interval=0.02,
    )
    harness.operator.kill()
    partial = aws_resources(harness.regions, "crash")
    assert _count(partial["cn"] + partial["sg"], "mapping") < 4, (
        f"the reconcile had already finished: {partial}"
    )

    harness.operator.start()
    harness.wait_condition("crash", "Ready", "True", 90)
    found = aws_resources(harness.regions, "crash")
    for side in ("cn", "sg"):
        assert _count(found[side], "function") == 2, found[side]
        assert _count(found[side], "mapping") == 2, found[side]
        assert _count(found[side], "kinesis") == 1, found[side]
        assert _count(found[side], "queue") == 3, found[side]
        assert _count(found[side], "table") == 2, found[side]
        assert _count(found[side], "role") == 2, found[side]
        assert _count(found[side], "user") == 1, found[side]
        assert _count(found[side], "key") == 1, found[side]
        assert _count(found[side], "parameter") == 2, found[side]
    # The other pair kept working through the restart.
    harness.wait_condition("users", "Ready", "True", 60)


def test_operator_killed_during_deletion_finishes_the_finalizer_after_restart(harness: Harness) -> None:
    """The kill lands inside the deletion pass: the launcher holds sg's DeleteTable of our ledger or
    stats table (the last phase, after mappings, functions, users, roles, parameters, queues and
    streams are gone) and the operator is SIGKILLed while that call is in flight. The held call is
    answered with an error long after, so the emulator never applies it. A restarted operator must
    resume the finalizer, remove the rest and release the pair, leaving the user tables as they were."""
    tables = {"cn": "doomed-cn", "sg": "doomed-sg"}
    for side, table in tables.items():
        _create_table(harness.regions, side, table)
        _write_items(harness.regions, side, table, f"doomed-{side}", 5)
    harness.apply(_pair("doomed", tables))
    harness.wait_condition("doomed", "Ready", "True", 90)
    items_before = {side: _table_items(harness.regions, side, table) for side, table in tables.items()}
    sg = harness.regions[SG]
    mark = max((int(e["seq"]) for e in sg.requests()), default=0)
    sg.inject_fault(
        "dynamodb",
        "DeleteTable",
        "ServiceUnavailable",
        status=503,
        delay_ms=180_000,
        contains="ddbbridge-doomed-sg-",
    )
    try:
        harness.kubectl("delete", "trp", "doomed", "-n", harness.namespace, "--wait=false")
        wait_for(
            lambda: [e for e in sg.requests(mark) if e["operation"] == "DeleteTable" and e["fault"]],
            120,
            "the deletion pass to reach sg's DeleteTable",
            interval=0.1,
        )
        partial = aws_resources(harness.regions, "doomed")
        harness.operator.kill()
    finally:
        sg.clear_faults("dynamodb", "DeleteTable")
    for side in SIDES:
        assert _count(partial[side], "function") == _count(partial[side], "user") == 0, partial
    assert _count(partial["sg"], "table") == 2, f"killed before the deletion finished: {partial}"
    held = harness.get("doomed")
    assert held is not None and held["metadata"].get("deletionTimestamp") and held["metadata"]["finalizers"]

    harness.operator.start()
    try:
        wait_for(lambda: harness.get("doomed") is None, 120, "the finalizer to complete", interval=0.5)
    except AssertionError as error:
        raise AssertionError(f"{error}\noperator log:\n{harness.operator.tail()}") from None
    assert aws_resources(harness.regions, "doomed") == {"cn": [], "sg": []}
    for side, table in tables.items():
        assert _table_items(harness.regions, side, table) == items_before[side], side
        described = harness.regions[SIDES[side]].client("dynamodb").describe_table(TableName=table)["Table"]
        assert not (described.get("StreamSpecification") or {}).get("StreamEnabled")
    harness.wait_condition("users", "Ready", "True", 60)  # the other pair survived the restart


def test_retain_leaves_everything_in_aws(harness: Harness) -> None:
    tables = {"cn": "keep-cn", "sg": "keep-sg"}
    for side, table in tables.items():
        _create_table(harness.regions, side, table)
    document = _pair("keep", tables, deletionPolicy="Retain")
    harness.apply(document)
    harness.wait_condition("keep", "Ready", "True", 60)
    before = aws_resources(harness.regions, "keep")
    harness.kubectl("delete", "trp", "keep", "-n", harness.namespace, "--wait=true", timeout=120)
    assert aws_resources(harness.regions, "keep") == before
    # Clean up with the one-shot CLI (the same core), which proves nothing was half-removed.
    removed = harness.cli(
        "destroy",
        "-f",
        str(
            harness.manifest_file({**document, "metadata": {"name": "keep", "namespace": harness.namespace}})
        ),
    )
    assert removed.returncode == 0, removed.stderr
    assert aws_resources(harness.regions, "keep") == {"cn": [], "sg": []}


def test_unreachable_region_cannot_hang_deletion_forever(harness: Harness) -> None:
    tables = {"cn": "stuck-cn", "sg": "stuck-sg"}
    for side, table in tables.items():
        _create_table(harness.regions, side, table)
    harness.apply(_pair("stuck", tables))
    harness.wait_condition("stuck", "Ready", "True", 60)
    sg = harness.regions[SG]
    services = ("lambda", "iam", "ssm", "sqs", "kinesis", "dynamodb", "sts")
    try:
        for service in services:
            sg.inject_fault(service, None, "ServiceUnavailable", status=503, count=100_000)
        harness.kubectl("delete", "trp", "stuck", "-n", harness.namespace, "--wait=false")
        blocked = harness.wait_event("stuck", "DeletionBlocked", DELETION_TIMEOUT + 90)
        assert "ddbbridge.io/force-delete" in blocked["message"]
        assert harness.get("stuck") is not None, "the finalizer must hold the pair while it is blocked"
        harness.kubectl("annotate", "trp", "stuck", "-n", harness.namespace, "ddbbridge.io/force-delete=true")
        wait_for(lambda: harness.get("stuck") is None, 90, "the forced deletion to finish", interval=0.5)
    finally:
        sg.clear_faults()
    forced = harness.wait_event("stuck", "ForceDeleted", 10)
    left = forced["message"].split("left in AWS: ", 1)[1]
    assert left.startswith("[sg] IAM user ddbbridge-stuck-sg-peer-writer with its access keys"), left
    remaining = aws_resources(harness.regions, "stuck")
    assert remaining["cn"] == [], "the reachable region was cleaned"
    assert _count(remaining["sg"], "user") == 1 and _count(remaining["sg"], "key") == 1
    leftover = _pair("stuck", tables)
    leftover["metadata"]["namespace"] = harness.namespace
    assert harness.cli("destroy", "-f", str(harness.manifest_file(leftover))).returncode == 0


def test_delete_removes_everything_but_the_user_tables(harness: Harness) -> None:
    items_before = {side: _table_items(harness.regions, side, table) for side, table in SAMPLE_TABLES.items()}
    assert len(items_before["cn"]) == len(items_before["sg"]) == 90
    harness.kubectl("delete", "trp", "users", "-n", harness.namespace, "--wait=true", timeout=180)
    assert aws_resources(harness.regions, "users") == {"cn": [], "sg": []}
    for side, table in SAMPLE_TABLES.items():
        described = harness.regions[SIDES[side]].client("dynamodb").describe_table(TableName=table)["Table"]
        assert not (described.get("StreamSpecification") or {}).get("StreamEnabled"), (
            "we enabled it, we disable it"
        )
        assert not {k for k in _table_tags(harness.regions, side, table) if k.startswith("ddbbridge.io/")}
        assert _table_items(harness.regions, side, table) == items_before[side]
    harness.wait_event("users", "Deleted", 10)
