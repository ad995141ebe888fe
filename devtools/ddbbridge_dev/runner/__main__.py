"""`python -m ddbbridge_dev.runner [--fast] [--endpoints region=url,...]`: the runner in the foreground."""

from __future__ import annotations

import argparse
import sys

from ddbbridge_dev.runner.service import add_arguments, run_foreground


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m ddbbridge_dev.runner", description=__doc__)
    add_arguments(parser)
    return run_foreground(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
