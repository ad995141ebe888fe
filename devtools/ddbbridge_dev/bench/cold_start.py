"""What one cold start of each handler costs: CPU seconds and resident MiB of its `_build()`.

    python -m ddbbridge_dev.bench.cold_start [--runs 5]

Each run is a fresh interpreter (as a new Lambda worker is) that imports the handler module, then
times the real `_build()` (configuration, boto3 session, clients) and the sender's first peer
Kinesis client. No AWS call is made: the peer key is given in-process instead of read from SSM.
Prints the median per role.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from ddbbridge_lambdas import applier, config, sender

ROLES = ("sender", "applier")

# A complete handler configuration (SSM-key peer credentials); the endpoints are never contacted.
HANDLER_CONFIG = {
    "pair": "cold-start",
    "local_region_name": "cn",
    "local_region": "cn-north-1",
    "peer_region_name": "sg",
    "peer_region": "ap-southeast-1",
    "table_name": "users-cn",
    "ledger_table": "ledger",
    "stats_table": "stats",
    "dead_letter_queue_url": "http://127.0.0.1:9/queue/dlq",
    "peer_stream_name": "to-sg",
    "peer_access_key_parameter": "/cold-start/access-key-id",
    "peer_secret_key_parameter": "/cold-start/secret-access-key",
    "key_schema": [{"name": "PK", "type": "S"}],
}


def _resident_mib() -> float:
    with open("/proc/self/statm", encoding="ascii") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def probe(role: str) -> dict[str, float]:
    """In this (fresh) process: build the handler's runtime once and measure it."""
    os.environ.update(
        {
            config.ENV_VAR: json.dumps(HANDLER_CONFIG),
            "AWS_ACCESS_KEY_ID": "cold-start",
            "AWS_SECRET_ACCESS_KEY": "cold-start",
        }
    )
    before_mib, before_cpu = _resident_mib(), time.process_time()
    if role == "sender":
        built = sender._build()
        assert built.peer.credentials is not None
        built.peer.credentials.get = lambda: ("AKIACOLDSTART", "not-a-secret")  # type: ignore[method-assign]
        built.peer.client()
    else:
        applier._build()
    return {
        "cpu_s": time.process_time() - before_cpu,
        "added_mib": _resident_mib() - before_mib,
        "resident_mib": _resident_mib(),
    }


def measure(role: str, runs: int) -> dict[str, Any]:
    samples = []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-m", "ddbbridge_dev.bench.cold_start", "--probe", role],
            check=True,
            capture_output=True,
            text=True,
        )
        samples.append(json.loads(done.stdout))
    return {
        name: round(statistics.median(sample[name] for sample in samples), 3)
        for name in ("cpu_s", "added_mib", "resident_mib")
    } | {"runs": runs}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--probe", choices=ROLES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        print(json.dumps(probe(args.probe)))
        return 0
    for role in ROLES:
        figures = measure(role, args.runs)
        print(
            f"{role}: _build {figures['cpu_s']:.3f} s CPU, +{figures['added_mib']:.1f} MiB "
            f"(resident {figures['resident_mib']:.1f} MiB; median of {figures['runs']})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
