"""Local Kubernetes control plane: build, start and stop `ddbbridge-kube` (tools/kube).

`ddbbridge-kube` is our own Go program holding an embedded etcd, kube-apiserver and the garbage-collector
and namespace controllers in one process. Building it from Go modules takes minutes, so the binary is
cached under `.cache/kube/<source hash>/`: only a change to go.mod, go.sum or a .go file under tools/kube
makes a new one. A cluster's data (etcd, generated certificates and keys) lives in a temporary folder
that is removed when the cluster stops; its admin kubeconfig is written to `<dev dir>/kubeconfig`.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ddbbridge_dev import state

BINARY_NAME = "ddbbridge-kube"
STATE_SECTION = "kube"
DEFAULT_READY_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0
PROGRESS_INTERVAL = 15.0

Progress = Callable[[str], None]
# Starts the server's command line in the background; returns its pid and log file. The dev environment
# passes its own so `dev down` and `dev status` track the process with all the others.
Spawner = Callable[[list[str]], tuple[int, Path]]


class KubeError(RuntimeError):
    """The control plane could not be built, started or reached."""


def _stderr_progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- build


def source_dir(root: Path | None = None) -> Path:
    return (root or state.project_root()) / "tools" / "kube"


def source_files(root: Path | None = None) -> list[Path]:
    """The files whose content decides the binary: module files and every Go source."""
    directory = source_dir(root)
    files = [directory / "go.mod", directory / "go.sum", *directory.rglob("*.go")]
    return sorted(path for path in files if path.is_file())


def source_hash(root: Path | None = None) -> str:
    directory = source_dir(root)
    digest = hashlib.sha256()
    for path in source_files(root):
        digest.update(path.relative_to(directory).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def kubernetes_version(root: Path | None = None) -> str:
    """The k8s.io/kubernetes version go.mod requires (the one place it is pinned)."""
    for line in (source_dir(root) / "go.mod").read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if parts[:1] == ["require"]:  # the one-line form, `require k8s.io/kubernetes vX`
            parts = parts[1:]
        if len(parts) >= 2 and parts[0] == "k8s.io/kubernetes" and parts[1].startswith("v"):
            return parts[1]
    raise KubeError("tools/kube/go.mod does not require k8s.io/kubernetes")


def _version_ldflags(version: str) -> str:
    """Stamp the release into the binary as Kubernetes' own build does: `/version` and kubectl's skew
    check read it, and the apiserver derives its emulation version from it."""
    major, minor = version.lstrip("v").split(".")[:2]
    stamps = {
        "k8s.io/component-base/version.gitVersion": version,
        "k8s.io/component-base/version.gitMajor": major,
        "k8s.io/component-base/version.gitMinor": minor,
        "k8s.io/component-base/version.gitTreeState": "clean",
        "k8s.io/client-go/pkg/version.gitVersion": version,
        "k8s.io/client-go/pkg/version.gitMajor": major,
        "k8s.io/client-go/pkg/version.gitMinor": minor,
    }
    return " ".join(["-s", "-w", *(f"-X {name}={value}" for name, value in stamps.items())])


def cache_dir(root: Path | None = None) -> Path:
    return (root or state.project_root()) / ".cache" / "kube"


def binary_path(root: Path | None = None) -> Path:
    return cache_dir(root) / source_hash(root)[:20] / BINARY_NAME


@contextlib.contextmanager
def _build_lock(directory: Path) -> Iterator[None]:
    """Two test sessions or dev commands must not build the same binary at once."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "build.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_binary(progress: Progress = _stderr_progress, root: Path | None = None) -> Path:
    """Return the cached binary for the current sources, building it first if there is none."""
    target = binary_path(root)
    if target.is_file():
        return target
    with _build_lock(cache_dir(root)):
        if target.is_file():  # another process built it while we waited for the lock
            return target
        _build(target, progress, root)
        _remove_stale_builds(target.parent)
    return target


def _remove_stale_builds(keep: Path) -> None:
    """Binaries of older sources are ~100 MB each and never used again."""
    for entry in keep.parent.iterdir():
        if entry.is_dir() and entry != keep:
            shutil.rmtree(entry, ignore_errors=True)


# Where Go's own tarball and Debian put the toolchain, for shells whose PATH lacks it (CI is not a login
# shell, and this machine adds Go to PATH in .bashrc only).
GO_FALLBACKS = (Path("/usr/local/go/bin/go"), Path("/usr/lib/go/bin/go"))


def _go_toolchain() -> str:
    found = shutil.which("go")
    if found:
        return found
    for candidate in GO_FALLBACKS:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise KubeError("the Go toolchain (`go`) is needed to build the local Kubernetes control plane")


