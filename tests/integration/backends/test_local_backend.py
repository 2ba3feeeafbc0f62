"""The local backend with real processes: launch, exit codes, stop, adopt after a restart."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from phalanx.backends.base import PodEvent, PodEventKind, PodLaunch
from phalanx.backends.local import LocalBackend
from phalanx.model.objects import DeviceShare
from phalanx.model.resources import Resources

pytestmark = pytest.mark.integration

#: Prints "ready", then waits for a file named "go" in its working directory (work/<pod>).
WAIT_FOR_GO = textwrap.dedent("""
    import os, pathlib, time
    print("ready", os.getpid(), flush=True)
    while not pathlib.Path("go").exists():
        time.sleep(0.01)
""")

#: Ignores SIGTERM, and so does a grandchild it starts; only SIGKILL ends them.
IGNORE_SIGTERM = textwrap.dedent("""
    import signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    print("ready", grandchild.pid, flush=True)
    time.sleep(60)
""")


def make_pod(pod_id: str, code: str, **overrides: object) -> PodLaunch:
    fields: dict[str, object] = {
        "pod_id": pod_id,
        "job": "job",
        "namespace": "default",
        "pod_set": "worker",
        "index": 0,
        "attempt": 0,
        "node": "node-0",
        "devices": (),
        "resources": Resources(cpu_milli=1000),
        "command": (sys.executable, "-c", code),
    }
    fields.update(overrides)
    return PodLaunch(**fields)  # type: ignore[arg-type]


#: Every event each backend has reported to wait_for_event, so none is lost between calls.
_SEEN: weakref.WeakKeyDictionary[LocalBackend, list[PodEvent]] = weakref.WeakKeyDictionary()


def wait_for_event(
    backend: LocalBackend, pod_id: str, kind: PodEventKind, timeout_s: float = 10.0
) -> PodEvent:
    """Poll until ``pod_id`` has had an event of ``kind``; fail listing what was seen."""
    seen = _SEEN.setdefault(backend, [])
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        seen.extend(backend.poll_events())
        for event in seen:
            if event.pod_id == pod_id and event.kind == kind:
                return event
        time.sleep(0.01)
    pytest.fail(f"no {kind} event for {pod_id} within {timeout_s}s; saw {seen}")


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.01)


def wait_ready(backend: LocalBackend, pod_id: str) -> int:
    """Wait for the pod's "ready <pid>" line; return the pid it printed."""
    wait_until(lambda: b"ready" in backend.read_logs(pod_id), f"{pod_id} to be ready")
    line = next(ln for ln in backend.read_logs(pod_id).splitlines() if ln.startswith(b"ready"))
    return int(line.split()[1])


def is_running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie no longer runs anything)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


def supervisor_pid(data_dir: Path, pod_id: str) -> int:
    return int(json.loads((data_dir / "pods" / pod_id / "pid.json").read_text())["pid"])


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """A data directory whose pods are all killed and reaped at the end of the test."""
    yield tmp_path
    for pid_file in tmp_path.glob("pods/*/pid.json"):
        try:
            pid = int(json.loads(pid_file.read_text())["pid"])
        except ValueError:  # a torn file, as a machine crash leaves (no process to end)
            continue
        if is_running(pid) or Path(f"/proc/{pid}").exists():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


@pytest.fixture(params=["cold", "warm"])
def backend(data_dir: Path, request: pytest.FixtureRequest) -> Iterator[LocalBackend]:
    """A backend whose first pod gets a supervisor started for it (cold) or one started
    ahead of it (warm: see warm.py); every test runs with both."""
    local = LocalBackend(data_dir, nodes=[], warm_supervisors=int(request.param == "warm"))
    if request.param == "warm":
        local.prestart_supervisors()
        wait_until(lambda: len(local.waiting_supervisors()) == 1, "a supervisor to wait")
    yield local
    local.close()


