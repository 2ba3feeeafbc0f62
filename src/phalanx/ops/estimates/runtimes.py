"""Expected runtimes for the start-time estimates, from the runtimes of finished jobs.

A job's runtime is its ``maxRuntime`` when it sets one (an upper bound, as Slurm's time
limit); else a quantile of the runtimes of finished jobs of the same queue and size (GPUs,
CPUs and memory of all its pods together, when ``size_min_group`` > 0 and that group holds as
many), else of the same queue with the same GPU count, else of the same queue, else of all,
else ``default_runtime_s``. A running job's
remaining time is a quantile of the runtimes longer than it has run so far (the runtime
given that it has lasted this long), less what it has run; one that outlived them all runs as
long again. Pure: imports nothing of the control plane.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from phalanx.model.objects import JobSpec

#: A finished job: (queue, GPUs in thousandths, seconds run), or with its CPUs (millicores)
#: and memory (bytes) after them, each of all its pods together.
Finished = tuple[str, int, float] | tuple[str, int, float, int, int]
#: A group of the same queue and whole size speaks for a job once it holds this many runtimes
#: (0: never; ``RuntimeModel.size_min_group``). What ``estimate_plane`` reads its history
#: with: jobs of one size are often copies of one workload, whose runtimes spread far less
#: than those of every job with the same GPUs (measured in docs/operations.md).
DEFAULT_SIZE_MIN_GROUP = 1
#: A size group's key: (queue, GPUs, CPUs, memory).
_Size = tuple[str, int, int, int]


@dataclass(frozen=True, slots=True)
class RuntimeModel:
    """Expected runtimes from finished jobs: ``history`` holds a ``Finished`` of each; a
    group (same queue and GPUs, same queue) speaks for a job once it holds ``min_group``
    runtimes, and the group of the same queue and whole size (GPUs, CPUs, memory) before them
    once it holds ``size_min_group`` (0: never). See the module docstring."""

    history: Sequence[Finished] = ()
    default_runtime_s: float = 3600.0
    _by_shape: Mapping[tuple[str, int], Sequence[float]] = field(default_factory=dict, repr=False)
    _by_queue: Mapping[str, Sequence[float]] = field(default_factory=dict, repr=False)
    _overall: Sequence[float] = ()
    min_group: int = 1
    size_min_group: int = 0
    _by_size: Mapping[_Size, Sequence[float]] = field(default_factory=dict, repr=False)

    @classmethod
    def from_history(
        cls,
        history: Sequence[Finished],
        default_runtime_s: float = 3600.0,
        min_group: int = 1,
        size_min_group: int = 0,
    ) -> RuntimeModel:
        """The model of ``history``, its runtimes grouped and sorted once."""
        shapes: dict[tuple[str, int], list[float]] = {}
        queues: dict[str, list[float]] = {}
        sizes: dict[_Size, list[float]] = {}
        for entry in history:
            queue, gpu_milli, seconds = entry[0], entry[1], entry[2]
            shapes.setdefault((queue, gpu_milli), []).append(seconds)
            queues.setdefault(queue, []).append(seconds)
            if len(entry) == 5:
                sizes.setdefault((queue, gpu_milli, entry[3], entry[4]), []).append(seconds)
        return cls(
            tuple(history),
            default_runtime_s,
            {k: sorted(v) for k, v in shapes.items()},
            {k: sorted(v) for k, v in queues.items()},
            sorted(entry[2] for entry in history),
            max(1, min_group),
            max(0, size_min_group),
            {k: sorted(v) for k, v in sizes.items()} if size_min_group > 0 else {},
        )

    def _samples(self, spec: JobSpec) -> Sequence[float]:
        request = spec.total_request
        if self.size_min_group > 0:
            key = (spec.queue, request.gpu_milli, request.cpu_milli, request.memory_bytes)
            size = self._by_size.get(key, ())
            if len(size) >= self.size_min_group:
                return size
        shape = self._by_shape.get((spec.queue, request.gpu_milli), ())
        if len(shape) >= self.min_group:
            return shape
        queue = self._by_queue.get(spec.queue, ())
        return queue if len(queue) >= self.min_group else self._overall

    @property
    def has_history(self) -> bool:
        """Whether any finished job is known (else every runtime is a default)."""
        return bool(self._overall)

    def runtime_s(self, spec: JobSpec, q: float = 0.5) -> float:
        """The runtime of ``spec`` in seconds: its maxRuntime, else the ``q`` quantile of its
        history (the median by default), else ``default_runtime_s``."""
        if spec.max_runtime_s is not None:
            return spec.max_runtime_s
        samples = self._samples(spec)
        return quantile(samples, q) if samples else self.default_runtime_s

    def remaining_s(self, spec: JobSpec, elapsed_s: float, q: float = 0.5) -> float:
        """How much longer a job of ``spec`` that has run ``elapsed_s`` should run: up to its
        maxRuntime; else the ``q`` quantile (the median by default) of the runtimes in its
        history longer than ``elapsed_s``, less ``elapsed_s``; a job that has outlived them
        all (or has no history past the default) runs as long again as it has (runtimes are
        heavy-tailed)."""
        if spec.max_runtime_s is not None:
            return max(0.0, spec.max_runtime_s - elapsed_s)
        samples = self._samples(spec) or (self.default_runtime_s,)
        longer = samples[bisect.bisect_right(samples, elapsed_s) :]
        if longer:
            return quantile(longer, q) - elapsed_s
        return max(elapsed_s, 1.0)


def quantile(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile of the sorted, non-empty ``ordered``, interpolated (q=0.5: the
    median)."""
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)
