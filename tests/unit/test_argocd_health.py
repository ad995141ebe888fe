"""The Argo CD health check of TableReplicationPair, run through a real Lua 5.1 interpreter the way
Argo CD runs it: its own health_test.yaml cases, then every combination of the inputs it reads."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from ddbbridge import crd
from ddbbridge.spec import DEGRADED_INITIAL_SYNC_REASONS, DEGRADED_READY_REASONS
from ddbbridge_dev.argocd_health import (
    CONFIG_MAP_FILE,
    CONFIG_MAP_KEY,
    HEALTH_CODES,
    HEALTH_DIR,
    HealthCase,
    HealthStatus,
    argocd_cm,
    health_cases,
    load_object,
    run_health,
)
from ddbbridge_dev.crd_validation import admission_errors
from tests.pair_cases import REPOSITORY, minimal_pair

SCRIPT = (HEALTH_DIR / "health.lua").read_text(encoding="utf-8")
CASES = health_cases(HEALTH_DIR)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_health_test_yaml_case(case: HealthCase) -> None:
    assert run_health(SCRIPT, load_object(case.input_path)) == case.expected


def test_testdata_and_health_test_yaml_match() -> None:
    referenced = {case.input_path.resolve() for case in CASES}
    on_disk = {path.resolve() for path in (HEALTH_DIR / "testdata").glob("*.yaml")}
    assert referenced == on_disk
    outcomes = {case.expected.status for case in CASES}
    assert outcomes == {"Healthy", "Progressing", "Degraded", "Suspended"}
    # The four situations the issue names, by file name.
    names = {case.name for case in CASES}
    assert {"healthy_ready", "progressing_newGeneration", "degraded_stalled", "progressing_noStatus"} <= names


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_testdata_are_pairs_the_crd_admits(case: HealthCase) -> None:
    assert admission_errors(crd.crd(), load_object(case.input_path)) == []


def test_argo_cd_sandbox_is_reproduced() -> None:
    # Argo CD opens no string or math library: a script that needs them fails here as it would there.
    with pytest.raises(Exception, match="string"):
        run_health('return { status = string.upper("healthy") }', {})
    with pytest.raises(Exception, match="index a string value"):
        run_health('return { status = ("Healthy"):lower() }', {})
    assert run_health('return { status = "Fine" }', {}) == HealthStatus(
        "Unknown", "Lua returned an invalid health status"
    )
    assert run_health('return { status = "Healthy" }', {}) == HealthStatus("Healthy", "")


def test_degraded_reasons_agree_with_the_model() -> None:
    block = re.search(r"local DEGRADED_READY_REASONS = \{(.*?)\}", SCRIPT, re.S)
    assert block is not None
    assert set(re.findall(r"(\w+) = true", block.group(1))) == DEGRADED_READY_REASONS
    block = re.search(r"local DEGRADED_INITIAL_SYNC_REASONS = \{(.*?)\}", SCRIPT, re.S)
    assert block is not None
    assert set(re.findall(r"(\w+) = true", block.group(1))) == DEGRADED_INITIAL_SYNC_REASONS


def test_argocd_cm_carries_the_script_verbatim() -> None:
    text = CONFIG_MAP_FILE.read_text(encoding="utf-8")
    assert text == argocd_cm(SCRIPT), "regenerate with `python -m ddbbridge_dev.argocd_health`"
    assert yaml.safe_load(text)["data"][CONFIG_MAP_KEY] == SCRIPT


def test_application_installs_the_crd_and_the_production_overlay() -> None:
    application = yaml.safe_load((REPOSITORY / "argocd" / "application.yaml").read_text(encoding="utf-8"))
    assert application["kind"] == "Application"
    paths = [source["path"] for source in application["spec"]["sources"]]
    assert paths == ["crds", "manifests/overlays/production"]
    assert (REPOSITORY / "crds" / f"{crd.CRD_NAME}.yaml").is_file()
    if not (REPOSITORY / "manifests").is_dir():
        pytest.skip("manifests/ (the kustomize base and overlays) does not exist yet")
    assert (REPOSITORY / "manifests" / "overlays" / "production" / "kustomization.yaml").is_file()


# --- every combination ------------------------------------------------------------------------------

GENERATION = 4
OBSERVED = ("none", "older", "current")
CONDITION = ("absent", "True", "False", "Unknown", "stale-True")
READY = ("absent", "True", "False-transient", "False-degraded", "Unknown", "stale-True")
INITIAL_SYNC = ("absent", "True", "False-copying", "False-rejected", "stale-False")


def _condition(kind: str, state: str) -> dict[str, Any] | None:
    if state == "absent":
        return None
    status, _, flavour = state.partition("-")
    if status == "stale":
        status, flavour = ("False" if kind == "InitialSyncComplete" else "True"), "stale"
    reason = {
        "degraded": "DeadLetters",
        "transient": "Throttled",
        "copying": "Copying",
        "rejected": "ItemsRejected",
    }.get(flavour, "Observed")
    generation = GENERATION - 1 if flavour == "stale" else GENERATION
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": f"{kind} is {status}",
        "observedGeneration": generation,
        "lastTransitionTime": "2025-01-02T03:04:05Z",
    }


@dataclass(frozen=True)
class Inputs:
    """What the health check reads: one value per dimension."""

    observed: str
    stalled: str
    resync: str
    ready: str
    paused: bool
    deleting: bool
    initial_sync: str = "absent"

    def pair(self) -> dict[str, Any]:
        document = minimal_pair()
        document["metadata"]["generation"] = GENERATION
        document["spec"]["paused"] = self.paused
        if self.deleting:
            document["metadata"]["deletionTimestamp"] = "2025-01-02T03:04:05Z"
        if self.observed != "none":
            conditions = [
                condition
                for condition in (
                    _condition("Stalled", self.stalled),
                    _condition("ResyncRequired", self.resync),
                    _condition("Ready", self.ready),
                    _condition("InitialSyncComplete", self.initial_sync),
                )
                if condition is not None
            ]
            document["status"] = {
                "observedGeneration": GENERATION - 1 if self.observed == "older" else GENERATION,
                "conditions": conditions,
            }
        return document

    def documented(self) -> str:
        """The decision table as README and health.lua's header state it."""
        if self.deleting or self.observed != "current":
            return "Progressing"
        if self.stalled == "True" or self.resync == "True":
            return "Degraded"
        if self.paused:
            return "Suspended"
        if self.ready == "False-degraded":
            return "Degraded"
        if self.ready != "True":
            return "Progressing"
        if self.initial_sync == "False-rejected":
            return "Degraded"
        if self.initial_sync == "False-copying":
            return "Progressing"
        return "Healthy"


