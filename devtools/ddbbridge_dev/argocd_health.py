"""Run an Argo CD `health.lua` the way Argo CD does, with a real Lua 5.1 interpreter (lupa).

Argo CD (util/lua) runs health scripts in gopher-lua (Lua 5.1) with only the package, base, table and
a safe `os` library opened (no `string`, no `math`, no `io`), the resource as the global `obj` (JSON
arrays as 1-based tables, JSON null as nil), and reads the table the script returns: `status` must be
one of its health codes (otherwise the result is Unknown) and `message` defaults to "". Its own tests
live beside the script as `health_test.yaml` (cases of `inputPath` + expected `healthStatus`) and
`testdata/*.yaml`; `health_cases` reads that same layout.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from lupa import lua51  # type: ignore[import-untyped]

HEALTH_CODES = frozenset({"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"})
INVALID_STATUS_MESSAGE = "Lua returned an invalid health status"

# What gopher-lua lacks under Argo CD: drop the libraries it never opens, keep a safe `os`, and cut
# the string methods (`("x"):upper()`) that only the string library would provide.
_SANDBOX = """
local safe_os = { time = os.time, clock = os.clock, date = os.date, difftime = os.difftime }
getmetatable("").__index = nil
string, math, io, debug, coroutine = nil, nil, nil, nil, nil
dofile, loadfile = nil, nil
os = safe_os
"""


@dataclass(frozen=True)
class HealthStatus:
    status: str
    message: str = ""


@dataclass(frozen=True)
class HealthCase:
    input_path: Path
    expected: HealthStatus

    @property
    def name(self) -> str:
        return self.input_path.stem


def _plain(value: Any) -> Any:
    # YAML timestamps stay strings in Kubernetes objects; PyYAML would hand back datetimes.
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _to_lua(runtime: Any, value: Any) -> Any:
    if isinstance(value, dict):
        return runtime.table_from(
            {key: _to_lua(runtime, item) for key, item in value.items() if item is not None}
        )
    if isinstance(value, list):
        return runtime.table_from([_to_lua(runtime, item) for item in value])
    return value


def run_health(script: str, obj: dict[str, Any]) -> HealthStatus:
    """Evaluate `script` against `obj` exactly as Argo CD's ExecuteHealthLua does."""
    runtime = lua51.LuaRuntime(unpack_returned_tuples=False)
    runtime.execute(_SANDBOX)
    runtime.globals()["obj"] = _to_lua(runtime, _plain(obj))
    result = runtime.execute(script)
    if lua51.lua_type(result) != "table":
        raise TypeError(f"expect table output from Lua script, not {lua51.lua_type(result)}")
    status = result["status"]
    message = result["message"]
    if status not in HEALTH_CODES:
        return HealthStatus("Unknown", INVALID_STATUS_MESSAGE)
    return HealthStatus(str(status), "" if message is None else str(message))


def health_cases(folder: Path) -> list[HealthCase]:
    """The cases of `folder/health_test.yaml`, input paths resolved against `folder`."""
    document = yaml.safe_load((folder / "health_test.yaml").read_text(encoding="utf-8"))
    cases = []
    for test in document["tests"]:
        expected = test["healthStatus"]
        cases.append(
            HealthCase(
                input_path=folder / test["inputPath"],
                expected=HealthStatus(expected["status"], expected.get("message", "")),
            )
        )
    return cases


def load_object(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = _plain(yaml.safe_load(path.read_text(encoding="utf-8")))
    return document


CONFIG_MAP_KEY = "resource.customizations.health.ddbbridge.io_TableReplicationPair"
REPOSITORY = Path(__file__).resolve().parents[2]
HEALTH_DIR = REPOSITORY / "argocd" / "health" / "ddbbridge.io" / "TableReplicationPair"
CONFIG_MAP_FILE = REPOSITORY / "argocd" / "argocd-cm.yaml"


def argocd_cm(script: str) -> str:
    """The argocd-cm ConfigMap fragment carrying `script` verbatim as the pair's health check."""
    body = "".join(f"    {line}\n" if line else "\n" for line in script.splitlines())
    return (
        "# Generated from argocd/health/ddbbridge.io/TableReplicationPair/health.lua by\n"
        "# `python -m ddbbridge_dev.argocd_health`; a test fails while the two differ.\n"
        "# Merge into Argo CD's argocd-cm (e.g. as a kustomize patch of the Argo CD install) so the\n"
        "# Application shows pairs as Healthy / Progressing / Degraded / Suspended.\n"
        "apiVersion: v1\n"
        "kind: ConfigMap\n"
        "metadata:\n"
        "  name: argocd-cm\n"
        "  namespace: argocd\n"
        "  labels:\n"
        "    app.kubernetes.io/name: argocd-cm\n"
        "    app.kubernetes.io/part-of: argocd\n"
        "data:\n"
        f"  {CONFIG_MAP_KEY}: |\n"
        f"{body}"
    )


if __name__ == "__main__":
    CONFIG_MAP_FILE.write_text(
        argocd_cm((HEALTH_DIR / "health.lua").read_text(encoding="utf-8")), encoding="utf-8"
    )
    print(f"wrote {CONFIG_MAP_FILE}")
