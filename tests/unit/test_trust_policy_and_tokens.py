"""The emulator's pure parts of federation: trust policy evaluation and JWT signing/verification."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ddbbridge_dev import oidc, trust_policy

PROVIDER = "arn:aws:iam::123456789012:oidc-provider/127.0.0.1:9/_ddbbridge/oidc/123456789012"
KEY = "127.0.0.1:9/_ddbbridge/oidc/123456789012"
SENDER = "arn:aws-cn:iam::123456789012:role/ddbbridge-users-cn-sender"
CONTEXT = {f"{KEY}:aud": ["ddbbridge"], f"{KEY}:sub": [SENDER]}


def _policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _allow(condition: dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"Federated": PROVIDER},
        "Action": "sts:AssumeRoleWithWebIdentity",
    }
    if condition is not None:
        statement["Condition"] = condition
    return {**statement, **overrides}


@pytest.mark.parametrize(
    ("statements", "allowed", "reason"),
    [
        ([_allow({"StringEquals": {f"{KEY}:aud": "ddbbridge", f"{KEY}:sub": SENDER}})], True, "allowed"),
        ([_allow({"StringEquals": {f"{KEY}:sub": "arn:aws-cn:iam::1:role/other"}})], False, f"{KEY}:sub"),
        ([_allow({"StringEquals": {f"{KEY}:aud": ["x", "ddbbridge"]}})], True, "allowed"),  # values OR
        (
            [_allow({"StringLike": {f"{KEY}:sub": "arn:aws-cn:iam::*:role/ddbbridge-*-sender"}})],
            True,
            "allowed",
        ),
        ([_allow({"StringLike": {f"{KEY}:sub": "arn:aws-cn:iam::*:role/other-*"}})], False, "StringLike"),
        ([_allow({"StringEquals": {f"{KEY.upper()}:AUD": "ddbbridge"}})], True, "allowed"),  # keys: any case
        ([_allow({"StringEqualsIgnoreCase": {f"{KEY}:aud": "DDBBRIDGE"}})], True, "allowed"),
        ([_allow({"StringEquals": {f"{KEY}:amr": "x"}})], False, "no such key"),
        ([_allow({"StringEqualsIfExists": {f"{KEY}:amr": "x"}})], True, "allowed"),
        ([_allow({"StringNotEquals": {f"{KEY}:sub": SENDER}})], False, "StringNotEquals"),
        ([_allow({"Null": {f"{KEY}:amr": "true"}})], True, "allowed"),
        ([_allow({"NumericEquals": {f"{KEY}:aud": "1"}})], False, "unsupported condition operator"),
        (
            [_allow(Principal={"Federated": "arn:aws:iam::123456789012:oidc-provider/elsewhere"})],
            False,
            "no trust",
        ),
        ([_allow(Action="sts:AssumeRole")], False, "no trust"),
        ([_allow(Action="sts:AssumeRoleWith*")], True, "allowed"),
        ([_allow(Effect="Deny"), _allow()], False, "explicitly denied"),
        ([_allow(Principal="*")], True, "allowed"),
    ],
)
def test_trust_policy(statements: list[dict[str, Any]], allowed: bool, reason: str) -> None:
    decision = trust_policy.evaluate(_policy(*statements), PROVIDER, CONTEXT)
    assert decision.allowed is allowed
    assert reason in decision.reason


def test_for_all_values_needs_every_value_listed() -> None:
    several = {f"{KEY}:aud": ["ddbbridge", "other"]}
    only_ours = _allow({"ForAllValues:StringEquals": {f"{KEY}:aud": "ddbbridge"}})
    any_ours = _allow({"ForAnyValue:StringEquals": {f"{KEY}:aud": "ddbbridge"}})
    assert not trust_policy.evaluate(_policy(only_ours), PROVIDER, several).allowed
    assert trust_policy.evaluate(_policy(any_ours), PROVIDER, several).allowed


@pytest.mark.parametrize("algorithm", oidc.ALGORITHMS)
def test_tokens_verify_only_untouched_and_with_their_own_key(tmp_path: Path, algorithm: str) -> None:
    keys = oidc.load_or_create_keys(tmp_path / "a")
    claims = {"iss": "http://issuer", "sub": SENDER, "aud": "ddbbridge", "exp": 2}
    token = oidc.encode(claims, keys[algorithm])
    parsed = oidc.parse(token)
    assert parsed.claims == claims
    assert parsed.header == {"alg": algorithm, "kid": keys[algorithm].kid, "typ": "JWT"}
    oidc.verify(parsed, oidc.jwks(keys))

    header, payload, signature = token.split(".")
    altered = oidc.b64url(json.dumps({**claims, "sub": "someone-else"}).encode())
    with pytest.raises(oidc.TokenError, match="does not verify"):
        oidc.verify(oidc.parse(f"{header}.{altered}.{signature}"), oidc.jwks(keys))
    other_keys = oidc.load_or_create_keys(tmp_path / "b")
    with pytest.raises(oidc.TokenError, match="no key with kid"):
        oidc.verify(parsed, oidc.jwks(other_keys))
    with pytest.raises(oidc.TokenError):
        oidc.parse(f"{header}.{payload}")


def test_keys_are_kept_private_and_reused(tmp_path: Path) -> None:
    first = oidc.load_or_create_keys(tmp_path)
    again = oidc.load_or_create_keys(tmp_path)
    assert {a: k.kid for a, k in first.items()} == {a: k.kid for a, k in again.items()}
    for path in tmp_path.iterdir():
        assert path.stat().st_mode & 0o077 == 0, path
    published = json.dumps(oidc.jwks(first))
    assert '"d"' not in published and "PRIVATE" not in published
