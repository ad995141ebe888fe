"""`ddbbridge load` and `ddbbridge verify` against the emulated regions (real HTTP, one server each).

Two table shapes: hash-only with a key not named PK, and hash + range with a number hash key and a
binary range key. No replication runs here: the tables are made equal (or not) by the test itself,
and an independent oracle (direct scans, compared as raw items) checks what verify reports.
"""

from __future__ import annotations

import io
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ddbbridge.cli import main as ddbbridge_main
from ddbbridge.fakedata import attribute_types
from ddbbridge.loaderstats import read_loaded_count
from ddbbridge.names import SideNames
from ddbbridge.spec import load_manifest
from ddbbridge.verify import wait_until_converged
from tests.fixtures.regions import CN, SG, Regions
from tests.fixtures.waiting import scaled, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_regions")]

ALL_TYPES = {"S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL"}
SHAPES = {
    "hash-only": {"user_id": ("S", "HASH")},
    "hash+range": {"tenant": ("N", "HASH"), "blob": ("B", "RANGE")},
}
COUNT = 100


@dataclass
class CliRun:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def ddbbridge(*args: str) -> CliRun:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = ddbbridge_main(list(args))
    return CliRun(code, out.getvalue(), err.getvalue())


@dataclass
class PairTables:
    name: str
    path: Path
    key_names: tuple[str, ...]
    dynamodb: dict[str, Any]  # side name -> client
    tables: dict[str, str]  # side name -> user table

    def scan(self, side: str) -> dict[str, dict[str, Any]]:
        """Every item of one side, by a key text of our own (raw values, no normalisation)."""
        items: dict[str, dict[str, Any]] = {}
        request: dict[str, Any] = {"TableName": self.tables[side], "ConsistentRead": True}
        while True:
            page = self.dynamodb[side].scan(**request)
            for item in page["Items"]:
                items[repr([item[k] for k in self.key_names])] = item
            if "LastEvaluatedKey" not in page:
                return items
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def stats(self, side: str) -> dict[str, int]:
        return read_loaded_count(self.dynamodb[side], SideNames(self.name, side).stats_table)


@pytest.fixture
def endpoints_env(regions: Regions, monkeypatch: pytest.MonkeyPatch) -> Regions:
    for name, value in regions.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return regions


def create_pair(regions: Regions, tmp_path: Path, shape: str) -> PairTables:
    name = f"lv{uuid.uuid4().hex[:8]}"
    schema = SHAPES[shape]
    clients = {"cn": regions[CN].client("dynamodb"), "sg": regions[SG].client("dynamodb")}
    tables = {side: f"users-{side}-{name}" for side in clients}
    for side, client in clients.items():
        client.create_table(
            TableName=tables[side],
            KeySchema=[{"AttributeName": k, "KeyType": role} for k, (_t, role) in schema.items()],
            AttributeDefinitions=[{"AttributeName": k, "AttributeType": t} for k, (t, _r) in schema.items()],
            BillingMode="PAY_PER_REQUEST",
        )
        client.create_table(
            TableName=SideNames(name, side).stats_table,
            KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"""apiVersion: ddbbridge.io/v1alpha1
kind: TableReplicationPair
metadata:
  name: {name}
spec:
  regions:
    - name: cn
      region: {CN}
      tableName: {tables["cn"]}
    - name: sg
      region: {SG}
      tableName: {tables["sg"]}
  replication:
    originAttribute: origin
    timestampAttribute: stamped_at
    timestampUnit: milliseconds
""",
        encoding="utf-8",
    )
    return PairTables(name, path, tuple(schema), clients, tables)


@pytest.fixture(params=list(SHAPES))
def pair(request: pytest.FixtureRequest, endpoints_env: Regions, tmp_path: Path) -> Iterator[PairTables]:
    created = create_pair(endpoints_env, tmp_path, request.param)
    yield created
    for side, client in created.dynamodb.items():
        client.delete_table(TableName=created.tables[side])
        client.delete_table(TableName=SideNames(created.name, side).stats_table)


def copy_missing_and_different(pair: PairTables) -> None:
    """Make the two tables equal the way a replicator would end: cn's version wins, sg-only items
    are copied to cn."""
    cn, sg = pair.scan("cn"), pair.scan("sg")
    for key, item in cn.items():
        if sg.get(key) != item:
            pair.dynamodb["sg"].put_item(TableName=pair.tables["sg"], Item=item)
    for key, item in sg.items():
        if key not in cn:
            pair.dynamodb["cn"].put_item(TableName=pair.tables["cn"], Item=item)


