"""The local Lambda runner against emulated regions over real HTTP, with test functions deployed as zips.

Every test deploys its own function(s) through moto's CreateFunction, creates a mapping, writes to the
source, and reads what the function reported (an SQS queue in the same region) and what the runner
sent to on-failure destinations.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fixtures.lambda_samples import sample, shape_of
from tests.fixtures.runner import RunnerProcess, endpoints_of
from tests.fixtures.waiting import wait_for
from tests.integration.runner_support import Inbox, Region, delivered_sequences, function_source, make_zip

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_regions")]

CN = "cn-north-1"
SG = "ap-southeast-1"


@pytest.fixture(autouse=True)
def _no_mappings_left(regions: Any) -> Iterator[None]:
    """Each test's runner must serve only that test's mappings: earlier ones would be re-read from
    the trim horizon by the next test's fresh runner and load the machine for nothing."""
    yield
    for name in (CN, SG):
        client = _region(regions, name).client("lambda")
        for mapping in client.list_event_source_mappings()["EventSourceMappings"]:
            client.delete_event_source_mapping(UUID=mapping["UUID"])


def _region(regions: Any, name: str) -> Region:
    return Region(name, endpoints_of(regions)[name])


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _recorder(region: Region, name: str, **environment: str) -> tuple[dict[str, Any], Inbox]:
    url, _arn = region.queue(f"{name}-reports")
    config = region.deploy(
        name,
        {"recorder.py": function_source("recorder")},
        "recorder.handler",
        {"RECORD_QUEUE_URL": url, "TEST_MARKER": name, **environment},
    )
    return config, Inbox(region, url)


def _map(region: Region, function: str, source_arn: str, **settings: Any) -> str:
    settings.setdefault("StartingPosition", "TRIM_HORIZON")
    mapping = region.client("lambda").create_event_source_mapping(
        FunctionName=function, EventSourceArn=source_arn, **settings
    )
    return str(mapping["UUID"])


