"""Spec errors the reconcile relies on, and how AWS errors are classified (terminal vs transient)."""

from __future__ import annotations

from typing import Any

import botocore.exceptions
import pytest

from ddbbridge.errors import TerminalError, TransientError, is_terminal, report
from ddbbridge.spec import SpecError, parse_manifest


def document(**replication: Any) -> dict[str, Any]:
    return {
        "apiVersion": "ddbbridge.io/v1alpha1",
        "kind": "TableReplicationPair",
        "metadata": {"name": "users"},
        "spec": {
            "regions": [
                {"name": "cn", "region": "cn-north-1", "tableName": "user-cn"},
                {"name": "sg", "region": "ap-southeast-1", "tableName": "user-sg"},
            ],
            "replication": replication,
        },
    }


@pytest.mark.parametrize("age", [0, 1, 59])
def test_record_age_lambda_refuses_is_a_spec_error(age: int) -> None:
    with pytest.raises(SpecError, match="maximumRecordAgeSeconds"):
        parse_manifest(document(maximumRecordAgeSeconds=age))


@pytest.mark.parametrize("age", [-1, 60, 604800])
def test_record_age_lambda_accepts_is_valid(age: int) -> None:
    assert (
        parse_manifest(document(maximumRecordAgeSeconds=age)).spec.replication.maximum_record_age_seconds
        == age
    )


def test_a_vpc_needs_subnets_and_security_groups() -> None:
    bad = document()
    bad["spec"]["regions"][0]["vpc"] = {"subnetIds": [], "securityGroupIds": ["sg-1"]}
    with pytest.raises(SpecError, match="subnetIds"):
        parse_manifest(bad)


def test_one_region_twice_is_a_spec_error() -> None:
    bad = document()
    bad["spec"]["regions"][1]["region"] = "cn-north-1"
    with pytest.raises(SpecError, match="must differ"):
        parse_manifest(bad)


def client_error(code: str, status: int = 400) -> botocore.exceptions.ClientError:
    response: Any = {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return botocore.exceptions.ClientError(response, "PutItem")


@pytest.mark.parametrize(
    ("error", "terminal"),
    [
        (client_error("AccessDeniedException"), True),
        (client_error("ValidationException"), True),
        (client_error("ThrottlingException"), False),
        (client_error("ResourceInUseException"), False),
        (client_error("Whatever", 503), False),
        (botocore.exceptions.EndpointConnectionError(endpoint_url="http://x"), False),
        (TerminalError("table missing"), True),
        (TransientError("still creating"), False),
    ],
)
def test_errors_are_classified(error: Exception, terminal: bool) -> None:
    assert is_terminal(error) is terminal
    assert report("cn", "step", error).terminal is terminal
