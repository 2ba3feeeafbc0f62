"""Start a fleet of vLLM-compatible simulator replicas on free ports, for tests and benchmarks.

    with start_llm_sims(4, model="sim-model", kv_blocks=64, block_size=16) as sims:
        urls = [s.url for s in sims]          # http://127.0.0.1:PORT, /v1/... under it

Which simulator runs (``engine``):

- ``llm-d``: ``llm-d-inference-sim`` built by scripts/llmsim/llmsim (or the binary named by
  ``PHALANX_LLMSIM_BIN``), run offline with ``--force-dummy-tokenizer`` and ``POD_IP``;
- ``phalanx``: phalanx.testing.openai_sim, the in-repo stand-in that takes the same flags;
- ``auto`` (the default): ``llm-d`` when it is built, else ``phalanx`` — unless
  ``PHALANX_REQUIRE_LLMSIM=1``, which makes a missing llm-d binary an error (``LLMSimUnavailableError``).

Both simulate prefix caching (``--enable-kvcache``, ``kv_blocks`` blocks of ``block_size``
tokens each) and the latency model in ``latency`` (flag name → duration, e.g.
``{"prefill-time-per-token": "1ms"}``). Processes are stopped when the block ends.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import httpx

__all__ = ["LLMSim", "LLMSimUnavailableError", "llmsim_binary", "start_llm_sims"]

_SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "llmsim" / "llmsim"


class LLMSim(NamedTuple):
    url: str
    process: subprocess.Popen[bytes]


class LLMSimUnavailableError(RuntimeError):
    """The llm-d simulator was asked for (engine or PHALANX_REQUIRE_LLMSIM=1) and is not built."""


def llmsim_binary() -> str | None:
    """The llm-d-inference-sim binary: ``PHALANX_LLMSIM_BIN``, else the script's cached build."""
    named = os.environ.get("PHALANX_LLMSIM_BIN")
    if named:
        return named if Path(named).is_file() else None
    if not _SCRIPT.is_file():
        return None
    found = subprocess.run([str(_SCRIPT), "path"], capture_output=True, text=True, check=False)
    path = found.stdout.strip()
    return path if found.returncode == 0 and path and Path(path).is_file() else None


def _engine_command(engine: str) -> list[str]:
    binary = llmsim_binary()
    required = os.environ.get("PHALANX_REQUIRE_LLMSIM") == "1"
    if engine == "llm-d" or (engine == "auto" and required):
        if binary is None:
            raise LLMSimUnavailableError(
                "llm-d-inference-sim is not built: run scripts/llmsim/llmsim build "
                "(or set PHALANX_LLMSIM_BIN), or use engine='phalanx'"
            )
        return [binary, "--force-dummy-tokenizer"]
    if engine == "phalanx" or binary is None:
        return [sys.executable, "-m", "phalanx.testing.openai_sim"]
    if engine != "auto":
        raise ValueError(f"engine={engine!r}: use 'auto', 'llm-d' or 'phalanx'")
    return [binary, "--force-dummy-tokenizer"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the simulator at {url} exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/v1/models", timeout=1.0).status_code == 200:
                return
        time.sleep(0.05)
    raise TimeoutError(f"the simulator at {url} did not answer /v1/models in {timeout_s} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def start_llm_sims(
    n: int,
    *,
    model: str = "sim-model",
    kv_blocks: int = 1024,
    block_size: int = 16,
    max_num_seqs: int = 5,
    latency: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
    engine: str = "auto",
    log_dir: Path | None = None,
    ready_timeout_s: float = 30.0,
) -> Iterator[list[LLMSim]]:
    """Start ``n`` simulators serving ``model`` on free loopback ports; yields them once each
    answers ``/v1/models``, and stops them all when the block ends.

    Raises LLMSimUnavailableError (see the module docstring), TimeoutError or RuntimeError when a
    simulator does not come up (its output is in ``log_dir`` when given).
    """
    if n < 1:
        raise ValueError(f"n={n}: start at least one simulator")
    command = _engine_command(engine)
    flags = [
        f"--model={model}",
        "--enable-kvcache",
        f"--kv-cache-size={kv_blocks}",
        f"--block-size={block_size}",
        f"--max-num-seqs={max_num_seqs}",
        *(f"--{name}={value}" for name, value in (latency or {}).items()),
        *extra_args,
    ]
    env = {**os.environ, "POD_IP": "127.0.0.1"}
    sims: list[LLMSim] = []
    try:
        for i in range(n):
            port = _free_port()
            out = (log_dir / f"llmsim-{i}.log").open("wb") if log_dir else subprocess.DEVNULL
            process = subprocess.Popen(
                [*command, f"--port={port}", *flags],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
            if log_dir and not isinstance(out, int):
                out.close()
            sims.append(LLMSim(f"http://127.0.0.1:{port}", process))
        for sim in sims:
            _wait_ready(sim.url, sim.process, ready_timeout_s)
        yield sims
    finally:
        for sim in sims:
            _stop(sim.process)
