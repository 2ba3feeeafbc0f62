"""The gateway run by the server (``phalanx up --gateway-port``) and alone in front of it
(``phalanx gateway``, control-plane mode): an LLM Service applied through the API is reachable
by its model through both, with the official ``openai`` client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway_support import llm_service

from live_server import running_server
from phalanx.api.server import ApiServer
from phalanx.client import Client
from phalanx.testing import queue_manifests

openai = pytest.importorskip("openai", reason="pip install -e '.[serve-test]'")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ApiServer]:
    with running_server(
        tmp_path,
        nodes="1x0",
        thread_name="phalanx-llm-server",
        stop_timeout_s=20,
        router_port=None,
        gateway_port=0,
    ) as api:
        try:
            yield api
        finally:
            with Client(data_dir=api.data_dir) as client:
                client.delete("service", "chat")


def chat(url: str) -> str:
    with openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0) as c:
        assert [m.id for m in c.models.list()] == ["chat-model"]
        reply = c.chat.completions.create(
            model="chat-model", messages=[{"role": "user", "content": "hello"}], max_tokens=2
        )
        return reply.model


def test_the_gateway_beside_the_api_and_alone(server: ApiServer) -> None:
    info = json.loads((server.data_dir / "server.json").read_text())
    url = info["gateway_url"]
    assert url.startswith("http://127.0.0.1:")
    with Client(data_dir=server.data_dir) as client:
        client.apply([*queue_manifests(cpu=64, gpu=0), llm_service("chat", "chat-model")])
    deadline = time.monotonic() + 60
    while True:
        try:
            assert chat(url) == "chat-model"
            break
        except (openai.APIStatusError, AssertionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)

    # Alone, reading the same server's routes.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHALANX_")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "phalanx.cli",
            "--data-dir",
            str(server.data_dir),
            "gateway",
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("gateway listening on http://127.0.0.1:"), line
        assert chat(line.removeprefix("gateway listening on ")) == "chat-model"
    finally:
        process.terminate()
        _, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
