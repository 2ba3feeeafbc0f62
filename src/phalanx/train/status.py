"""The status file: how a workload's progress and checkpoints reach the control plane.

Each pod writes ``<PHALANX_CHECKPOINT_DIR>/.phalanx/<pod set>-<index>.json`` atomically
(temporary file + rename), so the control plane — which reads the checkpoint directory, as it
owns it — never needs a network route or credentials from inside the workload:

    {"version": 1, "job": "train", "pod": "worker-0", "rank": 0, "attempt": 2,
     "progress": {"step": 120, "at": 1700000123.5, "total": 1000,
                  "first_step": 100, "first_at": 1700000003.5},
     "checkpoint": {"step": 100, "at": 1700000100.0, "path": "ckpt-100.pt"}}

``progress`` belongs to one attempt (it says which): the step reached, and when; the steps the
run will take in all (``total``, when the workload says); and the first step this attempt
reported, and when (``first_step``, ``first_at``), from which the control plane reads the
pace and, with ``total``, when the run should end. ``checkpoint`` is the last completed one
and survives attempts, since the checkpoint directory does. Times are epoch seconds.

Standard library only: workloads import this without the control plane's dependencies.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["STATUS_DIR", "Checkpoint", "PodStatus", "read_statuses", "status_path"]

#: Directory inside the checkpoint dir that holds one status file per pod.
STATUS_DIR = ".phalanx"
VERSION = 1


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A completed checkpoint: the training step it holds, when it was written, where."""

    step: int
    at: float
    path: str = ""


@dataclass(frozen=True, slots=True)
class PodStatus:
    """What one pod last reported."""

    pod: str
    rank: int
    attempt: int
    progress_step: int | None = None
    progress_at: float | None = None
    checkpoint: Checkpoint | None = None
    #: the steps the run takes in all, when the workload said
    progress_total: int | None = None
    #: the first step this attempt reported, and when
    progress_first_step: int | None = None
    progress_first_at: float | None = None


def status_path(checkpoint_dir: str | Path, pod: str) -> Path:
    """Return the status file of ``pod`` (``<pod set>-<index>``) in ``checkpoint_dir``."""
    return Path(checkpoint_dir) / STATUS_DIR / f"{pod}.json"


def read_statuses(checkpoint_dir: str | Path) -> list[PodStatus]:
    """Return every readable status file in ``checkpoint_dir``; unreadable ones are skipped
    (a workload may write garbage, and must not break the control plane)."""
    folder = Path(checkpoint_dir) / STATUS_DIR
    try:
        paths = sorted(folder.iterdir())
    except OSError:
        return []
    out = []
    for path in paths:
        if path.name.endswith(".json") and not path.name.startswith("."):
            status = _parse(path)
            if status is not None:
                out.append(status)
    return out


def _parse(path: Path) -> PodStatus | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    raw_progress = data.get("progress")
    progress: dict[str, object] = raw_progress if isinstance(raw_progress, dict) else {}
    ckpt = data.get("checkpoint")
    checkpoint = None
    if isinstance(ckpt, dict):
        ckpt_at, ckpt_step = _number(ckpt.get("at")), _count(ckpt.get("step"))
        if ckpt_at is not None and ckpt_step is not None:
            checkpoint = Checkpoint(ckpt_step, ckpt_at, str(ckpt.get("path", "")))
    step, at = progress.get("step"), progress.get("at")
    total, first_step = progress.get("total"), progress.get("first_step")
    return PodStatus(
        pod=str(data.get("pod", path.stem)),
        rank=int(data["rank"]) if isinstance(data.get("rank"), int) else 0,
        attempt=int(data["attempt"]) if isinstance(data.get("attempt"), int) else 0,
        progress_step=_count(step),
        progress_at=_number(at),
        checkpoint=checkpoint,
        progress_total=_count(total),
        progress_first_step=_count(first_step),
        progress_first_at=_number(progress.get("first_at")),
    )


#: Counts beyond this (a workload's garbage) are read as missing: the pace arithmetic stays
#: within floats.
MAX_COUNT = 2**53


def _count(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > MAX_COUNT:
        return None
    return value


def _number(value: object) -> float | None:
    """A finite number as a float; anything else (NaN and infinities too) as missing."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        return None
    return number if math.isfinite(number) else None


def write_status(path: Path, data: dict[str, object]) -> None:
    """Write ``data`` to ``path`` atomically (readers see the old file or the new one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    tmp.replace(path)
