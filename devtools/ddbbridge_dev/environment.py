"""The local dev environment: emulated regions, the WAN delay proxy, and (added by their owners) more.

State lives in the dev dir's state file (`ddbbridge_dev.state`), one section per component:
  environment {"regions": [...], "rtt_ms", "components": [...]}   what `up` was asked for
  processes  {"records": [ProcessRecord, ...]}   every background process, in start order
  regions    {region: {port, pid, log, local, remote}}
  proxy      {pid, rtt_ms, ports: {region: port}, control_port, control, log}

Adding a component (runner, kube): write `start_<component>(ctx: UpContext) -> None` that starts its
processes with `ctx.spawn(...)` (so `down` and `status` handle them with no further change) and writes
its own state section; put it in STARTERS and START_ORDER; add its name to DEFAULT_COMPONENTS if `dev up`
should start it by default. A section holding an `"env": {NAME: value}` mapping adds those exports to
`dev env`. `status` checks every recorded process; a component with a deeper health check adds it to
HEALTH_CHECKS.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ddbbridge_dev import kube, local_operator, processes, state
from ddbbridge_dev.processes import ProcessRecord

DEFAULT_REGIONS: tuple[str, ...] = ("cn-north-1", "ap-southeast-1")
DEFAULT_COMPONENTS: frozenset[str] = frozenset({"regions", "proxy", "runner"})
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
PROCESSES_SECTION = "processes"
HOST = "127.0.0.1"


@dataclass(frozen=True)
class UpOptions:
    regions: tuple[str, ...] = DEFAULT_REGIONS
    rtt_ms: float = 0.0
    components: frozenset[str] = DEFAULT_COMPONENTS
    start_timeout: float = 120.0  # seconds per component; moto imports slowly on a busy machine


@dataclass
class UpContext:
    """What a component's starter gets: the options, where to put files, and `spawn`."""

    options: UpOptions
    dev_dir: Path
    started: list[ProcessRecord] = field(default_factory=list)

    def spawn(
        self, component: str, name: str, argv: list[str], env: Mapping[str, str] | None = None
    ) -> ProcessRecord:
        log = self.dev_dir / "logs" / f"{component}-{name}.log"
        record = processes.spawn(component, name, argv, log, env)
        self.started.append(record)
        # Recorded at once, so even a start that fails half-way leaves nothing `down` cannot stop.
        state.write_section(PROCESSES_SECTION, {"records": list(self.started)})
        return record

    def ready_file(self, component: str, name: str) -> Path:
        path = self.dev_dir / "run" / f"{component}-{name}.ready"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        return path


@dataclass(frozen=True)
class UpResult:
    already_up: bool
    seconds: float
    regions: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class ComponentStatus:
    component: str
    name: str
    ok: bool
    detail: str


class DevEnvironmentError(RuntimeError):
    """The dev environment could not be started or is not in the expected state."""


def url(port: int) -> str:
    return f"http://{HOST}:{port}"


