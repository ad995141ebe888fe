"""Evaluate a role's trust policy for one AssumeRoleWithWebIdentity request, as IAM would.

Covers what OIDC trust policies use: Effect Allow/Deny, Action/NotAction with wildcards, Principal
`Federated` (or "*"), and the string condition operators (StringEquals, StringNotEquals, StringLike,
StringNotLike and their IgnoreCase forms, `...IfExists`, `ForAnyValue:`/`ForAllValues:`) plus `Null`.
An operator it does not know makes its statement fail to match (never silently allow). Pure: no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ACTION = "sts:AssumeRoleWithWebIdentity"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _wildcard(pattern: str, *, ignore_case: bool = False) -> re.Pattern[str]:
    expression = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(f"^{expression}$", re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _action_matches(statement: Mapping[str, Any], action: str) -> bool:
    if "NotAction" in statement:
        return not any(
            _wildcard(str(p), ignore_case=True).match(action) for p in _as_list(statement["NotAction"])
        )
    return any(_wildcard(str(p), ignore_case=True).match(action) for p in _as_list(statement.get("Action")))


def _principal_matches(statement: Mapping[str, Any], provider_arn: str) -> bool:
    principal = statement.get("Principal")
    if principal == "*":
        return True
    if not isinstance(principal, Mapping):
        return False  # NotPrincipal and malformed principals never grant web identity access here
    return any(str(value) in ("*", provider_arn) for value in _as_list(principal.get("Federated")))


def _compare(base: str, wanted: str, actual: str) -> bool:
    ignore_case = base.endswith("IgnoreCase")
    if base.startswith("StringLike") or base.startswith("StringNotLike"):
        return bool(_wildcard(wanted).match(actual))
    return wanted.lower() == actual.lower() if ignore_case else wanted == actual


_POSITIVE = {"StringEquals", "StringEqualsIgnoreCase", "StringLike"}
_NEGATED = {"StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike"}


def _condition_holds(
    operator: str, key: str, wanted: list[str], context: Mapping[str, list[str]]
) -> str | None:
    """None when the condition holds, else why not."""
    qualifier, _, base = operator.rpartition(":")
    if_exists = base.endswith("IfExists")
    base = base.removesuffix("IfExists")
    actual = context.get(key.lower())
    if base == "Null":
        is_null = actual is None
        expected = any(str(value).lower() == "true" for value in wanted)
        return (
            None
            if is_null == expected
            else f"Null {key}={wanted} but the key is {'absent' if is_null else 'present'}"
        )
    if base not in _POSITIVE | _NEGATED or qualifier not in ("", "ForAnyValue", "ForAllValues"):
        return f"unsupported condition operator {operator}"
    if actual is None:
        if if_exists or base in _NEGATED or qualifier == "ForAllValues":
            return None
        return f"{operator} {key}: the token provides no such key"
    if base in _POSITIVE:
        matches = [any(_compare(base, w, a) for w in wanted) for a in actual]
    else:  # negated: a value passes when it matches none of the listed values
        matches = [not any(_compare(base, w, a) for w in wanted) for a in actual]
    holds = all(matches) if qualifier == "ForAllValues" else any(matches)
    return None if holds else f"{operator} {key} in {wanted} is not met by the token's {actual}"


def _conditions_fail(statement: Mapping[str, Any], context: Mapping[str, list[str]]) -> str | None:
    conditions = statement.get("Condition") or {}
    if not isinstance(conditions, Mapping):
        return "malformed Condition block"
    for operator, block in conditions.items():
        if not isinstance(block, Mapping):
            return f"malformed condition {operator}"
        for key, values in block.items():
            failure = _condition_holds(str(operator), str(key), [str(v) for v in _as_list(values)], context)
            if failure:
                return failure
    return None


def evaluate(
    document: str | Mapping[str, Any],
    provider_arn: str,
    context: Mapping[str, Sequence[str]],
    action: str = ACTION,
) -> Decision:
    """May `provider_arn`'s token (whose condition keys and values are `context`) perform `action`?"""
    try:
        policy = json.loads(document) if isinstance(document, str) else document
    except ValueError:
        return Decision(False, "the role's trust policy is not JSON")
    values = {key.lower(): [str(v) for v in vs] for key, vs in context.items()}
    statements = [s for s in _as_list(policy.get("Statement")) if isinstance(s, Mapping)]
    allowed_by: str | None = None
    near_misses: list[str] = []
    for index, statement in enumerate(statements):
        name = str(statement.get("Sid") or f"#{index}")
        if not _action_matches(statement, action) or not _principal_matches(statement, provider_arn):
            continue
        failure = _conditions_fail(statement, values)
        effect = statement.get("Effect")
        if failure is None and effect == "Deny":
            return Decision(False, f"explicitly denied by trust policy statement {name}")
        if failure is None and effect == "Allow":
            allowed_by = allowed_by or name
        elif effect == "Allow" and failure:
            near_misses.append(f"statement {name}: {failure}")
    if allowed_by is not None:
        return Decision(True, f"allowed by trust policy statement {allowed_by}")
    if near_misses:
        return Decision(False, "; ".join(near_misses))
    return Decision(
        False, f"no trust policy statement allows {action} for Federated principal {provider_arn}"
    )
