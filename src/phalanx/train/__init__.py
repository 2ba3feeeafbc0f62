"""A tiny SDK for training workloads run by phalanx: report progress and completed checkpoints,
learn whether this run resumes, and hear when to save now (before a stop).

    from phalanx import train

    run = train.init()                        # reads PHALANX_* from the environment
    state = load(run.last_checkpoint.path) if run.is_resuming else fresh()
    for step in range(start, steps):
        ...
        run.report_progress(step, total_steps=steps)   # the total is optional
        if step % 100 == 0 or run.should_save:
            save(run.checkpoint_dir / f"ckpt-{step}.pt")
            run.report_checkpoint(step, f"ckpt-{step}.pt")
        if run.should_stop:
            break                              # saved above; exit before the SIGKILL

``init`` installs a SIGTERM handler (unless ``handle_sigterm=False``): phalanx sends SIGTERM
on cancel, preemption and gang restarts, then SIGKILL after the grace period
(``spec.failurePolicy.terminationGracePeriod``). The handler sets ``should_save`` and
``should_stop`` and calls the callbacks given to ``on_save_request``.

Reports go to a status file in the checkpoint directory (see ``phalanx.train.status``), so a
workload needs no credentials or network route to the control plane. Standard library only.
Outside phalanx (no PHALANX_CHECKPOINT_DIR) everything works against ``./checkpoints``.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType

from phalanx.train.status import Checkpoint, PodStatus, read_statuses, status_path, write_status

__all__ = ["Checkpoint", "PodStatus", "Run", "init"]


class Run:
    """One pod's view of its training run; see the module docstring."""

    def __init__(self, env: Mapping[str, str], clock: Callable[[], float] = time.time) -> None:
        self.checkpoint_dir = Path(env.get("PHALANX_CHECKPOINT_DIR", "checkpoints")).absolute()
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self.job = env.get("PHALANX_JOB", "")
        self.pod = f"{env.get('PHALANX_POD_SET', 'main')}-{env.get('PHALANX_INDEX', '0')}"
        self.rank = int(env.get("RANK", "0"))
        self.world_size = int(env.get("WORLD_SIZE", "1"))
        self.attempt = int(env.get("PHALANX_ATTEMPT", "1"))
        self.should_save = False
        self.should_stop = False
        self._clock = clock
        self._callbacks: list[Callable[[], None]] = []
        self._path = status_path(self.checkpoint_dir, self.pod)
        self._checkpoint: Checkpoint | None = None
        self._progress: dict[str, object] | None = None
        #: this attempt's first progress report: (step, when)
        self._first_progress: tuple[int, float] | None = None
        own = [s for s in read_statuses(self.checkpoint_dir) if s.pod == self.pod]
        if own:
            self._checkpoint = own[0].checkpoint

    @property
    def last_checkpoint(self) -> Checkpoint | None:
        """The latest completed checkpoint any pod of this job reported (any attempt)."""
        found = [s.checkpoint for s in read_statuses(self.checkpoint_dir) if s.checkpoint]
        return max(found, key=lambda c: (c.step, c.at)) if found else None

    @property
    def is_resuming(self) -> bool:
        """Whether a completed checkpoint exists to resume from."""
        return self.last_checkpoint is not None

    def report_progress(self, step: int, total_steps: int | None = None) -> None:
        """Say that training reached ``step`` (feeds hang detection and ``describe``); with
        ``total_steps``, the steps the run takes in all: the control plane then expects the
        run to end when the pace since this attempt's first report reaches it (start
        estimates of the jobs waiting for its GPUs). Raises ValueError for a total that is
        not positive."""
        if total_steps is not None and total_steps <= 0:
            raise ValueError(
                f"report_progress: total_steps is {total_steps}; give the steps the run "
                "takes in all, or leave it out"
            )
        at = self._clock()
        if self._first_progress is None:
            self._first_progress = (int(step), at)
        first_step, first_at = self._first_progress
        self._progress = {
            "step": int(step),
            "at": at,
            "first_step": first_step,
            "first_at": first_at,
        }
        if total_steps is not None:
            self._progress["total"] = int(total_steps)
        self._write()

    def report_checkpoint(self, step: int, path: str = "") -> None:
        """Say that the checkpoint of ``step`` is completely written (at ``path``, relative to
        the checkpoint dir or absolute). Call it only after the files are durable: the
        scheduler treats the work up to now as safe. Clears ``should_save``."""
        self._checkpoint = Checkpoint(int(step), self._clock(), path)
        self.should_save = False
        self._write()

    def on_save_request(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (from the signal handler) when phalanx asks the pod to stop."""
        self._callbacks.append(callback)

    def request_save(self) -> None:
        """What SIGTERM does: set ``should_save`` and ``should_stop``, run the callbacks."""
        self.should_save = True
        self.should_stop = True
        for callback in self._callbacks:
            callback()

    def _on_sigterm(self, _signum: int, _frame: FrameType | None) -> None:
        self.request_save()

    def _write(self) -> None:
        data: dict[str, object] = {
            "version": 1,
            "job": self.job,
            "pod": self.pod,
            "rank": self.rank,
            "attempt": self.attempt,
        }
        if self._progress is not None:
            data["progress"] = self._progress
        if self._checkpoint is not None:
            c = self._checkpoint
            data["checkpoint"] = {"step": c.step, "at": c.at, "path": c.path}
        write_status(self._path, data)


def init(*, handle_sigterm: bool = True, env: Mapping[str, str] | None = None) -> Run:
    """Return the Run of this pod, from ``env`` (default: the process environment); with
    ``handle_sigterm``, SIGTERM becomes a save-and-stop request instead of ending the process."""
    run = Run(os.environ if env is None else env)
    if handle_sigterm:
        signal.signal(signal.SIGTERM, run._on_sigterm)
    return run
