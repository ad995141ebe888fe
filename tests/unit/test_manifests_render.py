"""The shipped manifests and Dockerfile, offline (kubectl kustomize only): every kustomization renders;
the Deployment runs exactly the operator's entry point, ports and environment; the pod is locked down;
RBAC is the least the operator needs; the CRD comes only from crds/."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from ddbbridge.aws import parse_endpoints
from ddbbridge.kopf_app.entry import CONTAINER_ARGS, CONTAINER_COMMAND, ENVIRONMENT_VARIABLES
from ddbbridge.kopf_app.settings import DEFAULT_LIVENESS_PORT, DEFAULT_METRICS_PORT, LIVENESS_PATH
from tests.manifests_support import (
    CRDS,
    DOCKERFILE,
    MANIFESTS,
    NAMESPACE,
    REPOSITORY,
    SERVICE_ACCOUNT,
    Rendering,
    kustomizations,
)

KUSTOMIZATIONS = kustomizations()
OVERLAYS = [path for path in KUSTOMIZATIONS if path.parts[0] == "overlays"]
OPERATOR_SUBJECT = {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}


@pytest.fixture(scope="module", params=KUSTOMIZATIONS, ids=str)
def rendering(request: pytest.FixtureRequest) -> Rendering:
    kustomization: Path = request.param
    return Rendering.of(kustomization)


def test_base_and_both_overlays_exist() -> None:
    assert {Path("base"), Path("overlays/dev"), Path("overlays/production")} <= set(KUSTOMIZATIONS)


def test_renders_the_operator_and_nothing_from_crds(rendering: Rendering) -> None:
    kinds = {document["kind"] for document in rendering.documents}
    assert {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment"} <= kinds
    assert "NetworkPolicy" in kinds
    # crds/ is the CRD's single source: no kustomization carries a copy.
    assert "CustomResourceDefinition" not in kinds


def test_no_copy_of_the_crd_under_manifests() -> None:
    assert list(CRDS.glob("*.yaml")), "crds/ must hold the generated CRD"
    for path in MANIFESTS.rglob("*"):
        if path.is_file():
            assert "CustomResourceDefinition" not in path.read_text(encoding="utf-8"), path


def test_deployment_runs_the_operator_entry_point(rendering: Rendering) -> None:
    container = rendering.operator_container()
    assert tuple(container["command"]) == CONTAINER_COMMAND
    assert tuple(container["args"]) == CONTAINER_ARGS
    assert tuple(variable["name"] for variable in container["env"]) == ENVIRONMENT_VARIABLES


def test_environment_comes_from_the_generated_config_map(rendering: Rendering) -> None:
    container = rendering.operator_container()
    config_maps = {document["metadata"]["name"] for document in rendering.of_kind("ConfigMap")}
    for variable in container["env"]:
        reference = variable["valueFrom"]["configMapKeyRef"]
        # kustomize rewrote the name to the generated ConfigMap (with its content hash).
        assert reference["name"] in config_maps
        assert reference["key"] == variable["name"]
        # An overlay that does not set a key leaves the variable unset (boto3 defaults), not empty.
        assert reference["optional"] is True


def test_one_standalone_replica_replaced_not_rolled(rendering: Rendering) -> None:
    spec = rendering.operator_deployment()["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    assert "--standalone" in rendering.operator_container()["args"]


def test_probes_and_ports_are_the_operator_settings(rendering: Rendering) -> None:
    container = rendering.operator_container()
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"healthz": DEFAULT_LIVENESS_PORT, "metrics": DEFAULT_METRICS_PORT}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": LIVENESS_PATH, "port": "healthz"}
    annotations = rendering.operator_deployment()["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(DEFAULT_METRICS_PORT)


def test_pod_is_locked_down(rendering: Rendering) -> None:
    pod = rendering.operator_deployment()["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == SERVICE_ACCOUNT
    assert pod["automountServiceAccountToken"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = rendering.operator_container()
    context = container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] > 0
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    # The only writable path is an emptyDir on /tmp.
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    assert mounts == {"/tmp": "tmp"}
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]
    # The account itself mounts no token: only this pod asks for one.
    account = rendering.one("ServiceAccount", SERVICE_ACCOUNT)
    assert account["automountServiceAccountToken"] is False


def _rules(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_cluster_role_is_exactly_what_kopf_and_the_operator_use(rendering: Rendering) -> None:
    assert _rules(rendering.one("ClusterRole", "ddbbridge-operator")) == {
        ("ddbbridge.io", "tablereplicationpairs", "get"),
        ("ddbbridge.io", "tablereplicationpairs", "list"),
        ("ddbbridge.io", "tablereplicationpairs", "watch"),
        ("ddbbridge.io", "tablereplicationpairs", "patch"),
        ("ddbbridge.io", "tablereplicationpairs/status", "patch"),
        ("", "events", "create"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
    }
    binding = rendering.one("ClusterRoleBinding", "ddbbridge-operator")
    assert binding["subjects"] == [OPERATOR_SUBJECT]


def test_secrets_only_by_name_in_served_namespaces(rendering: Rendering) -> None:
    for role in rendering.of_kind("ClusterRole"):
        assert not any(resource == "secrets" for _, resource, _ in _rules(role)), role["metadata"]["name"]
    for role in rendering.of_kind("Role"):
        for rule in role["rules"]:
            assert rule["resources"] == ["secrets"]
            assert rule["verbs"] == ["get"]
            assert rule["resourceNames"], "a Role names the credential Secrets it allows"
    for binding in rendering.of_kind("RoleBinding"):
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"] == [OPERATOR_SUBJECT]
    assert all("*" not in rule for role in rendering.of_kind("ClusterRole") for rule in _rules(role))


@pytest.mark.parametrize("overlay", OVERLAYS, ids=str)
def test_overlays_serve_at_least_one_namespace(overlay: Path) -> None:
    rendering = Rendering.of(overlay)
    served = {role["metadata"]["namespace"] for role in rendering.of_kind("Role")}
    bound = {binding["metadata"]["namespace"] for binding in rendering.of_kind("RoleBinding")}
    assert served and served == bound


def test_dev_overlay_points_the_operator_at_emulated_regions() -> None:
    rendering = Rendering.of(Path("overlays/dev"))
    (environment,) = rendering.of_kind("ConfigMap")
    for variable in ("DDBBRIDGE_ENDPOINTS", "DDBBRIDGE_PEER_ENDPOINTS"):
        endpoints = parse_endpoints(environment["data"][variable])
        assert set(endpoints) == {"cn-north-1", "ap-southeast-1"}
    assert rendering.operator_container()["image"] == "ddbbridge:dev"


def test_base_image_tag_is_the_project_version() -> None:
    version = tomllib.loads((REPOSITORY / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    image = Rendering.of(Path("base")).operator_container()["image"]
    assert image.rsplit(":", 1)[1] == version


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    instructions = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def test_dockerfile_entrypoint_is_the_operator() -> None:
    instructions = _dockerfile_instructions()
    (entrypoint,) = [rest for keyword, rest in instructions if keyword == "ENTRYPOINT"]
    (command,) = [rest for keyword, rest in instructions if keyword == "CMD"]
    assert tuple(json.loads(entrypoint)) == CONTAINER_COMMAND
    assert tuple(json.loads(command)) == CONTAINER_ARGS


def test_dockerfile_final_stage_is_pinned_non_root_and_matches_the_pod() -> None:
    instructions = _dockerfile_instructions()
    bases = [rest.split()[0] for keyword, rest in instructions if keyword == "FROM"]
    assert len(bases) == 2, "builder stage and final stage"
    assert bases[0] == bases[1], "the venv's interpreter path must exist in the final stage"
    assert re.fullmatch(r"python:3\.12\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", bases[1])
    final = instructions[[keyword for keyword, _ in instructions].index("FROM", 1) :]
    (user,) = [rest for keyword, rest in final if keyword == "USER"]
    uid, gid = (int(part) for part in user.split(":"))
    context = Rendering.of(Path("base")).operator_container()["securityContext"]
    assert (uid, gid) == (context["runAsUser"], context["runAsGroup"])
    (exposed,) = [rest for keyword, rest in final if keyword == "EXPOSE"]
    assert {int(port) for port in exposed.split()} == {DEFAULT_LIVENESS_PORT, DEFAULT_METRICS_PORT}
