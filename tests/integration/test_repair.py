"""`ddbbridge verify --repair` on injected divergence (no runner: nothing else writes meanwhile).

Divergence per key, each written straight into the user tables or through the applier's own code:
missing (only in cn), extra (in sg, deleted in cn with a tombstone), stale (older version in sg),
newer in sg, binary difference at the SAME version, unstamped on both sides. After one
`verify --repair` the second `verify` exits 0, each key was resolved the documented way, and the
delete left a tombstone that refuses the older version afterwards (no resurrection).
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ddbbridge.aws import region_session
from ddbbridge.replay import RegionApplier
from ddbbridge.spec import load_manifest
from ddbbridge_lambdas.codec import WireRecord, item_to_wire
from ddbbridge_lambdas.versions import Version
from tests.fixtures.regions import Regions
from tests.integration.day2_support import pair_environment, reconcile
from tests.integration.replication_support import Pair, create_pair, ddbbridge

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_regions")]

T = 1_750_000_000


def stamped(key: str, ts: str, origin: str, **values: Any) -> dict[str, Any]:
    return {
        "id": {"S": key},
        "last_update_timestamp": {"N": ts},
        "last_updater_region": {"S": origin},
        **values,
    }


@pytest.fixture
def pair(regions: Regions, tmp_path: Path) -> Iterator[Pair]:
    with pair_environment(regions):
        created = create_pair(regions, tmp_path, "rp", (("id", "S"),))
        reconcile(created)
        yield created


def put(pair: Pair, side: str, item: dict[str, Any]) -> None:
    pair.client(side, "dynamodb").put_item(TableName=pair.tables[side], Item=item)


def applier(pair: Pair, side: str) -> RegionApplier:
    manifest = load_manifest(pair.path)
    return RegionApplier.deployed(region_session(manifest.spec.side(side)), pair.name, side)


def delete_record(key: str, version: Version) -> WireRecord:
    return WireRecord("cn", {"id": {"S": key}}, version, None, 0, 0)


def test_repair_fixes_missing_extra_stale_and_binary_differences(pair: Pair) -> None:
    # missing in sg
    put(pair, "cn", stamped("missing", f"{T}.1", "cn", v={"S": "only in cn"}))
    # extra in sg: both had it, cn deleted it (tombstone at T+5 in cn's ledger), sg never heard
    extra = stamped("extra", f"{T}.2", "cn", v={"S": "deleted in cn"})
    put(pair, "cn", extra)
    put(pair, "sg", extra)
    outcome = applier(pair, "cn").apply_wire([delete_record("extra", Version(Decimal(T + 5), "cn"))])
    assert outcome.counts["applied"] == 1 and pair.get("cn", {"id": {"S": "extra"}}) is None
    # stale in sg, and newer in sg
    put(pair, "cn", stamped("stale", f"{T}.9", "cn", v={"S": "new"}))
    put(pair, "sg", stamped("stale", f"{T}.3", "sg", v={"S": "old"}))
    put(pair, "cn", stamped("newer-in-sg", f"{T}.3", "cn", v={"S": "old"}))
    put(pair, "sg", stamped("newer-in-sg", f"{T}.4", "sg", v={"S": "new"}))
    # binary difference at the same version; and unstamped on both sides
    put(pair, "cn", stamped("binary", f"{T}.5", "cn", b={"B": b"\x00\x01\xff"}))
    put(pair, "sg", stamped("binary", f"{T}.5", "cn", b={"B": b"\x00\x01\xfe"}))
    put(pair, "cn", {"id": {"S": "unstamped"}, "v": {"S": "cn's"}})
    put(pair, "sg", {"id": {"S": "unstamped"}, "v": {"S": "sg's"}})
    put(pair, "cn", stamped("same", f"{T}.6", "cn", v={"S": "equal"}))
    put(pair, "sg", stamped("same", f"{T}.6", "cn", v={"S": "equal"}))

    first = ddbbridge("verify", "-f", str(pair.path), "--no-progress")
    assert first.code == 1 and "1 missing in cn, 1 missing in sg, 4 different" in first.out

    repaired = ddbbridge("verify", "-f", str(pair.path), "--repair", "--no-progress", "-o", "json")
    assert repaired.code == 0, repaired.out + repaired.err
    results = {k["key"]["id"]: k for k in repaired.json()["repair"]["keys"]}
    assert set(results) == {"missing", "extra", "stale", "newer-in-sg", "binary", "unstamped"}
    assert results["missing"]["result"].startswith("copied: cn -> sg")
    assert results["extra"]["result"].startswith("deleted: deleted in sg")
    assert results["stale"]["result"].startswith("copied: cn -> sg")
    assert results["newer-in-sg"]["result"].startswith("copied: sg -> cn")
    assert results["binary"]["result"].startswith("restamped and copied: cn -> sg")
    assert results["unstamped"]["result"].startswith("restamped and copied: cn -> sg")
    assert all(k["changed"] and k["ok"] for k in results.values())

    second = ddbbridge("verify", "-f", str(pair.path), "--no-progress")
    assert second.code == 0, second.out
    assert pair.get("sg", {"id": {"S": "binary"}})["b"] == {"B": b"\x00\x01\xff"}  # type: ignore[index]
    assert pair.get("sg", {"id": {"S": "unstamped"}})["v"] == {"S": "cn's"}  # type: ignore[index]

    # no resurrection: the older version of the deleted key is refused by sg's tombstone now
    late = WireRecord(
        "cn", {"id": {"S": "extra"}}, Version(Decimal(f"{T}.2"), "cn"), item_to_wire(extra), 0, 0
    )
    assert applier(pair, "sg").apply_wire([late]).counts["discarded_older"] == 1
    assert pair.get("sg", {"id": {"S": "extra"}}) is None
