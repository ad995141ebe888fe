"""The shipped manifests on a real kube-apiserver: the CRD (crds/) and every kustomization applied
server-side; the stored Deployment runs the operator's entry point and passes the `restricted` Pod
Security Standard; and the operator's ServiceAccount, impersonated, can do exactly what the operator
does (watch pairs everywhere, patch them and their status, post Events, read the credential Secrets it
is given) and is refused the rest (Secrets elsewhere or unnamed, deleting CRDs or pairs, ...)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from ddbbridge.crd import CRD_NAME, PLURAL
from ddbbridge.kopf_app.entry import CONTAINER_ARGS, CONTAINER_COMMAND, ENVIRONMENT_VARIABLES
from ddbbridge.kopf_app.settings import FINALIZER, LIVENESS_PATH
from ddbbridge.spec import API_GROUP, API_VERSION
from tests.fixtures.kube import KubeClusterAccess
from tests.fixtures.waiting import scaled, wait_for
from tests.manifests_support import (
    CRDS,
    DEPLOYMENT,
    NAMESPACE,
    OPERATOR_USER,
    PRODUCTION_CREDENTIAL_SECRETS,
    PRODUCTION_SERVED_NAMESPACE,
    SERVICE_ACCOUNT,
    render_text,
)
from tests.pair_cases import minimal_pair

pytestmark = pytest.mark.e2e

# Applied in this order: the base alone first (what the issue asks to prove), then each overlay over it.
ORDER = (Path("base"), Path("overlays/dev"), Path("overlays/production"))
PAIR = "rbac-probe"
POD_SECURITY_WARNING = "would violate PodSecurity"


@dataclass(frozen=True)
class Installed:
    kube: KubeClusterAccess
    applied: dict[Path, Any]  # kustomization -> the CompletedProcess of its server-side apply
    unserved_namespace: str

    def as_operator(self, *arguments: str, stdin: str | None = None) -> Any:
        return self.kube.kubectl(f"--as={OPERATOR_USER}", *arguments, stdin=stdin, check=False)

    def operator_can(self, *arguments: str) -> bool:
        result = self.kube.kubectl("auth", "can-i", f"--as={OPERATOR_USER}", *arguments, check=False)
        assert result.stdout.strip() in ("yes", "no"), result.stderr
        return result.stdout.strip() == "yes"


def _crd_established(kube: KubeClusterAccess) -> bool:
    result = kube.kubectl("get", "crd", CRD_NAME, "-o", "json", check=False)
    if result.returncode != 0:
        return False
    conditions = {c["type"]: c["status"] for c in json.loads(result.stdout)["status"].get("conditions", [])}
    return conditions.get("Established") == "True"


def _secret(namespace: str, name: str) -> str:
    document = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        # Dummy values: the test reads them back only to prove access, never prints them.
        "stringData": {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "example-secret"},
    }
    return yaml.safe_dump(document)


def _release_pairs(kube: KubeClusterAccess, namespace: str) -> None:
    listed = kube.kubectl("get", "trp", "-n", namespace, "-o", "name", check=False)
    for name in listed.stdout.split():
        kube.kubectl(
            "patch", name, "-n", namespace, "--type=merge", "-p", '{"metadata":{"finalizers":null}}',
            check=False,
        )  # fmt: skip
        kube.kubectl("delete", name, "-n", namespace, "--wait=true", check=False)


@pytest.fixture(scope="module")
def installed(kube_cluster: KubeClusterAccess) -> Iterator[Installed]:
    kube = kube_cluster
    kube.kubectl("apply", "--server-side", "-f", str(CRDS))
    wait_for(lambda: _crd_established(kube), 60, "the TableReplicationPair CRD to be established")
    # The production overlay binds a Role in its served namespace, which must exist first (as documented).
    unserved = f"unserved-{uuid.uuid4().hex[:6]}"
    for namespace in (PRODUCTION_SERVED_NAMESPACE, unserved):
        kube.kubectl("create", "namespace", namespace)
    applied: dict[Path, Any] = {}
    try:
        for kustomization in ORDER:
            applied[kustomization] = kube.kubectl(
                "apply", "--server-side", "-f", "-", stdin=render_text(kustomization), check=False
            )
        # Discovery of the new kinds lags the CRD a little; kubectl must resolve `trp` for the tests.
        wait_for(lambda: kube.kubectl("get", "trp", "-A", check=False).returncode == 0, 60, "discovery")
        for namespace in (PRODUCTION_SERVED_NAMESPACE, unserved):
            for name in (*PRODUCTION_CREDENTIAL_SECRETS, "unrelated"):
                kube.kubectl("apply", "-f", "-", stdin=_secret(namespace, name))
        pair = minimal_pair()
        pair["metadata"] = {"name": PAIR, "namespace": PRODUCTION_SERVED_NAMESPACE}
        kube.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(pair))
        yield Installed(kube=kube, applied=applied, unserved_namespace=unserved)
    finally:
        # The operator (if a test ran one) is stopped by now: drop the finalizers, or pairs never go.
        for namespace in (PRODUCTION_SERVED_NAMESPACE, unserved):
            _release_pairs(kube, namespace)
        for kustomization in reversed(ORDER):
            kube.kubectl(
                "delete", "--ignore-not-found", "--wait=false", "-f", "-",
                stdin=render_text(kustomization), check=False,
            )  # fmt: skip
        for namespace in (PRODUCTION_SERVED_NAMESPACE, unserved):
            kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture(scope="module")
def operator_api(installed: Installed) -> Iterator[Any]:
    """A `kubernetes` client that impersonates the operator's ServiceAccount."""
    api_client = installed.kube.api_client()
    api_client.set_default_header("Impersonate-User", OPERATOR_USER)
    yield api_client
    api_client.close()


