"""After a credentials-mode switch the old mode's identities go only once the overlap has passed,
counted from the new mode's identity (fake IAM/SSM: the decision, not the emulator, is under test)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import botocore.exceptions

from ddbbridge.desired import RegionDesired, RegionFacts, desired_region
from ddbbridge.ensure.context import EnsureContext
from ddbbridge.mode_switch import retire_other_mode
from ddbbridge.spec import parse_manifest
from ddbbridge_lambdas.config import KeyAttribute

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
OVERLAP = timedelta(minutes=30)
ISSUER = "https://4e5f6a7b-cn.tokens.sts.global.api.amazonwebservices.com.cn"


def missing(operation: str) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError({"Error": {"Code": "NoSuchEntity", "Message": "no"}}, operation)


class FakeIam:
    def __init__(self) -> None:
        self.users: dict[str, list[str]] = {}  # name -> access key ids
        self.roles: dict[str, dict[str, Any]] = {}
        self.providers: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []

    def get_user(self, UserName: str) -> dict[str, Any]:  # noqa: N803
        if UserName not in self.users:
            raise missing("GetUser")
        return {"User": {"UserName": UserName}}

    def list_access_keys(self, UserName: str) -> dict[str, Any]:  # noqa: N803
        return {
            "AccessKeyMetadata": [
                {"AccessKeyId": key, "Status": "Active", "CreateDate": NOW} for key in self.users[UserName]
            ]
        }

    def delete_access_key(self, UserName: str, AccessKeyId: str) -> None:  # noqa: N803
        self.calls.append(f"DeleteAccessKey {AccessKeyId}")
        self.users[UserName].remove(AccessKeyId)

    def list_user_policies(self, UserName: str) -> dict[str, Any]:  # noqa: N803
        return {"PolicyNames": []}

    def delete_user(self, UserName: str) -> None:  # noqa: N803
        assert not self.users[UserName], "keys are deleted before their user"
        self.calls.append(f"DeleteUser {UserName}")
        del self.users[UserName]

    def get_role(self, RoleName: str) -> dict[str, Any]:  # noqa: N803
        if RoleName not in self.roles:
            raise missing("GetRole")
        return {"Role": self.roles[RoleName]}

    def list_role_policies(self, RoleName: str) -> dict[str, Any]:  # noqa: N803
        return {"PolicyNames": []}

    def list_attached_role_policies(self, RoleName: str) -> dict[str, Any]:  # noqa: N803
        return {"AttachedPolicies": []}

    def delete_role(self, RoleName: str) -> None:  # noqa: N803
        self.calls.append(f"DeleteRole {RoleName}")
        del self.roles[RoleName]

    def get_open_id_connect_provider(self, OpenIDConnectProviderArn: str) -> dict[str, Any]:  # noqa: N803
        if OpenIDConnectProviderArn not in self.providers:
            raise missing("GetOpenIDConnectProvider")
        return self.providers[OpenIDConnectProviderArn]

    def delete_open_id_connect_provider(self, OpenIDConnectProviderArn: str) -> None:  # noqa: N803
        self.calls.append("DeleteOpenIDConnectProvider")
        del self.providers[OpenIDConnectProviderArn]

    def get_paginator(self, name: str) -> Any:
        assert name == "list_roles"
        roles = [{"RoleName": n, **r} for n, r in self.roles.items()]
        return type("Pages", (), {"paginate": lambda self: [{"Roles": roles}]})()


class FakeSsm:
    def __init__(self, names: list[str]) -> None:
        self.names = set(names)
        self.deleted: list[str] = []

    def get_parameters(self, Names: list[str], **_: Any) -> dict[str, Any]:  # noqa: N803
        return {"Parameters": [{"Name": n} for n in Names if n in self.names]}

    def delete_parameters(self, Names: list[str]) -> None:  # noqa: N803
        self.deleted += Names
        self.names -= set(Names)


class Session:
    def __init__(self, **clients: Any) -> None:
        self.clients = clients

    def client(self, service: str) -> Any:
        return self.clients[service]


def plan(inbound: str) -> RegionDesired:
    """Side sg of pair users; `inbound` is how cn's sender reaches sg."""
    manifest = parse_manifest(
        {
            "apiVersion": "ddbbridge.io/v1alpha1",
            "kind": "TableReplicationPair",
            "metadata": {"name": "users"},
            "spec": {
                "regions": [
                    {"name": "cn", "region": "cn-north-1", "tableName": "users"},
                    {"name": "sg", "region": "ap-southeast-1", "tableName": "users"},
                ]
            },
        }
    )
    facts = RegionFacts(
        "444455556666",
        (KeyAttribute("PK", "S", "HASH"),),
        None,
        None,
        inbound,
        inbound,
        "111122223333",
        ISSUER,
    )
    return desired_region(manifest, manifest.spec.side("sg"), facts)


def contexts(iam: FakeIam, ssm: FakeSsm) -> tuple[EnsureContext, EnsureContext]:
    return EnsureContext(Session(iam=iam), "sg"), EnsureContext(Session(ssm=ssm), "cn")  # type: ignore[arg-type]


