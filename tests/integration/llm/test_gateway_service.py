"""An LLM Service applied through the control plane, with the gateway in front: replicas are
simulator processes the Service owns, the gateway learns its models and endpoints from the
Service controller's routes, and a model scaled to zero is started by a request."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gateway_support import llm_service

from phalanx.backends.local.backend import LocalBackend
from phalanx.backends.local.nodes import parse_nodes_option
from phalanx.controllers.plane import ControlPlane, ControlPlaneConfig
from phalanx.serving.controller import ServiceController, ServingConfig
from phalanx.serving.llm.gateway import GatewayThread
from phalanx.store import open_store
from phalanx.testing import queue_manifests

openai = pytest.importorskip("openai", reason="pip install -e '.[serve-test]'")


class Harness:
    def __init__(self, data_dir: Path) -> None:
        self.store = open_store(None, data_dir)
        self.plane = ControlPlane(
            self.store,
            LocalBackend(data_dir, parse_nodes_option("2x2")),
            ControlPlaneConfig(data_dir, tick_s=0.05, grace_period_s=2.0),
        )
        self.services = ServiceController.attach(self.plane, ServingConfig(drain_s=0.3))
        self.gateway = GatewayThread(
            self.services, self.services, "127.0.0.1", 0, report_interval_s=0.2
        )
        self.url = f"http://127.0.0.1:{self.gateway.start()}"
        self.plane.apply(queue_manifests(cpu=64))
        self.plane.start()

    def ready(self, name: str) -> int:
        return self.services.view(name).ready

    def wait(self, what: str, predicate: Any, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.05)

    def close(self) -> None:
        self.gateway.stop()
        self.plane.stop()
        self.plane.reconcilers.remove(self.services)
        self.services.close()
        for job in self.plane.list_jobs():
            self.plane.cancel_job(job.name)
        deadline = time.monotonic() + 15
        while self.store.pods(live_only=True) and time.monotonic() < deadline:
            self.plane.tick()
            time.sleep(0.05)
        self.store.close()


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path)
    try:
        yield h
    finally:
        h.close()


def test_an_llm_service_behind_the_gateway(harness: Harness) -> None:
    harness.plane.apply(
        [
            llm_service("chat", "chat-model", minReplicas=2, maxReplicas=2),
            llm_service(
                "lazy",
                "lazy-model",
                minReplicas=0,
                maxReplicas=1,
                scaleToZeroAfter="10m",
                coldStartTimeout="60s",
            ),
        ]
    )
    harness.wait("2 ready replicas of chat", lambda: harness.ready("chat") == 2)
    with openai.OpenAI(
        base_url=f"{harness.url}/v1", api_key="unused", max_retries=0, timeout=90
    ) as client:
        harness.wait(
            "the gateway to list both models",
            lambda: {m.id for m in client.models.list()} == {"chat-model", "lazy-model"},
            timeout_s=10,
        )
        system = " ".join(f"policy line {i} applies ." for i in range(50))
        cached = []
        for turn in range(4):
            reply = client.chat.completions.create(
                model="chat-model",
                messages=[
                    {"role": "system", "content": system},
                    {"role": "user", "content": f"turn {turn}"},
                ],
                max_tokens=3,
            )
            assert reply.model == "chat-model"
            assert reply.usage is not None and reply.usage.prompt_tokens_details is not None
            cached.append(reply.usage.prompt_tokens_details.cached_tokens or 0)
        # The same prefix went to the same replica each time, whose cache held it.
        assert cached[0] == 0 and min(cached[1:]) >= 150, cached

        # "lazy" has no replica: the request is held while the controller starts one.
        assert harness.ready("lazy") == 0
        started = time.monotonic()
        reply = client.chat.completions.create(
            model="lazy-model", messages=[{"role": "user", "content": "wake up"}], max_tokens=2
        )
        assert reply.model == "lazy-model"
        assert time.monotonic() - started > 0.1
    assert harness.ready("lazy") == 1
    decisions = [d.code for d in harness.services.view("lazy").decisions]
    assert "ScaleFromZero" in decisions
