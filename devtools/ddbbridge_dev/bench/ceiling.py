"""The emulator's PutItem ceiling, measured on the bench's own running region (a scratch table with
a stream, as user tables have), with several concurrent callers as a loader has."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

TABLE = "bench-ceiling"


def put_item_ceiling(dynamodb: Any, *, seconds: float, threads: int) -> float:
    dynamodb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    began = time.monotonic()
    deadline = began + seconds

    def loop(worker: int) -> int:
        count = 0
        while time.monotonic() < deadline:
            dynamodb.put_item(
                TableName=TABLE, Item={"PK": {"S": f"{worker}-{count}"}, "v": {"N": str(count)}}
            )
            count += 1
        return count

    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(loop, range(threads)))
    rate = total / (time.monotonic() - began)
    dynamodb.delete_table(TableName=TABLE)
    return rate
