"""The local operator is started from the dev overlay's rendered Deployment: its command and args (ports
moved, loopback only), and its environment resolved from the ConfigMap the way the kubelet does."""

from __future__ import annotations

from pathlib import Path

import pytest

from ddbbridge.kopf_app.entry import CONTAINER_ARGS, CONTAINER_COMMAND
from ddbbridge_dev import local_operator

ENDPOINTS = {
    "DDBBRIDGE_ENDPOINTS": "cn-north-1=http://127.0.0.1:1111,ap-southeast-1=http://127.0.0.1:2222",
    "DDBBRIDGE_PEER_ENDPOINTS": "cn-north-1=http://127.0.0.1:3333,ap-southeast-1=http://127.0.0.1:4444",
}


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, object]]:
    return local_operator.render(local_operator.DEV_OVERLAY)


def test_argv_is_the_deployments_with_moved_ports(rendered: list[dict[str, object]]) -> None:
    container = local_operator.operator_container(rendered)
    argv = local_operator.local_argv(container, 1234, 5678, extra=["-v"], scripts=Path("/venv/bin"))
    args = list(CONTAINER_ARGS)
    args[args.index("--liveness-port") + 1] = "1234"
    args[args.index("--metrics-port") + 1] = "5678"
    assert argv == [f"/venv/bin/{CONTAINER_COMMAND[0]}", *args, "--bind-address=127.0.0.1", "-v"]


def test_environment_comes_from_the_configmap_with_this_machines_endpoints(
    rendered: list[dict[str, object]],
) -> None:
    container = local_operator.operator_container(rendered)
    shipped = local_operator.container_environment(container, rendered)
    assert "host.docker.internal" in shipped["DDBBRIDGE_ENDPOINTS"]  # the overlay's example
    assert "AWS_REGION" not in shipped  # optional key absent from the ConfigMap: left unset

    updated = local_operator.with_endpoints(rendered, ENDPOINTS)
    assert local_operator.container_environment(container, updated) == ENDPOINTS
    assert local_operator.container_environment(container, rendered) == shipped  # input untouched


def test_process_environment_drops_the_callers_aws_and_kube_settings(tmp_path: Path) -> None:
    base = {"PATH": "/bin", "AWS_PROFILE": "prod", "KUBECONFIG": "/home/me/.kube/config", "DDBBRIDGE_X": "1"}
    environment = local_operator.process_environment(ENDPOINTS, tmp_path / "kc", base)
    assert environment["PATH"] == "/bin"
    assert "AWS_PROFILE" not in environment and "DDBBRIDGE_X" not in environment
    assert environment["KUBECONFIG"] == str(tmp_path / "kc")
    assert environment["DDBBRIDGE_ENDPOINTS"] == ENDPOINTS["DDBBRIDGE_ENDPOINTS"]


def test_a_required_key_missing_from_the_configmap_is_an_error() -> None:
    container = {"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "X"}}}]}
    documents = [{"kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {}}]
    with pytest.raises(local_operator.LocalOperatorError, match="lacks X"):
        local_operator.container_environment(container, documents)
