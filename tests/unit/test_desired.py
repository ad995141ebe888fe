"""The desired state of a pair: partitions, least-privilege IAM, names, handler config, mappings."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ddbbridge.desired import (
    APPLIER_HANDLER,
    RUNTIME,
    SENDER_HANDLER,
    TAG_PAIR,
    TAG_UID,
    RegionDesired,
    RegionFacts,
    desired_region,
)
from ddbbridge.names import AWS_NAME_LIMIT, SideNames
from ddbbridge.spec import PairManifest, parse_manifest
from ddbbridge_lambdas.config import HandlerConfig, KeyAttribute

ACCOUNT = "111122223333"
KEYS = (KeyAttribute("tenant", "S", "HASH"), KeyAttribute("seq", "N", "RANGE"))
CN_STREAM = "arn:aws-cn:dynamodb:cn-north-1:111122223333:table/user-cn/stream/2026-01-01T00:00:00.000"
SG_STREAM = "arn:aws:dynamodb:ap-southeast-1:111122223333:table/user-sg/stream/2026-01-01T00:00:00.000"


def manifest(name: str = "users", **spec_extra: Any) -> PairManifest:
    regions = spec_extra.pop(
        "regions",
        [
            {"name": "cn", "region": "cn-north-1", "tableName": "user-cn"},
            {"name": "sg", "region": "ap-southeast-1", "tableName": "user-sg"},
        ],
    )
    return parse_manifest(
        {
            "apiVersion": "ddbbridge.io/v1alpha1",
            "kind": "TableReplicationPair",
            "metadata": {"name": name, "uid": "0f6c6a4e-1b2c-4d5e-8f90-123456789abc"},
            "spec": {"regions": regions, **spec_extra},
        }
    )


def both(pair: PairManifest, peer_url: str | None = None) -> dict[str, RegionDesired]:
    facts = {
        "cn-north-1": RegionFacts(ACCOUNT, KEYS, CN_STREAM, "http://sqs/cn-dlq", peer_account_id=ACCOUNT),
        "ap-southeast-1": RegionFacts(ACCOUNT, KEYS, SG_STREAM, "http://sqs/sg-dlq", peer_account_id=ACCOUNT),
    }
    return {
        side.name: desired_region(pair, side, facts[side.region], peer_endpoint_url=peer_url)
        for side in pair.spec.regions
    }


def strings(value: Any) -> list[str]:
    """Every string inside a nested structure of dataclasses, dicts, lists and tuples."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in strings(item)]
    if isinstance(value, list | tuple):
        return [s for item in value for s in strings(item)]
    if hasattr(value, "__dataclass_fields__"):
        return [s for name in value.__dataclass_fields__ for s in strings(getattr(value, name))]
    return []


def arns_in(value: Any) -> list[str]:
    found = []
    for text in strings(value):
        if text.startswith("{"):  # the handler config JSON holds no ARNs, but check its strings too
            found += arns_in(json.loads(text))
        elif text.startswith("arn:"):
            found.append(text)
    return found


def token_subjects(desired: RegionDesired) -> list[str]:
    """The federated-writer trust's `:sub` values: the PEER's sender role, an ARN of the peer partition."""
    conditions = desired.federated_writer.trust_policy["Statement"][0]["Condition"]["StringEquals"]
    return [value for key, value in conditions.items() if key.endswith(":sub")]


def test_every_arn_uses_the_partition_of_its_region() -> None:
    desired = both(manifest())
    cn_subjects, sg_subjects = token_subjects(desired["cn"]), token_subjects(desired["sg"])
    assert cn_subjects == [desired["sg"].sender_role.arn] and sg_subjects == [desired["cn"].sender_role.arn]
    cn_arns = [arn for arn in arns_in(desired["cn"]) if arn not in cn_subjects]
    sg_arns = [arn for arn in arns_in(desired["sg"]) if arn not in sg_subjects]
    assert len(cn_arns) > 20 and len(sg_arns) > 20
    assert all(arn.startswith("arn:aws-cn:") for arn in cn_arns), cn_arns
    assert all(arn.startswith("arn:aws:") for arn in sg_arns), sg_arns
    assert desired["cn"].partition == "aws-cn" and desired["sg"].partition == "aws"
    # Regional ARNs name their own region; IAM ARNs have none.
    for arn in cn_arns:
        region = arn.split(":")[3]
        assert region in ("cn-north-1", ""), arn


