"""A test function deployed as a zip: reports every invocation to an SQS queue and fails on demand.

Environment: RECORD_QUEUE_URL (required); POISON: a marker, records whose payload contains it fail;
PARTIAL=1: report poison records as batchItemFailures instead of raising; FAIL_ONCE_TABLE: poison
records fail only the first time they are seen (marker items in that DynamoDB table); SLEEP: seconds
to sleep per invocation.
"""

import base64
import json
import os
import sys
import time

import boto3

_sqs = boto3.client("sqs")  # its own region via AWS_REGION and AWS_ENDPOINT_URL, as on Lambda
_dynamodb = boto3.client("dynamodb")


def _sequence(record):
    return (
        record["kinesis"]["sequenceNumber"] if "kinesis" in record else record["dynamodb"]["SequenceNumber"]
    )


def _payload(record):
    if "kinesis" in record:
        return base64.b64decode(record["kinesis"]["data"]).decode("utf-8", "replace")
    return json.dumps(record["dynamodb"])


def _first_failure(sequence):
    table = os.environ.get("FAIL_ONCE_TABLE")
    if not table:
        return True
    try:
        _dynamodb.put_item(
            TableName=table,
            Item={"pk": {"S": sequence}},
            ConditionExpression="attribute_not_exists(pk)",
        )
    except _dynamodb.exceptions.ConditionalCheckFailedException:
        return False
    return True


def handler(event, context):
    started = time.time()
    poison = os.environ.get("POISON")
    bad = [r for r in event["Records"] if poison and poison in _payload(r)]
    failing = [r for r in bad if _first_failure(_sequence(r))]
    report = {
        "event": event,
        "started": started,
        "pid": os.getpid(),
        "failing": [_sequence(r) for r in failing],
        "context": {
            "function_name": context.function_name,
            "function_version": context.function_version,
            "invoked_function_arn": context.invoked_function_arn,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "aws_request_id": context.aws_request_id,
            "log_group_name": context.log_group_name,
            "remaining_ms": context.get_remaining_time_in_millis(),
        },
        "environment": {k: v for k, v in os.environ.items() if k.startswith(("AWS_", "TEST_"))},
        "sys_path": sys.path,
    }
    if os.environ.get("SLEEP"):
        time.sleep(float(os.environ["SLEEP"]))
    report["finished"] = time.time()
    _sqs.send_message(QueueUrl=os.environ["RECORD_QUEUE_URL"], MessageBody=json.dumps(report))
    if failing:
        if os.environ.get("PARTIAL") == "1":
            return {"batchItemFailures": [{"itemIdentifier": _sequence(r)} for r in failing]}
        raise RuntimeError(f"poison record {_sequence(failing[0])}")
    return None
