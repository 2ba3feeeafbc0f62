"""What a crash of the machine can leave in a pod's directory, and how the backend repairs it.

``launch.json`` and ``pid.json`` are renamed into place but not fsynced (backend.py,
"Durability"): after a machine crash each may be missing, or present but empty (the rename
reached the disk, the data did not). ``exit.json`` is fsynced: it is whole or absent. No pod
process survives such a crash. Each state below must end in an event the controllers act on
(the pod run again, or reported), never in a pod that is silently neither running nor over.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_local_backend import data_dir, make_pod, wait_for_event  # noqa: F401  (fixture)

from phalanx.backends.base import PodEventKind
from phalanx.backends.local import LocalBackend

pytestmark = pytest.mark.integration

#: A pid that names no process: past the kernel's largest (pid_max is at most 2**22).
NO_PROCESS = 2**22 + 1


def crashed_pod(root: Path, files: dict[str, str]) -> Path:
    """A pod directory as a machine crash left it (``files``: name → content)."""
    pod_dir = root / "pods" / "p"
    pod_dir.mkdir(parents=True, mode=0o700)
    for name, text in files.items():
        (pod_dir / name).write_text(text)
    return pod_dir


def launch_record(root: Path) -> str:
    """A whole launch.json for pod "p" that prints "ran"."""
    backend = LocalBackend(root / "scratch", nodes=[], warm_supervisors=0)
    try:
        pod = make_pod("p", "print('ran')")
        backend.launch(pod)
        wait_for_event(backend, "p", PodEventKind.SUCCEEDED)
        return (root / "scratch" / "pods" / "p" / "launch.json").read_text()
    finally:
        backend.close()


@pytest.mark.parametrize("launch_json", ["", "whole"], ids=["launch-torn", "launch-whole"])
def test_a_pod_whose_start_never_reached_the_disk_starts_again(
    data_dir: Path,  # noqa: F811
    launch_json: str,
) -> None:
    record = launch_record(data_dir) if launch_json else ""
    crashed_pod(data_dir, {"launch.json": record})
    backend = LocalBackend(data_dir, nodes=[])
    try:
        backend.launch(make_pod("p", "print('ran')"))  # what reconcile does first
        event = wait_for_event(backend, "p", PodEventKind.SUCCEEDED)
        assert event.exit_code == 0
        assert backend.read_logs("p").decode().splitlines()[-1] == "ran"
        assert json.loads((data_dir / "pods" / "p" / "launch.json").read_text())["pod_id"] == "p"
    finally:
        backend.close()


@pytest.mark.parametrize(
    "pid_json",
    ["", json.dumps({"pid": NO_PROCESS, "start_ticks": 1})],
    ids=["pid-torn", "pid-of-a-process-the-crash-ended"],
)
def test_a_started_pod_without_its_end_on_disk_is_reported_lost(
    data_dir: Path,  # noqa: F811
    pid_json: str,
) -> None:
    crashed_pod(data_dir, {"launch.json": "", "pid.json": pid_json})
    backend = LocalBackend(data_dir, nodes=[])
    try:
        backend.launch(make_pod("p", "print('ran')"))  # a no-op: it had started
        events = backend.adopt(["p"])
        assert [(e.pod_id, e.kind) for e in events] == [("p", PodEventKind.LOST)]
        assert not (data_dir / "pods" / "p" / "output.log").exists()  # not run again here
        assert backend.poll_events() == []
    finally:
        backend.close()


@pytest.mark.parametrize("pid_json", ["", None], ids=["pid-torn", "pid-missing"])
def test_an_end_on_disk_is_reported_whatever_became_of_the_rest(
    data_dir: Path,  # noqa: F811
    pid_json: str | None,
) -> None:
    files = {"exit.json": json.dumps({"exit_code": 0, "signal": None, "finished_at": 1.0})}
    if pid_json is not None:
        files["pid.json"] = pid_json
    crashed_pod(data_dir, files)
    backend = LocalBackend(data_dir, nodes=[])
    try:
        backend.launch(make_pod("p", "print('ran')"))  # a no-op: it has ended
        events = backend.adopt(["p"])
        assert [(e.kind, e.exit_code) for e in events] == [(PodEventKind.SUCCEEDED, 0)]
        assert not (data_dir / "pods" / "p" / "output.log").exists()
    finally:
        backend.close()


def test_only_the_end_of_a_pod_is_fsynced(
    data_dir: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The backend's own writes of a launch: launch.json and pid.json, not fsynced (the
    supervisor's exit.json is, in its own process: test_local_backend covers its reading)."""
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    backend = LocalBackend(data_dir, nodes=[], warm_supervisors=0)
    try:
        backend.launch(make_pod("p", "import time; time.sleep(30)"))
        assert synced == []
        backend.stop("p", 5.0)  # a stop request is: it must outlive a machine crash
        assert len(synced) == 1
    finally:
        backend.close()
