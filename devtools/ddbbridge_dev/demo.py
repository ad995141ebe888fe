"""`make demo`: the operator on a local control plane replicating two emulated regions, start to finish.

Steps: build the control plane binary (cached) -> emulated cn-north-1 and ap-southeast-1 with a
simulated cross-border RTT, the local Lambda runner, kube-apiserver + etcd, and the operator (the dev
overlay's Deployment as a local process, `ddbbridge_dev.local_operator`) -> the application's tables ->
`kubectl apply -f samples/pair.yaml` -> `kubectl get trp` until Ready -> conflicting load in both
regions while the counts climb -> `ddbbridge verify --wait` -> one-screen summary -> everything stopped
(unless --keep; then `make demo-down`). Ctrl-C or an error stops everything too.
The demo uses its own dev dir (`.ddbbridge/demo`), so it never touches a `dev up` of yours or the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import boto3

from ddbbridge.aws import parse_endpoints
from ddbbridge.spec import PairManifest, load_manifest
from ddbbridge_dev import environment, kube, local_operator, state

DEMO_DIR = Path(".ddbbridge") / "demo"
STEP_COUNT = 7
# The sample keeps the default health interval (60 s); the demo asks for the minimum so the counts in
# `kubectl get trp` move while you watch.
DEMO_HEALTH_INTERVAL = 10
INDENT = "      "


class DemoError(RuntimeError):
    """A step failed; the message says which and why."""


@dataclass
class Console:
    """One line per step with its duration; what a step shows goes indented below it."""

    total: int
    number: int = 0
    open_line: bool = False
    timings: list[tuple[str, float]] = field(default_factory=list)
    tty: bool = field(default_factory=sys.stderr.isatty)

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        self.number += 1
        print(f"[{self.number}/{self.total}] {title} ...", end="", flush=True)
        self.open_line = True
        started = time.monotonic()
        try:
            yield
        except BaseException:
            self.close_line(" FAILED")
            raise
        seconds = time.monotonic() - started
        self.timings.append((title, seconds))
        self.close_line(f" {seconds:.1f}s", f"{INDENT}done in {seconds:.1f}s")

    def close_line(self, suffix: str, otherwise: str | None = None) -> None:
        if self.open_line:
            print(suffix, flush=True)
            self.open_line = False
        elif otherwise is not None:
            print(otherwise, flush=True)

    def detail(self, text: str) -> None:
        """A short note on the step's own line (or below it, when output came in between)."""
        if self.open_line:
            print(f" {text}", end="", flush=True)
        else:
            self.say(text)

    def break_line(self) -> None:
        """Before output of our own or a child's (a progress bar on stderr)."""
        if self.open_line:
            print(flush=True)
            self.open_line = False

    def say(self, text: str) -> None:
        self.break_line()
        # On a terminal a child's progress bar may own the current line: clear it first.
        prefix = "\r\x1b[K" if self.tty else ""
        for line in text.rstrip("\n").splitlines():
            print(prefix + INDENT + line, flush=True)


