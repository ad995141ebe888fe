"""The operator-scale measurement's pure parts: calls per health interval per pair from a request log,
the Ready series, the operator's command line from the rendered Deployment, and profile summaries."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from ddbbridge_dev.bench import call_rates, flame
from ddbbridge_dev.bench.operator_process import counter_total, local_argv, local_env
from ddbbridge_dev.bench.operator_scale import ready_count


def entry(seq: int, service: str, operation: str) -> dict[str, object]:
    return {"seq": seq, "service": service, "operation": operation, "fault": None}


def test_calls_after_the_mark_per_interval_per_pair() -> None:
    log = [
        entry(1, "sts", "GetCallerIdentity"),  # before the window
        entry(2, "sts", "GetCallerIdentity"),
        entry(3, "dynamodb", "DescribeTable"),
        entry(4, "dynamodb", "DescribeTable"),
        entry(5, "dynamodb", "DescribeTable"),
        entry(6, "dynamodb", "DescribeTable"),
        entry(7, "sqs", "GetQueueUrl"),
    ]
    calls = call_rates.count_since(log, mark=1)
    assert calls == {"sts:GetCallerIdentity": 1, "dynamodb:DescribeTable": 4, "sqs:GetQueueUrl": 1}
    # 2 pairs over 120 s at a 60 s interval: 4 pair-intervals.
    rates = call_rates.per_interval_per_pair(calls, pairs=2, window_seconds=120, interval_seconds=60)
    assert rates == {"dynamodb:DescribeTable": 1.0, "sqs:GetQueueUrl": 0.25, "sts:GetCallerIdentity": 0.25}
    assert call_rates.by_service(rates) == {"dynamodb": 1.0, "sqs": 0.25, "sts": 0.25}


def test_rates_refuse_an_empty_window() -> None:
    with pytest.raises(ValueError):
        call_rates.per_interval_per_pair({"a:B": 1}, pairs=0, window_seconds=10, interval_seconds=10)
    with pytest.raises(ValueError):
        call_rates.per_interval_per_pair({"a:B": 1}, pairs=1, window_seconds=0, interval_seconds=10)


def test_ready_series_keeps_changes_and_the_last_sample() -> None:
    samples = [(100.0, 0), (102.0, 0), (104.0, 3), (106.0, 3), (108.0, 5), (110.0, 5), (112.0, 5)]
    series = call_rates.ready_series(samples, began=100.0)
    assert series == [[0.0, 0], [4.0, 3], [8.0, 5], [12.0, 5]]
    assert call_rates.time_to_count(series, 5) == 8.0
    assert call_rates.time_to_count(series, 6) is None


def test_ready_counts_only_the_current_generation() -> None:
    def pair(generation: int, status: str, observed: int) -> dict[str, Any]:
        condition = {"type": "Ready", "status": status, "observedGeneration": observed}
        return {"metadata": {"generation": generation}, "status": {"conditions": [condition]}}

    items = [pair(1, "True", 1), pair(2, "True", 1), pair(1, "False", 1), {"metadata": {"generation": 1}}]
    assert ready_count(items) == 1


CONTAINER = {
    "command": ["ddbbridge"],
    "args": [
        "operator",
        "--all-namespaces",
        "--standalone",
        "--liveness-port",
        "8080",
        "--metrics-port",
        "9090",
    ],
    "env": [
        {"name": "DDBBRIDGE_ENDPOINTS", "valueFrom": {"configMapKeyRef": {"key": "DDBBRIDGE_ENDPOINTS"}}},
        {"name": "AWS_REGION", "valueFrom": {"configMapKeyRef": {"key": "AWS_REGION"}}},
    ],
}


def test_operator_command_comes_from_the_container() -> None:
    argv = local_argv(CONTAINER, liveness_port=1234, metrics_port=5678)
    assert argv[0] == str(Path(sys.executable).parent / "ddbbridge")
    assert argv[1:] == [
        "operator", "--all-namespaces", "--standalone", "--liveness-port", "1234", "--metrics-port", "5678",
        "--bind-address=127.0.0.1",
    ]  # fmt: skip


def test_operator_environment_values_the_declared_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DDBBRIDGE_PEER_ENDPOINTS", "leaks-from-the-shell")
    monkeypatch.setenv("AWS_PROFILE", "leaks-too")
    values = {
        "DDBBRIDGE_ENDPOINTS": "cn-north-1=http://127.0.0.1:1",
        "DDBBRIDGE_PEER_ENDPOINTS": "not declared by the container",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    env = local_env(CONTAINER, values, Path("/tmp/kubeconfig"))
    assert env["DDBBRIDGE_ENDPOINTS"] == "cn-north-1=http://127.0.0.1:1"
    assert "DDBBRIDGE_PEER_ENDPOINTS" not in env and "AWS_PROFILE" not in env and "AWS_REGION" not in env
    assert env["KUBECONFIG"] == "/tmp/kubeconfig"


def test_reconcile_error_counter_by_kind() -> None:
    text = "\n".join(
        [
            "# HELP ddbbridge_reconcile_errors_total Failed reconcile passes",
            'ddbbridge_reconcile_errors_total{kind="transient",namespace="default",pair="a"} 2.0',
            'ddbbridge_reconcile_errors_total{kind="transient",namespace="default",pair="b"} 1.0',
            'ddbbridge_reconcile_errors_total{kind="terminal",namespace="default",pair="a"} 1.0',
            'ddbbridge_reconcile_errors_created{kind="terminal",namespace="default",pair="a"} 1.7e9',
        ]
    )
    assert counter_total(text, "ddbbridge_reconcile_errors") == {"transient": 3.0, "terminal": 1.0}


def test_flame_summary_inclusive_once_per_stack_and_leaves() -> None:
    lines = [
        "main (ddbbridge/cli.py:10);run (ddbbridge/x.py:3);run (ddbbridge/x.py:4);"
        "loads (json/__init__.py:1) 6",
        "main (ddbbridge/cli.py:10);select (selectors.py:2) 4",
        "garbage line",
    ]
    summary = flame.summarise(lines, lambda frame: "ddbbridge/" in frame)
    assert summary["samples"] == 10
    assert dict((f, s) for f, s in summary["ours_inclusive"]) == {
        "main (ddbbridge/cli.py)": 1.0,
        "run (ddbbridge/x.py)": 0.6,  # two lines of one function on one stack count once
    }
    assert summary["leaves"][0] == ["loads (json/__init__.py)", 0.6]


def test_pass_figures_from_the_sts_marker() -> None:
    # 3 pairs, 2 intervals: 3 passes ran (one GetCallerIdentity per region each), 10 calls apiece.
    calls = {
        "cn-north-1": {"sts:GetCallerIdentity": 3, "sqs:GetQueueUrl": 12},
        "ap-southeast-1": {"sts:GetCallerIdentity": 3, "iam:GetRole": 12},
    }
    figures = call_rates.pass_figures(calls, pairs=3, window_seconds=120, interval_seconds=60)
    assert figures == {"passes": 3.0, "calls_per_pass": 10.0, "passes_per_pair_per_interval": 0.5}
    assert (
        call_rates.pass_figures({}, pairs=3, window_seconds=120, interval_seconds=60)["calls_per_pass"]
        is None
    )


def test_markdown_shows_passes_errors_and_apis() -> None:
    from ddbbridge_dev.bench.operator_scale import render_markdown  # noqa: PLC0415

    document = {
        "settings": {"pairs": 2, "health_interval": 60, "runner": False},
        "machine": {"nproc": 2, "cpu_model": "cpu", "load_average_at_start": [1, 1, 1], "started_utc": "t"},
        "time_to_ready_s": 30.0,
        "rss": {"peak_mib": 100.0, "idle_before_pairs_mib": 70.0},
        "window": {"seconds": 120.0, "health_intervals": 2.0},
        "calls_in_window": {"cn-north-1": {"sts:GetCallerIdentity": 4, "sqs:GetQueueUrl": 8}},
        "calls_per_interval_per_pair": {"sqs:GetQueueUrl": 2.0, "sts:GetCallerIdentity": 1.0},
        "reconcile_errors": {"to_ready": {"transient": 2.0}, "in_window": {}},
        "ready_series": [[0.0, 0], [30.0, 2]],
    }
    text = render_markdown(document)
    assert "| AWS calls per health pass of one pair | 3.0 |" in text
    assert "| health passes per pair per interval achieved (1.0 = keeping up) | 1.0 |" in text
    assert "| reconcile errors until Ready / in window | 2 (transient 2) / 0 |" in text
    assert text.index("sqs:GetQueueUrl") < text.index("sts:GetCallerIdentity")  # most calls first
    assert "30s:2" in text


def test_publish_copies_the_run_into_docs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ddbbridge_dev.bench.operator_scale import write_outputs  # noqa: PLC0415

    monkeypatch.setenv("DDBBRIDGE_PROJECT_ROOT", str(tmp_path / "checkout"))
    document = {
        "settings": {"pairs": 3, "health_interval": 60, "runner": False},
        "machine": {"nproc": 2, "cpu_model": "cpu", "load_average_at_start": [1, 1, 1], "started_utc": "t"},
        "ready_series": [[0.0, 3]],
    }
    written = write_outputs(document, tmp_path / "results", publish=True)

    docs = tmp_path / "checkout" / "docs" / "bench"
    assert written[2:] == [docs / "operator-scale-3.json", docs / "operator-scale-3.md"]
    assert (docs / "operator-scale-3.md").read_text(encoding="utf-8") == written[1].read_text(
        encoding="utf-8"
    )


def test_handler_cpu_per_thousand_records_by_role() -> None:
    from ddbbridge_dev.bench.handler_profile import per_thousand  # noqa: PLC0415

    cpu = {
        "worker:ddbbridge-run-cn-sender": 1.5,
        "worker:ddbbridge-run-sg-sender": 0.5,
        "worker:ddbbridge-run-sg-applier": 3.0,
        "runner": 9.0,
        "emulator:cn-north-1": 50.0,
    }
    assert per_thousand(cpu, {"sender": 4000, "applier": 4000}) == {"sender": 0.5, "applier": 0.75}
    assert per_thousand(cpu, {"sender": 0, "applier": 0}) == {"sender": None, "applier": None}
