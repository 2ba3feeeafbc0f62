"""Fixtures and helpers for the browser tests: a real server (uvicorn on a free port, the local backend on
two virtual 4-GPU nodes, real processes) and Debian's Chromium driven headless by Playwright.

Without Chromium or Playwright the tests are skipped, unless ``PHALANX_REQUIRE_BROWSER=1``
(CI sets it) makes that a failure. Screenshots go to ``PHALANX_ARTIFACT_DIR`` (default: a
temporary directory); the path is printed at the end of the run.
"""

from __future__ import annotations

import os
import shutil
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from live_server import admin_client, python_job, running_server
from phalanx.simulation.report import render_html
from phalanx.testing import queue_manifests

QUEUE = "team"


def _require(what: str) -> None:
    if os.environ.get("PHALANX_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{what} is required here (PHALANX_REQUIRE_BROWSER=1)")
    pytest.skip(f"{what} is not installed")


def chromium_path() -> str:
    """Debian's Chromium (package ``chromium``), or ``PHALANX_CHROMIUM``."""
    path = os.environ.get("PHALANX_CHROMIUM") or shutil.which("chromium")
    if path is None:
        _require("Chromium (apt-get install chromium)")
    assert path is not None
    return path


def sleeper(name: str, gpus: float, seconds: float, output: str = "") -> dict[str, object]:
    code = f"import time; print({output!r}, flush=True); time.sleep({seconds})"
    return python_job(name, code, queue=QUEUE, gpus=gpus, labels={"suite": "browser"})


SETUP = queue_manifests(QUEUE, cpu=8, memory="8Gi", gpu=4)


@dataclass
class Live:
    url: str
    token: str
    http: httpx.Client

    def apply(self, *manifests: dict[str, object]) -> None:
        response = self.http.post("/api/v1/apply", json={"manifests": list(manifests)})
        assert response.status_code == 200, response.text

    def job(self, name: str) -> dict[str, Any]:
        response = self.http.get(f"/api/v1/jobs/{name}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def wait_phase(self, name: str, phase: str, timeout_s: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while (job := self.job(name))["phase"] != phase:
            assert time.monotonic() < deadline, job
            time.sleep(0.05)
        return job


def png(width: int, height: int) -> bytes:
    """A grey PNG image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def write_report(directory: Path) -> None:
    """A simulator report as ``phalanx simulate --report DIR/what-if.html`` writes it: the
    simulator's HTML with a table and a plot beside it."""
    plots = directory / "what-if_plots"
    plots.mkdir(parents=True)
    (plots / "allocation_curve.png").write_bytes(png(60, 30))
    markdown = (
        "# What if: two policies\n\n| policy | GPU allocation |\n|---|---|\n"
        "| fgd | 0.91 |\n| best-fit | 0.87 |\n\n"
        "![allocation_curve](what-if_plots/allocation_curve.png)\n"
    )
    (directory / "what-if.html").write_text(render_html(markdown))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A server with ``holder`` (2 GPUs) and ``frac`` (half a GPU) running for 10 minutes."""
    tmp = tmp_path_factory.mktemp("dashboard")
    with (
        running_server(tmp, nodes="2x4", thread_name="phalanx-browser-server") as api,
        admin_client(api, timeout_s=10) as http,
    ):
        live = Live(api.url, api.token, http)
        try:
            write_report(api.data_dir / "reports")
            live.apply(
                *SETUP, sleeper("holder", 2, 600, "holder says hello"), sleeper("frac", 0.5, 600)
            )
            live.wait_phase("holder", "Running")
            live.wait_phase("frac", "Running")
            yield live
        finally:
            for job in http.get("/api/v1/jobs").json():
                if not job["is_finished"]:
                    http.post(f"/api/v1/jobs/{job['name']}/cancel")
            for job in http.get("/api/v1/jobs").json():
                if not job["is_finished"]:
                    live.wait_phase(job["name"], "Cancelled", 15)


#: Where this run's screenshots went (printed in the terminal summary by conftest.py).
SCREENSHOT_DIRS: list[Path] = []


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the run saves a screenshot of each page."""
    given = os.environ.get("PHALANX_ARTIFACT_DIR")
    path = Path(given) / "screenshots" if given else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    SCREENSHOT_DIRS.append(path)
    return path


@dataclass
class Browser:
    """A Chromium browser; ``errors`` collects console errors and uncaught exceptions of
    every page it opened."""

    browser: Any
    errors: list[str] = field(default_factory=list)

    def page(self, base_url: str) -> Any:
        context = self.browser.new_context(
            base_url=base_url, viewport={"width": 1400, "height": 900}
        )
        page = context.new_page()
        page.on(
            "console",
            lambda m: (
                self.errors.append(f"{page.url}: console {m.type}: {m.text}")
                if m.type == "error"
                else None
            ),
        )
        page.on("pageerror", lambda e: self.errors.append(f"{page.url}: {e}"))
        return page


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _require("Playwright for Python (pip install -e '.[browser]')")
        raise
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox"]
        )
        try:
            yield Browser(chromium)
        finally:
            chromium.close()


def sign_in(page: Any, token: str) -> None:
    """Sign in through the form, as a person would."""
    page.goto("/")
    page.wait_for_url("**/ui/login**")
    page.fill("input[name=token]", token)
    page.click("form.login button")
    page.wait_for_url(lambda url: "/ui/login" not in url)
