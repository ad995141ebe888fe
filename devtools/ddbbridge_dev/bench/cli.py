"""`ddbbridge bench`: register the command; the bench itself is imported only when it runs, so
the product's CLI does not load matplotlib, psutil or the emulators to print its help."""

from __future__ import annotations

import argparse
from typing import Any

DEFAULT_OUT = "bench-results"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="dev: benchmark our pipeline against the naive per-item design over a simulated WAN",
    )
    parser.add_argument("--rtt-ms", type=float, default=150.0, help="simulated RTT (default 150)")
    parser.add_argument(
        "--load-share",
        type=float,
        default=0.3,
        help="offered writes/s per region as a share of the measured PutItem ceiling (default 0.3)",
    )
    parser.add_argument("--load-seconds", type=float, default=30.0, help="load duration of (a) and (c)")
    parser.add_argument("--naive-writes", type=int, default=200, help="writes per region in (b)")
    parser.add_argument(
        "--phases", default="ours,naive,conflicts", help="comma-separated subset of ours,naive,conflicts"
    )
    parser.add_argument("--out", default=DEFAULT_OUT, help="output folder (default %(default)s)")
    parser.add_argument(
        "--publish",
        action="store_true",
        help="also copy the table and figure to docs/bench/ and refresh the README section",
    )
    parser.add_argument("--profile", action="store_true", help="py-spy the runner and handlers in (a)")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from ddbbridge_dev.bench.publish import main  # noqa: PLC0415  (lazy: heavy imports)

    return main(args)