def test_load_both_regions_verify_finds_differences_then_equal_after_copy(pair: PairTables) -> None:
    loaded = ddbbridge(
        "load", "-f", str(pair.path), "--region", "all", "--count", str(COUNT), "--workers", "4",
        "--conflict-keys", "12", "--conflict-ratio", "0.3", "--delete-ratio", "0.1",
        "--unstamped-ratio", "0.2", "--seed", "11", "--no-progress", "-o", "json",
    )  # fmt: skip
    assert loaded.code == 0, loaded.err
    summary = {entry["side"]: entry for entry in loaded.json()["regions"]}
    assert set(summary) == {"cn", "sg"}

    for side, entry in summary.items():
        assert entry["writes"] == COUNT and not entry["errors"]
        # loaded_count = the writes the loader issued, per operation too.
        stats = pair.stats(side)
        assert stats["cnt"] == entry["writes"]
        for kind, n in entry["by_operation"].items():
            assert stats.get(f"{kind}_cnt", 0) == n
        assert stats.get("unstamped_cnt", 0) == entry["unstamped"] > 0
        assert entry["by_operation"]["delete"] > 0 and entry["shared_key_writes"] > 0

    # What was written is what the generator makes: every type, nested; stamps as configured.
    for side in ("cn", "sg"):
        items = list(pair.scan(side).values())
        assert items
        types = set().union(*(attribute_types(v) for item in items for v in item.values()))
        assert types == ALL_TYPES
        stamped = [item for item in items if "origin" in item]
        assert stamped and len(stamped) < len(items), "some writes are unstamped"
        for item in stamped:
            assert item["origin"]["S"] in ("cn", "sg")
            assert item["stamped_at"]["N"].isdigit(), "milliseconds are integers"

    # verify reports exactly what an independent comparison of raw scans finds.
    cn, sg = pair.scan("cn"), pair.scan("sg")
    only_cn, only_sg = cn.keys() - sg.keys(), sg.keys() - cn.keys()
    different = {k for k in cn.keys() & sg.keys() if cn[k] != sg[k]}
    assert only_cn and only_sg and different
    report = ddbbridge("verify", "-f", str(pair.path), "-o", "json", "--segments", "3", "--no-progress")
    assert report.code == 1, report.err
    document = report.json()
    assert document["converged"] is False
    assert document["missing_in_b"] == len(only_cn)
    assert document["missing_in_a"] == len(only_sg)
    assert document["different"] == len(different)
    assert document["equal"] == len(cn.keys() & sg.keys()) - len(different)
    assert document["a"]["items"] == len(cn) and document["b"]["items"] == len(sg)
    example = document["examples"]["different"][0]
    assert set(example["key"]) == set(pair.key_names)
    assert example["attributes"], "a different item names the attributes that differ"

    copy_missing_and_different(pair)
    equal = ddbbridge("verify", "-f", str(pair.path), "--no-progress")
    assert equal.code == 0, equal.out + equal.err
    assert equal.out.splitlines()[1].startswith("EQUAL:")


def test_verify_names_binary_nested_and_missing_differences(pair: PairTables) -> None:
    loaded = ddbbridge(
        "load", "-f", str(pair.path), "--region", "cn", "--count", "40", "--delete-ratio", "0",
        "--update-ratio", "0", "--seed", "5", "--no-progress",
    )  # fmt: skip
    assert loaded.code == 0, loaded.err
    copy_missing_and_different(pair)
    assert ddbbridge("verify", "-f", str(pair.path), "--no-progress").code == 0

    keys = sorted(pair.scan("sg"))
    sg_items = pair.scan("sg")
    flipped = dict(sg_items[keys[0]])
    avatar = bytearray(flipped["avatar"]["B"])
    avatar[-1] ^= 0x01  # one bit of a binary attribute
    flipped["avatar"] = {"B": bytes(avatar)}
    nested = dict(sg_items[keys[1]])
    preferences = dict(nested["preferences"]["M"])
    preferences["quiet_hours"] = (
        {"NS": ["1", "23"]} if preferences["quiet_hours"] != {"NS": ["1", "23"]} else {"NS": ["2"]}
    )
    nested["preferences"] = {"M": preferences}
    for item in (flipped, nested):
        pair.dynamodb["sg"].put_item(TableName=pair.tables["sg"], Item=item)
    gone = {k: sg_items[keys[2]][k] for k in pair.key_names}
    pair.dynamodb["cn"].delete_item(TableName=pair.tables["cn"], Key=gone)

    report = ddbbridge("verify", "-f", str(pair.path), "-o", "json", "--examples", "5", "--no-progress")
    assert report.code == 1
    document = report.json()
    assert (document["missing_in_a"], document["missing_in_b"], document["different"]) == (1, 0, 2)
    named = sorted(tuple(a["name"] for a in e["attributes"]) for e in document["examples"]["different"])
    assert named == [("avatar",), ("preferences",)]
    text = ddbbridge("verify", "-f", str(pair.path), "--no-progress")
    assert "avatar (different)" in text.out and "missing in cn (only in sg)" in text.out


