"""The dashboard in a real browser (Debian's Chromium, headless, through Playwright) against a
real server: every page renders without console errors, a job is seen moving Pending ->
Running -> Succeeded live, the GPU map shows the placement the API reports, and a viewer is
not shown logs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dashboardharness import Browser, Live, sign_in, sleeper

pytestmark = pytest.mark.integration

PAGES = [
    ("overview", "/", "#findings"),
    ("queues", "/ui/queues", "#queues"),
    ("jobs", "/ui/jobs", "#jobs"),
    ("job", "/ui/jobs/holder", "#events"),
    ("nodes", "/ui/nodes", ".gpumap"),
    ("services", "/ui/services", "#services"),
    ("pipelineruns", "/ui/pipelineruns", "h1"),
    ("simulations", "/ui/reports", "section.report"),
]


def test_every_page_renders_without_console_errors(
    live: Live, browser: Browser, screenshots: Path
) -> None:
    page = browser.page(live.url)
    sign_in(page, live.token)
    for name, path, selector in PAGES:
        response = page.goto(path)
        assert response is not None and response.status == 200, (path, response)
        page.wait_for_selector(selector)
        page.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)
    # the pages show the objects the server holds
    page.goto("/ui/jobs")
    assert page.locator('tr[data-job="holder"] .phase').inner_text() == "Running"
    page.goto("/ui/jobs/holder")
    assert "holder says hello" in page.locator("pre.log").inner_text()
    page.goto("/")
    assert "2.5 of 8 GPUs allocated now" in page.locator("#allocation").inner_text()
    page.goto("/ui/reports")
    assert "fgd" in page.locator("section.report table").inner_text()
    plot = page.locator("section.report img")
    assert plot.evaluate("img => img.complete && img.naturalWidth") == 60  # the plot loaded
    page.context.close()
    assert browser.errors == []


def test_a_job_moves_pending_running_succeeded_live(
    live: Live, browser: Browser, screenshots: Path
) -> None:
    # team's quota is 4 GPUs: holder 2 + frac 0.5 + blocker 1 leave too little for mover (1)
    live.apply(sleeper("blocker", 1, 600))
    live.wait_phase("blocker", "Running")
    page = browser.page(live.url)
    sign_in(page, live.token)
    page.goto("/ui/jobs")
    page.wait_for_selector("#live:has-text('live updates: on')")
    page.evaluate(
        """() => {
            window.__notReloaded = true;
            window.__phases = [];
            const record = () => {
                const row = document.querySelector('tr[data-job="mover"]');
                const phase = row && row.dataset.phase;
                if (phase && window.__phases[window.__phases.length - 1] !== phase)
                    window.__phases.push(phase);
            };
            new MutationObserver(record).observe(document.getElementById("jobs"),
                {subtree: true, childList: true, attributes: true});
        }"""
    )
    live.apply(sleeper("mover", 1, 2))
    page.wait_for_selector('tr[data-job="mover"][data-phase="Pending"]', timeout=15_000)
    # its reason arrives with a later event, in place
    page.wait_for_selector('tr[data-job="mover"] .reason:text-is("QuotaExceeded")')
    page.screenshot(path=str(screenshots / "jobs-live-pending.png"), full_page=True)
    live.http.post("/api/v1/jobs/blocker/cancel").raise_for_status()
    page.wait_for_selector('tr[data-job="mover"][data-phase="Running"]', timeout=15_000)
    page.wait_for_selector('tr[data-job="mover"][data-phase="Succeeded"]', timeout=20_000)
    page.screenshot(path=str(screenshots / "jobs-live-succeeded.png"), full_page=True)
    phases = page.evaluate("window.__phases")
    assert page.evaluate("window.__notReloaded") is True  # patched in place, not reloaded
    seen = [p for p in phases if p in ("Pending", "Running", "Succeeded")]
    assert seen == ["Pending", "Running", "Succeeded"], phases
    assert page.locator('tr[data-job="blocker"]').get_attribute("data-phase") == "Cancelled"
    page.context.close()
    assert browser.errors == []


def _placement(live: Live) -> dict[tuple[str, int], list[str]]:
    """(node, device) -> sorted ``job/pod:milli`` of the running pods, from the API."""
    out: dict[tuple[str, int], list[str]] = {}
    for listed in live.http.get("/api/v1/jobs").json():
        if listed["phase"] != "Running":
            continue
        job = live.job(listed["name"])
        for pod in job["pods"]:
            if pod["attempt"] != job["attempt"] or pod["phase"] != "Running":
                continue
            for device in pod["devices"]:
                key = (pod["node"], device["index"])
                out.setdefault(key, []).append(f"{job['name']}/{pod['name']}:{device['milli']}")
    return {k: sorted(v) for k, v in out.items()}


def test_the_gpu_map_matches_the_placement(live: Live, browser: Browser, screenshots: Path) -> None:
    expected = _placement(live)
    assert sum(len(v) for v in expected.values()) >= 3  # holder's two devices and frac's half
    page = browser.page(live.url)
    sign_in(page, live.token)
    page.goto("/ui/nodes")
    cells: list[dict[str, Any]] = page.eval_on_selector_all(
        ".gpu",
        "cells => cells.map(c => ({node: c.dataset.node, index: Number(c.dataset.index),"
        " used: Number(c.dataset.usedMilli), holders: c.dataset.holders}))",
    )
    nodes = live.http.get("/api/v1/nodes").json()
    assert len(cells) == sum(len(n["gpus"]) for n in nodes) == 8  # every device drawn
    shown = {
        (c["node"], c["index"]): sorted(h for h in c["holders"].split(",") if h) for c in cells
    }
    assert {k: v for k, v in shown.items() if v} == expected
    used = {(c["node"], c["index"]): c["used"] for c in cells}
    for key, holders in expected.items():
        assert used[key] == sum(int(h.rsplit(":", 1)[1]) for h in holders)
    assert expected == _placement(live)  # nothing moved while the page was read
    frac = page.locator('.gpu[data-holders^="frac/"]')
    assert "frac/worker-0 (0.5)" in frac.inner_text()
    page.screenshot(path=str(screenshots / "nodes-gpu-map.png"), full_page=True)
    page.context.close()
    assert browser.errors == []


def _viewer_token(live: Live) -> str:
    response = live.http.post("/api/v1/users", json={"name": "vera", "role": "viewer"})
    if response.status_code == 404:
        pytest.fail("no /api/v1/users: roles are needed for this test")
    assert response.status_code in (201, 409), response.text
    created = live.http.post("/api/v1/tokens", json={"user": "vera", "name": "browser"})
    assert created.status_code == 201, created.text
    token: str = created.json()["token"]
    return token


def test_a_viewer_is_not_shown_logs(live: Live, browser: Browser, screenshots: Path) -> None:
    token = _viewer_token(live)
    # the API refuses the viewer the logs: the page must not show them either
    denied = live.http.get("/api/v1/jobs/holder/logs", headers={"Authorization": f"Bearer {token}"})
    assert denied.status_code == 403, denied.text
    page = browser.page(live.url)
    sign_in(page, token)
    page.goto("/ui/jobs/holder")
    logs = page.locator("#logs")
    assert "logs: not allowed for your role" in logs.inner_text()
    assert page.locator("pre.log").count() == 0
    assert "holder says hello" not in page.content()
    # the rest of the job is shown to a viewer
    assert page.locator("#phase").inner_text() == "Running"
    page.screenshot(path=str(screenshots / "job-as-viewer.png"), full_page=True)
    page.context.close()
    assert browser.errors == []


def test_signing_in_with_a_wrong_token_is_refused(live: Live, browser: Browser) -> None:
    page = browser.page(live.url)
    page.goto("/ui/jobs")
    page.wait_for_url("**/ui/login?next=%2Fui%2Fjobs")
    page.fill("input[name=token]", "not-a-token")
    page.click("form.login button")
    assert "not accepted" in page.locator("main").inner_text()
    page.context.close()
    # the 401 of the sign-in answer is the page's own status, not a script error
    browser.errors[:] = [e for e in browser.errors if "401" not in e]
    assert browser.errors == []