@pytest.mark.parametrize("kustomization", ORDER, ids=str)
def test_server_side_apply_succeeds_and_meets_restricted_pod_security(
    installed: Installed, kustomization: Path
) -> None:
    result = installed.applied[kustomization]
    assert result.returncode == 0, result.stderr
    assert "serverside-applied" in result.stdout
    # ddbbridge-system warns (and enforces) `restricted`: the API server checked the pod template.
    assert POD_SECURITY_WARNING not in result.stderr


def test_pod_security_warning_would_show_a_violation(installed: Installed) -> None:
    """Control for the test above: the same server does warn about a pod that breaks `restricted`."""
    privileged = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "violates-restricted", "namespace": NAMESPACE},
        "spec": {
            "selector": {"matchLabels": {"app": "violates"}},
            "template": {
                "metadata": {"labels": {"app": "violates"}},
                "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]},
            },
        },
    }
    result = installed.kube.kubectl(
        "apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(privileged), check=False
    )
    assert POD_SECURITY_WARNING in result.stderr + result.stdout


def test_stored_deployment_runs_the_operator_entry_point(installed: Installed) -> None:
    stored = json.loads(
        installed.kube.kubectl("get", "deployment", DEPLOYMENT, "-n", NAMESPACE, "-o", "json").stdout
    )
    (container,) = stored["spec"]["template"]["spec"]["containers"]
    assert tuple(container["command"]) == CONTAINER_COMMAND
    assert tuple(container["args"]) == CONTAINER_ARGS
    assert tuple(variable["name"] for variable in container["env"]) == ENVIRONMENT_VARIABLES
    assert stored["spec"]["strategy"]["type"] == "Recreate"
    assert stored["spec"]["replicas"] == 1