def iam_documents(desired: RegionDesired) -> list[dict[str, Any]]:
    return [role.inline_policy for role in desired.roles] + [desired.peer_writer.inline_policy]


# The only wildcards allowed, each a sub-resource of a NAMED parent (see desired.py's docstring).
ALLOWED_WILDCARD_SUFFIXES = ("/stream/*", ":*")


@pytest.mark.parametrize("side", ["cn", "sg"])
def test_every_iam_statement_names_specific_resources(side: str) -> None:
    desired = both(manifest())[side]
    prefix = f"arn:{desired.partition}:"
    for document in iam_documents(desired):
        assert document["Version"] == "2012-10-17"
        for statement in document["Statement"]:
            assert statement["Effect"] == "Allow"
            resources = statement["Resource"]
            assert isinstance(resources, list) and resources, statement
            for resource in resources:
                assert resource != "*", statement
                assert resource.startswith(prefix), resource
                assert ACCOUNT in resource, resource
                if "*" in resource:
                    assert resource.endswith(ALLOWED_WILDCARD_SUFFIXES), resource
                    assert resource.count("*") == 1, resource
            assert all(":" in action and "*" not in action for action in statement["Action"])


def actions_on(document: dict[str, Any], resource: str) -> set[str]:
    return {
        action
        for statement in document["Statement"]
        if resource in statement["Resource"]
        for action in statement["Action"]
    }


def test_sender_policy_covers_exactly_its_resources() -> None:
    cn = both(manifest())["cn"]
    policy = cn.sender_role.inline_policy
    names = SideNames("users", "cn")
    assert actions_on(policy, CN_STREAM) == {
        "dynamodb:DescribeStream",
        "dynamodb:GetRecords",
        "dynamodb:GetShardIterator",
    }
    assert "dynamodb:ListStreams" in actions_on(
        policy, "arn:aws-cn:dynamodb:cn-north-1:111122223333:table/user-cn/stream/*"
    )
    assert "dynamodb:UpdateItem" in actions_on(policy, cn.table_arn)
    assert "dynamodb:PutItem" in actions_on(policy, cn.ledger.arn)
    assert "dynamodb:UpdateItem" in actions_on(policy, cn.stats.arn)
    for queue in (cn.dead_letters, cn.sender_failures):
        assert actions_on(policy, queue.arn) == {"sqs:SendMessage"}
    assert actions_on(policy, cn.applier_failures.arn) == set()
    # The sender reads the PEER's (sg's) key, stored in cn's SSM.
    for parameter in (
        SideNames("users", "sg").access_key_parameter,
        SideNames("users", "sg").secret_key_parameter,
    ):
        arn = f"arn:aws-cn:ssm:cn-north-1:{ACCOUNT}:parameter{parameter}"
        assert actions_on(policy, arn) == {"ssm:GetParameter", "ssm:GetParameters"}
    log_group = f"arn:aws-cn:logs:cn-north-1:{ACCOUNT}:log-group:/aws/lambda/{names.sender_function}:*"
    assert actions_on(policy, log_group) == {
        "logs:CreateLogGroup",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    }
    # No Kinesis permission at all: the sender signs peer writes with the peer-writer key.
    assert not any(a.startswith("kinesis:") for s in policy["Statement"] for a in s["Action"])


def test_applier_policy_reads_only_its_inbound_stream() -> None:
    sg = both(manifest())["sg"]
    policy = sg.applier_role.inline_policy
    kinesis = [s for s in policy["Statement"] if any(a.startswith("kinesis:") for a in s["Action"])]
    assert [s["Resource"] for s in kinesis] == [[sg.inbound_stream.arn]]
    assert sg.inbound_stream.arn == "arn:aws:kinesis:ap-southeast-1:111122223333:stream/ddbbridge-users-to-sg"
    assert "kinesis:PutRecords" not in actions_on(policy, sg.inbound_stream.arn)
    assert actions_on(policy, sg.applier_failures.arn) == {"sqs:SendMessage"}
    assert "dynamodb:DeleteItem" in actions_on(policy, sg.table_arn)


