"""Measure one emulator: PutItem/s; TransactWriteItems/s plus resident memory at N items; and the
time one 1,000-item read page takes (a DynamoDB Streams GetRecords page and a Scan page).

    python -m ddbbridge_dev.measure_emulator                 # starts our launcher and a plain moto_server
    python -m ddbbridge_dev.measure_emulator --items 20000 --seconds 10

Figures for the closing notes; never asserted in tests (machine load changes them).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import boto3
import psutil
from botocore.config import Config

from ddbbridge_dev import processes

REGION = "ap-southeast-1"


def _client(url: str, service: Literal["dynamodb", "dynamodbstreams"] = "dynamodb") -> Any:
    config = Config(retries={"total_max_attempts": 1}, max_pool_connections=16)
    return boto3.client(
        service, region_name=REGION, endpoint_url=url, config=config,
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip


def _start(kind: str, work: Path) -> tuple[processes.ProcessRecord, str]:
    if kind == "launcher":
        ready = work / f"{kind}.ready"
        argv = processes.python_module_argv(
            "ddbbridge_dev.launcher",
            "--region",
            REGION,
            "--port",
            "0",
            "--ready-file",
            str(ready),
            "--no-warm-up",
        )
        record = processes.spawn("measure", kind, argv, work / f"{kind}.log")
        port = int(json.loads(processes.wait_for_file(ready, record, 180))["port"])
    else:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        moto_server = str(Path(sys.executable).with_name("moto_server"))
        record = processes.spawn(
            "measure", kind, [sys.executable, moto_server, "-p", str(port)], work / f"{kind}.log"
        )
    url = f"http://127.0.0.1:{port}"
    limit = time.monotonic() + 180
    while True:
        try:
            urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"), timeout=5)
            return record, url
        except OSError:
            if time.monotonic() > limit:
                raise
            time.sleep(0.1)


def _table(ddb: Any, name: str) -> None:
    ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )


def _user(n: int) -> dict[str, Any]:
    """An item shaped like the load generator's users: strings, a number, binary, a set, a map."""
    return {
        "pk": {"S": f"i{n}"},
        "v": {"N": "1"},
        "name": {"S": f"user {n}"},
        "avatar": {"B": n.to_bytes(4, "big")},
        "tags": {"SS": ["a", f"t{n % 7}"]},
        "profile": {"M": {"city": {"S": "Beijing"}, "scores": {"L": [{"N": "1"}, {"N": str(n)}]}}},
    }


def _read_pages(ddb: Any, table: str) -> tuple[float, float]:
    """Seconds for one 1,000-record stream page and one 1,000-item scan page of `table`."""
    streams = _client(ddb.meta.endpoint_url, "dynamodbstreams")
    arn = ddb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")[
        "ShardIterator"
    ]
    began = time.monotonic()
    streams.get_records(ShardIterator=iterator, Limit=1000)
    stream_page = time.monotonic() - began
    began = time.monotonic()
    ddb.scan(TableName=table, Limit=1000)
    return stream_page, time.monotonic() - began


def _rate(seconds: float, threads: int, call: Any) -> float:
    """Calls per second over `seconds`, with `threads` concurrent callers (as loaders do)."""
    deadline = time.monotonic() + seconds
    began = time.monotonic()

    def loop(worker: int) -> int:
        count = 0
        while time.monotonic() < deadline:
            call(worker, count)
            count += 1
        return count

    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(loop, range(threads)))
    return total / (time.monotonic() - began)


def measure(kind: str, url: str, pid: int, *, items: int, seconds: float, threads: int) -> dict[str, Any]:
    clients = [_client(url) for _ in range(threads)]
    _table(clients[0], "puts")

    def put(worker: int, count: int) -> None:
        clients[worker].put_item(TableName="puts", Item={"pk": {"S": f"{worker}-{count}"}, "v": {"N": "1"}})

    put_rate = _rate(seconds, threads, put)

    _table(clients[0], "big")
    for start in range(0, items, 25):
        requests = [{"PutRequest": {"Item": _user(n)}} for n in range(start, start + 25)]
        clients[0].batch_write_item(RequestItems={"big": requests})
    stream_page_s, scan_page_s = _read_pages(clients[0], "big")

    def transact(worker: int, count: int) -> None:
        key = f"i{(worker * 7919 + count) % items}"
        clients[worker].transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": "big",
                        "Key": {"pk": {"S": key}},
                        "UpdateExpression": "SET v = v + :one",
                        "ExpressionAttributeValues": {":one": {"N": "1"}},
                    }
                }
            ]
        )

    transact_rate = _rate(seconds, threads, transact)
    rss_mib = psutil.Process(pid).memory_info().rss / 2**20
    return {
        "emulator": kind,
        "put_item_per_s": round(put_rate, 1),
        "transact_write_items_per_s": round(transact_rate, 1),
        "items_in_table": items,
        "stream_page_1000_s": round(stream_page_s, 3),
        "scan_page_1000_s": round(scan_page_s, 3),
        "rss_mib_after": round(rss_mib, 1),
        "threads": threads,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ddbbridge_dev.measure_emulator", description=__doc__)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--emulators", default="launcher,plain", help="launcher, plain or both")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ddbbridge-measure-") as work:
        for kind in args.emulators.split(","):
            record, url = _start(kind, Path(work))
            try:
                print(
                    json.dumps(
                        measure(
                            kind,
                            url,
                            record["pid"],
                            items=args.items,
                            seconds=args.seconds,
                            threads=args.threads,
                        )
                    )
                )
            finally:
                processes.stop(record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
