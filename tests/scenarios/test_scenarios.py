"""The fault scenario suite (issue 13): each folder here is a cluster, a fault and the root
cause the doctor must name; see runner.py for the format and the score."""

from __future__ import annotations

from pathlib import Path

import pytest
from runner import Outcome, run_scenario, scenario_folders

FOLDERS = scenario_folders()


def test_the_suite_has_enough_scenarios() -> None:
    assert len(FOLDERS) >= 40


@pytest.mark.parametrize("folder", FOLDERS, ids=[f.name for f in FOLDERS])
def test_doctor_names_the_root_cause(folder: Path) -> None:
    outcome: Outcome = run_scenario(folder)
    described = [(f.code.value, f.object, f.summary) for f in outcome.findings]
    assert outcome.score == 1.0, f"expected {sorted(outcome.expected)}, found {described}"
