"""Fixtures for the LLM serving tests: a fleet of vLLM-compatible simulators.

``llm_sims(n, **kwargs)`` starts ``n`` simulators (phalanx.testing.llmsim.start_llm_sims; kwargs
as there) for the test and stops them after it. The llm-d-inference-sim binary is used when
scripts/llmsim/llmsim has built it, else phalanx's own simulator; with
PHALANX_REQUIRE_LLMSIM=1 the llm-d binary is required and its absence fails the test.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from phalanx.testing.llmsim import LLMSim, LLMSimUnavailableError, start_llm_sims


@pytest.fixture
def llm_sims(tmp_path: Path) -> Iterator[Callable[..., list[LLMSim]]]:
    with contextlib.ExitStack() as stack:

        def start(n: int, **kwargs: Any) -> list[LLMSim]:
            kwargs.setdefault("log_dir", tmp_path)
            try:
                return stack.enter_context(start_llm_sims(n, **kwargs))
            except LLMSimUnavailableError as exc:
                pytest.fail(f"PHALANX_REQUIRE_LLMSIM=1: {exc}")

        yield start
