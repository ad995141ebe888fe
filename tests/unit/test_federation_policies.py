"""Federation mode: every statement of the trust and permission policies the operator writes, and the
mode decision (accessKey / federation / auto, the account-wide switch)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ddbbridge.credential_modes import OutboundFederation, decide_mode
from ddbbridge.desired import (
    FEDERATED_SESSION_SECONDS,
    TOKEN_AUDIENCE,
    TOKEN_DURATION_SECONDS,
    RegionDesired,
    RegionFacts,
    desired_region,
)
from ddbbridge.errors import TerminalError
from ddbbridge.spec import CredentialsMode, PairManifest, parse_manifest
from ddbbridge_lambdas.config import HandlerConfig, KeyAttribute

CN_ACCOUNT, SG_ACCOUNT = "111122223333", "444455556666"
KEYS = (KeyAttribute("PK", "S", "HASH"),)
CN_ISSUER = "https://0a1b2c3d-cn.tokens.sts.global.api.amazonwebservices.com.cn"
SG_ISSUER = "https://4e5f6a7b-sg.tokens.sts.global.api.aws"
CN_STREAM = f"arn:aws-cn:dynamodb:cn-north-1:{CN_ACCOUNT}:table/user-cn/stream/2026-01-01T00:00:00.000"
SG_STREAM = f"arn:aws:dynamodb:ap-southeast-1:{SG_ACCOUNT}:table/user-sg/stream/2026-01-01T00:00:00.000"
FED, KEY = CredentialsMode.FEDERATION.value, CredentialsMode.ACCESS_KEY.value


def manifest(mode: str = "federation") -> PairManifest:
    return parse_manifest(
        {
            "apiVersion": "ddbbridge.io/v1alpha1",
            "kind": "TableReplicationPair",
            "metadata": {"name": "users", "uid": "0f6c6a4e-1b2c-4d5e-8f90-123456789abc"},
            "spec": {
                "regions": [
                    {"name": "cn", "region": "cn-north-1", "tableName": "user-cn"},
                    {"name": "sg", "region": "ap-southeast-1", "tableName": "user-sg"},
                ],
                "credentials": {"mode": mode},
            },
        }
    )


def plan(cn_sender: str = FED, sg_sender: str = FED) -> dict[str, RegionDesired]:
    """Both sides; `cn_sender` is how cn's sender reaches sg (cn -> sg), `sg_sender` the other way."""
    pair = manifest()
    facts = {
        "cn": RegionFacts(
            CN_ACCOUNT, KEYS, CN_STREAM, "http://sqs/cn", cn_sender, sg_sender, SG_ACCOUNT, SG_ISSUER
        ),
        "sg": RegionFacts(
            SG_ACCOUNT, KEYS, SG_STREAM, "http://sqs/sg", sg_sender, cn_sender, CN_ACCOUNT, CN_ISSUER
        ),
    }
    return {side.name: desired_region(pair, side, facts[side.name]) for side in pair.spec.regions}


def sender_statements(desired: RegionDesired) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for s in desired.sender_role.inline_policy["Statement"]}


def sender_config(desired: RegionDesired) -> HandlerConfig:
    return HandlerConfig.from_json(desired.sender.environment["DDBBRIDGE_CONFIG"])


@pytest.mark.parametrize(("side", "partition"), [("cn", "aws-cn"), ("sg", "aws")])
def test_the_sender_may_get_tokens_only_for_our_audience_rs256_and_five_minutes(
    side: str, partition: str
) -> None:
    desired = plan()[side]
    statements = sender_statements(desired)
    assert statements["PeerToken"] == {
        "Sid": "PeerToken",
        "Effect": "Allow",
        "Action": ["sts:GetWebIdentityToken"],
        "Resource": ["*"],
        "Condition": {
            "ForAllValues:StringEquals": {"sts:IdentityTokenAudience": [TOKEN_AUDIENCE]},
            "Null": {"sts:IdentityTokenAudience": "false"},
            "NumericLessThanEquals": {"sts:DurationSeconds": str(TOKEN_DURATION_SECONDS)},
            "StringEquals": {"sts:SigningAlgorithm": "RS256"},
        },
    }
    # Nothing stored: no statement reads SSM, no tagging of tokens, and the token is the only "*".
    assert "ReadPeerCredentials" not in statements
    actions = {a for s in statements.values() for a in s["Action"]}
    assert not {a for a in actions if a.startswith(("ssm:", "kms:"))}
    assert "sts:TagGetWebIdentityToken" not in actions
    wildcard = [s["Sid"] for s in statements.values() if "*" in s["Resource"]]
    assert wildcard == ["PeerToken"]
    for statement in statements.values():
        for resource in statement["Resource"]:
            assert resource == "*" or resource.startswith(f"arn:{partition}:"), resource


