"""The on-failure destination: the metadata record Lambda sends when it discards a batch.

Shape as documented ("Retaining discarded batch records" for DynamoDB and Kinesis event sources):
requestContext{requestId, functionArn, condition, approximateInvokeCount}, responseContext{statusCode,
executedVersion, functionError}, version "1.0", timestamp, and DDBStreamBatchInfo or KinesisBatchInfo
{shardId, startSequenceNumber, endSequenceNumber, approximateArrivalOfFirstRecord,
approximateArrivalOfLastRecord, batchSize, streamArn}. It never contains the records themselves.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from ddbbridge_dev.runner.events import StreamRecord
from ddbbridge_dev.runner.policy import InvocationResult

RETRY_ATTEMPTS_EXHAUSTED = "RetryAttemptsExhausted"
RECORD_AGE_EXCEEDED = "RecordAgeExceeded"


def _iso(seconds: float, *, milliseconds: bool) -> str:
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    if milliseconds:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def failure_record(
    *,
    source: str,  # "dynamodb" | "kinesis"
    function_arn: str,
    condition: str,
    shard_id: str,
    stream_arn: str,
    records: list[StreamRecord],
    invoke_count: int,
    last_result: InvocationResult | None,
    now: float,
) -> dict[str, Any]:
    kinesis = source == "kinesis"
    request_id = last_result.request_id if last_result and last_result.request_id else str(uuid.uuid4())
    message: dict[str, Any] = {
        "requestContext": {
            "requestId": request_id,
            "functionArn": function_arn,
            "condition": condition,
            "approximateInvokeCount": invoke_count,
        }
    }
    if last_result is not None:
        response: dict[str, Any] = {"statusCode": 200, "executedVersion": "$LATEST"}
        if last_result.function_error:
            response["functionError"] = last_result.function_error
        message["responseContext"] = response
    message["version"] = "1.0"
    message["timestamp"] = _iso(now, milliseconds=True)
    # DynamoDB arrival times are whole seconds (ApproximateCreationDateTime), Kinesis carry millis.
    message["KinesisBatchInfo" if kinesis else "DDBStreamBatchInfo"] = {
        "shardId": shard_id,
        "startSequenceNumber": records[0].sequence_text,
        "endSequenceNumber": records[-1].sequence_text,
        "approximateArrivalOfFirstRecord": _iso(records[0].arrival, milliseconds=kinesis),
        "approximateArrivalOfLastRecord": _iso(records[-1].arrival, milliseconds=kinesis),
        "batchSize": len(records),
        "streamArn": stream_arn,
    }
    return message


def queue_name_and_account(arn: str) -> tuple[str, str]:
    """`arn:<partition>:sqs:<region>:<account>:<name>` -> (name, account)."""
    parts = arn.split(":")
    if len(parts) != 6 or parts[2] != "sqs":
        raise ValueError(f"not an SQS queue ARN: {arn}")
    return parts[5], parts[4]


def send_to_queue(sqs: Any, destination_arn: str, message: dict[str, Any]) -> None:
    name, account = queue_name_and_account(destination_arn)
    url = sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(message))
