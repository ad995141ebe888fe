"""`make demo`: the whole system on emulated regions, start to finish, then a one-screen summary.

Steps: emulated cn-north-1 and ap-southeast-1 with a simulated cross-border RTT and the local Lambda
runner -> the user tables -> `ddbbridge reconcile` -> conflicting load in both regions -> status while
the pipeline drains -> `ddbbridge verify --wait` -> summary -> everything stopped (unless --keep).
The demo uses its own dev dir (`.ddbbridge/demo`), so it never touches a `dev up` of yours.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import boto3

from ddbbridge.aws import parse_endpoints
from ddbbridge.spec import PairManifest, load_manifest
from ddbbridge_dev import state

DEMO_DIR_NAME = "demo"


@dataclass
class Timeline:
    """Wall time of each step, for the summary."""

    steps: list[tuple[str, float]] = field(default_factory=list)

    def run(self, title: str, argv: Sequence[str], env: dict[str, str], check: bool = True) -> int:
        banner(title)
        print("$ " + " ".join(argv), flush=True)
        started = time.monotonic()
        code = subprocess.call(list(argv), env=env)
        self.steps.append((title, time.monotonic() - started))
        if check and code != 0:
            raise SystemExit(f"demo: step '{title}' failed with exit code {code}")
        return code


def banner(title: str) -> None:
    print(f"\n=== {title}", flush=True)


def ddbbridge(*args: str) -> list[str]:
    return [sys.executable, "-m", "ddbbridge.cli", *args]


def demo_environment(dev_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["DDBBRIDGE_DEV_DIR"] = str(dev_dir)
    return env


def exports_of(env: dict[str, str]) -> dict[str, str]:
    """The `dev env` exports, read back into a mapping."""
    output = subprocess.run(
        ddbbridge("dev", "env"), env=env, check=True, capture_output=True, text=True
    ).stdout
    exported: dict[str, str] = {}
    for line in output.splitlines():
        if line.startswith("export ") and "=" in line:
            name, _, value = line[len("export ") :].partition("=")
            exported[name] = value.strip("'\"")
    return exported


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
        print(f"created table {side.table_name} in {side.region} (hash key user_id)")


def status_json(pair_file: str, env: dict[str, str]) -> list[dict[str, object]]:
    result = subprocess.run(
        ddbbridge("status", "-f", pair_file, "-o", "json"),
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        return []
    directions: list[dict[str, object]] = json.loads(result.stdout)["directions"]
    return directions


def summary(
    manifest: PairManifest, timeline: Timeline, verify_code: int, directions: list[dict[str, object]]
) -> None:
    banner("summary")
    a, b = manifest.spec.regions
    print(
        f"pair {manifest.name}: {a.name} ({a.region}, {a.table_name})"
        f" <-> {b.name} ({b.region}, {b.table_name})"
    )
    for direction in directions:
        print(
            f"  {direction['source']} -> {direction['target']}: "
            f"replicated {direction['replicated_count']}, last batch lag {direction['lag_seconds']} s, "
            f"dead letters {direction['dlq_depth']}"
        )
    for title, seconds in timeline.steps:
        print(f"  {title:<40} {seconds:7.1f}s")
    print(
        "  verify: "
        + ("EQUAL - both tables hold exactly the same items" if verify_code == 0 else "DIFFERENT")
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__)
    parser.add_argument("-f", "--pair", default="samples/pair.yaml")
    parser.add_argument("--rtt-ms", type=float, default=150.0)
    parser.add_argument("--count", type=int, default=1000, help="writes per region")
    parser.add_argument("--keep", action="store_true", help="leave the environment running")
    args = parser.parse_args(argv)

    dev_dir = state.project_root() / ".ddbbridge" / DEMO_DIR_NAME
    env = demo_environment(dev_dir)
    manifest = load_manifest(args.pair)
    timeline = Timeline()
    verify_code = 1
    try:
        timeline.run(
            f"start emulated regions ({args.rtt_ms:g} ms RTT) and the Lambda runner",
            ddbbridge("dev", "up", "--detach", "--rtt-ms", f"{args.rtt_ms:g}"),
            env,
        )
        env.update(exports_of(env))
        banner("create the application's tables")
        create_user_tables(manifest, env)
        timeline.run("reconcile both regions", ddbbridge("reconcile", "-f", args.pair), env)
        timeline.run("second reconcile (must change nothing)", ddbbridge("reconcile", "-f", args.pair), env)
        timeline.run(
            f"load {args.count} writes per region, 10% shared keys",
            ddbbridge(
                "load",
                "-f",
                args.pair,
                "--region",
                "all",
                "--count",
                str(args.count),
                "--conflict-keys",
                str(max(1, args.count // 10)),
                "--delete-ratio",
                "0.05",
                "--unstamped-ratio",
                "0.1",
                "--workers",
                "4",
            ),
            env,
        )
        timeline.run("status while draining", ddbbridge("status", "-f", args.pair), env, check=False)
        verify_code = timeline.run(
            "verify (waits for the pipeline to drain)",
            ddbbridge("verify", "-f", args.pair, "--wait", "600"),
            env,
            check=False,
        )
        timeline.run("status after drain", ddbbridge("status", "-f", args.pair), env, check=False)
        summary(manifest, timeline, verify_code, status_json(args.pair, env))
    finally:
        if not args.keep:
            banner("stop everything the demo started")
            subprocess.call(ddbbridge("dev", "down"), env=env)
        else:
            print(f"\nleft running; stop with: DDBBRIDGE_DEV_DIR={dev_dir} ddbbridge dev down")
    return 0 if verify_code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