def test_peer_writer_may_only_put_records_into_its_sides_inbound_stream() -> None:
    for desired in both(manifest()).values():
        statements = desired.peer_writer.inline_policy["Statement"]
        assert len(statements) == 1
        assert statements[0]["Action"] == ["kinesis:PutRecord", "kinesis:PutRecords"]
        assert statements[0]["Resource"] == [desired.inbound_stream.arn]
        assert desired.peer_writer.name == f"ddbbridge-users-{desired.side.name}-peer-writer"


def test_trust_policy_lets_only_lambda_assume_the_roles() -> None:
    for desired in both(manifest()).values():
        for role in desired.roles:
            (statement,) = role.trust_policy["Statement"]
            assert statement["Principal"] == {"Service": "lambda.amazonaws.com"}
            assert statement["Action"] == "sts:AssumeRole"


def test_managed_policy_only_for_a_vpc_sender_with_the_partitions_arn() -> None:
    plain = both(manifest())
    assert all(role.managed_policy_arns == () for d in plain.values() for role in d.roles)
    vpc = {"subnetIds": ["subnet-1"], "securityGroupIds": ["sg-1"]}
    with_vpc = both(
        manifest(
            regions=[
                {"name": "cn", "region": "cn-north-1", "tableName": "user-cn", "vpc": vpc},
                {"name": "sg", "region": "ap-southeast-1", "tableName": "user-sg", "vpc": vpc},
            ]
        )
    )
    assert with_vpc["cn"].sender_role.managed_policy_arns == (
        "arn:aws-cn:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole",
    )
    assert with_vpc["sg"].sender_role.managed_policy_arns == (
        "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole",
    )
    assert with_vpc["cn"].applier_role.managed_policy_arns == ()
    assert with_vpc["cn"].sender.subnet_ids == ("subnet-1",)
    assert with_vpc["cn"].applier.subnet_ids == ()


def test_longest_names_fit_aws_limits() -> None:
    pair_name = "p" * 24  # the spec's maximum
    pair = manifest(
        name=pair_name,
        regions=[
            {"name": "abcdefgh", "region": "cn-north-1", "tableName": "user-cn"},
            {"name": "zyxwvuts", "region": "ap-southeast-1", "tableName": "user-sg"},
        ],
    )
    desired_sides = both(pair)
    assert set(desired_sides) == {"abcdefgh", "zyxwvuts"}
    for desired in desired_sides.values():
        for name in desired.names.all_limited_names():
            assert len(name) <= AWS_NAME_LIMIT, name
        for role in desired.roles:
            assert len(role.name) <= AWS_NAME_LIMIT


def test_everything_taggable_carries_the_pair_name_and_uid() -> None:
    desired = both(manifest())["cn"]
    taggables: list[Any] = [
        desired.ledger,
        desired.stats,
        desired.inbound_stream,
        *desired.queues,
        *desired.roles,
        desired.peer_writer,
        *desired.functions,
        desired.peer_key_parameters,
    ]
    for resource in taggables:
        assert resource.tags[TAG_PAIR] == "users", resource
        assert resource.tags[TAG_UID] == "0f6c6a4e-1b2c-4d5e-8f90-123456789abc", resource


