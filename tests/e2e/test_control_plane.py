"""The local control plane behaves like a real Kubernetes API server where the operator will rely on it.

Everything runs against `ddbbridge-kube` (embedded etcd + kube-apiserver 1.32 + garbage-collector and
namespace controllers) through kubectl or the `kubernetes` client, with a test CRD of our own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from tests.fixtures.kube import KubeClusterAccess
from tests.fixtures.waiting import scaled, wait_for

pytestmark = pytest.mark.e2e

CRD_FILE = Path(__file__).parent / "manifests" / "widget-crd.yaml"
GROUP = "e2e.ddbbridge.io"
VERSION = "v1"
PLURAL = "widgets"
CRD_NAME = f"{PLURAL}.{GROUP}"
HOLD_FINALIZER = f"{GROUP}/hold"


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _widget(name: str, size: int, color: str = "red", **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Widget",
        "metadata": {"name": name, **metadata},
        "spec": {"size": size, "color": color},
    }


def _is_missing(read: Any) -> bool:
    try:
        read()
    except ApiException as error:
        if error.status == 404:
            return True
        raise
    return False


def _crd_conditions(admin: Any) -> dict[str, str]:
    crd: Any = client.ApiextensionsV1Api(admin).read_custom_resource_definition(CRD_NAME)
    return {condition.type: condition.status for condition in (crd.status.conditions or [])}


@pytest.fixture(scope="module")
def admin(kube_cluster: KubeClusterAccess) -> Iterator[Any]:
    api_client = kube_cluster.api_client()
    yield api_client
    api_client.close()


@pytest.fixture(scope="module")
def widget_crd(kube_cluster: KubeClusterAccess, admin: Any) -> str:
    """The test CRD, applied with kubectl and established."""
    kube_cluster.kubectl("apply", "-f", str(CRD_FILE))
    wait_for(
        lambda: _crd_conditions(admin).get("Established") == "True", 60, "the Widget CRD to be established"
    )
    return CRD_NAME


def _create_namespace(admin: Any, name: str) -> str:
    client.CoreV1Api(admin).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


@pytest.fixture
def namespace(admin: Any) -> Iterator[str]:
    name = _create_namespace(admin, _unique("e2e"))
    yield name
    client.CoreV1Api(admin).delete_namespace(name)


@pytest.fixture
def widgets(admin: Any, widget_crd: str) -> Any:
    return client.CustomObjectsApi(admin)


def test_kubectl_apply_of_a_crd_establishes_it(
    kube_cluster: KubeClusterAccess, admin: Any, namespace: str
) -> None:
    kube_cluster.kubectl("apply", "-f", str(CRD_FILE))
    wait_for(
        lambda: _crd_conditions(admin).get("Established") == "True", 60, "the Widget CRD to be established"
    )
    assert _crd_conditions(admin)["NamesAccepted"] == "True"

    # Established means served: kubectl finds the new kind through discovery and round-trips an object.
    kube_cluster.kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(_widget("first", 3)))
    shown = kube_cluster.kubectl("get", "widget", "first", "-n", namespace, "-o", "jsonpath={.spec.size}")
    assert shown.stdout == "3"


def test_a_resource_violating_the_schema_is_rejected_with_the_servers_message(
    kube_cluster: KubeClusterAccess, widgets: Any, namespace: str
) -> None:
    invalid = _widget("too-big", 11, color="purple")
    result = kube_cluster.kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(invalid), check=False)

    assert result.returncode != 0
    assert 'The Widget "too-big" is invalid' in result.stderr
    assert (
        "spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10" in result.stderr
    )
    assert 'spec.color: Unsupported value: "purple"' in result.stderr
    assert _is_missing(
        lambda: widgets.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "too-big")
    )


def test_a_status_update_does_not_bump_the_generation(widgets: Any, namespace: str) -> None:
    created = widgets.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, _widget("status", 2))
    assert created["metadata"]["generation"] == 1

    status = {"status": {"phase": "Ready", "observedGeneration": 1}}
    updated = widgets.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "status", status
    )
    assert updated["status"] == {"phase": "Ready", "observedGeneration": 1}
    assert updated["metadata"]["generation"] == 1

    # The same client does move the generation when the spec changes, so the check above can fail.
    respecified = widgets.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "status", {"spec": {"size": 4}}
    )
    assert respecified["metadata"]["generation"] == 2
    assert respecified["status"]["phase"] == "Ready"


def test_a_service_account_bound_to_a_role_reads_its_objects_and_is_refused_secrets_elsewhere(
    kube_cluster: KubeClusterAccess, admin: Any, widgets: Any, namespace: str
) -> None:
    core = client.CoreV1Api(admin)
    rbac = client.RbacAuthorizationV1Api(admin)
    other = _create_namespace(admin, _unique("e2e-other"))
    try:
        core.create_namespaced_secret(
            other,
            client.V1Secret(metadata=client.V1ObjectMeta(name="peer-key"), string_data={"key": "value"}),
        )
        widgets.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, _widget("mine", 1))
        core.create_namespaced_service_account(
            namespace, client.V1ServiceAccount(metadata={"name": "reader"})
        )
        rbac.create_namespaced_role(
            namespace,
            client.V1Role(
                metadata=client.V1ObjectMeta(name="widget-reader"),
                rules=[
                    client.V1PolicyRule(
                        api_groups=[GROUP], resources=[PLURAL], verbs=["get", "list", "watch"]
                    )
                ],
            ),
        )
        rbac.create_namespaced_role_binding(
            namespace,
            client.V1RoleBinding(
                metadata=client.V1ObjectMeta(name="reader-reads-widgets"),
                role_ref=client.V1RoleRef(
                    api_group="rbac.authorization.k8s.io", kind="Role", name="widget-reader"
                ),
                subjects=[client.RbacV1Subject(kind="ServiceAccount", name="reader", namespace=namespace)],
            ),
        )
        token_request: Any = core.create_namespaced_service_account_token(
            "reader",
            namespace,
            client.AuthenticationV1TokenRequest(spec={"audiences": [], "expirationSeconds": 600}),
        )
        token = token_request.status.token

        reader_client = kube_cluster.api_client(token=token)
        try:
            as_reader: Any = client.CustomObjectsApi(reader_client)

            # The authorizer learns of new bindings through its informers: allow it a moment.
            def listed_names() -> list[str]:
                listing = as_reader.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
                return [item["metadata"]["name"] for item in listing["items"]]

            assert wait_for(listed_names, 30, "the reader to list its widgets") == ["mine"]
            assert as_reader.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "mine")[
                "spec"
            ] == {
                "size": 1,
                "color": "red",
            }

            with pytest.raises(ApiException) as refused:
                client.CoreV1Api(reader_client).read_namespaced_secret("peer-key", other)
            assert refused.value.status == 403
            message = json.loads(refused.value.body or "{}")["message"]
            assert f'User "system:serviceaccount:{namespace}:reader" cannot get resource "secrets"' in message
            assert f'in the namespace "{other}"' in message
        finally:
            reader_client.close()
    finally:
        core.delete_namespace(other)


def test_a_finalizer_holds_deletion_until_it_is_removed(widgets: Any, namespace: str) -> None:
    held = _widget("held", 5, finalizers=[HOLD_FINALIZER])
    widgets.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, held)

    widgets.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "held")
    terminating = widgets.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "held")
    assert terminating["metadata"]["deletionTimestamp"]
    assert terminating["metadata"]["finalizers"] == [HOLD_FINALIZER]

    widgets.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "held", {"metadata": {"finalizers": None}}
    )
    wait_for(
        lambda: _is_missing(
            lambda: widgets.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "held")
        ),
        30,
        "the widget to go once its finalizer is removed",
    )


def test_a_watch_delivers_added_modified_deleted_in_order(widgets: Any, namespace: str) -> None:
    start = widgets.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["metadata"][
        "resourceVersion"
    ]
    widgets.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, _widget("watched", 1))
    widgets.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "watched", {"spec": {"size": 7}}
    )
    widgets.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "watched")

    # Watching from the version before the first change replays every event after it, in order.
    seen: list[tuple[str, int]] = []
    watcher = watch.Watch()  # type: ignore[no-untyped-call]
    for event in watcher.stream(  # type: ignore[no-untyped-call]
        widgets.list_namespaced_custom_object,
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        resource_version=start,
        timeout_seconds=int(scaled(30)),
    ):
        widget = event["object"]
        if widget["metadata"]["name"] == "watched":
            seen.append((event["type"], widget["spec"]["size"]))
        if event["type"] == "DELETED":
            watcher.stop()  # type: ignore[no-untyped-call]
    assert seen == [("ADDED", 1), ("MODIFIED", 7), ("DELETED", 7)]


def test_the_garbage_collector_deletes_dependents_of_a_deleted_owner(
    admin: Any, widgets: Any, namespace: str
) -> None:
    core = client.CoreV1Api(admin)
    owner = widgets.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, _widget("owner", 1))
    reference = client.V1OwnerReference(
        api_version=f"{GROUP}/{VERSION}", kind="Widget", name="owner", uid=owner["metadata"]["uid"]
    )
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="dependent", owner_references=[reference])),
    )
    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="bystander"))
    )

    widgets.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "owner")
    wait_for(
        lambda: _is_missing(lambda: core.read_namespaced_config_map("dependent", namespace)),
        90,
        "the garbage collector to delete the owned ConfigMap",
    )
    bystander: Any = core.read_namespaced_config_map("bystander", namespace)
    assert bystander.metadata.name == "bystander"


def test_a_deleted_namespace_empties_and_disappears(admin: Any, widgets: Any) -> None:
    core = client.CoreV1Api(admin)
    doomed = _create_namespace(admin, _unique("e2e-doomed"))
    core.create_namespaced_config_map(
        doomed, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="contents"))
    )
    widgets.create_namespaced_custom_object(GROUP, VERSION, doomed, PLURAL, _widget("inside", 2))

    core.delete_namespace(doomed)
    wait_for(lambda: _is_missing(lambda: core.read_namespace(doomed)), 90, "the namespace to be deleted")
    remaining = widgets.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]
    assert [item["metadata"]["name"] for item in remaining if item["metadata"]["namespace"] == doomed] == []


def _ddbbridge(dev_dir: Path, *arguments: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "DDBBRIDGE_DEV_DIR": str(dev_dir)}
    environment.pop("KUBECONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "ddbbridge.cli", *arguments],
        capture_output=True,
        text=True,
        env=environment,
        timeout=scaled(timeout),
        check=False,
    )


def _pid_alive(pid: int) -> bool:
    try:
        state_letter = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state_letter not in {"Z", "X"}


def test_dev_up_with_kube_serves_kubectl_and_dev_down_leaves_nothing(tmp_path: Path) -> None:
    dev_dir = tmp_path / "dev"
    started = _ddbbridge(dev_dir, "dev", "up", "--kube", "--detach")
    try:
        assert started.returncode == 0, started.stderr
        recorded = json.loads((dev_dir / "state.json").read_text())
        kube_section = recorded["kube"]
        pids = [record["pid"] for record in recorded["processes"]["records"]]
        kubeconfig = dev_dir / "kubeconfig"
        assert kube_section["kubeconfig"] == str(kubeconfig)
        assert Path(kube_section["data_dir"]).is_dir()

        ready = subprocess.run(
            ["kubectl", "--kubeconfig", str(kubeconfig), "get", "--raw", "/readyz"],
            capture_output=True,
            text=True,
            timeout=scaled(60),
            check=False,
        )
        assert (ready.returncode, ready.stdout.strip()) == (0, "ok"), ready.stderr

        exports = _ddbbridge(dev_dir, "dev", "env", timeout=60)
        assert f"export KUBECONFIG={kubeconfig}" in exports.stdout.splitlines()
        status = _ddbbridge(dev_dir, "dev", "status", timeout=60)
        assert status.returncode == 0, status.stdout
        assert any(line.startswith("ok   kube/apiserver: ready") for line in status.stdout.splitlines())
    finally:
        stopped = _ddbbridge(dev_dir, "dev", "down", timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    assert [pid for pid in pids if _pid_alive(pid)] == []
    assert not Path(kube_section["data_dir"]).exists()
    assert not kubeconfig.exists()
