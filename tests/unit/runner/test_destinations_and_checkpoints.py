"""On-failure records (documented shape) and atomic checkpoints."""

from __future__ import annotations

from pathlib import Path

from ddbbridge_dev.runner.checkpoints import Checkpoint, CheckpointStore
from ddbbridge_dev.runner.destinations import failure_record, queue_name_and_account
from ddbbridge_dev.runner.events import StreamRecord
from ddbbridge_dev.runner.policy import InvocationResult
from tests.fixtures.lambda_samples import sample, shape_of


def test_failure_records_have_the_documented_shape() -> None:
    batch = [StreamRecord(5, "5", "k", 1573690399.0, 1, {}), StreamRecord(9, "9", "k", 1573690400.5, 1, {})]
    failed = InvocationResult(ok=False, error_type="RuntimeError", request_id="req-1")
    for source, name in (("dynamodb", "dynamodb_on_failure.json"), ("kinesis", "kinesis_on_failure.json")):
        message = failure_record(
            source=source,
            function_arn="arn:aws-cn:lambda:cn-north-1:123456789012:function:f",
            condition="RetryAttemptsExhausted",
            shard_id="shardId-1",
            stream_arn="arn:stream",
            records=batch,
            invoke_count=3,
            last_result=failed,
            now=1573690429.717,
        )
        assert shape_of(message) == shape_of(sample(name))
        assert message["timestamp"] == "2019-11-14T00:13:49.717Z"
        assert message["requestContext"]["requestId"] == "req-1"
        assert message["responseContext"]["functionError"] == "Unhandled"
    info = message["KinesisBatchInfo"]
    assert (info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == ("5", "9", 2)
    assert info["approximateArrivalOfLastRecord"] == "2019-11-14T00:13:20.500Z"
    assert queue_name_and_account("arn:aws-cn:sqs:cn-north-1:123456789012:q") == ("q", "123456789012")


def test_checkpoints_round_trip_atomically(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    assert store.load("m", "shardId-1") is None
    store.save("m", "shardId-1", Checkpoint(since=12.5))
    store.save("m", "shardId-1", Checkpoint(after="42"))
    assert store.load("m", "shardId-1") == Checkpoint(after="42")
    assert not list((tmp_path / "m").glob(".*tmp"))  # no temp files left behind
    assert not store.mapping_started("m")
    store.mark_mapping_started("m")
    assert store.mapping_started("m")
    store.forget("m")
    assert store.load("m", "shardId-1") is None
