"""The deployment manifests as the tests see them: every kustomization under manifests/, rendered by
`kubectl kustomize` (the same renderer `make lint-deploy` and a user run), and the operator's pieces."""

from __future__ import annotations

import functools
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPOSITORY = Path(__file__).resolve().parent.parent
MANIFESTS = REPOSITORY / "manifests"
CRDS = REPOSITORY / "crds"
DOCKERFILE = REPOSITORY / "Dockerfile"

NAMESPACE = "ddbbridge-system"
SERVICE_ACCOUNT = "ddbbridge-operator"
OPERATOR_USER = f"system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}"
DEPLOYMENT = "ddbbridge-operator"
# What overlays/production serves (its served-namespaces.yaml): namespace and credential Secrets.
PRODUCTION_SERVED_NAMESPACE = "data-replication"
PRODUCTION_CREDENTIAL_SECRETS = ("aws-cn", "aws-global")


def kustomizations() -> list[Path]:
    """Every folder under manifests/ that kustomize can build, relative to manifests/."""
    return sorted(path.parent.relative_to(MANIFESTS) for path in MANIFESTS.rglob("kustomization.yaml"))


@functools.cache  # the manifests do not change during a test session
def render_text(kustomization: Path) -> str:
    result = subprocess.run(
        ["kubectl", "kustomize", str(MANIFESTS / kustomization)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"kubectl kustomize {kustomization} failed: {result.stderr}")
    return result.stdout


@dataclass(frozen=True)
class Rendering:
    """One kustomization's output, as parsed documents."""

    documents: tuple[dict[str, Any], ...]

    @classmethod
    def of(cls, kustomization: Path) -> Rendering:
        loaded = yaml.safe_load_all(render_text(kustomization))
        return cls(tuple(document for document in loaded if document))

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [document for document in self.documents if document["kind"] == kind]

    def one(self, kind: str, name: str) -> dict[str, Any]:
        found = [document for document in self.of_kind(kind) if document["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
        return found[0]

    def operator_deployment(self) -> dict[str, Any]:
        return self.one("Deployment", DEPLOYMENT)

    def operator_container(self) -> dict[str, Any]:
        containers = self.operator_deployment()["spec"]["template"]["spec"]["containers"]
        assert len(containers) == 1
        container: dict[str, Any] = containers[0]
        return container