def test_numbers_compare_by_value_as_dynamodb_stores_them(pair: PairTables) -> None:
    # The emulator keeps number text as written; DynamoDB would store both as 1.5.
    key = (
        {"user_id": {"S": "n1"}}
        if pair.key_names == ("user_id",)
        else {"tenant": {"N": "7"}, "blob": {"B": b"\x00"}}
    )
    pair.dynamodb["cn"].put_item(TableName=pair.tables["cn"], Item={**key, "score": {"N": "1.50"}})
    pair.dynamodb["sg"].put_item(TableName=pair.tables["sg"], Item={**key, "score": {"N": "1.5"}})
    assert ddbbridge("verify", "-f", str(pair.path), "--no-progress").code == 0
    pair.dynamodb["sg"].put_item(TableName=pair.tables["sg"], Item={**key, "score": {"N": "1.51"}})
    assert ddbbridge("verify", "-f", str(pair.path), "--no-progress").code == 1


def test_wait_polls_until_the_tables_converge(pair: PairTables, endpoints_env: Regions) -> None:
    assert (
        ddbbridge(
            "load", "-f", str(pair.path), "--region", "sg", "--count", "20", "--seed", "2", "--no-progress"
        ).code
        == 0
    )
    manifest = load_manifest(pair.path)
    since = max((e["seq"] for e in endpoints_env[CN].requests()), default=0)

    def fix_after_first_attempt() -> None:
        # Only once verify has scanned the diverged tables does the "pipeline" catch up.
        wait_for(lambda: "Scan" in endpoints_env[CN].operations("dynamodb", since), 60, "a first verify scan")
        copy_missing_and_different(pair)

    fixer = threading.Thread(target=fix_after_first_attempt)
    fixer.start()
    report = wait_until_converged(manifest, scaled(120), interval=0.2, progress=False, echo=False)
    fixer.join()
    assert report.converged

    # A wait that cannot succeed gives up at its deadline with the last report.
    pair.dynamodb["cn"].put_item(
        TableName=pair.tables["cn"], Item=next(iter(pair.scan("cn").values())) | {"extra": {"BOOL": True}}
    )
    stuck = ddbbridge("verify", "-f", str(pair.path), "--wait", "0.5", "--interval", "0.2", "--no-progress")
    assert stuck.code == 1 and "DIFFERENT" in stuck.out


def test_load_without_stats_table_warns_and_still_loads(pair: PairTables) -> None:
    pair.dynamodb["cn"].delete_table(TableName=SideNames(pair.name, "cn").stats_table)
    run = ddbbridge(
        "load", "-f", str(pair.path), "--region", "cn", "--count", "10", "--seed", "1", "--no-progress"
    )
    pair.dynamodb["cn"].create_table(
        TableName=SideNames(pair.name, "cn").stats_table,
        KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    assert run.code == 0
    assert "loaded_count is not recorded" in run.err
    assert len(pair.scan("cn")) > 0


def test_verify_refuses_a_missing_table(pair: PairTables) -> None:
    pair.dynamodb["sg"].delete_table(TableName=pair.tables["sg"])
    run = ddbbridge("verify", "-f", str(pair.path), "--no-progress")
    pair.dynamodb["sg"].create_table(
        TableName=pair.tables["sg"],
        KeySchema=[
            {"AttributeName": k, "KeyType": "HASH" if i == 0 else "RANGE"}
            for i, k in enumerate(pair.key_names)
        ],
        AttributeDefinitions=[
            {"AttributeName": k, "AttributeType": t} for k, (t, _r) in SHAPES[shape_of(pair)].items()
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    assert run.code == 2
    assert "not found" in run.err


def shape_of(pair: PairTables) -> str:
    return next(name for name, schema in SHAPES.items() if tuple(schema) == pair.key_names)