@dataclass
class Demo:
    pair_file: Path
    manifest: PairManifest
    console: Console
    env: dict[str, str] = field(default_factory=dict)
    last_exit: int = 0
    last_shown: str = ""

    # --- tools -----------------------------------------------------------------------------------

    def ddbbridge(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "ddbbridge.cli", *args]

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["kubectl", *args], env=self.env, capture_output=True, text=True, timeout=60, check=False
        )
        if check and result.returncode != 0:
            raise DemoError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def pair_status(self) -> dict[str, Any]:
        result = self.kubectl("get", "trp", self.manifest.name, "-o", "json", check=False)
        if result.returncode != 0:
            return {}
        status: dict[str, Any] = json.loads(result.stdout).get("status") or {}
        return status

    def show_pairs(self, headers: bool) -> None:
        arguments = ["get", "trp", "-o", "wide"] + ([] if headers else ["--no-headers"])
        self.console.say(self.kubectl(*arguments).stdout)

    def show_if_changed(self) -> None:
        """A row only when counts, lag or dead letters moved: a long drain does not flood the screen."""
        status = self.pair_status()
        fingerprint = json.dumps([status.get("directions"), status.get("lagSeconds"), status.get("dlqDepth")])
        if fingerprint != self.last_shown:
            self.last_shown = fingerprint
            self.show_pairs(headers=False)

    def while_running(self, argv: list[str], every: float, tick: Callable[[], None]) -> str:
        """Run a CLI command (its progress bar on our stderr, its stdout captured), calling `tick`
        every `every` seconds meanwhile. Returns its stdout; a nonzero exit is the caller's to judge."""
        self.console.break_line()
        with subprocess.Popen(argv, env=self.env, stdout=subprocess.PIPE, text=True) as child:
            try:
                deadline = time.monotonic() + every
                while child.poll() is None:
                    if time.monotonic() >= deadline:
                        tick()
                        deadline = time.monotonic() + every
                    time.sleep(0.2)
            except BaseException:
                child.terminate()  # SIGTERM to the demo does not reach the child by itself
                child.wait(timeout=30)
                raise
            output = child.stdout.read() if child.stdout else ""
        self.last_exit = child.returncode
        return output

    # --- steps -----------------------------------------------------------------------------------

    def build(self) -> None:
        with self.console.step("build the local control plane (kube-apiserver + etcd, Go)"):
            if kube.binary_path().is_file():
                self.console.detail(
                    f"cached in {kube.binary_path().parent.relative_to(state.project_root())},"
                )
                return
            self.console.say("not built yet: a cold build takes several minutes")
            kube.ensure_binary(self.console.say)

    def start(self, rtt_ms: float) -> None:
        title = f"start emulated regions ({rtt_ms:g} ms RTT), Lambda runner, kube-apiserver, operator"
        with self.console.step(title):
            components = environment.DEFAULT_COMPONENTS | {kube.STATE_SECTION, local_operator.STATE_SECTION}
            result = environment.up(environment.UpOptions(rtt_ms=rtt_ms, components=components))
            if result.already_up:
                raise DemoError(f"a demo already runs in {state.dev_dir()}: stop it with `make demo-down`")
            self.env = {**os.environ, **environment.env_exports()}
            operator = state.read_section(local_operator.STATE_SECTION) or {}
            self.console.say(
                "\n".join(
                    [f"{region}: {entry['local']}" for region, entry in result.regions.items()]
                    + [
                        f"kube-apiserver: KUBECONFIG={self.env['KUBECONFIG']}",
                        f"operator: pid {operator.get('pid')}, as ServiceAccount "
                        f"{local_operator.NAMESPACE}/{local_operator.SERVICE_ACCOUNT}",
                        f"operator log: {operator.get('log')}",
                    ]
                )
            )

    def create_tables(self) -> None:
        names = ", ".join(f"{side.table_name} ({side.region})" for side in self.manifest.spec.regions)
        with self.console.step(f"create the application's tables {names}"):
            create_user_tables(self.manifest, self.env)

    def apply_pair(self) -> None:
        with self.console.step(f"kubectl apply -f {self.pair_file}, wait for Ready"):
            self.console.say(self.kubectl("apply", "-f", str(self.pair_file)).stdout)
            patch = json.dumps({"spec": {"healthCheckIntervalSeconds": DEMO_HEALTH_INTERVAL}})
            self.kubectl("patch", "trp", self.manifest.name, "--type=merge", "-p", patch)
            self.console.say(f"(health every {DEMO_HEALTH_INTERVAL} s for the demo: kubectl patch trp ...)")
            self.show_pairs(headers=True)
            last: str | None = None
            limit = time.monotonic() + 300
            while True:
                status = self.pair_status()
                ready = _condition(status, "Ready")
                fingerprint = json.dumps([ready, status.get("observedGeneration")], sort_keys=True)
                if fingerprint != last:
                    last = fingerprint
                    self.show_pairs(headers=False)
                if ready and ready.get("status") == "True" and status.get("observedGeneration") == 2:
                    return
                if time.monotonic() > limit:
                    raise DemoError(f"the pair is not Ready after 300 s: {ready}")
                time.sleep(1.0)

    def load(self, count: int, rate: float | None) -> dict[str, Any]:
        shared = max(1, count // 10)
        title = f"load {count} writes per region, both at once ({shared} shared keys, deletes, unstamped)"
        with self.console.step(title):
            argv = self.ddbbridge(
                "load", "-f", str(self.pair_file), "--region", "all", "--count", str(count),
                "--conflict-keys", str(shared), "--conflict-ratio", "0.3", "--delete-ratio", "0.05",
                "--unstamped-ratio", "0.1", "--workers", "4", "-o", "json",
                *(["--rate", f"{rate:g}"] if rate else []),
            )  # fmt: skip
            output = self.while_running(argv, DEMO_HEALTH_INTERVAL / 2, self.show_if_changed)
            if self.last_exit != 0:
                raise DemoError(f"ddbbridge load exited {self.last_exit}")
            loaded: dict[str, Any] = json.loads(output)
            self.show_pairs(headers=False)
            return loaded

    def verify(self, wait_seconds: int) -> dict[str, Any]:
        with self.console.step("ddbbridge verify --wait (the pipeline drains, then both tables compared)"):
            argv = self.ddbbridge(
                "verify", "-f", str(self.pair_file), "--wait", str(wait_seconds), "-o", "json"
            )
            output = self.while_running(argv, DEMO_HEALTH_INTERVAL / 2, self.show_if_changed)
            if self.last_exit not in (0, 1):
                raise DemoError(f"ddbbridge verify could not compare the tables (exit {self.last_exit})")
            report: dict[str, Any] = json.loads(output)
            # `converged` is the verdict (exit 0); `equal` in the report is a count of equal items.
            report["demo_equal"] = bool(report["converged"]) and self.last_exit == 0
            self.console.say("verify: " + ("EQUAL" if report["demo_equal"] else "DIFFERENT"))
            return report

    def final_status(self) -> dict[str, Any]:
        """After the drain: wait for one more health pass, so the counts shown are the final ones."""
        with self.console.step("the operator's next health pass (final counts)"):
            started = self.pair_status().get("lastHealthCheckTime")
            limit = time.monotonic() + 3 * DEMO_HEALTH_INTERVAL + 30
            while self.pair_status().get("lastHealthCheckTime") == started and time.monotonic() < limit:
                time.sleep(1.0)
            self.show_pairs(headers=True)
            return self.pair_status()


def create_user_tables(manifest: PairManifest, env: dict[str, str]) -> None:
    """The tables the application already has (the operator never creates user tables)."""
    endpoints = parse_endpoints(env["DDBBRIDGE_ENDPOINTS"])
    for side in manifest.spec.regions:
        client = boto3.client(
            "dynamodb",
            region_name=side.region,
            endpoint_url=endpoints[side.region],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        )
        if side.table_name in client.list_tables()["TableNames"]:
            continue
        client.create_table(
            TableName=side.table_name,
            AttributeDefinitions=[{"AttributeName": "user_id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "user_id", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions", []) if c.get("type") == kind), None)


def summary_lines(
    *,
    manifest: PairManifest,
    loaded: dict[str, Any],
    status: dict[str, Any],
    report: dict[str, Any],
    kubeconfig: str,
    dev_dir: Path,
    kept: bool,
) -> list[str]:
    a, b = manifest.spec.regions
    ready = _condition(status, "Ready") or {}
    lines = [
        f"pair {manifest.name}: {a.name} ({a.region}, {a.table_name})"
        f" <-> {b.name} ({b.region}, {b.table_name})",
        f"  Ready={ready.get('status')} ({ready.get('reason')})",
    ]
    for region in loaded.get("regions", []):
        kinds = ", ".join(f"{n} {kind}s" for kind, n in region["by_operation"].items())
        lines.append(
            f"  loaded into {region['side']}: {region['writes']} writes ({kinds}; "
            f"{region['unstamped']} unstamped, "
            f"{region['shared_key_writes']} to shared keys) at {region['writes_per_second']}/s"
        )
    for direction in status.get("directions", []):
        lines.append(
            f"  replicated {direction['source']} -> {direction['target']}: "
            f"{direction.get('replicatedCount')} changes, "
            f"dead letters {direction.get('dlqDepth')}"
        )
    lines.append(f"  lag {status.get('lagSeconds')} s, DLQ depth {status.get('dlqDepth')}")
    verdict = "EQUAL" if report.get("demo_equal") else "DIFFERENT"
    lines.append(
        f"  verify: {verdict} ({report['a']['items']} items in {a.name}, {report['b']['items']} in {b.name}, "
        f"{report['equal']} equal; missing in {a.name} {report['missing_in_a']}, "
        f"in {b.name} {report['missing_in_b']}; different {report['different']})"
    )
    lines.append(f"  logs: {dev_dir / 'logs'} (operator-kopf.log, runner-lambda.log, regions-*.log)")
    if kept:
        lines += [
            "  poke around:",
            f"    export KUBECONFIG={kubeconfig}",
            f"    kubectl get trp -o wide; kubectl get trp {manifest.name} -o yaml; kubectl get events",
            f'    eval "$(DDBBRIDGE_DEV_DIR={dev_dir} .venv/bin/ddbbridge dev env)"; '
            f".venv/bin/ddbbridge status -f samples/pair.yaml",
            "  stop it all: make demo-down",
        ]
    else:
        lines.append("  keep it running to poke around: make demo KEEP=1 (then make demo-down)")
    return lines


def _interrupt(signum: int, _: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__)
    parser.add_argument("-f", "--pair", default="samples/pair.yaml")
    parser.add_argument("--rtt-ms", type=float, default=150.0)
    parser.add_argument("--count", type=int, default=400, help="writes per region (default %(default)s)")
    parser.add_argument(
        "--rate", type=float, default=50.0, help="writes/s per region, 0 = unlimited (default %(default)s)"
    )
    parser.add_argument("--wait", type=int, default=900, help="seconds verify waits for the drain")
    parser.add_argument("--keep", action="store_true", help="leave everything running (`make demo-down`)")
    parser.add_argument("--dev-dir", type=Path, default=None, help="default: .ddbbridge/demo")
    args = parser.parse_args(argv)

    dev_dir = (args.dev_dir or state.project_root() / DEMO_DIR).resolve()
    os.environ["DDBBRIDGE_DEV_DIR"] = str(dev_dir)  # every component and CLI call of the demo uses it
    pair_file = Path(args.pair)
    manifest = load_manifest(str(pair_file))
    console = Console(total=STEP_COUNT)
    demo = Demo(pair_file, manifest, console)
    signal.signal(signal.SIGTERM, _interrupt)
    began = time.monotonic()
    started = False
    code = 1
    try:
        demo.build()
        started = True  # from here on, whatever `up` recorded is ours to stop
        demo.start(args.rtt_ms)
        demo.create_tables()
        demo.apply_pair()
        loaded = demo.load(args.count, args.rate or None)
        report = demo.verify(args.wait)
        status = demo.final_status()
        code = 0 if report["demo_equal"] else 1
        print("\n=== summary")
        lines = summary_lines(
            manifest=manifest,
            loaded=loaded,
            status=status,
            report=report,
            kubeconfig=demo.env["KUBECONFIG"],
            dev_dir=dev_dir,
            kept=args.keep,
        )
        for line in lines:
            print(line)
        print(f"  demo took {time.monotonic() - began:.0f}s")
    except KeyboardInterrupt:
        console.break_line()
        print("interrupted", file=sys.stderr)
        code = 130
    except (DemoError, environment.DevEnvironmentError, local_operator.LocalOperatorError, OSError) as error:
        console.break_line()
        print(f"demo failed: {error}", file=sys.stderr)
        code = 2
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the teardown short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if started and (not args.keep or code not in (0, 1)):
            print("stopping everything the demo started ...", end="", flush=True)
            stopped = [line for line in environment.down() if line.endswith(("stopped", "TERM timeout"))]
            print(f" {len(stopped)} processes stopped")
        elif started:
            print(f"left running in {dev_dir}; stop it with: make demo-down")
    return code


if __name__ == "__main__":
    sys.exit(main())
