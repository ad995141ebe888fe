"""Keyless cross-partition credentials (spec.credentials.mode federation) on the emulated regions.

The launcher emulates IAM outbound identity federation: the account switch, an issuer per account that
signs RS256 JWTs (JWKS served over HTTP), and an AssumeRoleWithWebIdentity that checks the signature,
`exp`, the account's OIDC provider and the role's trust policy (`:aud`, `:sub`). The runner hands every
function its execution role's session, so a token's `sub` is the sender role. Checked here:
- federation asked on an account whose switch is off: Stalled-class error naming what is missing, and
  nothing changed; with `enableOutboundFederation: true` the operator flips it;
- items replicate both ways and converge (`verify`); no IAM user, access key or SecureString exists;
  the token/credential calls are bounded by the sender's cache (counted from the launcher's log);
  a second reconcile makes no mutating call;
- the written trust refuses a token of another role and a token for another audience;
- switching a live pair accessKey -> federation -> accessKey with writes running loses no change,
  and the old mode's identities are gone after each switch.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest
import yaml
from botocore.credentials import Credentials

from ddbbridge.desired import TOKEN_AUDIENCE
from ddbbridge.reconcile import PairClients, RunResult, reconcile
from ddbbridge.spec import load_manifest
from ddbbridge_lambdas.config import HandlerConfig
from ddbbridge_lambdas.federation import FederatedCredentials
from tests.fixtures.regions import Regions
from tests.fixtures.runner import RunnerProcess, endpoints_of
from tests.fixtures.waiting import scaled, wait_for
from tests.integration.day2_support import AppWriters, pair_environment, stamp, verify_converged
from tests.integration.replication_support import PEER, SIDES, Pair, create_pair
from tests.integration.test_replication_e2e import marks, mutating_since

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_regions")]

NO_OVERLAP = timedelta(0)  # tests retire the old mode at once; the overlap itself is unit-tested
SWITCH_DETAIL = "spec.credentials.enableOutboundFederation"
TOKEN_CALLS = ("GetWebIdentityToken", "AssumeRoleWithWebIdentity")


@pytest.fixture
def environment(regions: Regions) -> Iterator[Regions]:
    with pair_environment(regions):
        yield regions


@pytest.fixture
def runner_process(regions: Regions, tmp_path: Path) -> Iterator[RunnerProcess]:
    runner = RunnerProcess(endpoints_of(regions), tmp_path / "runner-dev")
    runner.start()
    try:
        yield runner
    finally:
        runner.close()


def set_credentials(pair: Pair, **credentials: Any) -> None:
    document = yaml.safe_load(pair.path.read_text(encoding="utf-8"))
    document["spec"]["credentials"] = credentials
    pair.path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")


def run_reconcile(pair: Pair) -> RunResult:
    manifest = load_manifest(pair.path)
    return reconcile(manifest, PairClients.from_environment(manifest), key_overlap=NO_OVERLAP)


def reconciled(pair: Pair) -> RunResult:
    result = run_reconcile(pair)
    assert result.ok, [str(error) for error in result.errors]
    return result


def write_items(pair: Pair, side: str, count: int, prefix: str) -> None:
    dynamodb = pair.client(side, "dynamodb")
    for index in range(count):
        item = {"id": {"S": f"{prefix}-{side}-{index}"}, "n": {"N": str(index)}, **stamp(side)}
        dynamodb.put_item(TableName=pair.tables[side], Item=item)


NOTHING_STORED: dict[str, list[str]] = {"users": [], "keys": [], "secure": [], "parameters": []}


def stored_secrets(pair: Pair) -> dict[str, dict[str, list[str]]]:
    """Per side, everything a stored-secret mode leaves: the pair's users and their access keys, its
    SecureStrings, and its parameters."""
    found: dict[str, dict[str, list[str]]] = {}
    for side in SIDES:
        iam, ssm = pair.client(side, "iam"), pair.client(side, "ssm")
        users = [
            u["UserName"]
            for u in iam.list_users()["Users"]
            if u["UserName"].startswith(f"ddbbridge-{pair.name}-")
        ]
        keys = [
            k["AccessKeyId"]
            for user in users
            for k in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
        ]
        secure = [  # of this pair: other pairs of the module may use accessKey
            p["Name"]
            for p in ssm.describe_parameters(ParameterFilters=[{"Key": "Type", "Values": ["SecureString"]}])[
                "Parameters"
            ]
            if p["Name"].startswith(f"/ddbbridge/{pair.name}/")
        ]
        ours = [
            p["Name"]
            for p in ssm.describe_parameters(
                ParameterFilters=[
                    {"Key": "Name", "Option": "BeginsWith", "Values": [f"/ddbbridge/{pair.name}/"]}
                ]
            )["Parameters"]
        ]
        found[side] = {"users": users, "keys": keys, "secure": secure, "parameters": ours}
    return found


def federation_identities(pair: Pair) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for side in SIDES:
        iam = pair.client(side, "iam")
        roles = [
            r["RoleName"]
            for r in iam.list_roles()["Roles"]
            if r["RoleName"].endswith("-federated-writer") and pair.name in r["RoleName"]
        ]
        providers = [p["Arn"] for p in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]]
        found[side] = roles + providers
    return found


def disable_switch(iam: Any) -> None:
    try:
        iam.disable_outbound_web_identity_federation()
    except botocore.exceptions.ClientError as error:
        if error.response["Error"]["Code"] not in ("FeatureDisabled", "FeatureDisabledException"):
            raise


def token_calls(regions: Regions, since: dict[str, int]) -> dict[str, int]:
    counts = {name: 0 for name in TOKEN_CALLS}
    for region in regions:
        for entry in region.requests(since[region.name]):
            if int(entry["seq"]) > since[region.name] and entry["operation"] in counts:
                counts[entry["operation"]] += 1
    return counts


def test_federation_asked_on_a_disabled_account_stalls_and_changes_nothing(
    environment: Regions, tmp_path: Path
) -> None:
    pair = create_pair(environment, tmp_path, "fedoff", (("id", "S"),))
    set_credentials(pair, mode="federation")
    before = marks(environment)
    result = run_reconcile(pair)
    assert result.terminal and result.actions == []
    (error,) = result.errors
    assert error.reason == "OutboundFederationDisabled"
    assert (
        "enable-outbound-web-identity-federation" in error.message
        and "enableOutboundFederation" in error.message
    )
    assert mutating_since(environment, before) == {region.name: [] for region in environment}
    # auto on the same accounts falls back to accessKey and says why.
    set_credentials(pair, mode="auto")
    result = reconciled(pair)
    for side in SIDES:
        assert result.regions[side].credentials_mode == "accessKey"
        assert "auto: outbound identity federation is disabled" in (
            result.regions[side].credentials_reason or ""
        )


def test_switching_a_live_pair_to_federation_and_back_loses_no_change(
    environment: Regions, runner_process: RunnerProcess, tmp_path: Path
) -> None:
    pair = create_pair(environment, tmp_path, "fedsw", (("id", "S"),))
    for region in environment:
        region.client("iam").enable_outbound_web_identity_federation()
    reconciled(pair)  # accessKey
    write_items(pair, "cn", 10, "seed")
    verify_converged(pair, wait=300)
    writers = AppWriters(pair, [f"seed-cn-{index}" for index in range(10)], limit=150, pace=0.05)
    writers.start()
    try:
        wait_for(lambda: sum(writers.done.values()) >= 20, scaled(60), "writes before the switch")
        set_credentials(pair, mode="federation")
        switched = reconciled(pair)
        assert {side: switched.regions[side].credentials_mode for side in SIDES} == {
            "cn": "federation",
            "sg": "federation",
        }
        wait_for(lambda: sum(writers.done.values()) >= 150, scaled(120), "writes under federation")
        assert stored_secrets(pair) == {"cn": NOTHING_STORED, "sg": NOTHING_STORED}
        set_credentials(pair, mode="accessKey")
        back = reconciled(pair)
        assert {side: back.regions[side].credentials_mode for side in SIDES} == {
            "cn": "accessKey",
            "sg": "accessKey",
        }
    finally:
        done = writers.stop()
    sys.stderr.write(f"mode switch under load: {done}\n")
    verify_converged(pair, wait=600)
    assert federation_identities(pair) == {"cn": [], "sg": []}
    secrets = stored_secrets(pair)
    for side in SIDES:  # exactly the accessKey mode's: one user with one key, its two parameters in the peer
        peer = pair.names(PEER[side])
        assert secrets[side]["users"] == [pair.names(side).peer_writer_user]
        assert len(secrets[side]["keys"]) == 1
        assert sorted(secrets[side]["parameters"]) == sorted(
            [peer.access_key_parameter, peer.secret_key_parameter]
        )
        assert secrets[side]["secure"] == [peer.secret_key_parameter]


def test_federation_replicates_both_ways_with_no_stored_secret(
    environment: Regions, runner_process: RunnerProcess, tmp_path: Path
) -> None:
    for region in environment:  # an earlier test of the module enabled it: the operator must do it here
        disable_switch(region.client("iam"))
    pair = create_pair(environment, tmp_path, "fed", (("id", "S"),))
    set_credentials(pair, mode="federation", enableOutboundFederation=True)
    result = reconciled(pair)
    assert {str(a) for a in result.actions} >= {
        f"[{side}] enable iam account/outbound-web-identity-federation: {SWITCH_DETAIL}" for side in SIDES
    }
    for side in SIDES:
        assert result.regions[side].credentials_mode == "federation"
        assert "operator enabled outbound identity federation" in (
            result.regions[side].credentials_reason or ""
        )
        assert result.regions[side].arns[f"role/ddbbridge-{pair.name}-{side}-federated-writer"]
    assert stored_secrets(pair) == {"cn": NOTHING_STORED, "sg": NOTHING_STORED}

    start, since = time.monotonic(), marks(environment)
    for side in SIDES:
        write_items(pair, side, 30, "fed")
    pair.client("cn", "dynamodb").delete_item(TableName=pair.tables["cn"], Key={"id": {"S": "fed-cn-0"}})
    verify_converged(pair, wait=300)
    for side in SIDES:
        assert pair.get(PEER[side], {"id": {"S": f"fed-{side}-29"}}) is not None
    assert pair.get("sg", {"id": {"S": "fed-cn-0"}}) is None
    elapsed_minutes = (time.monotonic() - start) / 60
    calls = token_calls(environment, since)
    invocations = len(runner_process.invocations(f"ddbbridge-{pair.name}-cn-sender")) + len(
        runner_process.invocations(f"ddbbridge-{pair.name}-sg-sender")
    )
    sys.stderr.write(
        f"federation: {calls} over {elapsed_minutes:.2f} min "
        f"({calls['GetWebIdentityToken'] / max(elapsed_minutes, 1 / 60):.1f} tokens/min), "
        f"{invocations} sender invocations\n"
    )
    # One token and one exchange per sender worker per session: two senders, a worker may be replaced
    # once; many more invocations than tokens shows the cache at work.
    assert (
        2 <= calls["GetWebIdentityToken"] <= 4
        and calls["AssumeRoleWithWebIdentity"] == calls["GetWebIdentityToken"]
    )
    assert invocations > 2 * calls["GetWebIdentityToken"]
    assert stored_secrets(pair) == {"cn": NOTHING_STORED, "sg": NOTHING_STORED}

    runner_process.stop()  # other pairs of the module still replicate: only the reconcile may call now
    before = marks(environment)
    assert reconciled(pair).actions == []
    assert mutating_since(environment, before) == {region.name: [] for region in environment}


def role_credentials(pair: Pair, side: str, role_name: str) -> dict[str, Any]:
    """A session of one of the pair's roles (what the runner hands a function)."""
    account = pair.client(side, "sts").get_caller_identity()["Account"]
    partition = "aws-cn" if SIDES[side].startswith("cn-") else "aws"
    issued: dict[str, Any] = pair.client(side, "sts").assume_role(
        RoleArn=f"arn:{partition}:iam::{account}:role/{role_name}", RoleSessionName="test"
    )["Credentials"]
    return issued