COMBINATIONS = [
    Inputs(*values)
    for values in itertools.product(OBSERVED, CONDITION, CONDITION, READY, (False, True), (False, True))
] + [
    # InitialSyncComplete matters only below Stalled/ResyncRequired: crossed with what it meets there.
    Inputs(observed, stalled, "absent", ready, paused, False, initial_sync)
    for observed, stalled, ready, paused, initial_sync in itertools.product(
        OBSERVED, ("absent", "True"), READY, (False, True), INITIAL_SYNC[1:]
    )
]


def test_every_combination_follows_the_documented_order() -> None:
    assert len(COMBINATIONS) == 3 * 5 * 5 * 6 * 2 * 2 + 3 * 2 * 6 * 2 * 4
    wrong = []
    for inputs in COMBINATIONS:
        result = run_health(SCRIPT, inputs.pair())
        assert result.status in HEALTH_CODES and result.message, inputs
        if result.status != inputs.documented():
            wrong.append((inputs, result))
    assert not wrong, wrong[:5]


def test_degraded_and_healthy_messages_name_the_condition() -> None:
    stalled = run_health(SCRIPT, Inputs("current", "True", "absent", "True", False, False).pair())
    assert stalled.message == "Stalled: Observed: Stalled is True"
    dead = run_health(SCRIPT, Inputs("current", "absent", "absent", "False-degraded", False, False).pair())
    assert dead.message == "Ready: DeadLetters: Ready is False"