def _records(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [record for report in reports for record in report["event"]["Records"]]


def test_dynamodb_event_has_lambdas_documented_shape(regions: Any, runner: RunnerProcess) -> None:
    region = _region(regions, CN)
    table = _unique("shape")
    stream_arn = region.stream_table(table)
    function, inbox = _recorder(region, _unique("ddb-shape"), TEST_SETTING="42")
    _map(region, function["FunctionName"], stream_arn, BatchSize=10)
    dynamodb = region.client("dynamodb")
    before = time.time()
    dynamodb.put_item(
        TableName=table,
        Item={"pk": {"S": "k1"}, "blob": {"B": b"\x00\xffbin"}, "set": {"BS": [b"\x01"]}, "n": {"N": "1"}},
    )
    dynamodb.put_item(
        TableName=table, Item={"pk": {"S": "k1"}, "n": {"N": "2"}, "m": {"M": {"b": {"B": b"x"}}}}
    )
    dynamodb.delete_item(TableName=table, Key={"pk": {"S": "k1"}})
    reports = inbox.wait(lambda m: len(_records(m)) >= 3, "three DynamoDB records")
    records = _records(reports)
    assert len(records) == 3

    documented = sample("dynamodb_stream_event.json")["Records"]
    for record, expected in zip(records, documented, strict=True):
        assert shape_of(record) == shape_of(expected)
    assert [r["eventName"] for r in records] == ["INSERT", "MODIFY", "REMOVE"]
    for record in records:
        assert record["eventVersion"] == "1.1"
        assert record["eventSource"] == "aws:dynamodb"
        assert record["awsRegion"] == CN  # moto says us-east-1; Lambda reports the real region
        assert record["eventSourceARN"] == stream_arn
        assert stream_arn.startswith("arn:aws-cn:dynamodb:cn-north-1:")
        created = record["dynamodb"]["ApproximateCreationDateTime"]
        assert created == float(int(created))  # whole seconds, as Lambda delivers it
        assert int(before) - 1 <= created <= time.time() + 1
        assert record["dynamodb"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"
        assert record["dynamodb"]["Keys"] == {"pk": {"S": "k1"}}
    first, second, third = records
    # Binary values are base64 text in Lambda events.
    assert base64.b64decode(first["dynamodb"]["NewImage"]["blob"]["B"]) == b"\x00\xffbin"
    assert first["dynamodb"]["NewImage"]["set"] == {"BS": [base64.b64encode(b"\x01").decode()]}
    assert second["dynamodb"]["OldImage"]["n"] == {"N": "1"}
    assert second["dynamodb"]["NewImage"]["m"] == {"M": {"b": {"B": base64.b64encode(b"x").decode()}}}
    assert "NewImage" not in third["dynamodb"]
    sequences = [int(r["dynamodb"]["SequenceNumber"]) for r in records]
    assert sequences == sorted(sequences)

    report = reports[0]
    context = report["context"]
    assert context["function_name"] == function["FunctionName"]
    assert context["invoked_function_arn"] == function["FunctionArn"]
    assert context["function_version"] == "$LATEST"
    assert context["memory_limit_in_mb"] == "256"
    assert context["log_group_name"] == f"/aws/lambda/{function['FunctionName']}"
    assert 0 < context["remaining_ms"] <= 30_000
    environment = report["environment"]
    assert environment["AWS_REGION"] == CN
    assert environment["AWS_DEFAULT_REGION"] == CN
    assert environment["AWS_ENDPOINT_URL"] == region.endpoint
    assert environment["AWS_LAMBDA_FUNCTION_NAME"] == function["FunctionName"]
    assert environment["TEST_SETTING"] == "42"
    # The runner's own settings never reach the function.
    assert not any(key.startswith("DDBBRIDGE_") for key in environment)


def test_kinesis_event_has_lambdas_documented_shape(regions: Any, runner: RunnerProcess) -> None:
    region = _region(regions, SG)
    stream_arn = region.kinesis_stream(_unique("shape"))
    function, inbox = _recorder(region, _unique("kinesis-shape"))
    _map(region, function["FunctionName"], stream_arn, BatchSize=10)
    kinesis = region.client("kinesis")
    payloads = [b"\x00\x01binary", json.dumps({"n": 1}).encode()]
    for index, payload in enumerate(payloads):
        kinesis.put_record(StreamARN=stream_arn, Data=payload, PartitionKey=f"key-{index}")
    reports = inbox.wait(lambda m: len(_records(m)) >= 2, "two Kinesis records")
    records = _records(reports)

    documented = sample("kinesis_event.json")["Records"][0]
    role = region.client("lambda").get_function(FunctionName=function["FunctionName"])["Configuration"][
        "Role"
    ]
    for index, record in enumerate(records):
        assert shape_of(record) == shape_of(documented)
        kinesis_part = record["kinesis"]
        assert kinesis_part["kinesisSchemaVersion"] == "1.0"
        assert base64.b64decode(kinesis_part["data"]) == payloads[index]
        assert kinesis_part["partitionKey"] == f"key-{index}"
        assert isinstance(kinesis_part["approximateArrivalTimestamp"], float)
        assert record["eventID"].startswith("shardId-") and record["eventID"].endswith(
            ":" + kinesis_part["sequenceNumber"]
        )
        assert record["eventName"] == "aws:kinesis:record"
        assert record["eventVersion"] == "1.0"
        assert record["eventSource"] == "aws:kinesis"
        assert record["invokeIdentityArn"] == role
        assert record["awsRegion"] == SG
        assert record["eventSourceARN"] == stream_arn


def test_batch_size_and_batching_window(regions: Any, runner: RunnerProcess) -> None:
    region = _region(regions, SG)
    kinesis = region.client("kinesis")
    # Batch size: a backlog of 12 is delivered as 5, 5, 2.
    backlog_arn = region.kinesis_stream(_unique("backlog"))
    for index in range(12):
        kinesis.put_record(StreamARN=backlog_arn, Data=f"r{index}".encode(), PartitionKey="same")
    function, inbox = _recorder(region, _unique("batch-size"))
    _map(region, function["FunctionName"], backlog_arn, BatchSize=5)
    reports = inbox.wait(lambda m: len(_records(m)) >= 12, "12 records")
    assert [len(r["event"]["Records"]) for r in reports] == [5, 5, 2]

    # Batching window: records written over ~1 s arrive together, not before the window closed.
    window_arn = region.kinesis_stream(_unique("window"))
    function, inbox = _recorder(region, _unique("window"))
    _map(region, function["FunctionName"], window_arn, BatchSize=100, MaximumBatchingWindowInSeconds=3)
    wait_for(
        lambda: any(
            line.get("event") == "shard-started" and line.get("function") == function["FunctionName"]
            for line in runner.lines()
        ),
        30,
        "shard started",
    )
    for index in range(4):
        kinesis.put_record(StreamARN=window_arn, Data=f"w{index}".encode(), PartitionKey=f"p{index}")
        time.sleep(0.25)  # spacing the writes is the scenario, not a wait for a condition
    reports = inbox.wait(lambda m: len(_records(m)) >= 4, "4 windowed records")
    assert len(reports) == 1, [len(r["event"]["Records"]) for r in reports]
    first_arrival = reports[0]["event"]["Records"][0]["kinesis"]["approximateArrivalTimestamp"]
    assert reports[0]["started"] - first_arrival >= 3.0 - 0.1  # lower bound: the window was honoured


def test_retries_then_on_failure_message_in_sqs(regions: Any, runner: RunnerProcess) -> None:
    region = _region(regions, CN)
    table = _unique("retries")
    stream_arn = region.stream_table(table)
    function, inbox = _recorder(region, _unique("retries"), POISON="poison")
    failures_url, failures_arn = region.queue("on-failure")
    _map(
        region,
        function["FunctionName"],
        stream_arn,
        BatchSize=10,
        MaximumRetryAttempts=2,
        DestinationConfig={"OnFailure": {"Destination": failures_arn}},
    )
    dynamodb = region.client("dynamodb")
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "poison-1"}})
    failures = Inbox(region, failures_url).wait(lambda m: len(m) >= 1, "on-failure message")
    reports = inbox.drain()
    assert len(reports) == 3  # the first try and MaximumRetryAttempts=2 retries
    poison_sequence = reports[0]["event"]["Records"][0]["dynamodb"]["SequenceNumber"]

    message = failures[0]
    assert shape_of(message) == shape_of(sample("dynamodb_on_failure.json"))
    assert message["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert message["requestContext"]["approximateInvokeCount"] == 3
    assert message["requestContext"]["functionArn"] == function["FunctionArn"]
    assert message["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    assert message["version"] == "1.0"
    info = message["DDBStreamBatchInfo"]
    assert info["startSequenceNumber"] == info["endSequenceNumber"] == poison_sequence
    assert info["batchSize"] == 1
    assert info["streamArn"] == stream_arn
    assert info["shardId"].startswith("shardId-")
    assert info["approximateArrivalOfFirstRecord"].endswith("Z")

    # Processing moved on: a good record after the discarded one is delivered.
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "good-1"}})
    reports = inbox.wait(
        lambda m: any('"good-1"' in json.dumps(r["event"]) for r in m), "record after the poison"
    )
    assert not any(r["failing"] for r in reports[3:])