def test_operator_watches_pairs_in_every_namespace(installed: Installed, operator_api: Any) -> None:
    listed = installed.as_operator("get", "trp", "-A", "-o", "name")
    assert listed.returncode == 0, listed.stderr
    assert f"tablereplicationpair.{API_GROUP}/{PAIR}" in listed.stdout
    # A real watch, as kopf opens it: cluster-wide, streaming the existing pair as ADDED.
    watcher: Any = watch.Watch()  # type: ignore[no-untyped-call]
    stream = watcher.stream(
        client.CustomObjectsApi(operator_api).list_cluster_custom_object,
        API_GROUP,
        API_VERSION,
        PLURAL,
        timeout_seconds=5,
    )
    seen = {(event["type"], event["object"]["metadata"]["name"]) for event in stream}
    assert ("ADDED", PAIR) in seen


def test_operator_patches_status_and_finalizer(installed: Installed, operator_api: Any) -> None:
    """Merge patches, as kopf sends them: PATCH only (kubectl patch would GET the subresource first,
    which the operator never does and is not granted)."""
    custom = client.CustomObjectsApi(operator_api)
    namespace = PRODUCTION_SERVED_NAMESPACE
    merge = "application/merge-patch+json"
    custom.patch_namespaced_custom_object_status(
        API_GROUP, API_VERSION, namespace, PLURAL, PAIR, {"status": {"observedGeneration": 1}},
        _content_type=merge,
    )  # fmt: skip
    custom.patch_namespaced_custom_object(
        API_GROUP, API_VERSION, namespace, PLURAL, PAIR,
        {"metadata": {"finalizers": ["ddbbridge.io/finalizer"],
                      "annotations": {"operator.ddbbridge.io/probe": "patched"}}},
        _content_type=merge,
    )  # fmt: skip
    stored = json.loads(installed.kube.kubectl("get", "trp", PAIR, "-n", namespace, "-o", "json").stdout)
    assert stored["status"]["observedGeneration"] == 1
    assert stored["metadata"]["finalizers"] == ["ddbbridge.io/finalizer"]
    assert stored["metadata"]["annotations"]["operator.ddbbridge.io/probe"] == "patched"


def test_operator_posts_events(installed: Installed) -> None:
    pair = json.loads(
        installed.kube.kubectl("get", "trp", PAIR, "-n", PRODUCTION_SERVED_NAMESPACE, "-o", "json").stdout
    )
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{PAIR}.", "namespace": PRODUCTION_SERVED_NAMESPACE},
        "involvedObject": {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": pair["kind"],
            "name": PAIR,
            "namespace": PRODUCTION_SERVED_NAMESPACE,
            "uid": pair["metadata"]["uid"],
        },
        "reason": "Probe",
        "message": "RBAC probe",
        "type": "Normal",
        "source": {"component": "ddbbridge-operator"},
    }
    created = installed.as_operator("create", "-f", "-", "-o", "name", stdin=yaml.safe_dump(event))
    assert created.returncode == 0, created.stderr
    assert not installed.operator_can("patch", "events", "-n", PRODUCTION_SERVED_NAMESPACE)
    assert not installed.operator_can("delete", "events", "-n", PRODUCTION_SERVED_NAMESPACE)


def test_operator_reads_credential_secrets_only_where_it_serves(
    installed: Installed, operator_api: Any
) -> None:
    core = client.CoreV1Api(operator_api)
    for name in PRODUCTION_CREDENTIAL_SECRETS:
        secret = core.read_namespaced_secret(name, PRODUCTION_SERVED_NAMESPACE)
        assert set(secret.data or {}) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    refused = [
        (installed.unserved_namespace, "aws-cn"),  # a namespace it does not serve
        (installed.unserved_namespace, "aws-global"),
        (PRODUCTION_SERVED_NAMESPACE, "unrelated"),  # a Secret no pair is allowed to name
    ]
    for namespace, name in refused:
        with pytest.raises(ApiException) as denied:
            core.read_namespaced_secret(name, namespace)
        assert denied.value.status == 403, (namespace, name)
    # Never listed or watched, anywhere: only read by name.
    with pytest.raises(ApiException) as denied:
        core.list_namespaced_secret(PRODUCTION_SERVED_NAMESPACE)
    assert denied.value.status == 403
    with pytest.raises(ApiException) as denied:
        core.list_secret_for_all_namespaces()
    assert denied.value.status == 403