def test_access_key_identities_wait_for_the_overlap_after_the_switch_to_federation() -> None:
    want = plan("federation")
    parameters = [want.names.access_key_parameter, want.names.secret_key_parameter]
    iam, ssm = FakeIam(), FakeSsm(parameters)
    iam.users[want.peer_writer.name] = ["AKIAOLD"]
    # The switch happened 10 minutes ago (the federated-writer role's creation): keep everything.
    iam.roles[want.federated_writer.name] = {"CreateDate": NOW - timedelta(minutes=10)}
    ctx, peer_ctx = contexts(iam, ssm)
    waiting = retire_other_mode(ctx, peer_ctx, want, key_created=None, overlap=OVERLAP, now=NOW)
    assert waiting == [
        f"user/{want.peer_writer.name} and its key in cn's SSM (until 2026-11-28 12:20:00 UTC)"
    ]
    assert iam.calls == [] and ssm.deleted == [] and ctx.actions == []
    # 31 minutes after the switch: the key, then the user, then both parameters in the peer's SSM.
    iam.roles[want.federated_writer.name]["CreateDate"] = NOW - timedelta(minutes=31)
    assert retire_other_mode(ctx, peer_ctx, want, key_created=None, overlap=OVERLAP, now=NOW) == []
    assert iam.calls == ["DeleteAccessKey AKIAOLD", f"DeleteUser {want.peer_writer.name}"]
    assert sorted(ssm.deleted) == sorted(parameters)
    # Nothing left: the next run reads and changes nothing.
    before = len(ctx.actions) + len(peer_ctx.actions)
    assert retire_other_mode(ctx, peer_ctx, want, key_created=None, overlap=OVERLAP, now=NOW) == []
    assert len(ctx.actions) + len(peer_ctx.actions) == before


def trust(provider_arn: str) -> str:
    return json.dumps({"Statement": [{"Principal": {"Federated": provider_arn}}]})


def test_federation_identities_go_after_the_overlap_and_a_shared_provider_stays() -> None:
    want = plan("accessKey")
    provider_arn = f"arn:aws:iam::444455556666:oidc-provider/{ISSUER.removeprefix('https://')}"
    iam, ssm = FakeIam(), FakeSsm([])
    iam.roles[want.federated_writer.name] = {
        "CreateDate": NOW - timedelta(hours=5),
        "AssumeRolePolicyDocument": trust(provider_arn),
    }
    iam.roles["ddbbridge-other-sg-federated-writer"] = {
        "CreateDate": NOW,
        "AssumeRolePolicyDocument": trust(provider_arn),
    }
    iam.providers[provider_arn] = {
        "ClientIDList": ["ddbbridge.io"],
        "Tags": [{"Key": "ddbbridge.io/managed-by", "Value": "ddbbridge"}],
    }
    ctx, peer_ctx = contexts(iam, ssm)
    # The key (the new mode's identity) is 5 minutes old: the role stays.
    recent = NOW - timedelta(minutes=5)
    assert retire_other_mode(ctx, peer_ctx, want, key_created=recent, overlap=OVERLAP, now=NOW)
    assert iam.calls == []
    old = NOW - timedelta(minutes=45)
    assert retire_other_mode(ctx, peer_ctx, want, key_created=old, overlap=OVERLAP, now=NOW) == []
    assert iam.calls == [f"DeleteRole {want.federated_writer.name}"]  # another pair still trusts it
    assert provider_arn in iam.providers
    # Once no role trusts it, the provider we created goes too.
    del iam.roles["ddbbridge-other-sg-federated-writer"]
    iam.roles[want.federated_writer.name] = {
        "CreateDate": NOW,
        "AssumeRolePolicyDocument": trust(provider_arn),
    }
    assert retire_other_mode(ctx, peer_ctx, want, key_created=old, overlap=OVERLAP, now=NOW) == []
    assert iam.calls[-2:] == [f"DeleteRole {want.federated_writer.name}", "DeleteOpenIDConnectProvider"]


def test_an_identity_created_after_now_is_zero_time_old_and_no_clock_is_read() -> None:
    want = plan("federation")
    parameters = [want.names.access_key_parameter, want.names.secret_key_parameter]
    iam, ssm = FakeIam(), FakeSsm(parameters)
    iam.users[want.peer_writer.name] = ["AKIAOLD"]
    # The role was created by this very run, after its `now` was taken; the decision uses `now` only
    # (this NOW lies in the past of the machine's clock, which must not count).
    iam.roles[want.federated_writer.name] = {"CreateDate": NOW + timedelta(seconds=5)}
    ctx, peer_ctx = contexts(iam, ssm)
    assert retire_other_mode(ctx, peer_ctx, want, key_created=None, overlap=OVERLAP, now=NOW)
    assert iam.calls == []
    # With no overlap it goes at once, in the same run.
    assert retire_other_mode(ctx, peer_ctx, want, key_created=None, overlap=timedelta(0), now=NOW) == []
    assert iam.calls == ["DeleteAccessKey AKIAOLD", f"DeleteUser {want.peer_writer.name}"]
