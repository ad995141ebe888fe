"""The operator as a local process, started the way the dev overlay's Deployment starts it.

There is no kubelet in the local control plane, so the Deployment is never scheduled. Instead this
module renders `manifests/overlays/dev` with `kubectl kustomize` (what a user applies), installs the
CRD and everything of the rendering except the Deployment (namespace, ServiceAccount, RBAC,
NetworkPolicy, the environment ConfigMap with this machine's endpoints), and runs the rendered
container's command and args as a local process with the container's environment resolved from that
ConfigMap, logged in with a token of the operator's ServiceAccount: the shipped RBAC is what it gets.
Only the probe ports move (free ports on 127.0.0.1), and the AWS credentials are the emulators' dummy
ones (in a pod they would come from IRSA or the default chain).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ddbbridge_dev import state

DEV_OVERLAY = Path("manifests") / "overlays" / "dev"
CRDS = Path("crds")
NAMESPACE = "ddbbridge-system"
SERVICE_ACCOUNT = "ddbbridge-operator"
DEPLOYMENT = "ddbbridge-operator"
STATE_SECTION = "operator"
LIVENESS_PATH = "/healthz"
# The credential Secrets the dev overlay lets the operator read in `default` (samples/pair-full.yaml
# names them). They hold the emulators' dummy keys, so the full sample works as applied.
SECRETS_NAMESPACE = "default"
CREDENTIAL_SECRETS = ("aws-cn", "aws-global")
DUMMY_KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
# Kept from the caller's environment for the operator process; everything AWS_, DDBBRIDGE_ or KUBE*
# comes from the Deployment (plus the dummy keys), so nothing of the developer's shell leaks in.
INHERITED_PREFIXES_DROPPED = ("AWS_", "DDBBRIDGE_", "KUBE")
TOKEN_DURATION = "48h"


class LocalOperatorError(RuntimeError):
    """The operator could not be installed or started."""


@dataclass(frozen=True)
class Kubectl:
    """kubectl against one cluster only (its own kubeconfig, never the user's)."""

    kubeconfig: Path
    timeout: float = 120.0

    def run(
        self, *arguments: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["kubectl", f"--kubeconfig={self.kubeconfig}", *arguments],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=self.timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise LocalOperatorError(f"kubectl {' '.join(arguments)} failed: {result.stderr.strip()}")
        return result


# --- the rendered Deployment --------------------------------------------------------------------


def render(kustomization: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize` output as documents (a relative path is taken from the project root)."""
    folder = kustomization if kustomization.is_absolute() else state.project_root() / kustomization
    result = subprocess.run(
        ["kubectl", "kustomize", str(folder)], capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode != 0:
        raise LocalOperatorError(f"kubectl kustomize {folder} failed: {result.stderr.strip()}")
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def find(documents: Sequence[Mapping[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name]
    if len(found) != 1:
        raise LocalOperatorError(f"expected one {kind} {name} in the rendering, found {len(found)}")
    return dict(found[0])


def operator_container(documents: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    containers = find(documents, "Deployment", DEPLOYMENT)["spec"]["template"]["spec"]["containers"]
    if len(containers) != 1:
        raise LocalOperatorError(f"the operator Deployment has {len(containers)} containers, expected 1")
    container: dict[str, Any] = containers[0]
    return container


def local_argv(
    container: Mapping[str, Any],
    liveness_port: int,
    metrics_port: int,
    extra: Sequence[str] = (),
    scripts: Path | None = None,
) -> list[str]:
    """The container's command and args for this machine: the command is the console script of this
    virtual environment, the probe ports are moved, and the ports bind to 127.0.0.1 only."""
    command = list(container["command"])
    command[0] = str((scripts or Path(sys.executable).parent) / command[0])
    args = [str(arg) for arg in container.get("args", [])]
    for flag, port in (("--liveness-port", liveness_port), ("--metrics-port", metrics_port)):
        if flag in args:
            args[args.index(flag) + 1] = str(port)
    return [*command, *args, "--bind-address=127.0.0.1", *extra]


def container_environment(
    container: Mapping[str, Any], documents: Sequence[Mapping[str, Any]]
) -> dict[str, str]:
    """The container's `env`, resolved as the kubelet would: literal values and ConfigMap keys (an
    optional key that is absent leaves the variable unset)."""
    config_maps = {d["metadata"]["name"]: d.get("data") or {} for d in documents if d["kind"] == "ConfigMap"}
    resolved: dict[str, str] = {}
    for variable in container.get("env", []):
        if "value" in variable:
            resolved[variable["name"]] = str(variable["value"])
            continue
        reference = (variable.get("valueFrom") or {}).get("configMapKeyRef")
        if reference is None:
            raise LocalOperatorError(f"unsupported env source for {variable['name']}: {variable}")
        data = config_maps.get(reference["name"])
        if data is not None and reference["key"] in data:
            resolved[variable["name"]] = str(data[reference["key"]])
        elif not reference.get("optional", False):
            raise LocalOperatorError(
                f"{variable['name']}: ConfigMap {reference['name']} lacks {reference['key']}"
            )
    return resolved


def with_endpoints(documents: Sequence[Mapping[str, Any]], values: Mapping[str, str]) -> list[dict[str, Any]]:
    """The rendering with this machine's endpoints in the operator's environment ConfigMap: what a
    user does by editing overlays/dev/endpoints.env after `ddbbridge dev up` picked the ports."""
    container = operator_container(documents)
    names = {
        ref["name"]
        for variable in container.get("env", [])
        if (ref := (variable.get("valueFrom") or {}).get("configMapKeyRef"))
    }
    updated: list[dict[str, Any]] = []
    for document in documents:
        copy = json.loads(json.dumps(document))
        if copy["kind"] == "ConfigMap" and copy["metadata"]["name"] in names:
            copy["data"] = {**(copy.get("data") or {}), **values}
        updated.append(copy)
    return updated


# --- installing into the cluster ----------------------------------------------------------------


def install(kubectl: Kubectl, documents: Sequence[Mapping[str, Any]], deadline: float = 90.0) -> None:
    """CRD first (and served), then the rendering without the Deployment, then the credential Secrets."""
    kubectl.run("apply", "--server-side", "-f", str(state.project_root() / CRDS))
    _wait(
        lambda: kubectl.run("get", "trp", "-A", check=False).returncode == 0, deadline, "the CRD to be served"
    )
    objects = [d for d in documents if d["kind"] != "Deployment"]
    stream = yaml.safe_dump_all(objects, sort_keys=False)
    kubectl.run("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=stream)
    secrets = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": SECRETS_NAMESPACE},
            "stringData": DUMMY_KEYS,
        }
        for name in CREDENTIAL_SECRETS
    ]
    kubectl.run("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(secrets))


def service_account_kubeconfig(kubectl: Kubectl, path: Path) -> Path:
    """A kubeconfig holding a TokenRequest token of the operator's ServiceAccount: the identity the pod
    would have, not the admin's. Server and CA come from the admin kubeconfig."""
    admin = yaml.safe_load(kubectl.kubeconfig.read_text(encoding="utf-8"))
    cluster = admin["clusters"][0]["cluster"]
    token = kubectl.run(
        "create", "token", SERVICE_ACCOUNT, "-n", NAMESPACE, f"--duration={TOKEN_DURATION}"
    ).stdout.strip()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": cluster}],
        "users": [{"name": SERVICE_ACCOUNT, "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "local", "user": SERVICE_ACCOUNT}}],
        "current-context": "operator",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def process_environment(
    container_env: Mapping[str, str], kubeconfig: Path, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    inherited = dict(os.environ if base is None else base)
    environment = {k: v for k, v in inherited.items() if not k.startswith(INHERITED_PREFIXES_DROPPED)}
    return {
        **environment,
        **container_env,
        **DUMMY_KEYS,
        "AWS_EC2_METADATA_DISABLED": "true",
        "KUBECONFIG": str(kubeconfig),
        "PYTHONUNBUFFERED": "1",
    }


# --- probes -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def liveness_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _wait(condition: Any, deadline: float, what: str) -> None:
    limit = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > limit:
            raise LocalOperatorError(f"timed out after {deadline:.0f}s waiting for {what}")
        time.sleep(0.5)


def wait_alive(url: str, running: Any, log: str, deadline: float) -> None:
    """Until the liveness endpoint answers; fail early (with the log's tail) if the process ended."""

    def alive() -> bool:
        if not running():
            tail = "\n".join(Path(log).read_text(encoding="utf-8", errors="replace").splitlines()[-20:])
            raise LocalOperatorError(f"the operator exited during start; log {log}:\n{tail}")
        return liveness_ok(url)

    _wait(alive, deadline, f"the operator's {url}")


def cleanup(recorded: dict[str, Any]) -> None:
    """After `dev down` stopped the operator: its kubeconfig holds a token, so it goes too."""
    if recorded.get("kubeconfig"):
        Path(recorded["kubeconfig"]).unlink(missing_ok=True)
