"""Helpers for the LLM gateway's integration tests: a route source the test edits, and the
gateway on its own thread in this process."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from phalanx.serving.endpoints import Endpoint, LoadSample, Route
from phalanx.testing.llmsim import llmsim_binary


def llm_route(
    service: str,
    urls: Sequence[str],
    models: Sequence[str],
    *,
    policy: str = "prefix",
    engine: str = "vllm",
    cold_start_timeout_s: float = 60.0,
    **routing: Any,
) -> Route:
    return Route(
        service=service,
        path_prefix=f"/{service}",
        endpoints=tuple(Endpoint(u, "r1", f"{service}-{i}") for i, u in enumerate(urls)),
        cold_start_timeout_s=cold_start_timeout_s,
        extra={
            "llm": {
                "engine": engine,
                "models": list(models),
                "routing": {"policy": policy, **routing},
            }
        },
    )


@dataclass
class EditableRoutes:
    """A RouteSource and LoadSink whose routes the test replaces (one assignment: safe to do
    from the test's thread), and which records demand and samples."""

    value: tuple[Route, ...] = ()
    demands: list[str] = field(default_factory=list)
    samples: list[LoadSample] = field(default_factory=list)

    def routes(self) -> Sequence[Route]:
        return self.value

    def report(self, samples: Sequence[LoadSample]) -> None:
        self.samples.extend(samples)

    def demand(self, service: str) -> None:
        self.demands.append(service)


def simulator_command(model: str) -> list[str]:
    """The replica's command: the simulator on $PORT (the llm-d binary when built)."""
    binary = llmsim_binary()
    program = (
        [binary, "--force-dummy-tokenizer"]
        if binary
        else [sys.executable, "-m", "phalanx.testing.openai_sim"]
    )
    flags = [f"--model={model}", "--enable-kvcache", "--kv-cache-size=256", "--block-size=16"]
    line = " ".join(shlex.quote(p) for p in [*program, *flags])
    return ["/bin/sh", "-c", f'exec {line} --port="$PORT"']


def llm_service(name: str, model: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "queue": "q",
            "readinessProbe": {"path": "/v1/models", "period": "200ms"},
            "template": {
                "command": simulator_command(model),
                "env": {"POD_IP": "127.0.0.1"},
                "resources": {"cpu": "100m", "memory": "64Mi"},
            },
            "llm": {"engine": "vllm", "models": [model], "routing": {"policy": "prefix"}},
            **spec,
        },
    }