def session_of(pair: Pair, side: str, role_name: str) -> Any:
    """An STS client of `side` acting as one of the pair's roles."""
    region = pair.region(side)
    issued = role_credentials(pair, side, role_name)
    return boto3.client(
        "sts",
        region_name=SIDES[side],
        endpoint_url=region.local,
        aws_access_key_id=issued["AccessKeyId"],
        aws_secret_access_key=issued["SecretAccessKey"],
        aws_session_token=issued["SessionToken"],
    )


def test_the_trust_refuses_another_role_and_another_audience(environment: Regions, tmp_path: Path) -> None:
    pair = create_pair(environment, tmp_path, "fedneg", (("id", "S"),))
    set_credentials(pair, mode="federation", enableOutboundFederation=True)
    reconciled(pair)
    names = pair.names("cn")
    peer_role = reconciled(pair).regions["sg"].arns[f"role/{pair.names('sg').federated_writer_role}"]
    peer_sts = pair.client("sg", "sts")

    def exchange(role_name: str, audience: str) -> Any:
        token = session_of(pair, "cn", role_name).get_web_identity_token(
            Audience=[audience], DurationSeconds=300, SigningAlgorithm="RS256"
        )["WebIdentityToken"]
        return peer_sts.assume_role_with_web_identity(
            RoleArn=peer_role, RoleSessionName="test", WebIdentityToken=token
        )

    assert exchange(names.sender_role, TOKEN_AUDIENCE)["Credentials"]["AccessKeyId"]
    # The sender's own code path for an SDK without get_web_identity_token (its SigV4-signed Query
    # request), against the emulated STS, then the exchange through the configured peer endpoint.
    config = HandlerConfig.from_json(
        pair.deployed_environment("cn", names.sender_function)["DDBBRIDGE_CONFIG"]
    )
    issued = role_credentials(pair, "cn", names.sender_role)
    own_endpoint = pair.region("cn").local

    class WithoutTokenCall:
        def __init__(self, client: Any) -> None:
            self.meta = client.meta

    def factory(service: str, **options: Any) -> Any:
        make: Any = boto3.client
        if "endpoint_url" in options:  # the peer's STS, as configured by the reconcile
            return make(service, **options)
        return WithoutTokenCall(make(service, endpoint_url=own_endpoint, **options))

    credentials = FederatedCredentials(
        config,
        factory,
        signing_credentials=lambda: Credentials(
            issued["AccessKeyId"], issued["SecretAccessKey"], issued["SessionToken"]
        ),
    )
    since = marks(environment)
    assert credentials.get()[0]
    assert token_calls(environment, since) == {"GetWebIdentityToken": 1, "AssumeRoleWithWebIdentity": 1}
    for role_name, audience in ((names.applier_role, TOKEN_AUDIENCE), (names.sender_role, "someone-else")):
        with pytest.raises(botocore.exceptions.ClientError) as refused:
            exchange(role_name, audience)
        assert refused.value.response["Error"]["Code"] in ("AccessDenied", "InvalidIdentityToken"), (
            refused.value
        )
