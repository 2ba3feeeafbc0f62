"""Kind Queue: per-flavor quotas, a cohort to borrow from and lend to, fair-share weight and
preemption policy."""

from __future__ import annotations

from collections.abc import Mapping

from phalanx.kinds.registry import Kind, register
from phalanx.model.objects import Queue
from phalanx.model.specs import parse_queue, queue_to_manifest


def _spec(obj: Queue) -> Mapping[str, object]:
    spec = queue_to_manifest(obj)["spec"]
    assert isinstance(spec, Mapping)
    return spec


QUEUE = register(
    Kind(
        name="Queue",
        plural="queues",
        short_names=("q",),
        description="quotas per flavor, a cohort, fair-share weight and preemption policy",
        parse=parse_queue,
        spec_manifest=_spec,
    )
)
