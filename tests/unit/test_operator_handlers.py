"""kopf handlers called directly with fakes (Twingate style): no Kubernetes, no AWS.

The fakes stand in for the core (reconcile / observe / destroy), the Secret reader and the Event
sink; the tests check the status patch, the Events and the kopf error each outcome turns into.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf
import pytest

from ddbbridge.ensure.context import Action
from ddbbridge.errors import ErrorReport
from ddbbridge.kopf_app import handlers, lifecycle
from ddbbridge.kopf_app.settings import OperatorOptions
from ddbbridge.names import SideNames
from ddbbridge.observe import DirectionHealth, PairHealth
from ddbbridge.reconcile import RegionReport, RunResult
from ddbbridge.spec import PairManifest
from tests.pair_cases import minimal_pair

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
KEY_CREATED = NOW - timedelta(days=3)


@dataclass
class FakeEvents:
    posted: list[tuple[str, str, str]] = field(default_factory=list)

    def post(self, body: Any, kind: str, reason: str, message: str) -> None:
        self.posted.append((kind, reason, message))

    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.posted]


@dataclass
class FakeCore:
    """Answers like the core would; each call is recorded with its keyword arguments."""

    errors: list[ErrorReport] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    dead_letters: int = 0
    destroy_errors: list[ErrorReport] = field(default_factory=list)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    secrets: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    clock_offset: float = 0.0

    def reconcile(self, manifest: PairManifest, clients: Any, **options: Any) -> RunResult:
        self.calls.append(("reconcile", options))
        result = RunResult(manifest.metadata.name, "reconcile", False, actions=list(self.actions))
        result.errors = list(self.errors)
        for side in manifest.spec.regions:
            names = SideNames(manifest.metadata.name, side.name)
            result.regions[side.name] = RegionReport(
                side.name,
                side.region,
                account_id="123456789012",
                arns={
                    "table": f"arn:aws:dynamodb:{side.region}:123456789012:table/{side.table_name}",
                    names.inbound_stream: f"arn:kinesis/{names.inbound_stream}",
                    names.sender_function: f"arn:function/{names.sender_function}",
                },
                stream_enabled_by_us=True,
                peer_key_created=KEY_CREATED,
            )
        return result

    def observe(self, manifest: PairManifest, clients: Any) -> PairHealth:
        self.calls.append(("observe", {}))
        a, b = manifest.spec.regions
        directions = [
            DirectionHealth(
                a.name, b.name, 10, 0.25, 0, self.dead_letters, self.dead_letters, "Enabled", "Enabled", "OK"
            ),
            DirectionHealth(b.name, a.name, 7, 0.5, 0, 0, 0, "Enabled", "Enabled", "OK"),
        ]
        return PairHealth(manifest.metadata.name, directions)

    def destroy(self, manifest: PairManifest, clients: Any) -> RunResult:
        self.calls.append(("destroy", {}))
        result = RunResult(manifest.metadata.name, "destroy", False)
        result.errors = list(self.destroy_errors)
        return result

    def read_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        return self.secrets.get((namespace, name))

    def make_clients(self, manifest: PairManifest, credentials: dict[str, Any], quick: bool) -> Any:
        self.calls.append(("clients", {"credentials": credentials, "quick": quick}))
        return object()

    def monotonic(self) -> float:
        return 1000.0 + self.clock_offset


def memo_for(core: FakeCore, events: FakeEvents, **options: Any) -> kopf.Memo:
    deps = lifecycle.Deps(
        read_secret=core.read_secret,
        events=events,
        reconcile=core.reconcile,
        observe=core.observe,
        destroy=core.destroy,
        make_clients=core.make_clients,
        clock=lambda: NOW,
        monotonic=core.monotonic,
    )
    return kopf.Memo(deps=deps, options=OperatorOptions(metrics_port=None, liveness_port=None, **options))


def body(generation: int = 1, status: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    document = minimal_pair()
    document["metadata"].update(
        {"namespace": "apps", "uid": "uid-1", "generation": generation, "annotations": {}}
    )
    document["spec"]["healthCheckIntervalSeconds"] = 30
    document["spec"].update(changes.pop("spec", {}))
    document["metadata"]["annotations"].update(changes.pop("annotations", {}))
    document["status"] = status or {}
    return document


def run_reconcile(document: dict[str, Any], memo: kopf.Memo, retry: int = 0) -> kopf.Patch:
    patch = kopf.Patch()
    handlers.reconcile(body=document, patch=patch, memo=memo, retry=retry)
    return patch


def conditions(patch: kopf.Patch) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in patch["status"]["conditions"]}


def test_create_reconciles_observes_and_writes_a_ready_status() -> None:
    core, events = (
        FakeCore(actions=[Action("cn", "kinesis", "create", "ddbbridge-users-to-cn")]),
        FakeEvents(),
    )
    patch = run_reconcile(body(), memo_for(core, events))
    status = patch["status"]
    found = conditions(patch)
    assert found["Ready"]["status"] == "True" and found["Ready"]["reason"] == "ReplicationHealthy"
    assert found["Synced"]["status"] == "True" and found["Stalled"]["status"] == "False"
    assert status["observedGeneration"] == 1
    assert status["dlqDepth"] == 0 and status["lagSeconds"] == 0.5
    assert [(d["source"], d["target"], d["replicatedCount"]) for d in status["directions"]] == [
        ("cn", "sg", 10),
        ("sg", "cn", 7),
    ]
    cn = status["regions"][0]
    assert cn["account"] == "123456789012" and cn["credentialKeyAgeDays"] == 3
    assert cn["arns"]["kinesisStream"] == "arn:kinesis/ddbbridge-users-to-cn"
    assert "secret" not in str(status).lower()
    assert ("Normal", "Created", "[cn] create kinesis ddbbridge-users-to-cn") in events.posted
    assert "Reconciled" in events.reasons()
    assert [name for name, _ in core.calls] == ["clients", "reconcile", "observe"]


def test_transient_error_is_a_temporary_error_with_backoff_and_ready_false() -> None:
    core = FakeCore(errors=[ErrorReport("cn", "kinesis x", "slow down", False, "Throttling")])
    patch = kopf.Patch()
    with pytest.raises(kopf.TemporaryError) as raised:
        handlers.reconcile(body=body(), patch=patch, memo=memo_for(core, FakeEvents()), retry=2)
    assert raised.value.delay == 20.0
    found = conditions(patch)
    assert (found["Ready"]["status"], found["Ready"]["reason"]) == ("False", "Throttling")
    assert found["Stalled"]["status"] == "False" and found["Synced"]["status"] == "False"
    assert "observe" not in [name for name, _ in core.calls]


def test_terminal_error_is_permanent_and_stalled() -> None:
    core = FakeCore(errors=[ErrorReport("sg", "discover table", "table missing", True, "TableMissing")])
    events = FakeEvents()
    patch = kopf.Patch()
    with pytest.raises(kopf.PermanentError):
        handlers.reconcile(body=body(), patch=patch, memo=memo_for(core, events), retry=0)
    found = conditions(patch)
    assert (found["Stalled"]["status"], found["Stalled"]["reason"]) == ("True", "TableMissing")
    assert (found["Ready"]["status"], found["Ready"]["reason"]) == ("False", "TableMissing")
    assert "Stalled" in events.reasons()


@pytest.mark.parametrize(
    ("secret", "reason"),
    [(None, "CredentialsSecretMissing"), ({"AWS_ACCESS_KEY_ID": "x"}, "CredentialsSecretInvalid")],
)
def test_credentials_secret_problems_stall_without_calling_aws(
    secret: dict[str, str] | None, reason: str
) -> None:
    core = FakeCore()
    if secret is not None:
        core.secrets[("apps", "sg-keys")] = secret
    document = body()
    document["spec"]["regions"][1]["credentials"] = {"secretName": "sg-keys"}
    patch = kopf.Patch()
    with pytest.raises(kopf.PermanentError):
        handlers.reconcile(body=document, patch=patch, memo=memo_for(core, FakeEvents()), retry=0)
    assert conditions(patch)["Stalled"]["reason"] == reason
    assert core.calls == []


def test_secret_credentials_reach_the_clients_for_that_side_only() -> None:
    core = FakeCore()
    core.secrets[("apps", "sg-keys")] = {"AWS_ACCESS_KEY_ID": "AKIA1", "AWS_SECRET_ACCESS_KEY": "s3cr3t"}
    document = body()
    document["spec"]["regions"][1]["credentials"] = {"secretName": "sg-keys"}
    events = FakeEvents()
    patch = run_reconcile(document, memo_for(core, events))
    credentials = core.calls[0][1]["credentials"]
    assert list(credentials) == ["sg"] and credentials["sg"]["aws_access_key_id"] == "AKIA1"
    assert "s3cr3t" not in str(patch) and "s3cr3t" not in str(events.posted)


def test_invalid_spec_stalls_without_any_call() -> None:
    core = FakeCore()
    document = body()
    document["spec"]["regions"][1]["region"] = "cn-north-1"  # admission refuses it; a stale CRD might not
    patch = kopf.Patch()
    with pytest.raises(kopf.PermanentError):
        handlers.reconcile(body=document, patch=patch, memo=memo_for(core, FakeEvents()), retry=0)
    assert conditions(patch)["Stalled"]["reason"] == "InvalidSpec"
    assert core.calls == []


def test_dead_letters_make_ready_false_with_the_count() -> None:
    core = FakeCore(dead_letters=1)
    found = conditions(run_reconcile(body(), memo_for(core, FakeEvents())))
    assert (found["Ready"]["status"], found["Ready"]["reason"]) == ("False", "DeadLetters")
    assert found["DeadLetters"]["status"] == "True" and "cn->sg: 1" in found["DeadLetters"]["message"]


def test_rotate_key_annotation_forces_one_rotation() -> None:
    core, events = FakeCore(), FakeEvents()
    memo = memo_for(core, events)
    first = run_reconcile(body(), memo)
    status = first["status"]
    assert core.calls[1][1]["force_key_rotation"] is False
    rotated = run_reconcile(body(status=status, annotations={"ddbbridge.io/rotate-key": "r1"}), memo)
    assert core.calls[-2][1]["force_key_rotation"] is True
    assert rotated["status"]["keyRotationRequest"] == "r1"
    # The same value again (e.g. after a restart): no second rotation.
    run_reconcile(body(status=rotated["status"], annotations={"ddbbridge.io/rotate-key": "r1"}), memo)
    assert core.calls[-2][1]["force_key_rotation"] is False


def test_overlap_option_reaches_the_core() -> None:
    core = FakeCore()
    run_reconcile(body(), memo_for(core, FakeEvents(), key_overlap_seconds=42))
    assert core.calls[1][1]["key_overlap"] == timedelta(seconds=42)


def test_health_timer_waits_for_its_interval_and_reports_repairs() -> None:
    core, events = FakeCore(), FakeEvents()
    memo = memo_for(core, events)
    document = body()
    patch = kopf.Patch()
    handlers.health(body=document, patch=patch, memo=memo)
    assert patch == {} and core.calls == []  # not reconciled by this process yet: resume runs first

    run_reconcile(document, memo)
    calls = len(core.calls)
    handlers.health(body=document, patch=kopf.Patch(), memo=memo)
    assert len(core.calls) == calls  # interval (30 s) not over

    core.clock_offset = 31
    core.actions = [Action("sg", "lambda", "create", "mapping of ddbbridge-users-sg-applier")]
    patch = kopf.Patch()
    handlers.health(body=document, patch=patch, memo=memo)
    assert patch["status"]["lastHealthCheckTime"]
    assert (
        "Warning",
        "DriftRepaired",
        "[sg] create lambda mapping of ddbbridge-users-sg-applier",
    ) in events.posted


def test_stalled_pair_is_rechecked_slowly_and_recovers() -> None:
    core = FakeCore(errors=[ErrorReport("sg", "discover table", "table missing", True, "TableMissing")])
    events = FakeEvents()
    memo = memo_for(core, events, stalled_recheck_seconds=300)
    with pytest.raises(kopf.PermanentError):
        run_reconcile(body(), memo)
    calls = len(core.calls)
    core.clock_offset = 60  # past the 30 s health interval, not past the 300 s recheck
    handlers.health(body=body(), patch=kopf.Patch(), memo=memo)
    assert len(core.calls) == calls
    core.clock_offset, core.errors = 301, []
    patch = kopf.Patch()
    handlers.health(body=body(), patch=patch, memo=memo)
    found = conditions(patch)
    assert found["Ready"]["status"] == "True" and found["Stalled"]["status"] == "False"
    assert "Recovered" in events.reasons()


def test_delete_with_delete_policy_destroys_with_quick_clients() -> None:
    core, events = FakeCore(), FakeEvents()
    handlers.delete(body=body(), memo=memo_for(core, events), retry=0, runtime=timedelta(0), logger=_Logger())
    assert ("destroy", {}) in core.calls
    assert {"credentials": {}, "quick": True} in [
        options for name, options in core.calls if name == "clients"
    ]
    assert "Deleted" in events.reasons()


def test_delete_with_retain_touches_nothing() -> None:
    core, events = FakeCore(), FakeEvents()
    document = body(spec={"deletionPolicy": "Retain"})
    handlers.delete(
        body=document, memo=memo_for(core, events), retry=0, runtime=timedelta(0), logger=_Logger()
    )
    assert core.calls == [] and "Retained" in events.reasons()


def test_blocked_deletion_retries_then_reports_then_can_be_forced() -> None:
    unreachable = [
        ErrorReport("sg", "queue ddbbridge-users-sg-dead-letters", "timeout", False),
        ErrorReport("sg", "user ddbbridge-users-sg-peer-writer", "timeout", False),
    ]
    core, events = FakeCore(destroy_errors=unreachable), FakeEvents()
    memo = memo_for(core, events, deletion_timeout_seconds=600)
    with pytest.raises(kopf.TemporaryError):
        handlers.delete(body=body(), memo=memo, retry=0, runtime=timedelta(seconds=30), logger=_Logger())
    assert "DeletionBlocked" not in events.reasons()
    with pytest.raises(kopf.TemporaryError):
        handlers.delete(body=body(), memo=memo, retry=3, runtime=timedelta(seconds=601), logger=_Logger())
    blocked = [m for _, reason, m in events.posted if reason == "DeletionBlocked"]
    assert len(blocked) == 1 and 'ddbbridge.io/force-delete="true"' in blocked[0]

    forced = body(annotations={"ddbbridge.io/force-delete": "true"})
    handlers.delete(body=forced, memo=memo, retry=4, runtime=timedelta(seconds=700), logger=_Logger())
    (message,) = [m for _, reason, m in events.posted if reason == "ForceDeleted"]
    left = message.split("left in AWS: ", 1)[1]
    assert left.startswith("[sg] IAM user ddbbridge-users-sg-peer-writer with its access keys")


class _Logger:
    def info(self, *_: Any, **__: Any) -> None:
        return None


def test_delete_without_credentials_releases_only_a_pair_that_never_reached_aws() -> None:
    core, events = FakeCore(), FakeEvents()
    memo = memo_for(core, events)
    document = body()
    document["spec"]["regions"][1]["credentials"] = {"secretName": "gone"}
    handlers.delete(body=document, memo=memo, retry=0, runtime=timedelta(0), logger=_Logger())
    assert core.calls == [] and "Deleted" in events.reasons()

    reached = body(status={"regions": [{"name": "cn", "region": "cn-north-1", "account": "123456789012"}]})
    reached["spec"]["regions"][1]["credentials"] = {"secretName": "gone"}
    with pytest.raises(kopf.TemporaryError, match="gone"):
        handlers.delete(body=reached, memo=memo, retry=0, runtime=timedelta(0), logger=_Logger())
    assert core.calls == []