@pytest.mark.parametrize(
    ("side", "peer", "partition", "account", "peer_partition", "peer_account", "peer_issuer"),
    [
        ("cn", "sg", "aws-cn", CN_ACCOUNT, "aws", SG_ACCOUNT, SG_ISSUER),
        ("sg", "cn", "aws", SG_ACCOUNT, "aws-cn", CN_ACCOUNT, CN_ISSUER),
    ],
)
def test_the_federated_writer_trusts_only_the_peer_sender_for_our_audience(  # noqa: PLR0917
    side: str,
    peer: str,
    partition: str,
    account: str,
    peer_partition: str,
    peer_account: str,
    peer_issuer: str,
) -> None:
    desired = plan()[side]
    host = peer_issuer.removeprefix("https://")
    provider_arn = f"arn:{partition}:iam::{account}:oidc-provider/{host}"
    peer_sender = f"arn:{peer_partition}:iam::{peer_account}:role/ddbbridge-users-{peer}-sender"
    role = desired.federated_writer
    assert role.name == f"ddbbridge-users-{side}-federated-writer"
    assert role.arn == f"arn:{partition}:iam::{account}:role/{role.name}"
    assert role.trust_policy == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "PeerSenderToken",
                "Effect": "Allow",
                "Principal": {"Federated": provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{host}:aud": TOKEN_AUDIENCE,
                        f"{host}:sub": peer_sender,
                    }
                },
            }
        ],
    }
    # Allowed only to put records into this side's inbound stream (the peer -> side direction).
    stream = f"arn:{partition}:kinesis:{desired.side.region}:{account}:stream/ddbbridge-users-to-{side}"
    assert role.inline_policy == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "PutIntoInboundStream",
                "Effect": "Allow",
                "Action": ["kinesis:PutRecord", "kinesis:PutRecords"],
                "Resource": [stream],
            }
        ],
    }
    assert role.managed_policy_arns == ()
    assert role.tags["ddbbridge.io/pair"] == "users"
    provider = desired.issuer_provider
    assert provider is not None
    assert (provider.url, provider.arn, provider.audience) == (peer_issuer, provider_arn, TOKEN_AUDIENCE)
    assert provider.tags == {"ddbbridge.io/managed-by": "ddbbridge"}  # shared by pairs: no pair tag


@pytest.mark.parametrize(
    ("side", "peer_partition", "peer_account"), [("cn", "aws", SG_ACCOUNT), ("sg", "aws-cn", CN_ACCOUNT)]
)
def test_the_sender_config_names_the_peer_role_and_no_secret(
    side: str, peer_partition: str, peer_account: str
) -> None:
    desired = plan()[side]
    config = sender_config(desired)
    peer = "sg" if side == "cn" else "cn"
    assert config.peer_credentials_mode == "federation"
    assert (
        config.peer_role_arn
        == f"arn:{peer_partition}:iam::{peer_account}:role/ddbbridge-users-{peer}-federated-writer"
    )
    assert config.token_audience == TOKEN_AUDIENCE
    assert config.token_duration_seconds == TOKEN_DURATION_SECONDS  # within the policy's bound
    assert config.peer_session_seconds == FEDERATED_SESSION_SECONDS
    assert config.peer_access_key_parameter is None and config.peer_secret_key_parameter is None
    assert "/ddbbridge/" not in desired.sender.environment["DDBBRIDGE_CONFIG"]  # no SSM parameter path
    # The applier never reaches the peer.
    applier = json.loads(desired.applier.environment["DDBBRIDGE_CONFIG"])
    assert applier.get("peer_role_arn") is None and applier.get("peer_credentials_mode", KEY) == KEY


