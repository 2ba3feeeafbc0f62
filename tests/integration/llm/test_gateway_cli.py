"""``phalanx gateway --upstream``: the static mode the benchmark runs, as a real process —
one line once it listens, then OpenAI requests routed over the upstreams; bad options named."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import httpx
import pytest

from phalanx.testing.llmsim import LLMSim


def gateway_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "phalanx.cli", "gateway", *args]


def test_static_mode_prints_one_line_and_routes(llm_sims: Callable[..., list[LLMSim]]) -> None:
    sims = llm_sims(2, model="m")
    upstreams = [a for s in sims for a in ("--upstream", s.url)]
    process = subprocess.Popen(
        gateway_command(*upstreams, "--model", "m", "--policy", "chwbl", "--port", "0"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("gateway listening on http://127.0.0.1:"), line
        url = line.removeprefix("gateway listening on ")
        assert httpx.get(f"{url}/v1/models", timeout=10).json()["data"][0]["id"] == "m"
        for _ in range(3):
            reply = httpx.post(
                f"{url}/v1/completions",
                json={"model": "m", "prompt": "the same prompt each time", "max_tokens": 2},
                timeout=30,
            )
            assert reply.status_code == 200 and reply.json()["model"] == "m"
    finally:
        process.terminate()
        out, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    assert out == ""  # nothing after the one line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--upstream", "http://127.0.0.1:1"], "--upstream needs --model NAME"),
        (["--upstream", "127.0.0.1:1", "--model", "m"], "must be http://HOST:PORT"),
        (["--upstream", "http://127.0.0.1:1", "--model", "m", "--policy", "x"], "not one of"),
    ],
)
def test_bad_options_are_named(args: list[str], message: str) -> None:
    done = subprocess.run(
        gateway_command(*args), capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2 and message in done.stderr
