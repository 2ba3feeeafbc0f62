"""Placement plugins, kube-scheduler style: filters say why a node cannot take a pod, scores
rank the nodes that can. Policies are named sets of score weights.

Plugins read only the cycle's scratch state (``NodeState``) and the pod; they never change it.
Pure: no clock, I/O or randomness.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from phalanx.model.objects import DeviceShare, Toleration
from phalanx.model.resources import Resources
from phalanx.scheduling.cluster import FULL, NodeState


@dataclass(frozen=True, slots=True)
class PodRequest:
    """One pod to place: its identity within the job and what it needs."""

    pod_set: str
    index: int
    resources: Resources
    tolerations: tuple[Toleration, ...] = ()


@dataclass(frozen=True, slots=True)
class Shape:
    """A typical pod shape, weighted by how common it is in the workload (for fragmentation)."""

    gpu_milli: int
    cpu_milli: int
    memory_bytes: int
    weight: float


# ---- filters: return None when the node passes, else a short reason for the summary ----

Filter = Callable[[PodRequest, NodeState], "str | None"]


def fits_resources(pod: PodRequest, node: NodeState) -> str | None:
    r = pod.resources
    if r.cpu_milli > node.free_cpu:
        return "insufficient cpu"
    if r.memory_bytes > node.free_mem:
        return "insufficient memory"
    if r.gpu_milli:
        if r.gpu_milli >= FULL:
            if node.free_whole * FULL < r.gpu_milli:
                return "insufficient nvidia.com/gpu"
        elif node.largest_free_device() < r.gpu_milli:
            return "no GPU with enough free share"
    return None


def tolerates_taints(pod: PodRequest, node: NodeState) -> str | None:
    for taint in node.taints:
        if not any(t.tolerates(taint) for t in pod.tolerations):
            return f"untolerated taint {taint.key}"
    return None


FILTERS: tuple[Filter, ...] = (fits_resources, tolerates_taints)


def run_filters(pod: PodRequest, node: NodeState) -> str | None:
    """Return the first filter's reason for rejecting ``node``, or None if it passes all."""
    for check in FILTERS:
        reason = check(pod, node)
        if reason is not None:
            return reason
    return None


# ---- device choice ----


def choose_devices(pod: PodRequest, node: NodeState) -> tuple[DeviceShare, ...]:
    """Return concrete devices on ``node`` for ``pod``: the lowest-indexed free devices for whole
    GPUs (neighbours tend to share a switch), the tightest-fitting device for a fraction."""
    milli = pod.resources.gpu_milli
    if milli == 0:
        return ()
    free = node.gpu_free
    if milli >= FULL:
        wanted = milli // FULL
        picked: list[DeviceShare] = []
        for index, value in enumerate(free):
            if value == FULL:
                picked.append(DeviceShare(index, FULL))
                if len(picked) == wanted:
                    return tuple(picked)
        return ()
    best = -1
    for index, value in enumerate(free):
        if value >= milli and (best < 0 or value < free[best]):
            best = index
    return (DeviceShare(best, milli),) if best >= 0 else ()


# ---- scores: higher is better; each returns a value in about [-1, 1] ----

Score = Callable[[PodRequest, NodeState, tuple[DeviceShare, ...], Sequence[Shape]], float]


def best_fit(
    pod: PodRequest, node: NodeState, devices: tuple[DeviceShare, ...], shapes: Sequence[Shape]
) -> float:
    """Prefer the node left fullest: GPU utilisation after placement for GPU pods, CPU for
    others."""
    if pod.resources.gpu_milli and node.gpu_count:
        free_after = node.free_gpu_milli - pod.resources.gpu_milli
        return 1.0 - free_after / (node.gpu_count * FULL)
    if node.cap_cpu:
        return 1.0 - (node.free_cpu - pod.resources.cpu_milli) / node.cap_cpu
    return 0.0


def _fragmentation(
    gpu_free: Sequence[int], free_cpu: int, free_mem: int, shapes: Sequence[Shape]
) -> float:
    """Expected GPU thousandths on a node that a typical pod could not use (the measure of
    "Beware of Fragmentation", Weng et al., ATC'23), weighted by shape popularity."""
    total = 0
    whole = 0
    for value in gpu_free:
        total += value
        whole += value == FULL
    if total == 0:
        return 0.0
    partial = total - whole * FULL
    frag = 0.0
    for shape in shapes:
        if shape.cpu_milli > free_cpu or shape.memory_bytes > free_mem:
            frag += shape.weight * total
        elif shape.gpu_milli >= FULL:
            frag += shape.weight * (total if whole * FULL < shape.gpu_milli else partial)
        else:
            frag += shape.weight * sum(v for v in gpu_free if v < shape.gpu_milli)
    return frag


def fragmentation(
    pod: PodRequest, node: NodeState, devices: tuple[DeviceShare, ...], shapes: Sequence[Shape]
) -> float:
    """Prefer the placement that strands the fewest GPU thousandths for the pods still to come:
    minus the growth of the node's expected fragmentation, in GPUs."""
    if not node.gpu_count:
        return 0.0
    before = node.frag_memo
    if before is None:
        before = node.frag_memo = _fragmentation(
            node.gpu_free, node.free_cpu, node.free_mem, shapes
        )
    after_free = list(node.gpu_free)
    for share in devices:
        after_free[share.index] -= share.milli
    after = _fragmentation(
        after_free,
        node.free_cpu - pod.resources.cpu_milli,
        node.free_mem - pod.resources.memory_bytes,
        shapes,
    )
    return (before - after) / FULL


SCORES: Mapping[str, Score] = {"best-fit": best_fit, "fragmentation": fragmentation}

#: Placement policies: score plugin weights. The default keeps fragmentation lowest and uses
#: best-fit to break ties between equally fragmenting nodes.
POLICIES: Mapping[str, Mapping[str, float]] = {
    "fragmentation-aware": {"fragmentation": 1.0, "best-fit": 0.05},
    "best-fit": {"best-fit": 1.0},
}


def policy_weights(policy: str, overrides: Mapping[str, float]) -> tuple[tuple[Score, float], ...]:
    """Return (score function, weight) pairs for a policy name with per-plugin overrides.

    Raises ValueError naming the valid policies or plugins.
    """
    if policy not in POLICIES:
        raise ValueError(
            f"unknown placement policy {policy!r}; valid: {', '.join(sorted(POLICIES))}"
        )
    weights = dict(POLICIES[policy])
    for name, weight in overrides.items():
        if name not in SCORES:
            raise ValueError(f"unknown score plugin {name!r}; valid: {', '.join(sorted(SCORES))}")
        weights[name] = weight
    return tuple((SCORES[name], w) for name, w in sorted(weights.items()) if w)