def _build(target: Path, progress: Progress, root: Path | None) -> None:
    go = _go_toolchain()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    version = kubernetes_version(root)
    # -v lists each package as it is compiled: that is our progress signal. -buildvcs=false keeps git
    # state out of the binary; -s -w drop symbol tables the tests never need, which also shortens linking.
    ldflags = _version_ldflags(version)
    command = [
        go,
        "build",
        "-trimpath",
        "-buildvcs=false",
        f"-ldflags={ldflags}",
        "-v",
        "-o",
        str(partial),
        ".",
    ]
    progress(
        f"building {BINARY_NAME} (Kubernetes {version}) from Go modules; the first build takes many minutes"
    )
    started = time.monotonic()
    tail: deque[str] = deque(maxlen=40)
    packages = downloads = 0
    last_report = started
    process = subprocess.Popen(
        command,
        cwd=source_dir(root),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    for raw in process.stdout:
        line = raw.rstrip()
        tail.append(line)
        if line.startswith("go: downloading"):
            downloads += 1
        elif line and not line.startswith(("#", " ", "\t", "go:")):
            packages += 1
        now = time.monotonic()
        if now - last_report >= PROGRESS_INTERVAL:
            last_report = now
            progress(
                f"  {BINARY_NAME} build: {downloads} modules downloaded, {packages} packages compiled, "
                f"{_minutes(now - started)} elapsed"
            )
    code = process.wait()
    if code != 0:
        partial.unlink(missing_ok=True)
        raise KubeError(f"go build of {BINARY_NAME} failed (exit {code}):\n" + "\n".join(tail))
    partial.replace(target)
    progress(f"built {target} in {_minutes(time.monotonic() - started)}")


def _minutes(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 60}m{whole % 60:02d}s"


# -------------------------------------------------------------------------------------------- cluster


@dataclass(frozen=True)
class KubeCluster:
    """A running control plane: what clients need (server, kubeconfig) and what stopping needs."""

    pid: int
    server: str
    port: int
    etcd_client_port: int
    etcd_peer_port: int
    data_dir: Path
    kubeconfig: Path
    log: Path

    def to_section(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "server": self.server,
            "port": self.port,
            "etcd_client_port": self.etcd_client_port,
            "etcd_peer_port": self.etcd_peer_port,
            "data_dir": str(self.data_dir),
            "kubeconfig": str(self.kubeconfig),
            "log": str(self.log),
        }

    @classmethod
    def from_section(cls, section: dict[str, Any]) -> KubeCluster:
        return cls(
            pid=int(section["pid"]),
            server=str(section["server"]),
            port=int(section["port"]),
            etcd_client_port=int(section["etcd_client_port"]),
            etcd_peer_port=int(section["etcd_peer_port"]),
            data_dir=Path(section["data_dir"]),
            kubeconfig=Path(section["kubeconfig"]),
            log=Path(section["log"]),
        )


@dataclass(frozen=True)
class AdminCredentials:
    """What the kubeconfig holds: the admin bearer token and the cluster CA (PEM)."""

    server: str
    token: str
    ca_pem: str


def read_credentials(kubeconfig: Path) -> AdminCredentials:
    document = yaml.safe_load(kubeconfig.read_text(encoding="utf-8"))
    cluster = document["clusters"][0]["cluster"]
    user = document["users"][0]["user"]
    ca_pem = base64.b64decode(cluster["certificate-authority-data"]).decode()
    return AdminCredentials(server=str(cluster["server"]), token=str(user["token"]), ca_pem=ca_pem)


def _free_ports(count: int) -> list[int]:
    """Distinct free loopback ports: all sockets stay bound until every port is picked."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def is_ready(credentials: AdminCredentials, timeout: float = 5.0) -> bool:
    """True when the apiserver answers `/readyz` with `ok`."""
    context = ssl.create_default_context(cadata=credentials.ca_pem)
    request = urllib.request.Request(
        credentials.server + "/readyz", headers={"Authorization": f"Bearer {credentials.token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return bool(response.status == 200 and response.read().strip() == b"ok")
    except OSError:
        return False


def _log_tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def launch(
    dev_dir: Path,
    progress: Progress = _stderr_progress,
    ready_timeout: float = DEFAULT_READY_TIMEOUT,
    root: Path | None = None,
    spawn: Spawner | None = None,
) -> KubeCluster:
    """Start a control plane whose kubeconfig is `<dev_dir>/kubeconfig`; return once `/readyz` is ok."""
    binary = ensure_binary(progress, root)
    dev_dir.mkdir(parents=True, exist_ok=True)
    kubeconfig = dev_dir / "kubeconfig"
    spawner = spawn or _detached_spawner(dev_dir / "kube.log")
    # A port picked free can be taken before the server binds it; such a start fails at once, so retry.
    attempts = 3
    for attempt in range(1, attempts + 1):
        cluster = _launch_once(binary, kubeconfig, spawner)
        try:
            _wait_ready(cluster, ready_timeout)
            return cluster
        except KubeError:
            terminate(cluster)
            if attempt == attempts or "address already in use" not in _log_tail(cluster.log, 200):
                raise
            progress("kube: a chosen port was taken meanwhile; retrying with new ports")
    raise AssertionError("unreachable")


def _detached_spawner(log: Path) -> Spawner:
    def spawn(command: list[str]) -> tuple[int, Path]:
        with log.open("ab") as log_handle:
            process = subprocess.Popen(
                command,
                stdout=log_handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Its own session: Ctrl-C in the terminal running the tests must not reach it first.
                start_new_session=True,
            )
        return process.pid, log

    return spawn


def _launch_once(binary: Path, kubeconfig: Path, spawn: Spawner) -> KubeCluster:
    port, etcd_client_port, etcd_peer_port = _free_ports(3)
    data_dir = Path(tempfile.mkdtemp(prefix="ddbbridge-kube-"))
    kubeconfig.unlink(missing_ok=True)  # a stale one would point at a dead server while we wait
    command = [
        str(binary),
        f"--data-dir={data_dir}",
        f"--kubeconfig={kubeconfig}",
        f"--secure-port={port}",
        f"--etcd-client-port={etcd_client_port}",
        f"--etcd-peer-port={etcd_peer_port}",
    ]
    pid, log = spawn(command)
    return KubeCluster(
        pid=pid,
        server=f"https://127.0.0.1:{port}",
        port=port,
        etcd_client_port=etcd_client_port,
        etcd_peer_port=etcd_peer_port,
        data_dir=data_dir,
        kubeconfig=kubeconfig,
        log=log,
    )


def _wait_ready(cluster: KubeCluster, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if not is_alive(cluster.pid):
            raise KubeError(
                f"{BINARY_NAME} exited while starting; log {cluster.log}:\n{_log_tail(cluster.log)}"
            )
        if cluster.kubeconfig.is_file() and is_ready(read_credentials(cluster.kubeconfig)):
            return
        if time.monotonic() >= deadline:
            raise KubeError(
                f"{BINARY_NAME} not ready after {timeout:.0f}s; log {cluster.log}:\n{_log_tail(cluster.log)}"
            )
        time.sleep(0.2)


def _reap(pid: int) -> None:
    """Collect the exit status when the process is our child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def is_alive(pid: int) -> bool:
    _reap(pid)
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state letter follows the parenthesised command name; Z and X are exited processes.
    return status.rsplit(")", 1)[1].split()[0] not in {"Z", "X"}


def _is_our_process(cluster: KubeCluster) -> bool:
    """Guards against pid reuse: the pid must still run our binary on this cluster's data folder."""
    try:
        arguments = Path(f"/proc/{cluster.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return (
        bool(arguments)
        and Path(arguments[0].decode()).name == BINARY_NAME
        and f"--data-dir={cluster.data_dir}".encode() in arguments
    )


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while is_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def terminate(cluster: KubeCluster) -> None:
    """Stop the process by pid (SIGTERM, then SIGKILL), wait for it, remove its data folder."""
    if is_alive(cluster.pid) and _is_our_process(cluster):
        with contextlib.suppress(ProcessLookupError):
            os.kill(cluster.pid, signal.SIGTERM)
        if not _wait_gone(cluster.pid, STOP_TIMEOUT):
            with contextlib.suppress(ProcessLookupError):
                os.kill(cluster.pid, signal.SIGKILL)
            if not _wait_gone(cluster.pid, STOP_TIMEOUT):
                raise KubeError(f"{BINARY_NAME} pid {cluster.pid} did not exit after SIGKILL")
    shutil.rmtree(cluster.data_dir, ignore_errors=True)
    cluster.kubeconfig.unlink(missing_ok=True)


# ------------------------------------------------------------------- dev environment (`dev up --kube`)


def section(cluster: KubeCluster) -> dict[str, Any]:
    """The state section `kube`: what stopping and `dev status` need, and `dev env`'s KUBECONFIG."""
    return {**cluster.to_section(), "env": {"KUBECONFIG": str(cluster.kubeconfig)}}


def cleanup(recorded: dict[str, Any]) -> None:
    """After `dev down` stopped the process: make sure it is gone, remove its data folder and kubeconfig."""
    terminate(KubeCluster.from_section(recorded))


def health(recorded: dict[str, Any]) -> tuple[bool, str]:
    """`dev status`: the apiserver answers `/readyz` with ok."""
    cluster = KubeCluster.from_section(recorded)
    if not cluster.kubeconfig.is_file():
        return False, f"kubeconfig {cluster.kubeconfig} is missing"
    if not is_ready(read_credentials(cluster.kubeconfig)):
        return False, f"{cluster.server}/readyz is not ok; log {cluster.log}"
    return True, f"ready at {cluster.server}, KUBECONFIG={cluster.kubeconfig}"


def main(argv: list[str] | None = None) -> int:
    """`python -m ddbbridge_dev.kube build`: build (or find) the binary and print its path."""
    arguments = sys.argv[1:] if argv is None else argv
    if arguments != ["build"]:
        print("usage: python -m ddbbridge_dev.kube build", file=sys.stderr)
        return 2
    print(ensure_binary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
