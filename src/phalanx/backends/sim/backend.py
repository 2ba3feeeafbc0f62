"""The ``sim`` backend: nodes are declared, pods are virtual and end when their runtime is up.

It implements the Backend protocol against a ``VirtualClock`` that the simulation driver moves
forward: a launched pod succeeds ``runtime_s`` after launch (the runtime comes from the trace,
through ``set_runtime``), a stopped pod reports STOPPED at once. Nothing reads the wall clock,
so a run is deterministic. Must not import controllers, store or other backends.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence

from phalanx.backends.base import (
    HeldCapacity,
    PodEvent,
    PodEventKind,
    PodLaunch,
    RendezvousInfo,
)
from phalanx.model.objects import Node


class VirtualClock:
    """Simulated time in seconds; only the driver moves it, and only forward."""

    __slots__ = ("now",)

    def __init__(self, start_s: float = 0.0) -> None:
        self.now = start_s

    def advance_to(self, t: float) -> None:
        """Move to ``t`` (a no-op if ``t`` is in the past)."""
        self.now = max(self.now, t)


class SimBackend:
    """Virtual pods on declared nodes, in virtual time."""

    name = "sim"

    def __init__(self, nodes: Sequence[Node], clock: VirtualClock) -> None:
        self._nodes = list(nodes)
        self.clock = clock
        self._runtimes: dict[str, float] = {}
        self._running: dict[str, PodLaunch] = {}
        # (end time, sequence, pod id): pods finishing on their own.
        self._ends: list[tuple[float, int, str]] = []
        self._events: list[PodEvent] = []
        self._seq = 0

    def nodes(self) -> list[Node]:
        return list(self._nodes)

    def held_capacity(self) -> list[HeldCapacity]:
        """Only phalanx places pods on simulated nodes."""
        return []

    def set_runtime(self, job: str, runtime_s: float) -> None:
        """Pods of ``job`` run ``runtime_s`` seconds once launched."""
        self._runtimes[job] = runtime_s

    def rendezvous(self, job: str, attempt: int, first_node: str) -> RendezvousInfo:
        return RendezvousInfo(first_node, 29500)

    def launch(self, pod: PodLaunch) -> None:
        if pod.pod_id in self._running:
            return
        self._running[pod.pod_id] = pod
        end = self.clock.now + self._runtimes.get(pod.job, 0.0)
        self._seq += 1
        heapq.heappush(self._ends, (end, self._seq, pod.pod_id))
        self._events.append(PodEvent(pod.pod_id, PodEventKind.RUNNING, self.clock.now))

    def stop(self, pod_id: str, grace_period_s: float) -> None:
        if self._running.pop(pod_id, None) is not None:
            self._events.append(PodEvent(pod_id, PodEventKind.STOPPED, self.clock.now))

    def next_event_at(self) -> float | None:
        """When the next event happens: now if events wait to be polled, else when the next
        running pod ends on its own; None if nothing will happen."""
        if any(e.kind is not PodEventKind.RUNNING for e in self._events):
            return self.clock.now
        while self._ends and self._ends[0][2] not in self._running:
            heapq.heappop(self._ends)
        return self._ends[0][0] if self._ends else None

    def poll_events(self) -> list[PodEvent]:
        now = self.clock.now
        while self._ends and self._ends[0][0] <= now:
            end, _, pod_id = heapq.heappop(self._ends)
            if self._running.pop(pod_id, None) is not None:
                self._events.append(PodEvent(pod_id, PodEventKind.SUCCEEDED, end, exit_code=0))
        events, self._events = self._events, []
        return events

    def adopt(self, pod_ids: Iterable[str]) -> list[PodEvent]:
        return [
            PodEvent(p, PodEventKind.LOST, self.clock.now, reason="NotAdopted")
            for p in pod_ids
            if p not in self._running
        ]

    def read_logs(self, pod_id: str, offset: int = 0, limit: int = 1 << 20) -> bytes:
        return b""

    def close(self) -> None:
        self._running.clear()
