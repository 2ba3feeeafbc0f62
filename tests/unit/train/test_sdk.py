"""phalanx.train: the status file it writes, resuming across attempts, and the save-now hook."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phalanx import train
from phalanx.controllers.progress import JobProgress
from phalanx.train.status import Checkpoint, read_statuses


def env(tmp_path: Path, attempt: int, index: int = 0) -> dict[str, str]:
    return {
        "PHALANX_CHECKPOINT_DIR": str(tmp_path),
        "PHALANX_JOB": "t",
        "PHALANX_POD_SET": "worker",
        "PHALANX_INDEX": str(index),
        "PHALANX_ATTEMPT": str(attempt),
        "RANK": str(index),
        "WORLD_SIZE": "2",
    }


def test_reports_land_in_the_status_file(tmp_path: Path) -> None:
    now = [100.0]
    run = train.Run(env(tmp_path, 1), clock=lambda: now[0])
    assert not run.is_resuming and run.last_checkpoint is None
    run.report_progress(5)
    now[0] = 110.0
    run.report_checkpoint(5, "ckpt-5.pt")
    data = json.loads((tmp_path / ".phalanx" / "worker-0.json").read_text())
    assert data == {
        "version": 1,
        "job": "t",
        "pod": "worker-0",
        "rank": 0,
        "attempt": 1,
        "progress": {"step": 5, "at": 100.0, "first_step": 5, "first_at": 100.0},
        "checkpoint": {"step": 5, "at": 110.0, "path": "ckpt-5.pt"},
    }


def test_progress_with_a_total_tells_the_pace_since_the_attempts_first_report(
    tmp_path: Path,
) -> None:
    now = [100.0]
    run = train.Run(env(tmp_path, 2), clock=lambda: now[0])
    run.report_progress(40, total_steps=100)  # resumed from a checkpoint at step 40
    now[0] = 130.0
    run.report_progress(50, total_steps=100)
    (status,) = read_statuses(tmp_path)
    assert (status.progress_step, status.progress_at, status.progress_total) == (50, 130.0, 100)
    assert (status.progress_first_step, status.progress_first_at) == (40, 100.0)
    # the control plane's reading: 10 steps in 30 s, 50 to go: 150 s after the last report
    progress = JobProgress(
        None,
        status.progress_step,
        status.progress_at,
        status.progress_total,
        status.progress_first_step,
        status.progress_first_at,
    )
    assert progress.expected_end_at() == 280.0
    with pytest.raises(ValueError, match="total_steps is 0"):
        run.report_progress(51, total_steps=0)


@pytest.mark.parametrize(
    ("progress", "end"),
    [
        (JobProgress(step=50, progress_at=130.0), None),  # no total
        (JobProgress(None, 50, 130.0, 100, 50, 130.0), None),  # one report: no pace yet
        (JobProgress(None, 50, 130.0, 100, 40, 130.0), None),  # no time passed
        (JobProgress(None, 40, 130.0, 100, 50, 100.0), None),  # went back (a new run)
        (JobProgress(None, 100, 130.0, 100, 40, 100.0), 130.0),  # done: ends now
        (JobProgress(None, 120, 130.0, 100, 40, 100.0), 130.0),  # past its total
        (JobProgress(None, 60, 110.0, 100, 40, 100.0), 130.0),  # 2 steps/s, 40 to go
    ],
)
def test_the_expected_end_needs_a_total_and_a_pace(
    progress: JobProgress, end: float | None
) -> None:
    assert progress.expected_end_at() == end


def test_a_new_attempt_resumes_from_the_latest_checkpoint_of_any_pod(tmp_path: Path) -> None:
    train.Run(env(tmp_path, 1, 0), clock=lambda: 10.0).report_checkpoint(10, "a")
    train.Run(env(tmp_path, 1, 1), clock=lambda: 20.0).report_checkpoint(20, "b")
    again = train.Run(env(tmp_path, 2, 0), clock=lambda: 30.0)
    assert again.is_resuming
    assert again.last_checkpoint == Checkpoint(20, 20.0, "b")
    again.report_progress(21)  # keeps its own checkpoint record while reporting progress
    own = next(s for s in read_statuses(tmp_path) if s.pod == "worker-0")
    assert (own.attempt, own.progress_step, own.checkpoint) == (2, 21, Checkpoint(10, 10.0, "a"))


def test_save_now_sets_flags_and_calls_back_and_a_checkpoint_clears_it(tmp_path: Path) -> None:
    run = train.Run(env(tmp_path, 1))
    called: list[str] = []
    run.on_save_request(lambda: called.append("save"))
    run.request_save()
    assert run.should_save and run.should_stop and called == ["save"]
    run.report_checkpoint(3)
    assert not run.should_save and run.should_stop


def test_garbage_status_files_are_ignored(tmp_path: Path) -> None:
    folder = tmp_path / ".phalanx"
    folder.mkdir()
    (folder / "worker-0.json").write_text("{not json")
    (folder / "worker-1.json").write_text("[1, 2]")
    (folder / "worker-2.json").write_text('{"checkpoint": {"step": "x", "at": 1}}')
    (folder / "worker-3.json").write_text(
        '{"progress": {"step": 3, "at": 1, "total": true, "first_step": "a", "first_at": "b"}}'
    )
    huge = 10**400
    (folder / "worker-4.json").write_text(
        f'{{"progress": {{"step": 3, "at": NaN, "total": {huge}, "first_step": 1, '
        f'"first_at": {huge}}}, "checkpoint": {{"step": 2, "at": Infinity}}}}'
    )
    (folder / "worker-5.json").write_text(f'{{"checkpoint": {{"step": {huge}, "at": 1}}}}')
    statuses = read_statuses(tmp_path)
    assert [(s.pod, s.checkpoint) for s in statuses] == [
        ("worker-2", None),
        ("worker-3", None),
        ("worker-4", None),
        ("worker-5", None),
    ]
    bad_types, too_big = statuses[1], statuses[2]
    assert (bad_types.progress_step, bad_types.progress_total) == (3, None)
    assert (bad_types.progress_first_step, bad_types.progress_first_at) == (None, None)
    assert (too_big.progress_at, too_big.progress_total, too_big.progress_first_at) == (
        None,
        None,
        None,
    )
