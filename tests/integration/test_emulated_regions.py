"""The emulated regions as the product sees them: isolation, partitions, and the launcher's own routes."""

from __future__ import annotations

import urllib.request
from collections import Counter

import pytest
from botocore.exceptions import ClientError

from tests.fixtures.regions import Regions
from tests.integration.emulators import Emulator, create_function, function_zip

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_regions")]


def _table(ddb: object, name: str) -> str:
    description = ddb.create_table(  # type: ignore[attr-defined]
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    arn: str = description["TableDescription"]["TableArn"]
    return arn


def test_each_region_keeps_its_own_state(regions: Regions) -> None:
    _table(regions.cn.client("dynamodb"), "only-in-cn")
    regions.sg.client("kinesis").create_stream(StreamName="only-in-sg", ShardCount=1)
    regions.sg.client("sqs").create_queue(QueueName="only-in-sg")

    assert regions.cn.client("dynamodb").list_tables()["TableNames"] == ["only-in-cn"]
    assert regions.sg.client("dynamodb").list_tables()["TableNames"] == []
    assert regions.cn.client("kinesis").list_streams()["StreamNames"] == []
    assert regions.sg.client("kinesis").list_streams()["StreamNames"] == ["only-in-sg"]
    assert "QueueUrls" not in regions.cn.client("sqs").list_queues()


def test_cn_north_1_uses_the_aws_cn_partition(regions: Regions) -> None:
    cn_table = _table(regions.cn.client("dynamodb"), "arns")
    sg_table = _table(regions.sg.client("dynamodb"), "arns")
    assert cn_table.startswith("arn:aws-cn:dynamodb:cn-north-1:")
    assert sg_table.startswith("arn:aws:dynamodb:ap-southeast-1:")

    for region, partition in ((regions.cn, "aws-cn"), (regions.sg, "aws")):
        kinesis = region.client("kinesis")
        kinesis.create_stream(StreamName="arns", ShardCount=1)
        stream_arn = kinesis.describe_stream(StreamName="arns")["StreamDescription"]["StreamARN"]
        assert stream_arn.startswith(f"arn:{partition}:kinesis:{region.name}:")
        function_arn = create_function(Emulator("launcher", regions.endpoints()), region.name, "arns")
        assert function_arn.startswith(f"arn:{partition}:lambda:{region.name}:")


def test_request_log_counts_every_operation_by_service(regions: Regions) -> None:
    region = regions.cn
    ddb = region.client("dynamodb")
    _table(ddb, "counted")
    regions.cn.clear_requests()
    regions.sg.clear_requests()
    for index in range(3):
        ddb.put_item(TableName="counted", Item={"pk": {"S": str(index)}})
    ddb.get_item(TableName="counted", Key={"pk": {"S": "0"}})
    create_function(
        Emulator("launcher", regions.endpoints()), region.name, "counted"
    )  # IAM (query) + Lambda (REST)

    entries = region.requests()
    counts = Counter((entry["service"], entry["operation"]) for entry in entries)
    assert counts[("dynamodb", "PutItem")] == 3
    assert counts[("dynamodb", "GetItem")] == 1
    assert counts[("iam", "CreateRole")] == 1
    assert counts[("lambda", "CreateFunction")] == 1
    assert [entry["seq"] for entry in entries] == sorted(entry["seq"] for entry in entries)

    last = entries[-1]["seq"]
    ddb.delete_item(TableName="counted", Key={"pk": {"S": "1"}})
    assert [(e["service"], e["operation"]) for e in region.requests(since=last)] == [
        ("dynamodb", "DeleteItem")
    ]
    assert regions.sg.requests() == []  # the other region saw none of it


def test_request_log_names_the_table_of_single_item_calls(regions: Regions) -> None:
    region = regions.cn
    ddb = region.client("dynamodb")
    _table(ddb, "named-a")
    _table(ddb, "named-b")
    last = region.requests()[-1]["seq"]
    ddb.put_item(TableName="named-a", Item={"pk": {"S": "1"}})
    ddb.update_item(
        TableName="named-b",
        Key={"pk": {"S": "1"}},
        UpdateExpression="ADD n :one",
        ExpressionAttributeValues={":one": {"N": "1"}},
    )
    ddb.scan(TableName="named-a")  # not a single-item call: no table logged

    logged = [(e["operation"], e["table"]) for e in region.requests(since=last)]
    assert logged == [("PutItem", "named-a"), ("UpdateItem", "named-b"), ("Scan", None)]
    # moto still read the body the log looked into: the update happened.
    item = ddb.get_item(TableName="named-b", Key={"pk": {"S": "1"}}, ConsistentRead=True)["Item"]
    assert item["n"] == {"N": "1"}


def test_fault_answers_the_next_matching_call_with_the_aws_error(regions: Regions) -> None:
    region = regions.sg
    ddb = region.client("dynamodb", retries=1)
    _table(ddb, "throttled")
    region.inject_fault("dynamodb", "PutItem", "ProvisionedThroughputExceededException", count=1)

    ddb.get_item(TableName="throttled", Key={"pk": {"S": "x"}})  # other operations are not affected
    with pytest.raises(ClientError) as caught:
        ddb.put_item(TableName="throttled", Item={"pk": {"S": "x"}})
    assert caught.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    ddb.put_item(TableName="throttled", Item={"pk": {"S": "x"}})  # count was 1: served normally again
    faulted = [e for e in region.requests() if e["fault"]]
    assert [(e["operation"], e["fault"]) for e in faulted] == [
        ("PutItem", "ProvisionedThroughputExceededException")
    ]


@pytest.mark.parametrize(
    ("service", "operation", "error", "call"),
    [
        ("kinesis", "PutRecords", "ProvisionedThroughputExceededException", "kinesis"),
        ("lambda", "GetFunction", "TooManyRequestsException", "lambda"),
        ("iam", "GetRole", "Throttling", "iam"),
    ],
)
def test_faults_speak_each_protocol(
    regions: Regions, service: str, operation: str, error: str, call: str
) -> None:
    region = regions.cn
    region.inject_fault(service, operation, error, status=400 if service != "lambda" else 429, count=2)
    client = region.client(service, retries=1)
    for _ in range(2):
        with pytest.raises(ClientError) as caught:
            if call == "kinesis":
                client.put_records(StreamName="none", Records=[{"Data": b"x", "PartitionKey": "k"}])
            elif call == "lambda":
                client.get_function(FunctionName="none")
            else:
                client.get_role(RoleName="none")
        assert caught.value.response["Error"]["Code"] == error
    region.clear_faults()


def test_deployed_code_is_served_as_the_uploaded_zip(regions: Regions) -> None:
    create_function(Emulator("launcher", regions.endpoints()), regions.sg.name, "zipped")
    with urllib.request.urlopen(
        f"{regions.sg.local}/_ddbbridge/lambda/functions/zipped/code", timeout=10
    ) as reply:
        assert reply.headers["Content-Type"] == "application/zip"
        assert reply.read() == function_zip()
