"""The generated TableReplicationPair CRD on a real kube-apiserver: established, samples admitted with
the model's defaults, invalid specs refused at admission with the server's own message, immutable
sides, the status subresource and the printer columns."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ddbbridge.crd import CRD_NAME, PLURAL
from ddbbridge.spec import API_GROUP, API_VERSION, PairStatus, parse_manifest
from tests.fixtures.kube import KubeClusterAccess
from tests.fixtures.waiting import wait_for
from tests.pair_cases import (
    ALLOWED_UPDATES,
    CRD_FILE,
    FULL_SAMPLE,
    INVALID_PAIRS,
    MINIMAL_SAMPLE,
    InvalidPair,
    minimal_pair,
)

pytestmark = pytest.mark.e2e


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def admin(kube_cluster: KubeClusterAccess) -> Iterator[Any]:
    api_client = kube_cluster.api_client()
    yield api_client
    api_client.close()


@pytest.fixture(scope="module")
def pair_crd(kube_cluster: KubeClusterAccess, admin: Any) -> str:
    kube_cluster.kubectl("apply", "--server-side", "-f", str(CRD_FILE))

    def established() -> bool:
        crd = client.ApiextensionsV1Api(admin).read_custom_resource_definition(CRD_NAME)
        conditions = {c.type: c.status for c in (crd.status.conditions or [])}
        return conditions.get("Established") == "True" and conditions.get("NamesAccepted") == "True"

    wait_for(established, 60, "the TableReplicationPair CRD to be established")
    # Discovery lags establishment a little: wait until kubectl resolves the short name.
    wait_for(
        lambda: kube_cluster.kubectl("get", "trp", "-A", check=False).returncode == 0,
        60,
        "kubectl to discover trp",
    )
    return CRD_NAME


@pytest.fixture(scope="module")
def namespace(kube_cluster: KubeClusterAccess, pair_crd: str) -> Iterator[str]:
    name = _unique("trp-e2e")
    kube_cluster.kubectl("create", "namespace", name)
    yield name
    # Leave no pairs behind for an operator that a later test module may run cluster-wide.
    kube_cluster.kubectl("delete", "trp", "--all", "-n", name, "--wait=true")
    kube_cluster.kubectl("delete", "namespace", name, "--wait=false")


def _apply(kube: KubeClusterAccess, namespace: str, document: dict[str, Any], *extra: str) -> Any:
    return kube.kubectl(
        "apply", "-n", namespace, *extra, "-f", "-", stdin=yaml.safe_dump(document), check=False
    )


def _get(kube: KubeClusterAccess, namespace: str, name: str) -> dict[str, Any]:
    result = kube.kubectl("get", "trp", name, "-n", namespace, "-o", "json")
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def _named(name: str) -> dict[str, Any]:
    document = minimal_pair()
    document["metadata"]["name"] = name
    return document


def test_crd_is_established_with_status_subresource(admin: Any, pair_crd: str) -> None:
    crd = client.ApiextensionsV1Api(admin).read_custom_resource_definition(pair_crd)
    assert crd.spec.names.short_names == ["trp"]
    (version,) = crd.spec.versions
    assert version.subresources.status is not None


def test_minimal_sample_is_admitted_with_the_model_defaults(
    kube_cluster: KubeClusterAccess, namespace: str
) -> None:
    kube_cluster.kubectl("apply", "-n", namespace, "-f", str(MINIMAL_SAMPLE))
    stored = _get(kube_cluster, namespace, "users")
    document = yaml.safe_load(MINIMAL_SAMPLE.read_text(encoding="utf-8"))
    expected = parse_manifest(document).spec.model_dump(by_alias=True, mode="json", exclude_none=True)
    assert stored["spec"] == expected
    assert stored["metadata"]["generation"] == 1


def test_server_fills_omitted_blocks(kube_cluster: KubeClusterAccess, namespace: str) -> None:
    document = _named(_unique("bare"))
    del document["spec"]["replication"]
    del document["spec"]["deletionPolicy"]
    result = _apply(kube_cluster, namespace, document)
    assert result.returncode == 0, result.stderr
    stored = _get(kube_cluster, namespace, document["metadata"]["name"])["spec"]
    assert stored["replication"]["timestampUnit"] == "seconds"
    assert stored["replication"]["senderBatchSize"] == 500
    assert stored["credentials"] == {
        "mode": "accessKey",
        "rotationDays": 30,
        "enableOutboundFederation": False,
    }
    assert stored["deletionPolicy"] == "Delete"
    assert stored["paused"] is False


def test_full_sample_is_admitted(kube_cluster: KubeClusterAccess, namespace: str) -> None:
    document = yaml.safe_load(FULL_SAMPLE.read_text(encoding="utf-8"))
    del document["metadata"]["namespace"]  # the sample names `default`; apply it in the test's own
    result = _apply(kube_cluster, namespace, document, "--dry-run=server")
    assert result.returncode == 0, result.stderr
    stored = yaml.safe_load(
        _apply(kube_cluster, namespace, document, "--dry-run=server", "-o", "yaml").stdout
    )
    assert stored["spec"] == parse_manifest(document).spec.model_dump(
        by_alias=True, mode="json", exclude_none=True
    )


@pytest.mark.parametrize("case", [c for c in INVALID_PAIRS if not c.transition], ids=lambda c: c.id)
def test_invalid_pair_is_refused_at_admission(
    kube_cluster: KubeClusterAccess, namespace: str, case: InvalidPair
) -> None:
    document = case.manifest(name=_unique("bad"))
    result = kube_cluster.kubectl(
        "create", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(document), check=False
    )
    assert result.returncode != 0, f"{case.id} was admitted"
    assert re.search(case.server_message, result.stderr), result.stderr
    gone = kube_cluster.kubectl("get", "trp", document["metadata"]["name"], "-n", namespace, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr


@pytest.mark.parametrize("case", [c for c in INVALID_PAIRS if c.transition], ids=lambda c: c.id)
def test_immutable_change_is_refused(
    kube_cluster: KubeClusterAccess, namespace: str, case: InvalidPair
) -> None:
    name = _unique("sealed")
    created = _apply(kube_cluster, namespace, _named(name))
    assert created.returncode == 0, created.stderr
    changed = _apply(kube_cluster, namespace, case.manifest(name=name))
    assert changed.returncode != 0, f"{case.id} was accepted as an update"
    assert re.search(case.server_message, changed.stderr), changed.stderr
    assert _get(kube_cluster, namespace, name)["spec"] == _get_spec_of(_named(name))


def _get_spec_of(document: dict[str, Any]) -> dict[str, Any]:
    return parse_manifest(document).spec.model_dump(by_alias=True, mode="json", exclude_none=True)


@pytest.mark.parametrize(("label", "change"), ALLOWED_UPDATES, ids=[label for label, _ in ALLOWED_UPDATES])
def test_mutable_change_is_accepted(
    kube_cluster: KubeClusterAccess, namespace: str, label: str, change: Any
) -> None:
    name = _unique("open")
    assert _apply(kube_cluster, namespace, _named(name)).returncode == 0
    updated = _named(name)
    change(updated)
    result = _apply(kube_cluster, namespace, updated)
    assert result.returncode == 0, result.stderr
    assert _get(kube_cluster, namespace, name)["metadata"]["generation"] == 2


def _status(generation: int) -> dict[str, Any]:
    now = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    status = PairStatus.model_validate(
        {
            "observedGeneration": generation,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Replicating",
                    "message": "both directions healthy",
                    "observedGeneration": generation,
                    "lastTransitionTime": now,
                },
                {"type": "Stalled", "status": "False", "reason": "SpecValid", "lastTransitionTime": now},
            ],
            "directions": [
                {"source": "cn", "target": "sg", "replicatedCount": 1234, "lagSeconds": 1.5, "dlqDepth": 0},
                {"source": "sg", "target": "cn", "replicatedCount": 567, "lagSeconds": 0.5, "dlqDepth": 2},
            ],
            "lagSeconds": 1.5,
            "dlqDepth": 2,
        }
    )
    dumped: dict[str, Any] = status.model_dump(by_alias=True, mode="json", exclude_none=True)
    return dumped


def test_status_subresource_and_printer_columns(
    kube_cluster: KubeClusterAccess, namespace: str, admin: Any
) -> None:
    name = _unique("cols")
    assert _apply(kube_cluster, namespace, _named(name)).returncode == 0
    api = client.CustomObjectsApi(admin)
    args = (API_GROUP, API_VERSION, namespace, PLURAL, name)

    # Status written through the main resource is dropped: only the subresource writes it.
    api.patch_namespaced_custom_object(*args, {"status": _status(1)})
    assert "status" not in api.get_namespaced_custom_object(*args)

    api.patch_namespaced_custom_object_status(*args, {"status": _status(1)})
    stored = api.get_namespaced_custom_object(*args)
    assert stored["metadata"]["generation"] == 1, "a status update must not bump generation"
    assert stored["status"] == _status(1)

    with pytest.raises(ApiException) as refused:
        bad = _status(1)
        bad["conditions"][0]["status"] = "Maybe"
        api.patch_namespaced_custom_object_status(*args, {"status": bad})
    assert refused.value.status == 422 and "Maybe" in str(refused.value.body)

    table = kube_cluster.kubectl("get", "trp", name, "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "A", "B", "LAG", "DLQ", "AGE"]
    assert table[1].split()[:6] == [name, "True", "cn-north-1", "ap-southeast-1", "1.5", "2"]

    wide = kube_cluster.kubectl("get", "trp", name, "-n", namespace, "-o", "wide").stdout.splitlines()
    header = wide[0].split()
    assert header[:7] == ["NAME", "READY", "A", "B", "LAG", "DLQ", "AGE"]
    assert header[7:] == ["A-TO-B", "B-TO-A", "REASON", "POLICY", "PAUSED"]
    assert wide[1].split()[7:] == ["1234", "567", "Replicating", "Delete", "false"]

    # The category lists pairs too.
    assert name in kube_cluster.kubectl("get", "ddbbridge", "-n", namespace).stdout

    # A spec change bumps generation; the stored status keeps the older observedGeneration.
    updated = _named(name)
    updated["spec"]["deletionPolicy"] = "Retain"
    assert _apply(kube_cluster, namespace, updated).returncode == 0
    stored = api.get_namespaced_custom_object(*args)
    assert stored["metadata"]["generation"] == 2
    assert stored["status"]["observedGeneration"] == 1
