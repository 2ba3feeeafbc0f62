"""The local backend tells its caller at once when a pod's supervisor ends (the control loop
wakes on it rather than waiting for its next tick): pods it started, pods it adopted after a
restart, and pods it tracked before the caller asked."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from test_local_backend import (  # noqa: F401  (data_dir is a fixture)
    WAIT_FOR_GO,
    data_dir,
    make_pod,
    wait_for_event,
    wait_ready,
)

from phalanx.backends.base import PodEventKind
from phalanx.backends.local import LocalBackend

pytestmark = pytest.mark.integration


class Notices:
    """Counts the backend's calls; ``wait`` returns once there is a new one."""

    def __init__(self) -> None:
        self.count = 0
        self._changed = threading.Condition()

    def __call__(self) -> None:
        with self._changed:
            self.count += 1
            self._changed.notify_all()

    def wait_for(self, count: int, timeout_s: float = 10.0) -> float:
        """Wait until ``count`` calls were made; return how long it took."""
        started = time.monotonic()
        with self._changed:
            assert self._changed.wait_for(lambda: self.count >= count, timeout_s), (
                f"{self.count} notices after {timeout_s:g}s, expected {count}"
            )
        return time.monotonic() - started


def test_the_end_of_a_pod_it_started_is_told_at_once(data_dir: Path) -> None:  # noqa: F811
    backend = LocalBackend(data_dir, nodes=[])
    notices = Notices()
    backend.notify_on_exit(notices)
    try:
        backend.launch(make_pod("waiting", WAIT_FOR_GO))
        wait_ready(backend, "waiting")
        time.sleep(0.3)
        assert notices.count == 0  # nothing ended yet

        (data_dir / "work" / "waiting" / "go").touch()
        notices.wait_for(1)
        # Told after the supervisor wrote exit.json: the poll that follows sees the end.
        (event,) = [e for e in backend.poll_events() if e.kind is not PodEventKind.RUNNING]
        assert (event.pod_id, event.kind) == ("waiting", PodEventKind.SUCCEEDED)
    finally:
        backend.close()


@pytest.mark.parametrize("order", ["adopt-then-notify", "notify-then-adopt"])
def test_the_end_of_an_adopted_pod_is_told(data_dir: Path, order: str) -> None:  # noqa: F811
    first = LocalBackend(data_dir, nodes=[])
    first.launch(make_pod("sleeper", WAIT_FOR_GO))
    wait_ready(first, "sleeper")
    first.close()

    restarted = LocalBackend(data_dir, nodes=[])
    notices = Notices()
    try:
        if order == "adopt-then-notify":
            assert restarted.adopt(["sleeper"]) == []
            restarted.notify_on_exit(notices)
        else:
            restarted.notify_on_exit(notices)
            assert restarted.adopt(["sleeper"]) == []
        (data_dir / "work" / "sleeper" / "go").touch()
        notices.wait_for(1)
        assert wait_for_event(restarted, "sleeper", PodEventKind.SUCCEEDED).exit_code == 0
    finally:
        restarted.close()


def test_each_of_many_quick_pods_is_told(data_dir: Path) -> None:  # noqa: F811
    backend = LocalBackend(data_dir, nodes=[])
    notices = Notices()
    backend.notify_on_exit(notices)
    try:
        for i in range(6):
            backend.launch(make_pod(f"quick-{i}", "pass"))
        # Ends close together may share a notice; each is seen by the poll after it.
        ended: set[str] = set()
        seen = 0
        while len(ended) < 6:  # each poll follows a notice not yet followed by one
            notices.wait_for(seen + 1)
            seen = notices.count
            ended |= {e.pod_id for e in backend.poll_events() if e.kind is PodEventKind.SUCCEEDED}
        assert ended == {f"quick-{i}" for i in range(6)}
    finally:
        backend.close()


def test_no_thread_is_held_while_no_pod_lives(data_dir: Path) -> None:  # noqa: F811
    backend = LocalBackend(data_dir, nodes=[])
    notices = Notices()
    backend.notify_on_exit(notices)

    def watchers() -> int:
        exits = backend._exits
        return int(exits is not None and exits._thread is not None and exits._thread.is_alive())

    try:
        assert watchers() == 0
        backend.launch(make_pod("short", WAIT_FOR_GO))
        wait_ready(backend, "short")
        assert watchers() == 1
        (data_dir / "work" / "short" / "go").touch()
        notices.wait_for(1)
        deadline = time.monotonic() + 5
        while watchers() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert watchers() == 0
        backend.launch(make_pod("next", "pass"))  # watched again by a new thread
        notices.wait_for(2)
    finally:
        backend.close()
