"""moto trap found by the conflict-edge test: DynamoDB stream records carry a BINARY key twice
base64-encoded in `Keys` (the images are right). A sender addressing the item by `Keys` (as on AWS)
then writes to a key that does not exist. Passes on our launcher, fails on plain moto (strict xfail).
"""

from __future__ import annotations

import pytest

from tests.fixtures.regions import CN
from tests.integration import emulators
from tests.integration.emulators import Emulator, StreamReader, create_keyed_table, launcher_fixes

emulator = emulators.emulator  # fixtures, used by name
plain_moto = emulators.plain_moto

pytestmark = pytest.mark.integration

RAW_KEY = b"k\x00\xff binary"


@launcher_fixes("stream Keys hold base64 of the base64 text of a binary key")
def test_stream_keys_of_a_binary_key_are_the_raw_bytes(emulator: Emulator) -> None:
    ddb = emulator.client("dynamodb", CN)
    created = create_keyed_table(ddb, "binary-keys", {"id": "B", "at": "B"})
    reader = StreamReader.open(emulator.client("dynamodbstreams", CN), created["LatestStreamArn"])
    key = {"id": {"B": RAW_KEY}, "at": {"B": b"\x01"}}
    ddb.put_item(TableName="binary-keys", Item={**key, "v": {"S": "1"}})
    ddb.delete_item(TableName="binary-keys", Key=key)

    records = reader.read()
    assert [record["eventName"] for record in records] == ["INSERT", "REMOVE"]
    for record in records:
        assert record["dynamodb"]["Keys"] == key  # boto3 decoded the wire's base64 once
