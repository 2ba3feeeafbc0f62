"""Kind Node: observed from the backend (never applied): resources, GPUs, labels, taints,
health and quarantine."""

from __future__ import annotations

from phalanx.kinds.registry import Kind, register

NODE = register(
    Kind(
        name="Node",
        plural="nodes",
        short_names=("node", "no"),
        description="observed from the backend: resources, GPU devices, health, quarantine",
        is_applied=False,
    )
)
