"""`ddbbridge dev ...`: start, inspect and stop the local dev environment (emulated regions, WAN proxy).

Other dev components hook in here: a flag on `up` (see `_add_up` and `_components`) and, when they
have a command of their own, a parser in `register`.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
from typing import Any

from ddbbridge_dev import environment, processes, state
from ddbbridge_dev.runner import service as runner_service


def register(subparsers: Any) -> None:
    dev = subparsers.add_parser("dev", help="local dev environment: emulated AWS regions, WAN delay proxy")
    commands = dev.add_subparsers(dest="dev_command", required=True, metavar="DEV_COMMAND")
    _add_up(commands)
    commands.add_parser("down", help="stop every process `dev up` started").set_defaults(handler=_down)
    commands.add_parser("status", help="report each component; exit 1 if any is down").set_defaults(
        handler=_status
    )
    commands.add_parser("env", help="print shell export lines for the environment").set_defaults(handler=_env)
    wan = commands.add_parser("wan", help="cut or restore the simulated WAN between regions")
    wan.add_argument("action", choices=("cut", "restore"))
    wan.set_defaults(handler=_wan)
    runner = commands.add_parser("runner", help="run the local Lambda runner in the foreground")
    runner_service.add_arguments(runner)
    runner.set_defaults(handler=runner_service.run_foreground)


def _add_up(commands: Any) -> None:
    up = commands.add_parser("up", help="start one emulated region per --regions entry (and the WAN proxy)")
    up.add_argument("--detach", action="store_true", help="return once up; stop later with `dev down`")
    up.add_argument(
        "--regions",
        type=lambda text: tuple(part.strip() for part in text.split(",") if part.strip()),
        default=environment.DEFAULT_REGIONS,
        help="comma-separated AWS regions (default: %(default)s)",
    )
    up.add_argument(
        "--rtt-ms", type=float, default=0.0, help="simulated round trip between regions (0: none)"
    )
    up.add_argument("--no-runner", action="store_true", help="do not start the local Lambda runner")
    up.add_argument(
        "--kube",
        action="store_true",
        help="also start a local Kubernetes control plane (etcd + kube-apiserver; built on first use)",
    )
    up.add_argument(
        "--operator",
        action="store_true",
        help="also install the CRD and dev overlay and run the operator as a local process (implies --kube)",
    )
    up.set_defaults(handler=_up)


def _components(args: argparse.Namespace) -> frozenset[str]:
    components = environment.DEFAULT_COMPONENTS
    if getattr(args, "no_runner", False):
        components -= {"runner"}
    if getattr(args, "kube", False):
        components |= {"kube"}
    if getattr(args, "operator", False):
        components |= {"kube", "operator"}
    return components


def _up(args: argparse.Namespace) -> int:
    options = environment.UpOptions(regions=args.regions, rtt_ms=args.rtt_ms, components=_components(args))
    try:
        result = environment.up(options)
    except (environment.DevEnvironmentError, OSError, RuntimeError, TimeoutError) as error:
        print(f"dev up failed: {error}", file=sys.stderr)
        return 1
    if result.already_up:
        print("dev environment is already up (see `ddbbridge dev status`; `ddbbridge dev down` stops it)")
        return 0
    for region, entry in result.regions.items():
        via = f", remote {entry['remote']}" if entry["remote"] != entry["local"] else ""
        print(f"region {region}: {entry['local']}{via} (pid {entry['pid']})")
    kube_section = state.read_section("kube")
    if kube_section:
        print(f"kubernetes: {kube_section['server']} (KUBECONFIG={kube_section['kubeconfig']})")
    print(f"dev environment up in {result.seconds:.1f}s")
    if args.detach:
        return 0
    return _foreground()


def _foreground() -> int:
    """Stay up until Ctrl-C or SIGTERM, then tear down what we started."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    print("running in the foreground; Ctrl-C stops everything")
    reported: set[int] = set()
    while not stop.wait(1.0):
        for record in environment.recorded_processes():
            if record["pid"] not in reported and not processes.is_running(record):
                reported.add(record["pid"])
                print(
                    f"warning: {record['component']}/{record['name']} exited; log {record['log']}",
                    file=sys.stderr,
                )
    return _down(argparse.Namespace())


def _down(_: argparse.Namespace) -> int:
    report = environment.down()
    for line in report:
        print(line)
    if not report:
        print("nothing to stop")
    return 0


def _status(_: argparse.Namespace) -> int:
    results = environment.status()
    if not results:
        print("dev environment is not up")
        return 1
    for item in results:
        print(f"{'ok  ' if item.ok else 'DOWN'} {item.component}/{item.name}: {item.detail}")
    return 0 if all(item.ok for item in results) else 1


def _env(_: argparse.Namespace) -> int:
    try:
        exports = environment.env_exports()
    except environment.DevEnvironmentError as error:
        print(str(error), file=sys.stderr)
        return 1
    for name, value in exports.items():
        print(f"export {name}={shlex.quote(value)}")
    return 0


def _wan(args: argparse.Namespace) -> int:
    try:
        result = environment.wan(args.action)
    except (environment.DevEnvironmentError, OSError) as error:
        print(f"dev wan {args.action} failed: {error}", file=sys.stderr)
        return 1
    state = "cut" if result.get("cut") else "up"
    print(f"WAN link {state} (rtt {result.get('rtt_ms')} ms)")
    return 0
