"""The fault scenario suite (issue 13): each folder here is a cluster, a fault and the root
cause the doctor must name; see runner.py for the format and the score."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from runner import ROOT, Outcome, local_skip, run_scenario, scenario_folders, scenario_plane

from phalanx.ops.metrics import registry_for, render

FOLDERS = scenario_folders()
#: Every scenario again on the local backend, but those that say why they cannot run there.
LOCAL = [
    pytest.param(f, marks=pytest.mark.skip(reason=f"{f.name}: {why}") if why else ())
    for f in FOLDERS
    for why in [local_skip(f)]
]


def test_the_suite_has_enough_scenarios() -> None:
    assert len(FOLDERS) >= 40


@pytest.mark.parametrize("folder", FOLDERS, ids=[f.name for f in FOLDERS])
def test_doctor_names_the_root_cause(folder: Path) -> None:
    outcome: Outcome = run_scenario(folder)
    described = [(f.code.value, f.object, f.summary) for f in outcome.findings]
    assert outcome.score == 1.0, f"expected {sorted(outcome.expected)}, found {described}"


@pytest.mark.parametrize("folder", LOCAL, ids=[f.name for f in FOLDERS])
def test_doctor_names_the_root_cause_on_the_local_backend(folder: Path) -> None:
    # The same scenario with real processes in real time (runner.py's local substrate).
    outcome: Outcome = run_scenario(folder, "local")
    described = [(f.code.value, f.object, f.summary) for f in outcome.findings]
    assert outcome.score == 1.0, f"expected {sorted(outcome.expected)}, found {described}"


def test_replicas_answers_reach_the_metrics_by_service_replica_and_class() -> None:
    # The service-errors scenario: two replicas behind a real router, the first answers 500.
    with scenario_plane(ROOT / "service-errors") as run:
        plane = run.plane
        replicas = sorted(j.name for j in plane.store.list_jobs(manifests=False))
        text = render(registry_for(plane)).decode()
    samples = {
        (s.labels["replica"], s.labels["code_class"]): s.value
        for family in text_string_to_metric_families(text)
        if family.name == "phalanx_service_responses"
        for s in family.samples
        if s.name == "phalanx_service_responses_total" and s.labels["service"] == "web"
    }
    assert samples == {(replicas[0], "5xx"): 20.0, (replicas[1], "2xx"): 20.0}