def http_json(address: str, method: str = "GET", timeout: float = 5.0, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(address, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


def running_records() -> list[ProcessRecord]:
    section = state.read_section(PROCESSES_SECTION) or {}
    return [record for record in section.get("records", []) if processes.is_running(record)]


def recorded_processes() -> list[ProcessRecord]:
    section = state.read_section(PROCESSES_SECTION) or {}
    return list(section.get("records", []))


# --- regions -------------------------------------------------------------------------------------


def start_regions(ctx: UpContext) -> None:
    launched: list[tuple[str, ProcessRecord, Path]] = []
    for region in ctx.options.regions:  # all start in parallel; each takes seconds to import moto
        ready = ctx.ready_file("regions", region)
        argv = processes.python_module_argv(
            "ddbbridge_dev.launcher", "--region", region, "--port", "0", "--ready-file", str(ready)
        )
        launched.append((region, ctx.spawn("regions", region, argv), ready))
    section: dict[str, Any] = {}
    for region, record, ready in launched:
        port = int(json.loads(processes.wait_for_file(ready, record, ctx.options.start_timeout))["port"])
        _wait_for_health(region, port, record, ctx.options.start_timeout)
        local = url(port)
        section[region] = {
            "port": port,
            "pid": record["pid"],
            "log": record["log"],
            "local": local,
            "remote": local,
        }
    state.write_section("regions", section)


def _wait_for_health(region: str, port: int, record: ProcessRecord, timeout: float) -> None:
    limit = time.monotonic() + timeout
    while True:
        try:
            health = http_json(url(port) + "/_ddbbridge/health", timeout=2.0)
            if health.get("region") == region and health.get("pid") == record["pid"]:
                return
            raise DevEnvironmentError(
                f"port {port} answered as {health}, not region {region} (pid {record['pid']})"
            )
        except (OSError, ValueError) as error:
            if time.monotonic() > limit or not processes.is_running(record):
                raise DevEnvironmentError(
                    f"region {region} does not answer: {error}; see {record['log']}"
                ) from error
            time.sleep(0.05)


def _region_health(region: str, entry: Mapping[str, Any]) -> ComponentStatus:
    try:
        health = http_json(str(entry["local"]) + "/_ddbbridge/health", timeout=3.0)
    except (OSError, ValueError) as error:
        return ComponentStatus("regions", region, False, f"{entry.get('local')} does not answer: {error}")
    ok = health.get("region") == region and health.get("pid") == entry.get("pid")
    detail = f"answers at {entry['local']}" if ok else f"{entry['local']} answers as {health}"
    return ComponentStatus("regions", region, ok, detail)


# --- WAN delay proxy -----------------------------------------------------------------------------


def start_proxy(ctx: UpContext) -> None:
    if ctx.options.rtt_ms <= 0:
        return  # remote == local: nothing to delay
    regions = state.read_section("regions") or {}
    ready = ctx.ready_file("proxy", "wan")
    argv = processes.python_module_argv(
        "ddbbridge_dev.proxy", "--rtt-ms", f"{ctx.options.rtt_ms:g}", "--ready-file", str(ready)
    )
    for region, entry in regions.items():
        argv += ["--route", f"{region}={HOST}:{entry['port']}"]
    record = ctx.spawn("proxy", "wan", argv)
    info = json.loads(processes.wait_for_file(ready, record, ctx.options.start_timeout))
    for region, entry in regions.items():
        entry["remote"] = url(int(info["ports"][region]))
    state.write_section("regions", regions)
    state.write_section(
        "proxy",
        {
            "pid": record["pid"],
            "rtt_ms": ctx.options.rtt_ms,
            "ports": info["ports"],
            "control_port": info["control_port"],
            "control": url(int(info["control_port"])),
            "log": record["log"],
        },
    )


def _proxy_health(_: str, section: Mapping[str, Any]) -> ComponentStatus:
    try:
        status = http_json(str(section["control"]) + "/status", timeout=3.0)
    except (OSError, ValueError, KeyError) as error:
        return ComponentStatus("proxy", "wan", False, f"control port does not answer: {error}")
    link = "CUT" if status.get("cut") else "up"
    return ComponentStatus("proxy", "wan", True, f"rtt {status.get('rtt_ms')} ms, link {link}")


def wan(action: str) -> dict[str, Any]:
    """`cut` or `restore` the delay proxy's links."""
    section = state.read_section("proxy")
    if not section:
        raise DevEnvironmentError("no WAN proxy is running (start with `ddbbridge dev up --rtt-ms N`, N > 0)")
    result: dict[str, Any] = http_json(f"{section['control']}/{action}", method="POST", body={})
    return result


# --- local Lambda runner ------------------------------------------------------------------------


def start_runner(ctx: UpContext) -> None:
    """The local Lambda runner: serves every region's event source mappings (it re-reads the regions
    section live, so it needs nothing from this context but the dev dir in its environment)."""
    record = ctx.spawn("runner", "lambda", processes.python_module_argv("ddbbridge_dev.runner"))
    state.write_section("runner", {"pid": record["pid"], "log": record["log"], "mode": "background"})


# --- local Kubernetes control plane -------------------------------------------------------------


def start_kube(ctx: UpContext) -> None:
    """kube-apiserver + etcd + controllers in one process (`ddbbridge_dev.kube`). Its binary is built on
    first use (minutes), before the process starts, so the build does not count against the timeout."""

    def spawn(argv: list[str]) -> tuple[int, Path]:
        record = ctx.spawn(kube.STATE_SECTION, "apiserver", argv)
        return record["pid"], Path(record["log"])

    timeout = max(ctx.options.start_timeout, kube.DEFAULT_READY_TIMEOUT)
    cluster = kube.launch(ctx.dev_dir, ready_timeout=timeout, spawn=spawn)
    state.write_section(kube.STATE_SECTION, kube.section(cluster))


def _kube_health(name: str, section: Mapping[str, Any]) -> ComponentStatus:
    if not section:
        return ComponentStatus(kube.STATE_SECTION, name, False, "not recorded in the state file")
    ok, detail = kube.health(dict(section))
    return ComponentStatus(kube.STATE_SECTION, name, ok, detail)


# --- the operator, as a local process (needs kube) ----------------------------------------------


def start_operator(ctx: UpContext) -> None:
    """Install the CRD and the dev overlay (endpoints of this environment) into the local control plane
    and run the overlay's Deployment as a local process on its ServiceAccount (`local_operator`)."""
    kube_section = state.read_section(kube.STATE_SECTION)
    if not kube_section:
        raise DevEnvironmentError("the operator needs the local Kubernetes control plane (kube)")
    kubectl = local_operator.Kubectl(Path(kube_section["kubeconfig"]))
    exports = env_exports()
    endpoints_now = {name: exports[name] for name in ("DDBBRIDGE_ENDPOINTS", "DDBBRIDGE_PEER_ENDPOINTS")}
    documents = local_operator.with_endpoints(
        local_operator.render(local_operator.DEV_OVERLAY), endpoints_now
    )
    local_operator.install(kubectl, documents, ctx.options.start_timeout)
    kubeconfig = local_operator.service_account_kubeconfig(kubectl, ctx.dev_dir / "operator.kubeconfig")
    container = local_operator.operator_container(documents)
    liveness, metrics = local_operator.free_port(), local_operator.free_port()
    environment = local_operator.process_environment(
        local_operator.container_environment(container, documents), kubeconfig
    )
    record = ctx.spawn(
        local_operator.STATE_SECTION,
        "kopf",
        local_operator.local_argv(container, liveness, metrics),
        environment,
    )
    liveness_url = f"{url(liveness)}{local_operator.LIVENESS_PATH}"
    local_operator.wait_alive(
        liveness_url, lambda: processes.is_running(record), record["log"], ctx.options.start_timeout
    )
    state.write_section(
        local_operator.STATE_SECTION,
        {
            "pid": record["pid"],
            "log": record["log"],
            "liveness": liveness_url,
            "metrics": f"{url(metrics)}/metrics",
            "kubeconfig": str(kubeconfig),
        },
    )


def _operator_health(name: str, section: Mapping[str, Any]) -> ComponentStatus:
    address = str(section.get("liveness", ""))
    if local_operator.liveness_ok(address):
        return ComponentStatus(
            local_operator.STATE_SECTION, name, True, f"live at {address}, log {section.get('log')}"
        )
    return ComponentStatus(local_operator.STATE_SECTION, name, False, f"{address} does not answer")


# --- the environment as a whole ------------------------------------------------------------------

Starter = Callable[[UpContext], None]
STARTERS: dict[str, Starter] = {
    "regions": start_regions,
    "proxy": start_proxy,
    "runner": start_runner,
    "kube": start_kube,
    local_operator.STATE_SECTION: start_operator,
}
START_ORDER: tuple[str, ...] = ("regions", "proxy", "runner", "kube", local_operator.STATE_SECTION)
# Per-section health checks beyond "its processes run": (section, check(name, entry) per entry or whole).
HEALTH_CHECKS: dict[str, Callable[[str, Mapping[str, Any]], ComponentStatus]] = {
    "proxy": _proxy_health,
    "kube": _kube_health,
    local_operator.STATE_SECTION: _operator_health,
}
# What `down` removes after the processes stopped: (section, cleanup(section)) for files they leave.
CLEANUPS: dict[str, Callable[[dict[str, Any]], None]] = {
    kube.STATE_SECTION: kube.cleanup,
    local_operator.STATE_SECTION: local_operator.cleanup,
}
# Sections `down` clears besides those of recorded processes.
SECTIONS: tuple[str, ...] = (PROCESSES_SECTION, "environment", "regions", "proxy")


def up(options: UpOptions) -> UpResult:
    """Start what `options` asks for; if anything of ours already runs, report it and start nothing."""
    began = time.monotonic()
    if running_records():
        return UpResult(True, 0.0, regions_in_order())
    unknown = options.components - set(STARTERS)
    if unknown:
        raise DevEnvironmentError(f"unknown components: {sorted(unknown)}")
    if local_operator.STATE_SECTION in options.components and "kube" not in options.components:
        raise DevEnvironmentError("the operator needs the local Kubernetes control plane (kube)")
    if not options.regions or len(set(options.regions)) != len(options.regions):
        raise DevEnvironmentError(f"regions must be distinct and non-empty: {options.regions}")
    _clear_state()  # whatever was recorded is dead
    ctx = UpContext(options, state.dev_dir())
    state.write_section(
        "environment",
        {
            "regions": list(options.regions),
            "rtt_ms": options.rtt_ms,
            "components": sorted(options.components),
        },
    )
    try:
        for component in START_ORDER:
            if component in options.components:
                STARTERS[component](ctx)
    except BaseException:
        down()
        raise
    return UpResult(False, time.monotonic() - began, regions_in_order())


def down() -> list[str]:
    """Stop exactly the processes we recorded (newest first) and clear the state. Returns a report."""
    records = recorded_processes()
    report = [processes.stop(record) for record in reversed(records)]
    for section_name, cleanup in CLEANUPS.items():
        section = state.read_section(section_name)
        if section:
            cleanup(section)
            report.append(f"{section_name}: removed {section.get('data_dir', 'its files')}")
    _clear_state({record["component"] for record in records})
    return report


def _clear_state(extra_sections: set[str] | None = None) -> None:
    for section in (*SECTIONS, *sorted(extra_sections or set())):
        state.write_section(section, None)


def status() -> list[ComponentStatus]:
    """One line per recorded process and per health check; empty when nothing was started."""
    results: list[ComponentStatus] = []
    regions = state.read_section("regions") or {}
    for record in recorded_processes():
        component, name = record["component"], record["name"]
        if not processes.is_running(record):
            results.append(
                ComponentStatus(component, name, False, f"pid {record['pid']} is gone; log {record['log']}")
            )
        elif component == "regions" and name in regions:
            results.append(_region_health(name, regions[name]))
        elif component in HEALTH_CHECKS:
            results.append(HEALTH_CHECKS[component](name, state.read_section(component) or {}))
        else:
            results.append(ComponentStatus(component, name, True, f"pid {record['pid']} running"))
    return results


def regions_in_order() -> dict[str, dict[str, Any]]:
    """The regions section in the order `up` was given them (the state file sorts its keys)."""
    regions = state.read_section("regions") or {}
    order = (state.read_section("environment") or {}).get("regions", [])
    ranked = sorted(regions, key=lambda region: order.index(region) if region in order else len(order))
    return {region: regions[region] for region in ranked}


def endpoints(kind: str = "local") -> dict[str, str]:
    """Region -> endpoint URL; `remote` goes through the WAN proxy (what the other region uses)."""
    return {region: str(entry[kind]) for region, entry in regions_in_order().items()}


def env_exports() -> dict[str, str]:
    """The variables `dev env` prints, in order."""
    regions = regions_in_order()
    if not regions:
        raise DevEnvironmentError("the dev environment is not up (run `ddbbridge dev up --detach`)")
    exports = {
        "DDBBRIDGE_ENDPOINTS": ",".join(f"{r}={e['local']}" for r, e in regions.items()),
        "DDBBRIDGE_PEER_ENDPOINTS": ",".join(f"{r}={e['remote']}" for r, e in regions.items()),
        **DUMMY_CREDENTIALS,
        "AWS_DEFAULT_REGION": next(iter(regions)),
    }
    default_dir = state.project_root() / ".ddbbridge" / "dev"
    if state.dev_dir().resolve() != default_dir.resolve():
        exports["DDBBRIDGE_DEV_DIR"] = str(state.dev_dir())
    for section_name, section in sorted(state.load_state().items()):
        extra = section.get("env") if isinstance(section, dict) and section_name != "regions" else None
        if isinstance(extra, dict):
            exports.update({str(k): str(v) for k, v in extra.items()})
    return exports
