"""Security promises checked against what the emulated regions hold after a real reconcile and real
replication (runner executing the deployed zips):

- every IAM policy statement the reconcile wrote (read back from IAM itself) names specific
  resources of this pair: no `*` resource or action; the only wildcards are the two docs/iam.md
  documents with the AWS reason (`table/<T>/stream/*` for ListStreams, `log-group:<own>:*`);
  no managed policy is attached (no VPC in this pair);
- the peer writer's secret access key exists only as an SSM SecureString (in the peer region), and
  its value appears in no other parameter, no function environment, no output of reconcile/status
  (text and JSON), no line the runner or the handlers logged, no file the runner wrote.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from tests.fixtures.regions import Regions
from tests.fixtures.runner import RunnerProcess, endpoints_of
from tests.fixtures.waiting import wait_for
from tests.integration.day2_support import pair_environment, stamp
from tests.integration.replication_support import SIDES, Pair, create_pair, ddbbridge

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_regions")]


@pytest.fixture
def pair(regions: Regions, tmp_path: Path) -> Iterator[Pair]:
    with pair_environment(regions):
        yield create_pair(regions, tmp_path, "sec", (("id", "S"),))


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def policy_document(raw: Any) -> dict[str, Any]:
    document = json.loads(unquote(raw)) if isinstance(raw, str) else raw
    assert isinstance(document, dict)
    return document


def written_policies(pair: Pair, side: str) -> dict[str, dict[str, Any]]:
    """Inline policies of the pair's roles and users in one region, read back from IAM."""
    iam = pair.client(side, "iam")
    prefix = f"ddbbridge-{pair.name}-"
    found: dict[str, dict[str, Any]] = {}
    for role in iam.list_roles()["Roles"]:
        name = role["RoleName"]
        if not name.startswith(prefix):
            continue
        assert iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"] == []
        for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]:
            raw = iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"]
            found[f"role {name}/{policy}"] = policy_document(raw)
    for user in iam.list_users()["Users"]:
        name = user["UserName"]
        if not name.startswith(prefix):
            continue
        assert iam.list_attached_user_policies(UserName=name)["AttachedPolicies"] == []
        for policy in iam.list_user_policies(UserName=name)["PolicyNames"]:
            raw = iam.get_user_policy(UserName=name, PolicyName=policy)["PolicyDocument"]
            found[f"user {name}/{policy}"] = policy_document(raw)
    return found


def names_a_resource_of_the_pair(arn: str, pair: Pair) -> bool:
    """A resource of this pair or its user tables; wildcards only where docs/iam.md says why."""
    if "*" in arn:
        tables = pair.tables.values()
        documented = any(arn.endswith(f":table/{t}/stream/*") for t in tables) or (
            f":log-group:/aws/lambda/ddbbridge-{pair.name}-" in arn and arn.endswith(":*")
        )
        if not documented or arn.count("*") != 1:
            return False
    parts = arn.split(":")
    if len(parts) < 6 or parts[0] != "arn" or not parts[4]:
        return False  # every resource is account-qualified
    return (
        f"ddbbridge-{pair.name}-" in arn
        or f"/ddbbridge/{pair.name}/" in arn
        or any(f"table/{t}" in arn for t in pair.tables.values())
    )


def test_every_policy_statement_names_specific_resources(pair: Pair) -> None:
    run = ddbbridge("reconcile", "-f", str(pair.path))
    assert run.code == 0, run.out + run.err
    checked = 0
    for side in SIDES:
        policies = written_policies(pair, side)
        assert len(policies) == 3, f"sender role, applier role, peer-writer user in {side}: {policies}"
        for where, document in policies.items():
            for statement in as_list(document["Statement"]):
                assert statement["Effect"] == "Allow" and "NotResource" not in statement
                actions = as_list(statement["Action"])
                assert all("*" not in action for action in actions), f"{where}: {actions}"
                for resource in as_list(statement["Resource"]):
                    assert names_a_resource_of_the_pair(resource, pair), f"{where}: {resource}"
                    checked += 1
        writer = next(d for w, d in policies.items() if w.startswith("user "))
        (statement,) = as_list(writer["Statement"])
        assert as_list(statement["Resource"]) == [
            r
            for r in as_list(statement["Resource"])
            if r.endswith(f":stream/ddbbridge-{pair.name}-to-{side}")
        ], "the peer writer may only put into this region's inbound stream"
        assert sorted(as_list(statement["Action"])) == ["kinesis:PutRecord", "kinesis:PutRecords"]
    assert checked > 20