def test_pod_sees_its_devices_and_only_the_basic_environment(
    backend: LocalBackend, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHALANX_TEST_SECRET", "do-not-leak")
    code = "import json, os; print(json.dumps({'env': dict(os.environ), 'cwd': os.getcwd()}))"
    devices = (DeviceShare(0, 1000), DeviceShare(2, 1000))
    backend.launch(make_pod("gpu-pod", code, devices=devices, env={"PHALANX_JOB": "job"}))
    backend.launch(make_pod("cpu-pod", code))

    assert wait_for_event(backend, "gpu-pod", PodEventKind.SUCCEEDED).exit_code == 0
    wait_for_event(backend, "cpu-pod", PodEventKind.SUCCEEDED)
    gpu = json.loads(backend.read_logs("gpu-pod"))
    cpu = json.loads(backend.read_logs("cpu-pod"))
    assert gpu["env"]["CUDA_VISIBLE_DEVICES"] == "0,2"
    assert gpu["env"]["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert gpu["env"]["PHALANX_JOB"] == "job"
    assert gpu["env"]["PATH"] == os.pathsep.join(
        [str(Path(sys.executable).parent), os.environ["PATH"]]
    )
    assert "PHALANX_TEST_SECRET" not in gpu["env"]
    assert gpu["cwd"] == str(data_dir.absolute() / "work" / "gpu-pod")  # not beside its records
    assert cpu["env"]["CUDA_VISIBLE_DEVICES"] == ""


def test_running_then_succeeded(backend: LocalBackend) -> None:
    backend.launch(make_pod("ok", "print('hello')"))

    running = wait_for_event(backend, "ok", PodEventKind.RUNNING)
    succeeded = wait_for_event(backend, "ok", PodEventKind.SUCCEEDED)
    assert running.at <= succeeded.at
    assert backend.read_logs("ok") == b"hello\n"


def test_non_zero_exit_fails_with_the_code(backend: LocalBackend) -> None:
    backend.launch(make_pod("three", "import sys; print('oops', file=sys.stderr); sys.exit(3)"))

    event = wait_for_event(backend, "three", PodEventKind.FAILED)
    assert (event.exit_code, event.reason) == (3, "Error")
    assert "3" in event.message
    assert backend.read_logs("three") == b"oops\n"


def test_death_by_signal_fails_with_its_name(backend: LocalBackend) -> None:
    backend.launch(make_pod("killed", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"))

    event = wait_for_event(backend, "killed", PodEventKind.FAILED)
    assert (event.exit_code, event.reason) == (128 + 9, "Signal")
    assert "SIGKILL" in event.message


def test_launching_twice_starts_one_process(backend: LocalBackend, data_dir: Path) -> None:
    pod = make_pod("once", "print('started')")
    backend.launch(pod)
    backend.launch(pod)
    other = LocalBackend(data_dir, nodes=[])
    other.launch(pod)

    wait_for_event(backend, "once", PodEventKind.SUCCEEDED)
    assert backend.read_logs("once") == b"started\n"
    assert other.poll_events() == []
    assert backend.poll_events() == []


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        pytest.param({"command": ("/nonexistent/tool",)}, "'/nonexistent/tool' not found", id="missing"),
        pytest.param({"command": ("no-such-command-anywhere",)}, "not found in PATH", id="not-in-path"),
        pytest.param({"working_dir": "/nonexistent/dir"}, "working directory '/nonexistent/dir'", id="bad-working-dir"),
        pytest.param({"command": ()}, "no command to run", id="no-command"),
    ],
)  # fmt: skip
def test_a_pod_that_cannot_start_fails_with_127(
    backend: LocalBackend, overrides: dict[str, object], expected: str
) -> None:
    backend.launch(make_pod("bad", "print('unreachable')", **overrides))

    event = wait_for_event(backend, "bad", PodEventKind.FAILED)
    assert event.exit_code == 127
    assert expected in event.message
    assert expected in backend.read_logs("bad").decode()


@pytest.mark.parametrize("mode", [0o644, 0o755], ids=["no-exec-bit", "no-shebang"])
def test_a_file_that_is_not_a_program_fails_with_127(
    backend: LocalBackend, tmp_path: Path, mode: int
) -> None:
    script = tmp_path / "script.txt"
    script.write_text("echo hello\n")
    script.chmod(mode)
    backend.launch(make_pod("text", "", command=(str(script),)))

    event = wait_for_event(backend, "text", PodEventKind.FAILED)
    assert event.exit_code == 127
    assert f"command {str(script)!r} is not executable" in event.message
    assert "is not executable" in backend.read_logs("text").decode()


def test_a_missing_supervisor_interpreter_fails_the_pod(data_dir: Path) -> None:
    local = LocalBackend(data_dir, nodes=[], python="/nonexistent/python")
    local.launch(make_pod("nopython", "print('unreachable')"))

    (event,) = local.poll_events()
    assert (event.kind, event.exit_code) == (PodEventKind.FAILED, 127)
    assert "/nonexistent/python" in local.read_logs("nopython").decode()


def test_image_is_ignored_with_a_notice(backend: LocalBackend) -> None:
    backend.launch(make_pod("img", "print('ran')", image="pytorch/pytorch:2.4"))

    wait_for_event(backend, "img", PodEventKind.SUCCEEDED)
    assert backend.read_logs("img").splitlines() == [
        b"phalanx: image 'pytorch/pytorch:2.4' is ignored by the local backend",
        b"ran",
    ]


def test_stop_lets_a_pod_clean_up(backend: LocalBackend, data_dir: Path) -> None:
    code = textwrap.dedent("""
        import os, signal, sys, time
        def on_term(signum, frame):
            print("cleanup", flush=True)
            sys.exit(0)
        signal.signal(signal.SIGTERM, on_term)
        print("ready", os.getpid(), flush=True)
        time.sleep(60)
    """)
    backend.launch(make_pod("graceful", code))
    wait_ready(backend, "graceful")

    started = time.monotonic()
    backend.stop("graceful", grace_period_s=30)
    event = wait_for_event(backend, "graceful", PodEventKind.STOPPED)

    assert time.monotonic() - started < 5
    assert event.exit_code == 0
    assert backend.read_logs("graceful").count(b"cleanup") == 1  # SIGTERM arrived once
    assert (data_dir / "pods" / "graceful" / "stop.json").exists()


def test_stop_kills_the_whole_group_after_the_grace_period(backend: LocalBackend) -> None:
    backend.launch(make_pod("stubborn", IGNORE_SIGTERM))
    grandchild = wait_ready(backend, "stubborn")

    started = time.monotonic()
    backend.stop("stubborn", grace_period_s=0.5)
    event = wait_for_event(backend, "stubborn", PodEventKind.STOPPED)

    assert time.monotonic() - started >= 0.5
    assert event.reason == "Stopped"
    wait_until(lambda: not is_running(grandchild), "the grandchild to be killed", timeout_s=5)


def test_a_stop_deadline_survives_a_restart(backend: LocalBackend, data_dir: Path) -> None:
    backend.launch(make_pod("stubborn", IGNORE_SIGTERM))
    grandchild = wait_ready(backend, "stubborn")
    backend.stop("stubborn", grace_period_s=0.5)
    backend.close()

    restarted = LocalBackend(data_dir, nodes=[])
    assert restarted.adopt(["stubborn"]) == []
    wait_for_event(restarted, "stubborn", PodEventKind.STOPPED)
    wait_until(lambda: not is_running(grandchild), "the grandchild to be killed", timeout_s=5)


def test_stop_of_an_unknown_or_finished_pod_is_a_no_op(backend: LocalBackend) -> None:
    backend.stop("never-launched", grace_period_s=1)
    backend.launch(make_pod("done", "pass"))
    wait_for_event(backend, "done", PodEventKind.SUCCEEDED)

    backend.stop("done", grace_period_s=1)

    assert backend.poll_events() == []


SPAWN_AND_LEAVE = textwrap.dedent("""
    import sys
    from pathlib import Path
    from phalanx.backends.base import PodLaunch
    from phalanx.backends.local import LocalBackend
    from phalanx.model.resources import Resources
    backend = LocalBackend(Path(sys.argv[1]), nodes=[])
    backend.launch(PodLaunch(
        pod_id="sleeper", job="job", namespace="default", pod_set="worker", index=0,
        attempt=0, node="node-0", devices=(), resources=Resources(),
        command=(sys.executable, "-c", sys.argv[2]),
    ))
""")


@pytest.mark.parametrize("launcher", ["this-process", "another-process"])
def test_adopt_tracks_a_running_pod_until_it_ends(data_dir: Path, launcher: str) -> None:
    if launcher == "another-process":  # the supervisor outlives the control plane that started it
        subprocess.run(
            [sys.executable, "-c", SPAWN_AND_LEAVE, str(data_dir), WAIT_FOR_GO], check=True
        )
    else:
        first = LocalBackend(data_dir, nodes=[])
        first.launch(make_pod("sleeper", WAIT_FOR_GO))
        first.close()
        del first

    restarted = LocalBackend(data_dir, nodes=[])
    wait_ready(restarted, "sleeper")
    assert restarted.adopt(["sleeper"]) == []
    assert restarted.adopt(["sleeper"]) == []
    assert restarted.poll_events() == []

    (data_dir / "work" / "sleeper" / "go").touch()
    event = wait_for_event(restarted, "sleeper", PodEventKind.SUCCEEDED)
    assert event.exit_code == 0


def test_adopt_reports_pods_that_ended_while_nobody_watched(data_dir: Path) -> None:
    first = LocalBackend(data_dir, nodes=[])
    first.launch(make_pod("quick", "import sys; sys.exit(4)"))
    first.launch(make_pod("stopped", WAIT_FOR_GO))
    wait_ready(first, "stopped")
    first.stop("stopped", grace_period_s=5)
    wait_until((data_dir / "pods" / "quick" / "exit.json").exists, "quick to exit")
    wait_until((data_dir / "pods" / "stopped" / "exit.json").exists, "stopped to exit")
    first.close()

    restarted = LocalBackend(data_dir, nodes=[])
    events: list[PodEvent] = restarted.adopt(["quick", "stopped", "missing"])
    wait_until(lambda: len(events) == 3 or bool(events.extend(restarted.poll_events())), "events")

    by_pod = {e.pod_id: e for e in events}
    assert (by_pod["quick"].kind, by_pod["quick"].exit_code) == (PodEventKind.FAILED, 4)
    assert by_pod["stopped"].kind == PodEventKind.STOPPED
    assert (by_pod["missing"].kind, by_pod["missing"].reason) == (PodEventKind.LOST, "NotFound")


@pytest.mark.parametrize("victim", ["whole-group", "supervisor-only"])
def test_a_supervisor_killed_while_nobody_watched_is_lost(data_dir: Path, victim: str) -> None:
    first = LocalBackend(data_dir, nodes=[])
    first.launch(make_pod("doomed", WAIT_FOR_GO))
    workload = wait_ready(first, "doomed")
    first.close()
    pid = supervisor_pid(data_dir, "doomed")
    if victim == "whole-group":
        os.killpg(pid, signal.SIGKILL)
    else:
        os.kill(pid, signal.SIGKILL)

    restarted = LocalBackend(data_dir, nodes=[])
    events = restarted.adopt(["doomed"])
    event = events[0] if events else wait_for_event(restarted, "doomed", PodEventKind.LOST)

    assert (event.kind, event.reason) == (PodEventKind.LOST, "SupervisorLost")
    wait_until(lambda: not is_running(workload), "the orphaned workload to be killed", 5)


def test_adopt_never_mistakes_a_reused_pid_for_a_pod(data_dir: Path) -> None:
    pod_dir = data_dir / "pods" / "recycled"
    pod_dir.mkdir(parents=True)
    with subprocess.Popen(["sleep", "30"], start_new_session=True) as stranger:
        (pod_dir / "pid.json").write_text(json.dumps({"pid": stranger.pid, "start_ticks": 1}))
        (event,) = LocalBackend(data_dir, nodes=[]).adopt(["recycled"])
        assert stranger.poll() is None  # not killed as a leftover of the pod
        stranger.kill()

    assert event.kind == PodEventKind.LOST


def test_read_logs_by_offset_and_limit(backend: LocalBackend) -> None:
    backend.launch(make_pod("digits", "print('0123456789', end='')"))
    wait_for_event(backend, "digits", PodEventKind.SUCCEEDED)

    assert backend.read_logs("digits", offset=2, limit=3) == b"234"
    assert backend.read_logs("digits", offset=8) == b"89"
    assert backend.read_logs("digits", offset=99) == b""
    assert backend.read_logs("no-such-pod") == b""
    assert backend.read_logs("../../etc") == b""


@pytest.mark.parametrize("pod_id", ["", "..", "a/b", "../x", ".hidden", "x" * 201])
def test_launch_rejects_unsafe_pod_ids(backend: LocalBackend, pod_id: str) -> None:
    with pytest.raises(ValueError, match="pod id"):
        backend.launch(make_pod(pod_id, "pass"))


def test_rendezvous_gives_a_free_local_port(backend: LocalBackend) -> None:
    info = backend.rendezvous("job", attempt=0, first_node="node-0")

    assert info.master_addr == "127.0.0.1"
    with socket.socket() as sock:
        sock.bind((info.master_addr, info.master_port))
