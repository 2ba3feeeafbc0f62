"""Fault injection for full mode: node failures, checkpoints and how killed jobs restart.

A ``Faults`` given to ``run_full`` makes nodes fail at given virtual times (the sim backend
reports every pod on a failed node lost, node-side, and the node not ready for ``repair_s``;
the controllers' failure policies restart the jobs, and their node health quarantines a node
that keeps failing pods, by ``quarantine``), makes each job's workload checkpoint its progress
every ``checkpoint_s`` seconds of its own running time, and says how a killed job (node
failure or preemption) restarts: from zero, or from its last checkpoint. With
``checkpoint_aware`` the workloads report their checkpoints to the control plane (status
files, as ``phalanx.train`` does), so the scheduler preempts the victims that lose the least
work; without it victims are chosen blind (most recently admitted first).

Lost work of a killed job: its GPUs x its progress since the last checkpoint (since the start of
its attempt when it restarts from zero). ``random_failures`` draws a seeded failure schedule.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from phalanx.controllers.health import QuarantinePolicy

RestartMode = Literal["zero", "checkpoint"]


@dataclass(frozen=True, slots=True)
class Faults:
    """Fault model of a full-mode run. ``failures``: (virtual time, node name), any order;
    ``checkpoint_s``: None or 0 for no checkpoints; ``restart``: ``zero`` (a killed job starts
    over) or ``checkpoint`` (it resumes from its last checkpoint); ``checkpoint_aware``: pass
    checkpoints to the control plane (only meaningful with ``restart="checkpoint"``);
    ``quarantine``: when node-side failures quarantine a node (the control plane's policy)."""

    failures: tuple[tuple[float, str], ...] = ()
    repair_s: float = 3600.0
    checkpoint_s: float | None = None
    restart: RestartMode = "zero"
    checkpoint_aware: bool = False
    quarantine: QuarantinePolicy = field(default_factory=QuarantinePolicy)

    def __post_init__(self) -> None:
        if self.restart not in ("zero", "checkpoint"):
            raise ValueError(f"restart must be 'zero' or 'checkpoint', not {self.restart!r}")
        if self.repair_s < 0 or (self.checkpoint_s is not None and self.checkpoint_s < 0):
            raise ValueError("repair_s and checkpoint_s must not be negative")

    def saved(self, progress_s: float) -> float:
        """The progress a killed job resumes from, after ``progress_s`` seconds of work."""
        if self.restart == "zero" or not self.checkpoint_s:
            return 0.0
        return math.floor(progress_s / self.checkpoint_s) * self.checkpoint_s

    def last_checkpoint_at(self, started: float, resumed_s: float, now: float) -> float | None:
        """When an attempt that started at ``started`` from progress ``resumed_s`` last
        checkpointed, as of ``now`` (None: no checkpoint to resume from)."""
        saved = self.saved(resumed_s + (now - started))
        if saved > resumed_s:
            return started + (saved - resumed_s)
        if resumed_s > 0:
            return started  # resumed from a checkpoint: nothing unsaved yet at the start
        return None


def random_failures(
    nodes: Sequence[str], mtbf_s: float, horizon_s: float, seed: int, start_s: float = 0.0
) -> tuple[tuple[float, str], ...]:
    """Node failures as a Poisson process: each node fails on average every ``mtbf_s``
    seconds, between ``start_s`` and ``start_s + horizon_s``; seeded, so reproducible."""
    if not nodes or mtbf_s <= 0:
        return ()
    rnd = random.Random(seed)
    rate = len(nodes) / mtbf_s  # cluster-wide failures per second
    out: list[tuple[float, str]] = []
    t = start_s
    while True:
        t += rnd.expovariate(rate)
        if t > start_s + horizon_s:
            return tuple(out)
        out.append((t, nodes[rnd.randrange(len(nodes))]))
