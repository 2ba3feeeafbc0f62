"""Services and pipeline runs going live in a real browser (Debian's Chromium, headless,
through Playwright) against a real server: a Service whose replica is the package's echo
server (a real process on a free port, ready once it answers its probe) appears on the
services page and turns ready without a reload; a PipelineRun of real step jobs appears on
the runs page and its DAG's steps turn Succeeded without a reload."""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dashboardharness import QUEUE, Browser, Live, sign_in

from phalanx.kinds.pipeline import spec_manifest
from project_modules import importable_module

pytestmark = pytest.mark.integration

#: The replica: phalanx's echo server on the port the Service gives it, listening only after
#: two seconds, so the page shows it running but not ready first.
ECHO = (
    "import os; from phalanx.serving.echo import main; "
    "main(['--port', os.environ['PORT'], '--startup-delay-s', '2'])"
)

#: The pipeline's module. ``first`` waits until the test creates the gate file, then takes
#: it away, so each run's first step runs exactly as long as the test needs to watch it.
FLOW = """
import os, time
from phalanx.pipelines import pipeline, task

GATE = {gate!r}

@task
def first() -> int:
    deadline = time.monotonic() + 120
    while not os.path.exists(GATE):
        if time.monotonic() > deadline:
            raise TimeoutError("the test never opened the gate")
        time.sleep(0.05)
    os.remove(GATE)
    return 1

@task
def second(x: int) -> int:
    return x + 10

@pipeline(name="browserflow")
def flow() -> object:
    return second(first())
"""

#: Notes, in the page, that it was not loaded again and which values of a data attribute
#: the element ``selector`` finds showed, in order, starting with the one it shows now.
WATCHER = """([selector, attribute]) => {
    window.__notReloaded = true;
    window.__seen = [];
    const note = () => {
        const found = document.querySelector(selector);
        const state = found && found.getAttribute(attribute);
        if (state && window.__seen[window.__seen.length - 1] !== state) window.__seen.push(state);
    };
    note();
    new MutationObserver(note).observe(document.getElementById("main"), {subtree: true, childList: true});
}"""


def echo_service(name: str) -> dict[str, object]:
    return {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "queue": QUEUE,
            "readinessProbe": {"path": "/healthz", "period": "200ms"},
            "template": {
                "command": [sys.executable, "-c", ECHO],
                "resources": {"cpu": "100m", "memory": "64Mi"},
            },
        },
    }


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    """A project directory with the pipeline's module, importable here and by the steps."""
    with importable_module(tmp_path, "browserflow", FLOW.format(gate=str(tmp_path / "go"))):
        yield tmp_path


def run_manifest(name: str, project: Path) -> dict[str, object]:
    """A PipelineRun of ``browserflow``: each step a job whose pod runs the module above."""
    flow: Any = importlib.import_module("browserflow").flow
    spec = spec_manifest(flow.build().spec)
    spec["queue"] = QUEUE
    spec["artifacts"] = str(project / "artifacts")
    spec["noCache"] = True
    spec["code"] = {
        "workingDir": str(project),
        "pythonPath": [str(project)],
        "python": sys.executable,
    }
    return {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "PipelineRun",
        "metadata": {"name": name},
        "spec": spec,
    }


def delete_service(live: Live, name: str) -> None:
    """Delete the Service and wait until its replicas are gone (the module's teardown
    cancels what is left, and a Service would replace them)."""
    live.http.delete(f"/api/v1/services/{name}")
    deadline = time.monotonic() + 20
    while any(
        j["name"].startswith(f"{name}-") and not j["is_finished"]
        for j in live.http.get("/api/v1/jobs").json()
    ):
        assert time.monotonic() < deadline, "the service's replicas did not stop"
        time.sleep(0.1)


def test_a_service_appears_and_turns_ready_live(
    live: Live, browser: Browser, screenshots: Path
) -> None:
    page = browser.page(live.url)
    sign_in(page, live.token)
    page.goto("/ui/services")
    page.wait_for_selector("#live:has-text('live updates: on')")
    section = 'section[data-service="echo"]'
    page.evaluate(WATCHER, [section, "data-ready"])
    live.apply(echo_service("echo"))
    try:
        page.wait_for_selector(f"{section}[data-ready='0'] .phase-starting", timeout=20_000)
        page.screenshot(path=str(screenshots / "services-live-starting.png"), full_page=True)
        page.wait_for_selector(f"{section}[data-ready='1'] .phase-ready", timeout=30_000)
        page.screenshot(path=str(screenshots / "services-live-ready.png"), full_page=True)
        assert "1 ready of 1" in page.locator(f"{section} h2").inner_text()
        # what the page shows is what the API says, and it came without a reload
        service = live.http.get("/api/v1/services/echo").json()
        assert service["ready"] == 1 and service["replicas"][0]["phase"] == "Ready"
        assert page.locator(f"{section} td", has_text=service["replicas"][0]["name"]).count()
        assert page.evaluate("window.__notReloaded") is True
        assert page.evaluate("window.__seen") == ["0", "1"]
        assert page.locator("#services p.empty").count() == 0
    finally:
        delete_service(live, "echo")
    page.wait_for_selector('section[data-service="echo"]', state="detached", timeout=20_000)
    page.context.close()
    assert browser.errors == []


def test_a_pipeline_run_appears_and_its_steps_succeed_live(
    live: Live, browser: Browser, screenshots: Path, project: Path
) -> None:
    page = browser.page(live.url)
    sign_in(page, live.token)
    page.goto("/ui/pipelineruns")
    page.wait_for_selector("#live:has-text('live updates: on')")
    page.evaluate("() => { window.__notReloaded = true; }")
    live.apply(run_manifest("run-1", project))
    row = 'tr[data-run="run-1"]'
    page.wait_for_selector(f"{row}[data-phase='Running']", timeout=20_000)
    page.screenshot(path=str(screenshots / "pipelineruns-live-running.png"), full_page=True)
    (project / "go").touch()  # the first step may finish now
    page.wait_for_selector(f"{row}[data-phase='Succeeded']", timeout=60_000)
    assert page.locator(f"{row} td").nth(4).inner_text() == "2"  # both steps succeeded
    assert page.evaluate("window.__notReloaded") is True
    page.screenshot(path=str(screenshots / "pipelineruns-live-succeeded.png"), full_page=True)

    # one run's DAG, opened while its first step runs (held until the page watches it)
    live.apply(run_manifest("run-2", project))
    page.goto("/ui/pipelineruns/run-2")
    page.wait_for_selector("#live:has-text('live updates: on')")
    page.wait_for_selector('g.step[data-step="first"][data-state="Running"]', timeout=20_000)
    page.evaluate(WATCHER, ['g.step[data-step="first"]', "data-state"])
    (project / "go").touch()
    page.wait_for_selector('g.step[data-step="first"][data-state="Succeeded"]', timeout=60_000)
    page.wait_for_selector('g.step[data-step="second"][data-state="Succeeded"]', timeout=60_000)
    page.wait_for_selector('#phase[data-phase="Succeeded"]', timeout=20_000)
    page.screenshot(path=str(screenshots / "pipelinerun-dag-live.png"), full_page=True)
    assert page.evaluate("window.__notReloaded") is True
    seen = page.evaluate("window.__seen")
    assert seen == ["Running", "Succeeded"], seen  # it changed while watched
    run = live.http.get("/api/v1/pipelineruns/run-2").json()
    assert {s: v["state"] for s, v in run["status"]["steps"].items()} == {
        "first": "Succeeded",
        "second": "Succeeded",
    }
    page.context.close()
    assert browser.errors == []