def test_bisect_isolates_one_poison_record(regions: Any, runner: RunnerProcess) -> None:
    region = _region(regions, SG)
    stream_arn = region.kinesis_stream(_unique("bisect"))
    kinesis = region.client("kinesis")
    sequences = []
    for index in range(8):
        data = b"poison" if index == 5 else f"good-{index}".encode()
        sequences.append(
            kinesis.put_record(StreamARN=stream_arn, Data=data, PartitionKey=f"p{index}")["SequenceNumber"]
        )
    function, inbox = _recorder(region, _unique("bisect"), POISON="poison")
    failures_url, failures_arn = region.queue("bisect-failures")
    _map(
        region,
        function["FunctionName"],
        stream_arn,
        BatchSize=8,
        BisectBatchOnFunctionError=True,
        MaximumRetryAttempts=0,
        DestinationConfig={"OnFailure": {"Destination": failures_arn}},
    )
    failures = Inbox(region, failures_url).wait(lambda m: len(m) >= 1, "on-failure message")
    info = failures[0]["KinesisBatchInfo"]
    assert shape_of(failures[0]) == shape_of(sample("kinesis_on_failure.json"))
    assert info["batchSize"] == 1
    assert info["startSequenceNumber"] == info["endSequenceNumber"] == sequences[5]
    reports = inbox.drain()
    succeeded = {seq for r in reports if not r["failing"] for seq in delivered_sequences([r])}
    assert succeeded == set(sequences) - {sequences[5]}  # every good record got through
    assert [len(r["event"]["Records"]) for r in reports][:2] == [8, 4]  # 8 -> 4 + 4 -> 2 + 2 -> 1 + 1


