"""Helpers for the runner's integration tests: clients per region, zips, deployed test functions,
an SQS recorder the functions report to."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from tests.fixtures.waiting import wait_for

FUNCTIONS = Path(__file__).with_name("runner_functions")
TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
)


def make_zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def function_source(name: str) -> str:
    return (FUNCTIONS / f"{name}.py").read_text(encoding="utf-8")


@dataclass
class Region:
    name: str
    endpoint: str

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            region_name=self.name,
            endpoint_url=self.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def queue(self, prefix: str) -> tuple[str, str]:
        sqs = self.client("sqs")
        url = sqs.create_queue(QueueName=f"{prefix}-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return url, arn

    def role(self, name: str) -> str:
        iam = self.client("iam")
        return str(iam.create_role(RoleName=name, AssumeRolePolicyDocument=TRUST)["Role"]["Arn"])

    def deploy(
        self,
        name: str,
        files: dict[str, str],
        handler: str,
        environment: dict[str, str],
        *,
        timeout: int = 30,
    ) -> dict[str, Any]:
        role = self.role(f"{name}-role")
        return dict(
            self.client("lambda").create_function(
                FunctionName=name,
                Runtime="python3.11",
                Role=role,
                Handler=handler,
                Code={"ZipFile": make_zip(files)},
                Environment={"Variables": environment},
                Timeout=timeout,
                MemorySize=256,
            )
        )

    def stream_table(self, name: str) -> str:
        dynamodb = self.client("dynamodb")
        dynamodb.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
        return str(dynamodb.describe_table(TableName=name)["Table"]["LatestStreamArn"])

    def kinesis_stream(self, name: str, shards: int = 1) -> str:
        kinesis = self.client("kinesis")
        kinesis.create_stream(StreamName=name, ShardCount=shards)
        return str(kinesis.describe_stream(StreamName=name)["StreamDescription"]["StreamARN"])

    def marker_table(self, name: str) -> None:
        self.client("dynamodb").create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )


class Inbox:
    """Everything the test functions (or an on-failure destination) sent to one queue."""

    def __init__(self, region: Region, url: str) -> None:
        self.sqs = region.client("sqs")
        self.url = url
        self.messages: list[dict[str, Any]] = []

    def drain(self) -> list[dict[str, Any]]:
        while True:
            response = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            batch = response.get("Messages", [])
            if not batch:
                return self.messages
            for message in batch:
                self.messages.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])

    def wait(self, condition: Any, what: str, deadline: float = 60) -> list[dict[str, Any]]:
        def check() -> list[dict[str, Any]] | None:
            messages = self.drain()
            return messages if condition(messages) else None

        return wait_for(check, deadline, what, interval=0.1)


def delivered_sequences(reports: list[dict[str, Any]]) -> list[str]:
    """Sequence numbers of every record in every recorded invocation, in invocation order."""
    sequences = []
    for report in reports:
        for record in report["event"]["Records"]:
            if "kinesis" in record:
                sequences.append(record["kinesis"]["sequenceNumber"])
            else:
                sequences.append(record["dynamodb"]["SequenceNumber"])
    return sequences
