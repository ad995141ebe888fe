"""The `ddbbridge` command line: one subcommand per module, each registering its own parser."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Modules that expose `register(subparsers)`; each sets `handler` on its parser.
COMMAND_MODULES: tuple[str, ...] = (
    "ddbbridge_dev.cli",
    "ddbbridge_dev.bench.cli",  # dev tooling; imports the bench only when it runs
    "ddbbridge.load",
    "ddbbridge.verify",
    "ddbbridge.backfill",
    "ddbbridge.dlq",
    "ddbbridge.lifecycle_cli",
    "ddbbridge.crd",
    "ddbbridge.docs",
    "ddbbridge.kopf_app.entry",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ddbbridge",
        description="Active-active DynamoDB replication between AWS partitions.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.handler(args)
    except KeyboardInterrupt:
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