def test_partial_batch_failure_resumes_from_the_failed_sequence_number(
    regions: Any, runner: RunnerProcess
) -> None:
    region = _region(regions, CN)
    table = _unique("partial")
    stream_arn = region.stream_table(table)
    markers = _unique("markers")
    region.marker_table(markers)
    dynamodb = region.client("dynamodb")
    for index in range(10):
        dynamodb.put_item(TableName=table, Item={"pk": {"S": "flaky" if index == 4 else f"item-{index}"}})
    function, inbox = _recorder(
        region, _unique("partial"), POISON="flaky", PARTIAL="1", FAIL_ONCE_TABLE=markers
    )
    mapping = _map(
        region,
        function["FunctionName"],
        stream_arn,
        BatchSize=10,
        FunctionResponseTypes=["ReportBatchItemFailures"],
    )
    reports = inbox.wait(lambda m: len(m) >= 2, "the batch and its retry")
    first, second = reports[0], reports[1]
    first_sequences = delivered_sequences([first])
    assert len(first_sequences) == 10
    assert first["failing"] == [first_sequences[4]]
    # The retry starts exactly at the reported item: nothing before it again, nothing after it skipped.
    assert delivered_sequences([second]) == first_sequences[4:]
    assert second["failing"] == []
    wait_for(lambda: (runner.checkpoint(mapping) or {}).get("after") == first_sequences[-1], 30, "checkpoint")
    assert len(inbox.drain()) == 2  # checkpointed after the last record: no third invocation


def test_parallelization_keeps_order_per_partition_key(regions: Any, runner: RunnerProcess) -> None:
    region = _region(regions, SG)
    stream_arn = region.kinesis_stream(_unique("parallel"))
    kinesis = region.client("kinesis")
    keys = [f"key-{n}" for n in range(6)]
    records = [
        {"Data": json.dumps({"key": key, "n": n}).encode(), "PartitionKey": key}
        for n in range(15)
        for key in keys
    ]
    kinesis.put_records(StreamARN=stream_arn, Records=records)
    function, inbox = _recorder(region, _unique("parallel"), SLEEP="0.2")
    _map(region, function["FunctionName"], stream_arn, BatchSize=5, ParallelizationFactor=4)
    reports = inbox.wait(lambda m: len(_records(m)) >= len(records), "all records")
    seen: dict[str, list[int]] = {key: [] for key in keys}
    for report in sorted(reports, key=lambda r: r["started"]):
        for record in report["event"]["Records"]:
            body = json.loads(base64.b64decode(record["kinesis"]["data"]))
            seen[body["key"]].append(body["n"])
    assert all(numbers == list(range(15)) for numbers in seen.values()), seen
    # More than one worker process served the mapping: batches of different lanes ran concurrently.
    assert len({report["pid"] for report in reports}) > 1