def test_function_configuration_follows_the_contract() -> None:
    pair = manifest(
        replication={
            "lambdaMemoryMb": 512,
            "lambdaTimeoutSeconds": 90,
            "reservedConcurrency": 4,
            "timestampUnit": "milliseconds",
            "peerProxy": "http://proxy:3128",
        }
    )
    cn = both(pair, peer_url="http://127.0.0.1:9999")["cn"]
    assert (
        (cn.sender.runtime, cn.sender.handler) == (RUNTIME, SENDER_HANDLER) == ("python3.12", SENDER_HANDLER)
    )
    assert cn.applier.handler == APPLIER_HANDLER
    assert (cn.sender.memory_mb, cn.sender.timeout_seconds, cn.sender.reserved_concurrency) == (512, 90, 4)
    assert set(cn.sender.environment) == {"DDBBRIDGE_CONFIG"}
    sender = HandlerConfig.from_json(cn.sender.environment["DDBBRIDGE_CONFIG"])
    applier = HandlerConfig.from_json(cn.applier.environment["DDBBRIDGE_CONFIG"])
    assert sender.key_schema == KEYS and applier.key_schema == KEYS
    assert (sender.local_region_name, sender.local_region, sender.peer_region) == (
        "cn",
        "cn-north-1",
        "ap-southeast-1",
    )
    assert sender.ledger_table == "ddbbridge-users-cn-ledger"
    assert sender.stats_table == "ddbbridge-users-cn-stats"
    assert sender.dead_letter_queue_url == "http://sqs/cn-dlq"
    assert sender.timestamp_unit == "milliseconds"
    assert sender.tombstone_retention_seconds == 15 * 86400
    assert sender.peer_stream_name == "ddbbridge-users-to-sg"
    assert sender.peer_endpoint_url == "http://127.0.0.1:9999"
    assert sender.peer_access_key_parameter == "/ddbbridge/users/sg/access-key-id"
    assert sender.peer_secret_key_parameter == "/ddbbridge/users/sg/secret-access-key"
    assert sender.peer_proxy == "http://proxy:3128"
    assert applier.peer_stream_name is None and applier.peer_access_key_parameter is None
    # Deterministic: the same inputs give the same environment (no spurious function updates).
    again = both(pair, peer_url="http://127.0.0.1:9999")["cn"]
    assert again.sender.environment == cn.sender.environment


def test_mappings_take_their_settings_from_the_spec() -> None:
    pair = manifest(
        replication={
            "senderBatchSize": 300,
            "applierBatchSize": 700,
            "batchingWindowSeconds": 2,
            "maximumRetryAttempts": 5,
            "maximumRecordAgeSeconds": 3600,
            "parallelizationFactor": 4,
        },
        paused=True,
    )
    sg = both(pair)["sg"]
    sender, applier = sg.sender_mapping, sg.applier_mapping
    assert (sender.event_source_arn, sender.batch_size) == (SG_STREAM, 300)
    assert (applier.event_source_arn, applier.batch_size) == (sg.inbound_stream.arn, 700)
    for mapping in (sender, applier):
        assert mapping.maximum_batching_window_seconds == 2
        assert mapping.starting_position == "TRIM_HORIZON"
        assert mapping.maximum_retry_attempts == 5
        assert mapping.maximum_record_age_seconds == 3600
        assert mapping.bisect_batch_on_function_error is True
        assert mapping.parallelization_factor == 4
        assert mapping.function_response_types == ("ReportBatchItemFailures",)
        assert mapping.enabled is False
    assert sender.on_failure_arn == sg.sender_failures.arn
    assert applier.on_failure_arn == sg.applier_failures.arn
    assert sender.on_failure_arn.endswith(":ddbbridge-users-sg-sender-failures")


def test_each_side_stores_the_peers_key() -> None:
    desired = both(manifest())
    assert desired["cn"].peer_key_parameters.user_side == "sg"
    assert desired["cn"].peer_key_parameters.access_key_parameter == "/ddbbridge/users/sg/access-key-id"
    assert desired["sg"].peer_key_parameters.secret_key_parameter == "/ddbbridge/users/cn/secret-access-key"


def test_a_stream_not_enabled_yet_gets_a_placeholder_never_a_wildcard() -> None:
    pair = manifest()
    cn = desired_region(pair, pair.spec.side("cn"), RegionFacts(ACCOUNT, KEYS))
    assert cn.table_stream_arn.startswith("arn:aws-cn:dynamodb:cn-north-1:111122223333:table/user-cn/stream/")
    assert "*" not in cn.table_stream_arn