def secret_values(pair: Pair) -> dict[str, str]:
    """parameter name -> secret access key, read from each region's SSM (decrypted)."""
    found = {}
    for side in SIDES:
        ssm = pair.client(side, "ssm")
        parameters = ssm.get_parameters_by_path(
            Path=f"/ddbbridge/{pair.name}", Recursive=True, WithDecryption=True
        )["Parameters"]
        for parameter in parameters:
            if parameter["Name"].endswith("/secret-access-key"):
                assert parameter["Type"] == "SecureString", parameter["Name"]
                found[f"{side}:{parameter['Name']}"] = parameter["Value"]
            else:
                assert parameter["Type"] == "String" and parameter["Name"].endswith("/access-key-id")
    return found


def every_other_parameter_value(pair: Pair) -> list[str]:
    values = []
    for side in SIDES:
        ssm = pair.client(side, "ssm")
        for parameter in ssm.get_parameters_by_path(Path="/", Recursive=True, WithDecryption=True)[
            "Parameters"
        ]:
            if not parameter["Name"].endswith("/secret-access-key"):
                values.append(parameter["Value"])
    return values


def test_peer_secret_is_only_a_securestring_and_never_appears_in_output_or_logs(
    regions: Regions, pair: Pair, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Our own loggers at DEBUG, libraries at INFO (how the CLI and operator run). botocore's DEBUG
    # wire log prints request and response bodies (CreateAccessKey, PutParameter) and so the key:
    # never run botocore at DEBUG in production (docs/operations.md).
    caplog.set_level(logging.INFO)
    for ours in ("ddbbridge", "ddbbridge_lambdas", "kopf"):
        caplog.set_level(logging.DEBUG, logger=ours)
    captured: list[str] = []
    for output in ("text", "json"):
        run = ddbbridge("reconcile", "-f", str(pair.path), "-o", output)
        assert run.code == 0, run.out + run.err
        captured += [run.out, run.err]
    secrets = secret_values(pair)
    assert len(secrets) == 2 and all(len(value) >= 20 for value in secrets.values())

    runner = RunnerProcess(endpoints_of(regions), tmp_path / "runner-dev")
    runner.start()
    try:
        for side in SIDES:
            pair.client(side, "dynamodb").put_item(
                TableName=pair.tables[side], Item={"id": {"S": f"from-{side}"}, **stamp(side)}
            )
        for side, peer in (("cn", "sg"), ("sg", "cn")):
            wait_for(lambda s=side, p=peer: pair.get(p, {"id": {"S": f"from-{s}"}}), 180, f"{side} -> {peer}")
    finally:
        runner.close()
    for output in ("text", "json"):
        status = ddbbridge("status", "-f", str(pair.path), "-o", output)
        captured += [status.out, status.err]
    captured.append(caplog.text)
    files = [path for path in runner.dev_dir.rglob("*") if path.is_file()]
    assert any(path.name.endswith(".log") for path in files) and runner.invocations(), "logs were captured"
    captured += [path.read_bytes().decode("utf-8", errors="replace") for path in files]
    for side in SIDES:
        functions = pair.client(side, "lambda").list_functions()["Functions"]
        captured += [json.dumps(f.get("Environment", {})) for f in functions]
    captured += every_other_parameter_value(pair)

    for name, secret in secrets.items():
        leaks = [text[:200] for text in captured if secret in text]
        assert not leaks, f"the value of {name} leaked into: {leaks}"