def test_dev_overlay_serves_the_samples_namespace(installed: Installed) -> None:
    assert installed.operator_can("get", "secret/aws-cn", "-n", "default")
    assert installed.operator_can("get", "secret/aws-global", "-n", "default")
    assert not installed.operator_can("get", "secret/unrelated", "-n", "default")


REFUSED = [
    ("delete", "customresourcedefinitions.apiextensions.k8s.io", "--all-namespaces"),
    ("create", "customresourcedefinitions.apiextensions.k8s.io", "--all-namespaces"),
    ("update", "customresourcedefinitions.apiextensions.k8s.io", "--all-namespaces"),
    ("create", f"{PLURAL}.{API_GROUP}", "--all-namespaces"),
    ("delete", f"{PLURAL}.{API_GROUP}", "--all-namespaces"),
    ("update", f"{PLURAL}.{API_GROUP}", "--all-namespaces"),
    ("list", "secrets", "--all-namespaces"),
    ("list", "namespaces", "--all-namespaces"),
    ("create", "deployments.apps", f"--namespace={NAMESPACE}"),
    ("create", "pods", f"--namespace={NAMESPACE}"),
    ("patch", "serviceaccounts", f"--namespace={NAMESPACE}"),
    ("create", "rolebindings.rbac.authorization.k8s.io", f"--namespace={PRODUCTION_SERVED_NAMESPACE}"),
    ("list", "kopfpeerings.kopf.dev", "--all-namespaces"),
]


@pytest.mark.parametrize(
    "verb, resource, scope", REFUSED, ids=[f"{verb} {resource}" for verb, resource, _ in REFUSED]
)
def test_operator_is_refused_what_it_does_not_need(
    installed: Installed, verb: str, resource: str, scope: str
) -> None:
    assert not installed.operator_can(verb, resource, scope)


def test_refusals_hold_against_real_requests(installed: Installed) -> None:
    """Server dry-runs: authorization is checked as for a real request, and nothing can change."""
    attempts = [
        ("delete", "crd", CRD_NAME, "--dry-run=server"),
        ("delete", "trp", PAIR, "-n", PRODUCTION_SERVED_NAMESPACE, "--dry-run=server"),
        ("get", "secret", "aws-cn", "-n", installed.unserved_namespace),
        ("get", "namespaces"),
    ]
    for attempt in attempts:
        result = installed.as_operator(*attempt)
        assert result.returncode != 0, attempt
        assert "forbidden" in result.stderr.lower(), (attempt, result.stderr)


def test_can_i_agrees_on_what_the_operator_needs(installed: Installed) -> None:
    needed = [
        ("watch", f"{PLURAL}.{API_GROUP}", "--all-namespaces"),
        ("list", f"{PLURAL}.{API_GROUP}", "--all-namespaces"),
        ("patch", f"{PLURAL}.{API_GROUP}", "--all-namespaces"),
        ("patch", f"{PLURAL}.{API_GROUP}", "--subresource=status", "--all-namespaces"),
        ("create", "events", "--all-namespaces"),
        ("watch", "customresourcedefinitions.apiextensions.k8s.io"),
    ]
    for check in needed:
        assert installed.operator_can(*check), check


