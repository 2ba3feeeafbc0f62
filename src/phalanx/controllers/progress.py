"""Training progress as the workload reports it (phalanx.train status files in the job's
checkpoint directory, which the control plane owns): last checkpoint, last progress, and the
hang rule built on it."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from phalanx.model.objects import JobPhase, JobSpec
from phalanx.store import JobRecord, PodRecord
from phalanx.train.status import STATUS_DIR, Checkpoint, read_statuses


def checkpoint_dir(data_dir: Path, job: JobRecord) -> Path:
    """The job's checkpoint directory: the same for every attempt of the job, distinct for a
    new job of the same name (the uid differs)."""
    return data_dir / CHECKPOINTS / checkpoint_folder(job)


#: The folder of the data directory that holds every job's checkpoint directory.
CHECKPOINTS = "checkpoints"


def checkpoint_folder(job: JobRecord) -> str:
    """The name of the job's checkpoint directory within ``CHECKPOINTS`` (see
    ``checkpoint_dir``): a job name has no path separator, so the text of the path is that
    of the root, a slash and this name."""
    return f"{job.name}-{job.uid[:8]}"


@dataclass(frozen=True, slots=True)
class JobProgress:
    """What a job's pods reported: the latest checkpoint (any attempt) and the latest progress
    of the current attempt."""

    checkpoint: Checkpoint | None = None
    step: int | None = None
    progress_at: float | None = None
    #: the steps the run takes in all, when the workload said (``report_progress``)
    total_steps: int | None = None
    #: the first step this attempt reported, and when
    first_step: int | None = None
    first_at: float | None = None

    def expected_end_at(self) -> float | None:
        """When the run should end at the pace of this attempt's reports so far (steps per
        second from its first report to its latest): None without a total, or without two
        reports at different steps and times. A run past its total ends at its latest
        report."""
        step, at, total = self.step, self.progress_at, self.total_steps
        first_step, first_at = self.first_step, self.first_at
        if step is None or at is None or total is None:
            return None
        if step >= total:
            return at
        if first_step is None or first_at is None or step <= first_step or at <= first_at:
            return None
        return at + (total - step) * (at - first_at) / (step - first_step)


def read_progress(data_dir: Path, job: JobRecord) -> JobProgress:
    """Return the job's reported progress (empty if its pods never reported): the latest
    checkpoint of any attempt, and the latest report of the current attempt."""
    statuses = read_statuses(checkpoint_dir(data_dir, job))
    checkpoints = [s.checkpoint for s in statuses if s.checkpoint is not None]
    current = [s for s in statuses if s.attempt == job.attempt and s.progress_at is not None]
    latest = max(current, key=lambda s: s.progress_at or 0.0) if current else None
    return JobProgress(
        max(checkpoints, key=lambda c: c.at) if checkpoints else None,
        latest.progress_step if latest else None,
        latest.progress_at if latest else None,
        latest.progress_total if latest else None,
        latest.progress_first_step if latest else None,
        latest.progress_first_at if latest else None,
    )


class ProgressCache:
    """``read_progress`` for the loop, which asks about every job holding capacity on every
    tick: a job's status files are read again only when its status directory changed (the
    workload writes them by rename, which moves the directory's mtime). Filesystems stamp
    times coarsely (a few ms), so two writes in a row can leave the same mtime: a directory
    changed less than ``SETTLE_S`` before a read is read again next time whatever its mtime.
    """

    #: How long after its last change a directory's mtime is trusted to name its contents.
    SETTLE_S = 2.0

    def __init__(self, data_dir: Path, wall_clock: Callable[[], float]) -> None:
        self.data_dir = data_dir
        self.wall_clock = wall_clock
        #: job id -> (uid, attempt, the directory's mtime in ns, what was read)
        self._read: dict[int, tuple[str, int, int, JobProgress]] = {}
        #: (job id, uid) -> the job's status directory, as a string: building the Path on
        #: every tick for every job holding capacity cost more than the stat itself.
        self._folders: dict[tuple[int, str], str] = {}

    def get(self, job: JobRecord) -> JobProgress:
        key = (job.id, job.uid)
        folder = self._folders.get(key)
        if folder is None:
            folder = self._folders[key] = str(checkpoint_dir(self.data_dir, job) / STATUS_DIR)
        try:
            mtime_ns = os.stat(folder).st_mtime_ns  # noqa: PTH116 - a str: no Path per tick
        except OSError:
            self._read.pop(job.id, None)
            return JobProgress()  # nothing reported yet
        cached = self._read.get(job.id)
        if cached is not None and cached[:3] == (job.uid, job.attempt, mtime_ns):
            return cached[3]
        progress = read_progress(self.data_dir, job)
        if self.wall_clock() - mtime_ns / 1e9 >= self.SETTLE_S:
            self._read[job.id] = (job.uid, job.attempt, mtime_ns, progress)
        else:
            self._read.pop(job.id, None)
        return progress

    def keep_only(self, job_ids: set[int]) -> None:
        """Forget jobs that no longer hold capacity."""
        for job_id in [j for j in self._read if j not in job_ids]:
            del self._read[job_id]
        for key in [k for k in self._folders if k[0] not in job_ids]:
            del self._folders[key]


@dataclass(frozen=True, slots=True)
class HungJob:
    """A running job whose pods reported no progress for ``silent_s`` seconds, longer than
    its ``hangTimeout`` (``timeout_s``); ``has_reported``: whether this attempt ever did."""

    job_id: int
    silent_s: float
    timeout_s: float
    has_reported: bool


def hung_jobs(
    jobs: Mapping[int, JobRecord],
    specs: Mapping[int, JobSpec],
    live_pods: Mapping[int, Sequence[PodRecord]],
    progress: Mapping[int, JobProgress],
    now: float,
) -> list[HungJob]:
    """Return every running job with a ``hangTimeout`` whose pods reported no progress for
    longer than that: counted from the attempt's start (its pods' start) until the first
    report, from the latest report after. Pure."""
    out = []
    running = JobPhase.RUNNING.value
    for job_id, job in jobs.items():
        if job.phase != running:
            continue
        timeout = specs[job_id].failure_policy.hang_timeout_s
        if timeout is None:
            continue
        started = [p.started_at for p in live_pods.get(job_id, ()) if p.started_at]
        reported = progress.get(job_id, JobProgress()).progress_at
        last = max([*started, reported or 0.0], default=0.0)
        if last and now - last > timeout:
            out.append(HungJob(job_id, now - last, timeout, bool(reported)))
    return out
