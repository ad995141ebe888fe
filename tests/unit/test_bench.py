"""The bench's pure parts: lag matching, percentiles, the naive baseline's writes, and the README
figures kept equal to docs/bench/latest.json."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from ddbbridge_dev.bench import report
from ddbbridge_dev.bench.lag import LagSample, lag_summary, match_versions, percentile, throughput, timeline
from ddbbridge_dev.bench.naive_sender import NaiveConfig, NaiveSender
from ddbbridge_dev.bench.publish import IMAGE
from ddbbridge_dev.bench.streams import StreamChange, change_from_record

ROOT = Path(__file__).resolve().parents[2]


def change(at: float, key: str, origin: str | None, stamp: str | None, event: str = "MODIFY") -> StreamChange:
    return StreamChange(at, event, key, origin, Decimal(stamp) if stamp else None)


def test_readme_shows_the_latest_published_figures() -> None:
    document = json.loads((ROOT / "docs" / "bench" / "latest.json").read_text(encoding="utf-8"))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert report.current_section(readme) == report.readme_section(document, IMAGE)
    assert (ROOT / IMAGE).is_file()
    assert (ROOT / "docs" / "bench" / "latest.md").read_text(encoding="utf-8") == report.render_markdown(
        document
    )


def test_replace_section_keeps_the_rest_of_the_readme() -> None:
    readme = f"intro\n{report.BEGIN}\nold\n{report.END}\noutro\n"
    replaced = report.replace_section(readme, f"{report.BEGIN}\nnew\n{report.END}")
    assert replaced == f"intro\n{report.BEGIN}\nnew\n{report.END}\noutro\n"
    with pytest.raises(ValueError):
        report.replace_section("no markers", "x")


def test_versions_match_by_key_and_stamp_and_origin() -> None:
    source = [
        change(10.0, "PK=a", "cn", "1.5"),
        change(11.0, "PK=b", "cn", "2.0"),
        change(12.0, "PK=c", "sg", "3.0"),  # the peer's own write echoed: not a source version
        change(13.0, "PK=a", None, None, "REMOVE"),  # deletes carry no version of their own
        change(14.0, "PK=d", "cn", "4.0"),  # lost a conflict: never applied
    ]
    target = [
        change(10.4, "PK=a", "cn", "1.50"),  # same number, other spelling
        change(11.9, "PK=b", "cn", "2.0"),
        change(12.5, "PK=b", "cn", "2.0"),  # a duplicate apply: the first one counts
        change(12.6, "PK=d", "sg", "4.0"),
    ]
    matched = match_versions(source, target, "cn")
    assert [(s.written_at, s.applied_at) for s in matched.samples] == [(10.0, 10.4), (11.0, 11.9)]
    assert (matched.source_versions, matched.unmatched) == (3, 1)


def test_percentiles_are_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([], 0.5) is None
    summary = lag_summary([LagSample(0.0, 0.25), LagSample(1.0, 3.0)])
    assert summary == {"p50": 0.25, "p95": 2.0, "p99": 2.0, "max": 2.0}


def test_throughput_and_timeline() -> None:
    samples = [LagSample(100.0 + n * 0.1, 100.5 + n * 0.1) for n in range(20)]
    assert throughput(samples) == pytest.approx(20 / 2.4)
    rows = timeline(samples, origin_time=100.0)
    assert [row["t"] for row in rows] == [0.0, 1.0, 2.0]
    assert sum(int(row["applied_per_s"] or 0) for row in rows) == 20
    assert rows[0]["lag_max"] == pytest.approx(0.5)


def test_stream_record_is_read_with_its_version() -> None:
    record = {
        "eventName": "MODIFY",
        "dynamodb": {
            "ApproximateCreationDateTime": 1700000000.25,
            "Keys": {"PK": {"S": "a"}},
            "NewImage": {"PK": {"S": "a"}, "o": {"S": "cn"}, "ts": {"N": "12.500"}},
        },
    }
    assert change_from_record(record, "o", "ts") == StreamChange(
        1700000000.25, "MODIFY", "PK=a", "cn", Decimal("12.5")
    )


class FakeDynamoDB:
    def __init__(self, fail_condition: bool = False) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail_condition = fail_condition

    def _call(self, name: str, request: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((name, request))
        if self.fail_condition:
            raise ClientError({"Error": {"Code": "ConditionalCheckFailedException"}}, name)
        return {}

    def put_item(self, **request: Any) -> dict[str, Any]:
        return self._call("PutItem", request)

    def delete_item(self, **request: Any) -> dict[str, Any]:
        return self._call("DeleteItem", request)


CONFIG = NaiveConfig("ap-southeast-1", "http://peer", "t-sg", "sg", ("PK",), "o", "ts")


def event(*records: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(records)}


def test_naive_sender_writes_each_change_with_the_seeds_condition() -> None:
    client = FakeDynamoDB()
    blob = base64.b64encode(b"\x00\xff").decode()
    put = {
        "eventName": "INSERT",
        "dynamodb": {
            "Keys": {"PK": {"S": "a"}},
            "NewImage": {"PK": {"S": "a"}, "o": {"S": "cn"}, "ts": {"N": "5"}, "b": {"B": blob}},
        },
    }
    echo = {
        "eventName": "MODIFY",
        "dynamodb": {
            "Keys": {"PK": {"S": "z"}},
            "NewImage": {"PK": {"S": "z"}, "o": {"S": "sg"}, "ts": {"N": "6"}},
        },
    }
    remove = {
        "eventName": "REMOVE",
        "dynamodb": {
            "Keys": {"PK": {"S": "a"}},
            "OldImage": {"PK": {"S": "a"}, "o": {"S": "cn"}, "ts": {"N": "5"}},
        },
    }
    assert NaiveSender(CONFIG, client).handle(event(put, echo, remove)) == {"batchItemFailures": []}
    (put_name, put_request), (delete_name, delete_request) = client.calls
    assert put_name == "PutItem"
    assert put_request["Item"]["b"] == {"B": b"\x00\xff"}  # decoded, not double-encoded
    assert put_request["ConditionExpression"] == "attribute_not_exists(#k) OR #ts < :ts"
    assert put_request["ExpressionAttributeValues"] == {":ts": {"N": "5"}}
    assert delete_name == "DeleteItem"
    assert delete_request["ConditionExpression"] == "attribute_not_exists(#k) OR #ts <= :ts"


def test_naive_sender_discards_an_older_version() -> None:
    client = FakeDynamoDB(fail_condition=True)
    record = {
        "eventName": "INSERT",
        "dynamodb": {
            "Keys": {"PK": {"S": "a"}},
            "NewImage": {"PK": {"S": "a"}, "o": {"S": "cn"}, "ts": {"N": "5"}},
        },
    }
    assert NaiveSender(CONFIG, client).send(record) == "discarded"


def test_goals_are_judged_from_the_figures() -> None:
    def direction(throughput_per_s: float, tail: float, p99: float, writes: float) -> dict[str, Any]:
        return {
            "throughput_per_s": throughput_per_s,
            "tail_s": tail,
            "offered_per_s": 200.0,
            "lag_s": {"p50": 0.1, "p95": 0.2, "p99": p99},
            "target_writes_per_change": writes,
            "invocations": {"x-sender": {"invocations": 10, "records": 5000}},
        }

    document = {
        "ceiling": {"put_item_per_s": 500.0},
        "phases": {
            "ours": {
                "directions": {
                    "cn->sg": direction(300.0, 1.0, 1.5, 1.0),
                    "sg->cn": direction(300.0, 3.0, 1.5, 0.9),
                },
                "calls": {"dynamodb:UpdateItem": 20, "kinesis:PutRecords": 20},
                "stats_updates": 20,
                "changes": 10000,
            },
            "naive": {
                "directions": {"cn->sg": {"throughput_per_s": 6.0}, "sg->cn": {"throughput_per_s": 5.0}}
            },
        },
    }
    judged = {goal["goal"]: goal["met"] for goal in report.goals(document)}
    assert judged[">= 20x the naive design's throughput"] is True
    assert judged["tail lag <= 2 s after the load stops"] is False
    assert judged["p99 apply lag <= 2 s at >= 60% of the emulator's PutItem ceiling"] is True
    assert judged["<= 1.01 target-table writes per change"] is True
    assert judged["<= 1 stats update per batch"] is True
    assert judged["Kinesis calls per change <= 1/400 at full batches"] is True

    document["phases"]["ours"]["stats_updates"] = 21  # one more than the 20 invocations
    judged = {goal["goal"]: goal["met"] for goal in report.goals(document)}
    assert judged["<= 1 stats update per batch"] is False
