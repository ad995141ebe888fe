"""A test function whose module imports `ddbbridge_lambdas`: it works only when the deployed zip
carries that package (the runner's own environment has it, the worker must not see that copy)."""

import json
import os

import boto3

import ddbbridge_lambdas

_sqs = boto3.client("sqs")


def handler(event, context):
    marker = getattr(ddbbridge_lambdas, "ZIP_MARKER", None)
    _sqs.send_message(
        QueueUrl=os.environ["RECORD_QUEUE_URL"],
        MessageBody=json.dumps({"marker": marker, "records": len(event["Records"])}),
    )
