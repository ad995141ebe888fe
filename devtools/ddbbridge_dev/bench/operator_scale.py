"""Operator scale: N pairs on the local control plane and the emulated regions, reconciled to Ready
by the REAL operator (a local process started as the shipped Deployment starts it).

    python -m ddbbridge_dev.bench.operator_scale --pairs 100 [--publish]    (or `make bench-operator`)

Steps: a private dev environment (both emulated regions and the local kube-apiserver; the Lambda
runner only with --runner: Ready needs the mappings to exist and be Enabled, not to deliver), the CRD
and the dev overlay applied server-side, the operator on its ServiceAccount's token, 2N user tables,
N TableReplicationPair objects in one apply. Reported: time until all N are Ready (and the Ready count
over time), the operator's peak RSS (children included), its CPU, reconcile errors, and the AWS calls
per health interval per pair once all are Ready, from the launchers' request logs over a window of
several health intervals (without --runner every AWS call in that window is the operator's).
Never part of `make test`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import boto3
import psutil
import yaml

from ddbbridge.crd import PLURAL
from ddbbridge.spec import API_GROUP, API_VERSION
from ddbbridge_dev import environment, kube, state
from ddbbridge_dev.bench import call_rates, flame
from ddbbridge_dev.bench.machine import machine_info
from ddbbridge_dev.bench.memory import RssSampler, tree_rss
from ddbbridge_dev.bench.operator_process import (
    CRDS,
    OperatorProcess,
    counter_total,
    deployment_namespace,
    kubectl,
    operator_container,
    render_dev_overlay,
    service_account_kubeconfig,
)
from ddbbridge_dev.bench.profile import py_spy

GOAL_RSS_MIB = 150.0
SIDES = ("cn", "sg")
NAMESPACE = "default"  # the namespace the dev overlay serves
DOCS = Path("docs") / "bench"


@dataclass(frozen=True)
class ScaleSettings:
    pairs: int = 10
    health_interval: int = 60  # the spec's default
    window_intervals: float = 2.0
    ready_timeout: float = 3600.0
    runner: bool = False
    profile: bool = False
    regions: tuple[str, str] = ("cn-north-1", "ap-southeast-1")


def log(message: str) -> None:
    print(f"[operator-scale {time.strftime('%H:%M:%S')}] {message}", flush=True)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def pair_name(index: int) -> str:
    return f"scale-{index:03d}"


def pair_document(index: int, settings: ScaleSettings) -> dict[str, Any]:
    name = pair_name(index)
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "TableReplicationPair",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "regions": [
                {"name": side, "region": region, "tableName": f"{name}-{side}"}
                for side, region in zip(SIDES, settings.regions, strict=True)
            ],
            "replication": {
                "originAttribute": "last_updater_region",
                "timestampAttribute": "last_update_timestamp",
            },
            "deletionPolicy": "Delete",
            "healthCheckIntervalSeconds": settings.health_interval,
        },
    }


def ready_count(items: Sequence[dict[str, Any]]) -> int:
    """Pairs whose Ready condition is True for the generation they are at."""
    count = 0
    for item in items:
        generation = item.get("metadata", {}).get("generation")
        for condition in (item.get("status") or {}).get("conditions", []):
            if (
                condition.get("type") == "Ready"
                and condition.get("status") == "True"
                and condition.get("observedGeneration") == generation
            ):
                count += 1
    return count


class Pairs:
    """Lists the pairs as the cluster admin (kubernetes client: far cheaper than a kubectl per poll)."""

    def __init__(self, kubeconfig: Path, ca_file: Path) -> None:
        from kubernetes import client  # noqa: PLC0415  (dev-only, heavy)

        credentials = kube.read_credentials(kubeconfig)
        ca_file.write_text(credentials.ca_pem, encoding="utf-8")
        configuration = client.Configuration()
        configuration.host = credentials.server
        configuration.ssl_ca_cert = str(ca_file)
        configuration.api_key = {"authorization": f"Bearer {credentials.token}"}
        self.api = client.CustomObjectsApi(client.ApiClient(configuration))

    def list(self) -> list[dict[str, Any]]:
        listed: Any = self.api.list_namespaced_custom_object(API_GROUP, API_VERSION, NAMESPACE, PLURAL)
        items: list[dict[str, Any]] = listed["items"]
        return items


def request_entries(endpoint: str, since: int) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = environment.http_json(
        f"{endpoint}/_ddbbridge/requests?since={since}", timeout=120.0
    )
    return entries


def last_seq(endpoint: str) -> int:
    return max((int(e["seq"]) for e in request_entries(endpoint, 0)), default=0)


def create_tables(settings: ScaleSettings, values: dict[str, str]) -> None:
    endpoints = environment.endpoints("local")
    for side, region in zip(SIDES, settings.regions, strict=True):
        dynamodb = boto3.client(
            "dynamodb",
            region_name=region,
            endpoint_url=endpoints[region],
            aws_access_key_id=values["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=values["AWS_SECRET_ACCESS_KEY"],
        )
        for index in range(settings.pairs):
            dynamodb.create_table(
                TableName=f"{pair_name(index)}-{side}",
                KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )


def install(admin: Path, dev_dir: Path) -> tuple[dict[str, Any], Path]:
    """CRD + dev overlay (server-side), then a kubeconfig on the operator ServiceAccount's token."""
    kubectl("apply", "--server-side", "-f", str(state.project_root() / CRDS), kubeconfig=admin)
    deadline = time.monotonic() + 120
    while True:
        try:
            kubectl("get", "trp", "-A", kubeconfig=admin)
            break
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    rendered = render_dev_overlay()
    kubectl("apply", "--server-side", "-f", "-", kubeconfig=admin, stdin=rendered)
    namespace, account = deployment_namespace(rendered)
    kubeconfig = service_account_kubeconfig(admin, namespace, account, dev_dir / "operator-kubeconfig")
    return operator_container(rendered), kubeconfig