def test_restart_resumes_without_loss_or_skipping(regions: Any, runner: RunnerProcess) -> None:
    region = _region(regions, CN)
    table = _unique("restart")
    stream_arn = region.stream_table(table)
    function, inbox = _recorder(region, _unique("restart"))
    mapping = _map(region, function["FunctionName"], stream_arn, BatchSize=7, StartingPosition="LATEST")
    wait_for(lambda: runner.checkpoint(mapping) is not None, 30, "the mapping's starting position recorded")
    runner.stop()
    dynamodb = region.client("dynamodb")
    for index in range(15):  # written while the runner is down, after the mapping (LATEST) was created
        dynamodb.put_item(TableName=table, Item={"pk": {"S": f"a-{index}"}})
    runner.start()
    reports = inbox.wait(lambda m: len(_records(m)) >= 15, "records written while the runner was down")
    delivered = delivered_sequences(reports)
    assert len(delivered) == len(set(delivered)) == 15
    wait_for(
        lambda: (runner.checkpoint(mapping) or {}).get("after") == delivered[-1], 30, "checkpoint at the end"
    )

    runner.stop()
    for index in range(20):
        dynamodb.put_item(TableName=table, Item={"pk": {"S": f"b-{index}"}})
    runner.start()
    reports = inbox.wait(lambda m: len(_records(m)) >= 35, "all 35 records")
    after_restart = delivered_sequences(reports)[15:]
    assert len(after_restart) == len(set(after_restart)) == 20  # nothing lost, nothing delivered twice
    assert int(after_restart[0]) > int(delivered[-1])
    items = [r["dynamodb"]["Keys"]["pk"]["S"] for r in _records(reports)]
    assert items == [f"a-{i}" for i in range(15)] + [f"b-{i}" for i in range(20)]


def test_deployed_zip_is_what_runs(regions: Any, runner: RunnerProcess) -> None:
    region = _region(regions, SG)
    stream_arn = region.kinesis_stream(_unique("zip"))
    reports_url, _ = region.queue("zip-reports")
    failures_url, failures_arn = region.queue("zip-failures")
    name = _unique("needs-package")
    # `ddbbridge_lambdas` is importable in the runner's own environment, but not in this zip.
    region.deploy(
        name,
        {"needs_package.py": function_source("needs_package")},
        "needs_package.handler",
        {"RECORD_QUEUE_URL": reports_url},
    )
    _map(
        region,
        name,
        stream_arn,
        BatchSize=10,
        MaximumRetryAttempts=0,
        DestinationConfig={"OnFailure": {"Destination": failures_arn}},
    )
    kinesis = region.client("kinesis")
    kinesis.put_record(StreamARN=stream_arn, Data=b"first", PartitionKey="p")
    failures = Inbox(region, failures_url).wait(lambda m: len(m) >= 1, "on-failure message")
    assert failures[0]["responseContext"]["functionError"] == "Unhandled"
    failed = [line for line in runner.invocations(name) if line["outcome"] == "error"]
    assert failed and failed[0]["error_type"] == "Runtime.ImportModuleError"
    assert Inbox(region, reports_url).drain() == []

    # The same handler with the package inside the zip works, and uses the zip's copy.
    updated = region.client("lambda").update_function_code(
        FunctionName=name,
        ZipFile=make_zip(
            {
                "needs_package.py": function_source("needs_package"),
                "ddbbridge_lambdas/__init__.py": 'ZIP_MARKER = "from-the-zip"\n',
            }
        ),
    )
    wait_for(
        lambda: any(line.get("code_sha256") == updated["CodeSha256"] for line in runner.lines()),
        30,
        "the runner serving the updated code",
    )
    kinesis.put_record(StreamARN=stream_arn, Data=b"second", PartitionKey="p")
    reports = Inbox(region, reports_url).wait(lambda m: len(m) >= 1, "invocation of the updated code")
    assert reports[0]["marker"] == "from-the-zip"