def test_access_key_mode_writes_no_federation_grant_and_mixed_directions_are_independent() -> None:
    desired = plan(cn_sender=FED, sg_sender=KEY)
    cn, sg = desired["cn"], desired["sg"]
    # cn -> sg is federated: cn's sender gets tokens, sg hosts the provider of cn's issuer.
    assert "PeerToken" in sender_statements(cn) and "ReadPeerCredentials" not in sender_statements(cn)
    assert sg.inbound_mode == FED and sg.issuer_provider is not None and sg.issuer_provider.url == CN_ISSUER
    # sg -> cn uses a key: sg's sender reads only its two parameters, cn hosts no provider.
    assert "PeerToken" not in sender_statements(sg)
    assert sender_statements(sg)["ReadPeerCredentials"]["Resource"] == [
        f"arn:aws:ssm:ap-southeast-1:{SG_ACCOUNT}:parameter/ddbbridge/users/cn/access-key-id",
        f"arn:aws:ssm:ap-southeast-1:{SG_ACCOUNT}:parameter/ddbbridge/users/cn/secret-access-key",
    ]
    assert cn.inbound_mode == KEY and cn.issuer_provider is None
    assert sender_config(sg).peer_credentials_mode == "accessKey"
    assert sender_config(sg).peer_access_key_parameter == "/ddbbridge/users/cn/access-key-id"


ENABLED = OutboundFederation(enabled=True, issuer_url=SG_ISSUER)
DISABLED = OutboundFederation(enabled=False)


@pytest.mark.parametrize(
    ("requested", "federation", "may_enable", "mode", "enable", "words"),
    [
        (CredentialsMode.ACCESS_KEY, None, False, KEY, False, "mode is accessKey"),
        (CredentialsMode.FEDERATION, ENABLED, False, FED, False, "is enabled in account 444455556666"),
        (CredentialsMode.FEDERATION, DISABLED, True, FED, True, "the operator enabled"),
        (CredentialsMode.AUTO, ENABLED, False, FED, False, "auto: outbound identity federation is enabled"),
        (CredentialsMode.AUTO, DISABLED, False, KEY, False, "auto: outbound identity federation is disabled"),
        # auto never flips the account switch, even when enabling is allowed.
        (CredentialsMode.AUTO, DISABLED, True, KEY, False, "is disabled"),
    ],
)
def test_the_mode_and_its_reason(  # noqa: PLR0917
    requested: CredentialsMode,
    federation: OutboundFederation | None,
    may_enable: bool,
    mode: str,
    enable: bool,
    words: str,
) -> None:
    decision = decide_mode(
        requested, side="sg", account_id=SG_ACCOUNT, federation=federation, may_enable=may_enable
    )
    assert (decision.mode.value, decision.enable_switch) == (mode, enable)
    assert words in decision.reason


def test_federation_on_a_disabled_account_is_stalled_with_what_is_missing() -> None:
    with pytest.raises(TerminalError) as raised:
        decide_mode(
            CredentialsMode.FEDERATION,
            side="sg",
            account_id=SG_ACCOUNT,
            federation=DISABLED,
            may_enable=False,
        )
    assert raised.value.reason == "OutboundFederationDisabled"
    message = str(raised.value)
    assert SG_ACCOUNT in message and "enable-outbound-web-identity-federation" in message
    assert "enableOutboundFederation: true" in message
    unavailable = OutboundFederation(
        enabled=False, unavailable="not offered by this endpoint (InvalidAction)"
    )
    with pytest.raises(TerminalError) as raised:
        decide_mode(
            CredentialsMode.FEDERATION,
            side="sg",
            account_id=SG_ACCOUNT,
            federation=unavailable,
            may_enable=True,
        )
    assert raised.value.reason == "OutboundFederationUnavailable"