# ------------------------------------------- the real operator, with the ServiceAccount's own token


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _service_account_kubeconfig(kube: KubeClusterAccess, path: Path) -> Path:
    """A kubeconfig holding a TokenRequest token of the operator's ServiceAccount: the identity the
    pod would have, not an impersonation by the admin."""
    token = kube.kubectl("create", "token", SERVICE_ACCOUNT, "-n", NAMESPACE, "--duration=1h").stdout.strip()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "test", "cluster": {"server": kube.server, "certificate-authority": str(kube.ca_file)}}
        ],
        "users": [{"name": SERVICE_ACCOUNT, "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "test", "user": SERVICE_ACCOUNT}}],
        "current-context": "operator",
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    path.chmod(0o600)
    return path


@pytest.fixture
def operator_as_service_account(installed: Installed, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`ddbbridge operator` with the Deployment's command and args (ports moved to free ones), logged in
    as the ServiceAccount; AWS endpoints point at a closed port, so reconciles fail transiently
    without leaving the machine."""
    kubeconfig = _service_account_kubeconfig(installed.kube, tmp_path / "kubeconfig")
    liveness, metrics, closed = _free_port(), _free_port(), _free_port()
    args = list(CONTAINER_ARGS)
    args[args.index("--liveness-port") + 1] = str(liveness)
    args[args.index("--metrics-port") + 1] = str(metrics)
    argv = [str(Path(sys.executable).parent / CONTAINER_COMMAND[0]), *args, "--bind-address=127.0.0.1"]
    nowhere = f"http://127.0.0.1:{closed}"
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "DDBBRIDGE_", "KUBE"))
    }
    environment |= {
        "KUBECONFIG": str(kubeconfig),
        "DDBBRIDGE_ENDPOINTS": f"cn-north-1={nowhere},ap-southeast-1={nowhere}",
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "example-secret",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    log_path = tmp_path / "operator.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=environment)
    try:
        healthz = f"http://127.0.0.1:{liveness}{LIVENESS_PATH}"

        def alive() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"operator exited {process.returncode}: {log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(healthz, timeout=2) as response:
                    return bool(response.status == 200)
            except OSError:
                return False

        wait_for(alive, 90, "the operator's /healthz")
        yield "operator", log_path
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=scaled(60))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_operator_runs_on_its_service_account_alone(
    installed: Installed, operator_as_service_account: tuple[str, Path]
) -> None:
    """kopf's real calls (discovery, CRD and pair watches, finalizer and status patches, Events) and the
    credential Secret read all succeed with the shipped RBAC: the pair gets the finalizer, a Ready
    condition saying why it is not ready, and an Event; the log shows no permission problem."""
    _, log_path = operator_as_service_account
    pair = minimal_pair()
    pair["metadata"] = {"name": "sa-probe", "namespace": PRODUCTION_SERVED_NAMESPACE}
    pair["spec"]["regions"][0]["credentials"] = {"secretName": PRODUCTION_CREDENTIAL_SECRETS[0]}
    installed.kube.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(pair))

    def reported() -> dict[str, Any] | None:
        stored = json.loads(
            installed.kube.kubectl(
                "get", "trp", "sa-probe", "-n", PRODUCTION_SERVED_NAMESPACE, "-o", "json"
            ).stdout
        )
        conditions = {c["type"]: c for c in stored.get("status", {}).get("conditions", [])}
        return stored if "Ready" in conditions else None

    stored = wait_for(reported, 240, "the operator to write a Ready condition as the ServiceAccount")
    ready = next(c for c in stored["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False", ready
    assert FINALIZER in stored["metadata"]["finalizers"]

    def posted() -> bool:
        events = installed.kube.kubectl(
            "get", "events", "-n", PRODUCTION_SERVED_NAMESPACE,
            "--field-selector", "involvedObject.name=sa-probe", "-o", "json",
        )  # fmt: skip
        return bool(json.loads(events.stdout)["items"])

    wait_for(posted, 60, "an Event on the pair posted by the operator")
    log = log_path.read_text(encoding="utf-8", errors="replace")
    for symptom in ("Not enough permissions", "forbidden", "Forbidden", " 403"):
        assert symptom not in log, f"{symptom!r} in the operator log:\n{log[-3000:]}"
