"""Fixtures for the browser tests (they and the helpers live in dashboardharness.py), and the
line of the terminal summary that says where the screenshots are."""

from __future__ import annotations

import pytest
from dashboardharness import SCREENSHOT_DIRS, browser, live, screenshots

__all__ = ["browser", "live", "screenshots"]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for path in SCREENSHOT_DIRS:
        count = len(list(path.glob("*.png")))
        terminalreporter.write_line(f"dashboard screenshots ({count}): {path}")