class SpyRecorder:
    """py-spy on the operator: on-CPU samples only (what costs CPU, not what waits)."""

    def __init__(self, pid: int, output: Path) -> None:
        self.output = output
        self.process: subprocess.Popen[bytes] | None = None
        binary = py_spy()
        if binary is None:
            log("py-spy not found: no profile")
            return
        output.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [binary, "record", "--pid", str(pid), "--subprocesses", "--rate", "50", "--format", "raw",
             "--output", str(output), "--nonblocking"],
            stdout=subprocess.DEVNULL,
            stderr=open(output.with_suffix(".log"), "wb"),  # noqa: SIM115  (closed with the process)
        )  # fmt: skip

    def stop(self) -> dict[str, Any] | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(2)  # SIGINT: py-spy writes its output and exits
        self.process.wait(timeout=120)
        if not self.output.exists():
            return None
        lines = self.output.read_text(encoding="utf-8", errors="replace").splitlines()
        return flame.summarise(lines, lambda frame: "ddbbridge/" in frame or "kopf/" in frame, top=25)


def cpu_seconds(pid: int) -> float:
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return round(float(times.user + times.system + times.children_user + times.children_system), 2)


def runner_facts(pid: int | None) -> dict[str, Any] | None:
    if pid is None or not psutil.pid_exists(pid):
        return None
    children = psutil.Process(pid).children(recursive=True)
    return {
        "rss_mib": round(tree_rss(pid) / (1024 * 1024), 1),
        "worker_processes": len(children),
        "cpu_s": cpu_seconds(pid),
    }


