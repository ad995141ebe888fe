"""Test helpers: a plain `moto_server` to prove each emulator trap exists, and small AWS scenarios."""

from __future__ import annotations

import io
import socket
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from ddbbridge_dev import processes
from tests.fixtures.regions import CREDENTIALS, Regions, http
from tests.fixtures.waiting import wait_for


@dataclass(frozen=True)
class Emulator:
    """Where a region's requests go: our launcher (one per region) or one plain moto server."""

    kind: str
    endpoints: dict[str, str]

    def client(self, service: str, region: str, retries: int = 3) -> Any:
        config = Config(retries={"total_max_attempts": retries, "mode": "standard"}, read_timeout=120)
        return boto3.client(
            service, region_name=region, endpoint_url=self.endpoints[region], config=config, **CREDENTIALS
        )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _answers(url: str) -> bool:
    http(f"{url}/moto-api/reset", method="POST", body={})  # raises until the server listens
    return True


@pytest.fixture(scope="module")
def plain_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An unpatched moto 5.2.5 server (its own console script), to show what our launcher fixes."""
    log = tmp_path_factory.mktemp("plain-moto") / "moto.log"
    port = _free_port()
    moto_server = str(Path(sys.executable).with_name("moto_server"))
    argv = [sys.executable, moto_server, "-H", "127.0.0.1", "-p", str(port)]
    record = processes.spawn("test", "plain-moto", argv, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(url), 60, "plain moto to answer")
        yield url
    finally:
        processes.stop(record)
        wait_for(lambda: not processes.is_running(record), 30, "plain moto to exit")


@pytest.fixture
def emulator(request: pytest.FixtureRequest, regions: Regions) -> Emulator:
    """Parametrised indirectly with "launcher" or "plain"; state is reset first."""
    if request.param == "launcher":
        regions.reset()
        return Emulator("launcher", regions.endpoints())
    url: str = request.getfixturevalue("plain_moto")
    http(f"{url}/moto-api/reset", method="POST", body={})
    return Emulator("plain", {name: url for name in regions.endpoints()})


def launcher_fixes(reason: str) -> pytest.MarkDecorator:
    """Run a scenario on our launcher (must pass) and on plain moto (must FAIL: strict xfail)."""
    plain = pytest.param("plain", marks=pytest.mark.xfail(strict=True, reason=f"plain moto: {reason}"))
    return pytest.mark.parametrize("emulator", ["launcher", plain], indirect=True)


# --- scenarios -----------------------------------------------------------------------------------


def create_keyed_table(ddb: Any, name: str, key: dict[str, str], stream: bool = True) -> dict[str, Any]:
    """A pay-per-request table keyed by `key` (attribute -> type: the hash key, then the range key),
    with a NEW_AND_OLD_IMAGES stream unless `stream` is false; returns its description."""
    kinds = ("HASH", "RANGE")
    extra = (
        {"StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}}
        if stream
        else {}
    )
    created = ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": a, "KeyType": k} for a, k in zip(key, kinds, strict=False)],
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": t} for a, t in key.items()],
        BillingMode="PAY_PER_REQUEST",
        **extra,
    )
    description: dict[str, Any] = created["TableDescription"]
    return description


def create_stream_table(ddb: Any, name: str, range_key: bool = False) -> str:
    key = {"pk": "S", "sk": "S"} if range_key else {"pk": "S"}
    arn: str = create_keyed_table(ddb, name, key)["LatestStreamArn"]
    return arn


@dataclass
class StreamReader:
    """Follows one DynamoDB stream shard with a chain of iterators, as a poller does."""

    streams: Any
    iterator: str

    @classmethod
    def open(cls, streams: Any, stream_arn: str, position: str = "TRIM_HORIZON") -> StreamReader:
        shard = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"][0]["ShardId"]
        iterator = streams.get_shard_iterator(StreamArn=stream_arn, ShardId=shard, ShardIteratorType=position)
        return cls(streams, iterator["ShardIterator"])

    def read(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        while True:
            page = self.streams.get_records(ShardIterator=self.iterator, Limit=1000)
            self.iterator = page["NextShardIterator"]
            records += page["Records"]
            if not page["Records"]:
                return records


def function_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        entry = zipfile.ZipInfo("probe.py", date_time=(2024, 1, 1, 0, 0, 0))  # same bytes on every call
        archive.writestr(
            entry, "def handler(event, context):\n    return {'records': len(event['Records'])}\n"
        )
    return buffer.getvalue()


def create_function(emulator: Emulator, region: str, name: str) -> str:
    iam = emulator.client("iam", region)
    trust = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}'  # noqa: E501
    role = iam.create_role(RoleName=f"{name}-role", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    function = emulator.client("lambda", region).create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=role,
        Handler="probe.handler",
        Code={"ZipFile": function_zip()},
    )
    arn: str = function["FunctionArn"]
    return arn
