"""The real operator as a local process, started as the shipped Deployment would start it.

Command, arguments and environment variable names come from the Deployment that `kubectl kustomize
manifests/overlays/dev` renders (the manifest that ships), the identity from a TokenRequest token of
its ServiceAccount (so the shipped RBAC is what it runs on). Only what a pod gets from its node is
replaced: the ports (free ones, on 127.0.0.1) and the values of the environment (the dev endpoints).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ddbbridge_dev.state import project_root

DEV_OVERLAY = Path("manifests") / "overlays" / "dev"
CRDS = Path("crds")
DEPLOYMENT = "ddbbridge-operator"


def kubectl(*arguments: str, kubeconfig: Path, stdin: str | None = None) -> str:
    result = subprocess.run(
        ["kubectl", *arguments],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(arguments)} failed: {result.stderr.strip()}")
    return result.stdout


def render_dev_overlay() -> str:
    return subprocess.run(
        ["kubectl", "kustomize", str(project_root() / DEV_OVERLAY)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout


def operator_container(rendered: str) -> dict[str, Any]:
    for document in yaml.safe_load_all(rendered):
        if document and document["kind"] == "Deployment" and document["metadata"]["name"] == DEPLOYMENT:
            container: dict[str, Any] = document["spec"]["template"]["spec"]["containers"][0]
            return container
    raise ValueError(f"no Deployment {DEPLOYMENT} in the rendered overlay")


def deployment_namespace(rendered: str) -> tuple[str, str]:
    """(namespace, service account) of the operator's Deployment."""
    for document in yaml.safe_load_all(rendered):
        if document and document["kind"] == "Deployment" and document["metadata"]["name"] == DEPLOYMENT:
            spec = document["spec"]["template"]["spec"]
            return str(document["metadata"]["namespace"]), str(spec["serviceAccountName"])
    raise ValueError(f"no Deployment {DEPLOYMENT} in the rendered overlay")


def local_argv(container: dict[str, Any], liveness_port: int, metrics_port: int) -> list[str]:
    """The container's command + args with this machine's executable and the given ports."""
    command = [str(Path(sys.executable).parent / container["command"][0]), *container["command"][1:]]
    args = [str(a) for a in container.get("args", [])]
    for flag, port in (("--liveness-port", liveness_port), ("--metrics-port", metrics_port)):
        args[args.index(flag) + 1] = str(port)
    return [*command, *args, "--bind-address=127.0.0.1"]


def local_env(container: dict[str, Any], values: dict[str, str], kubeconfig: Path) -> dict[str, str]:
    """The variables the container declares, valued from `values` (the dev environment's exports)."""
    names = [str(item["name"]) for item in container.get("env", [])]
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DDBBRIDGE_", "KUBE"))}
    env = base | {name: values[name] for name in names if name in values}
    return env | {
        "KUBECONFIG": str(kubeconfig),
        "AWS_ACCESS_KEY_ID": values["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": values["AWS_SECRET_ACCESS_KEY"],
        "AWS_EC2_METADATA_DISABLED": "true",
        "PYTHONUNBUFFERED": "1",
    }


def service_account_kubeconfig(admin: Path, namespace: str, account: str, path: Path) -> Path:
    token = kubectl("create", "token", account, "-n", namespace, "--duration=24h", kubeconfig=admin).strip()
    document = yaml.safe_load(admin.read_text(encoding="utf-8"))
    cluster = document["clusters"][0]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": cluster["name"], "user": account}}],
        "current-context": "operator",
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    path.chmod(0o600)
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class OperatorProcess:
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    liveness_url: str
    metrics_url: str
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def from_deployment(
        cls, container: dict[str, Any], values: dict[str, str], kubeconfig: Path, log_path: Path
    ) -> OperatorProcess:
        liveness, metrics = free_port(), free_port()
        return cls(
            local_argv(container, liveness, metrics),
            local_env(container, values, kubeconfig),
            log_path,
            f"http://127.0.0.1:{liveness}/healthz",
            f"http://127.0.0.1:{metrics}/metrics",
        )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 120.0) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=self.env
            )
        deadline = time.monotonic() + timeout
        while not _http_ok(self.liveness_url):
            if self.process.poll() is not None:
                raise RuntimeError(f"the operator exited {self.process.returncode}; see {self.log_path}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the operator's liveness endpoint did not answer; see {self.log_path}")
            time.sleep(0.5)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def metrics(self) -> str | None:
        """The metrics page, or None when it does not answer (a busy operator starves its server)."""
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=60) as response:
                return str(response.read().decode())
        except OSError:
            return None


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def counter_total(metrics_text: str | None, name: str) -> dict[str, float] | None:
    """Sum of a Prometheus counter's samples by their `kind` label (`name_total{...kind="x"...} v`)."""
    if metrics_text is None:
        return None
    totals: dict[str, float] = {}
    for line in metrics_text.splitlines():
        if not line.startswith(f"{name}_total{{"):
            continue
        labels, _, value = line.rpartition(" ")
        kind = labels.split('kind="', 1)[1].split('"', 1)[0] if 'kind="' in labels else ""
        totals[kind] = totals.get(kind, 0.0) + float(value)
    return totals