def measure(settings: ScaleSettings, dev_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Inside a started environment: install, operator, pairs, Ready, window. Returns the figures."""
    values = environment.env_exports()
    os.environ.update(values)
    admin = Path(str((state.read_section(kube.STATE_SECTION) or {})["kubeconfig"]))
    container, kubeconfig = install(admin, dev_dir)
    log(f"creating {2 * settings.pairs} user tables")
    create_tables(settings, values)
    operator = OperatorProcess.from_deployment(container, values, kubeconfig, dev_dir / "operator.log")
    pairs = Pairs(admin, dev_dir / "kube-ca.crt")
    operator.start()
    sampler = RssSampler(operator.pid)
    sampler.start()
    spy = (
        SpyRecorder(operator.pid, out_dir / "profile" / f"operator-{settings.pairs}.txt")
        if (settings.profile)
        else None
    )
    result: dict[str, Any] = {"operator_argv": operator.argv[1:]}
    try:
        idle_rss = tree_rss(operator.pid)
        documents = {"apiVersion": "v1", "kind": "List", "items": [
            pair_document(i, settings) for i in range(settings.pairs)
        ]}  # fmt: skip
        began = time.time()
        kubectl("apply", "-f", "-", kubeconfig=admin, stdin=yaml.safe_dump(documents))
        log(f"applied {settings.pairs} pairs; waiting for Ready")
        samples: list[tuple[float, int]] = [(began, 0)]
        load_during: list[list[float]] = []
        deadline = time.monotonic() + settings.ready_timeout
        count = 0
        while count < settings.pairs:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {count}/{settings.pairs} Ready after {settings.ready_timeout}s")
            if operator.process is not None and operator.process.poll() is not None:
                raise RuntimeError(f"the operator exited; see {operator.log_path}")
            time.sleep(2.0)
            count = ready_count(pairs.list())
            if count != samples[-1][1]:
                log(f"{count}/{settings.pairs} Ready")
            samples.append((time.time(), count))
            load_during.append([round(time.time() - began, 1), *load_average()])
        ready_at = time.time()
        cpu_at_ready = cpu_seconds(operator.pid)
        errors_at_ready = counter_total(operator.metrics(), "ddbbridge_reconcile_errors")
        log(f"all {settings.pairs} Ready after {ready_at - began:.1f}s; measuring calls")

        # The window: every region's request log from here, several health intervals long.
        endpoints = environment.endpoints("local")
        marks = {region: last_seq(url) for region, url in endpoints.items()}
        window_began = time.monotonic()
        window_seconds = settings.window_intervals * settings.health_interval
        lowest = settings.pairs
        while time.monotonic() - window_began < window_seconds:
            time.sleep(min(5.0, max(0.0, window_seconds - (time.monotonic() - window_began))))
            count = ready_count(pairs.list())
            lowest = min(lowest, count)
            samples.append((time.time(), count))
        window_measured = time.monotonic() - window_began
        served: dict[str, Counter[str]] = {
            region: call_rates.count_since(request_entries(url, marks[region]), marks[region])
            for region, url in endpoints.items()
        }
        cpu_after = cpu_seconds(operator.pid)
        errors_after = counter_total(operator.metrics(), "ddbbridge_reconcile_errors")
        total: Counter[str] = Counter()
        for counted in served.values():
            total.update(counted)
        rates = call_rates.per_interval_per_pair(
            total,
            pairs=settings.pairs,
            window_seconds=window_measured,
            interval_seconds=settings.health_interval,
        )
        intervals = window_measured / settings.health_interval
        result |= {
            "time_to_ready_s": round(ready_at - began, 1),
            "ready_series": call_rates.ready_series(samples, began),
            "ready_lowest_during_window": lowest,
            "load_average_while_reconciling": load_during[:: max(1, len(load_during) // 20)],
            "load_average_at_ready": load_average(),
            "rss": {
                "idle_before_pairs_mib": round(idle_rss / (1024 * 1024), 1),
                "peak_mib": sampler.peak_mib,
                "goal_mib": GOAL_RSS_MIB,
                "within_goal": sampler.peak_mib <= GOAL_RSS_MIB,
            },
            "window": {
                "seconds": round(window_measured, 1),
                "health_intervals": round(intervals, 2),
                "load_average_at_end": load_average(),
                "includes_runner_calls": settings.runner,
            },
            "calls_in_window": {region: dict(sorted(c.items())) for region, c in served.items()},
            "calls_per_interval_per_pair": rates,
            "calls_per_interval_per_pair_by_service": call_rates.by_service(rates),
            "calls_per_interval_per_pair_total": round(sum(rates.values()), 2),
            "health_passes": call_rates.pass_figures(
                served,
                pairs=settings.pairs,
                window_seconds=window_measured,
                interval_seconds=settings.health_interval,
            ),
            "operator_cpu_s": {
                "to_ready": cpu_at_ready,
                "window": round(cpu_after - cpu_at_ready, 2),
                "window_per_pair_per_interval": round(
                    (cpu_after - cpu_at_ready) / settings.pairs / intervals, 4
                ),
            },
            "reconcile_errors": {
                "to_ready": errors_at_ready,
                "in_window": None
                if errors_after is None or errors_at_ready is None
                else {
                    kind: errors_after.get(kind, 0.0) - errors_at_ready.get(kind, 0.0)
                    for kind in errors_after
                },
            },
            "operator_log_errors": sum(
                1
                for line in operator.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
                if '"levelname": "ERROR"' in line or '"level": "error"' in line
            ),
        }
        runner = state.read_section("runner")
        facts = runner_facts(runner.get("pid") if runner else None)
        if facts is not None:
            result["runner"] = facts
    finally:
        profile = spy.stop() if spy is not None else None
        sampler.stop()
        operator.stop()
        result.setdefault("rss", {})["peak_mib"] = sampler.peak_mib
        result["rss"]["series"] = sampler.series
        if profile is not None:
            result["profile"] = profile
    return result


def run_scale(settings: ScaleSettings, out_dir: Path) -> dict[str, Any]:
    out_dir = out_dir.resolve()
    dev_dir = out_dir / "operator-scale-dev"
    shutil.rmtree(dev_dir, ignore_errors=True)
    dev_dir.mkdir(parents=True)
    saved = dict(os.environ)
    os.environ["DDBBRIDGE_DEV_DIR"] = str(dev_dir)
    document: dict[str, Any] = {
        "schema": 1,
        "kind": "operator-scale",
        "machine": machine_info(),
        "settings": asdict(settings),
    }
    components = {"regions", "kube"} | ({"runner"} if settings.runner else set())
    started = time.monotonic()
    log(f"starting {', '.join(sorted(components))} in {dev_dir}")
    environment.up(environment.UpOptions(regions=settings.regions, components=frozenset(components)))
    try:
        document["setup_s"] = round(time.monotonic() - started, 1)
        document |= measure(settings, dev_dir, out_dir)
    finally:
        for line in environment.down():
            log(line)
        os.environ.clear()
        os.environ.update(saved)
    return document


# ------------------------------------------------------------------------------------------ output


def render_markdown(document: dict[str, Any]) -> str:
    settings, machine = document["settings"], document["machine"]
    rss = document.get("rss", {})
    window = document.get("window", {})
    errors = document.get("reconcile_errors", {})
    passes = call_rates.pass_figures(
        document.get("calls_in_window", {}),
        pairs=settings["pairs"],
        window_seconds=window.get("seconds") or 1.0,
        interval_seconds=settings["health_interval"],
    )
    lines = [
        f"## Operator scale: {settings['pairs']} pairs",
        "",
        f"Machine: {machine['nproc']} x {machine['cpu_model']}, load average at start "
        f"{machine['load_average_at_start']}, at Ready {document.get('load_average_at_ready')}, "
        f"at the window's end {document.get('window', {}).get('load_average_at_end')} "
        f"({machine['started_utc']}). Health interval {settings['health_interval']} s; runner "
        f"{'on' if settings['runner'] else 'off'}.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| time until all {settings['pairs']} Ready | {document.get('time_to_ready_s')} s |",
        f"| operator peak RSS (children included) | {rss.get('peak_mib')} MiB "
        f"(goal <= {GOAL_RSS_MIB:g}; idle before pairs {rss.get('idle_before_pairs_mib')}) |",
        f"| operator CPU until Ready | {document.get('operator_cpu_s', {}).get('to_ready')} s |",
        f"| operator CPU per pair per health interval | "
        f"{document.get('operator_cpu_s', {}).get('window_per_pair_per_interval')} s |",
        f"| AWS calls per health interval per pair | {document.get('calls_per_interval_per_pair_total')} |",
        f"| health passes in the window (one STS call per region each) | {passes['passes']} |",
        f"| AWS calls per health pass of one pair | {passes['calls_per_pass']} |",
        f"| health passes per pair per interval achieved (1.0 = keeping up) | "
        f"{passes['passes_per_pair_per_interval']} |",
        f"| reconcile errors until Ready / in window | {_errors(errors.get('to_ready'))}"
        f" / {_errors(errors.get('in_window'))} |",
        f"| Ready count lowest during the window | {document.get('ready_lowest_during_window')} |",
        "",
        "AWS calls per health interval per pair, by API, as achieved (window "
        f"{document.get('window', {}).get('seconds')} s = "
        f"{document.get('window', {}).get('health_intervals')} intervals):",
        "",
        "| API | calls |",
        "|---|---|",
    ]
    for api, rate in sorted(document.get("calls_per_interval_per_pair", {}).items(), key=lambda kv: -kv[1]):
        lines.append(f"| {api} | {rate} |")
    lines += ["", "Ready count over time (s since the apply, count): "
              + ", ".join(f"{at:g}s:{n}" for at, n in document.get("ready_series", []))]  # fmt: skip
    return "\n".join(lines) + "\n"


def _errors(by_kind: dict[str, float] | None) -> str:
    """Failed passes by kind from the metrics counter ("n/a" when the metrics page did not answer)."""
    if by_kind is None:
        return "n/a"
    total = sum(by_kind.values())
    return f"{total:g}" + (
        f" ({', '.join(f'{k} {v:g}' for k, v in sorted(by_kind.items()))})" if total else ""
    )


def write_outputs(document: dict[str, Any], out: Path, publish: bool) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    pairs = document["settings"]["pairs"]
    written = [out / f"operator-scale-{pairs}-{stamp}.json", out / f"operator-scale-{pairs}-{stamp}.md"]
    written[0].write_text(json.dumps(document, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    written[1].write_text(render_markdown(document), encoding="utf-8")
    if publish:
        docs = state.project_root() / DOCS
        docs.mkdir(parents=True, exist_ok=True)
        for path, suffix in zip(written[:2], ("json", "md"), strict=True):
            target = docs / f"operator-scale-{pairs}.{suffix}"
            shutil.copyfile(path, target)
            written.append(target)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ddbbridge_dev.bench.operator_scale", description=__doc__)
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--health-interval", type=int, default=60, help="spec.healthCheckIntervalSeconds")
    parser.add_argument("--window-intervals", type=float, default=2.0, help="measured window (>= 2)")
    parser.add_argument("--ready-timeout", type=float, default=3600.0)
    parser.add_argument("--runner", action="store_true", help="also run the local Lambda runner")
    parser.add_argument("--profile", action="store_true", help="py-spy the operator (on-CPU samples)")
    parser.add_argument("--out", default="bench-results")
    parser.add_argument("--publish", action="store_true", help="also write docs/bench/operator-scale-N.*")
    args = parser.parse_args(argv)
    if args.window_intervals < 2:
        parser.error("--window-intervals must be at least 2")
    if not 1 <= args.pairs <= 999:
        parser.error("--pairs must be within 1..999")
    settings = ScaleSettings(
        pairs=args.pairs,
        health_interval=args.health_interval,
        window_intervals=args.window_intervals,
        ready_timeout=args.ready_timeout,
        runner=args.runner,
        profile=args.profile,
    )
    document = run_scale(settings, Path(args.out))
    written = write_outputs(document, Path(args.out), args.publish)
    print(render_markdown(document))
    print("written: " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
