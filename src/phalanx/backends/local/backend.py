"""The local backend: pods are process groups on this machine, one supervisor each.

Each pod's records live in ``<data_dir>/pods/<pod_id>/`` (0700, the server's: a pod cannot
read them); the files there are the whole truth, so a new backend on the same data directory
(after a control-plane restart) picks up where the last one stopped:

- ``launch.json``: what to run (written first; its presence makes ``launch`` a no-op);
- ``pid.json``: the supervisor's pid and start time (a reused pid is never taken for ours);
- ``output.log``: the workload's stdout and stderr;
- ``stop.json``: a stop was requested, and when the grace period ends;
- ``exit.json``: written by the supervisor when the workload ended (``reason: OOMKilled`` when
  it killed the pod for exceeding ``memory_limit_bytes``).

Durability. Every file is written atomically (a temporary file renamed over it), so a reader —
this backend, after the control plane was killed at any instant — sees the old file or the
whole new one: the page cache belongs to the kernel and outlives the process. Only
``exit.json`` and ``stop.json`` are also fsynced, to outlive a crash of the machine; the two
files every launch writes are not, which keeps two fsyncs per pod off the control loop:

- ``launch.json`` holds nothing the store does not: the next ``launch`` of the pod (reconcile
  calls it for every admitted pod) writes it again when it is missing or unreadable;
- ``pid.json`` names a process, and no process outlives the machine. After a crash of the
  machine a pod whose ``pid.json`` is missing is started again, as the same attempt (it may
  have begun before the crash); one whose ``pid.json`` is on disk, whole or empty, has no
  supervisor and no ``exit.json`` and is reported LOST, for its job's failure policy to
  restart or fail, as for any pod of a failed node. An ``exit.json`` on disk reports the
  pod's end whatever became of the rest. (SQLite, in WAL mode with ``synchronous=NORMAL``,
  may itself lose its last commits in such a crash; the files are what ``adopt`` repairs
  the store from.)

tests/integration/backends/test_local_machine_crash.py builds each of these states.

The workload runs in ``<pod root>/work/<pod_id>/`` (0700; owned by the pod user when pods run
as one, see isolation.py), with a minimal environment: PATH, LANG, LC_ALL, PYTHONPATH,
VIRTUAL_ENV, HOME (its working directory under a pod user) and USER, plus its own env — never
the rest of the server's.

Fault injection (a test and chaos feature): while ``<data_dir>/faults/<node>`` exists, every
pod on that node is killed as if the node had failed, and reported LOST with reason
``NodeFault`` and the file's text as the message (``inject_node_fault``/``clear_node_fault``).

A launch is handed to a supervisor started ahead of it when one waits (warm.py), else one is
started for it; either way the pod runs the same.

Pod transitions, as ``poll_events`` and ``adopt`` report them:

1. launched → RUNNING, as soon as the supervisor has started;
2. supervisor gone, ``exit.json`` present → SUCCEEDED (exit 0) or FAILED (non-zero or signal),
   or STOPPED when ``stop.json`` says a stop was asked for;
3. supervisor gone, no ``exit.json`` → STOPPED if a stop was asked for, else LOST; in both cases
   whatever is left of the pod's process group is killed so nothing keeps running unseen.

Must not import phalanx.controllers, phalanx.store or phalanx.api.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from phalanx.backends.base import (
    NODE_FAULT,
    OOM_KILLED,
    HeldCapacity,
    PodEvent,
    PodEventKind,
    PodLaunch,
    RendezvousInfo,
)
from phalanx.backends.local import supervisor
from phalanx.backends.local.exits import ExitWatcher
from phalanx.backends.local.gpu_health import GpuHealthWatcher
from phalanx.backends.local.isolation import PodUser, own_directory, pod_root
from phalanx.backends.local.nodes import discover_nodes
from phalanx.backends.local.supervisor import read_proc_stat, read_start_ticks
from phalanx.backends.local.warm import WarmSupervisors
from phalanx.model.objects import Node

__all__ = ["LocalBackend", "clear_node_fault", "inject_node_fault"]

_POD_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
#: The only variables of the control plane's environment a pod inherits.
_INHERITED_ENV = (
    "PATH", "HOME", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV", "TMPDIR", "USER",
)  # fmt: skip
#: Ignored signals survive exec; a pod starts with these at their defaults.
_DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGHUP, signal.SIGINT, signal.SIGTERM)


@dataclass(slots=True)
class _TrackedPod:
    """A pod whose supervisor this backend watches."""

    pod_id: str
    pod_dir: Path
    pid: int
    start_ticks: int | None
    stop_deadline: float | None = None
    is_killed: bool = False
    is_gone: bool = False
    node: str = ""
    fault: str = ""


def inject_node_fault(data_dir: Path, node: str, message: str = "injected node fault") -> None:
    """Make every pod on ``node`` fail as if the node had (test and chaos feature)."""
    faults = Path(data_dir).absolute() / "faults"
    faults.mkdir(parents=True, exist_ok=True)
    (faults / node).write_text(message, encoding="utf-8")


def clear_node_fault(data_dir: Path, node: str) -> None:
    """Undo ``inject_node_fault``."""
    (Path(data_dir).absolute() / "faults" / node).unlink(missing_ok=True)


class LocalBackend:
    """Runs pods as process groups on this machine; see the module docstring."""

    name = "local"

    def __init__(
        self,
        data_dir: Path,
        nodes: list[Node] | None = None,
        python: str = sys.executable,
        gpu_health: GpuHealthWatcher | None = None,
        pod_user: PodUser | None = None,
        warm_supervisors: int = 1,
    ) -> None:
        """``nodes``: declared virtual nodes (default: this machine, discovered, whose GPUs are
        then watched for critical XIDs through NVML unless ``gpu_health`` is given).
        ``pod_user``: run workloads as this user (the server must be root; see isolation.py);
        None: as the server's user. ``warm_supervisors``: how many pod supervisors to keep
        started ahead of their pods (warm.py), from the first launch on; 0: none."""
        self._pods_dir = Path(data_dir).absolute() / "pods"
        self._pods_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._pods_dir.chmod(0o700)
        self._pod_user = pod_user
        root = Path(data_dir).absolute()
        self._work_dir = (pod_root(root, pod_user) if pod_user else root) / "work"
        self._faults_dir = Path(data_dir).absolute() / "faults"
        self._nodes = list(discover_nodes() if nodes is None else nodes)
        self._gpu_health = gpu_health
        if gpu_health is None and nodes is None and any(n.gpus for n in self._nodes):
            watcher = GpuHealthWatcher()
            self._gpu_health = watcher if watcher.start() else None
        self._python = python
        self._lock = threading.Lock()
        self._tracked: dict[str, _TrackedPod] = {}
        self._events: list[PodEvent] = []
        self._exits: ExitWatcher | None = None
        basics = {key: os.environ[key] for key in ("PATH", "LANG", "LC_ALL") if key in os.environ}
        self._warm = WarmSupervisors(python, warm_supervisors, basics)
        # A backend dropped without close (a test's, a library user's) ends its waiting
        # supervisors when it is collected, or at exit; they would wait until then.
        self._close_warm = weakref.finalize(self, self._warm.close)

    def notify_on_exit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (from a thread of the backend's) as soon as any pod's supervisor
        ends, so that the caller can ``poll_events`` at once rather than at its next tick (the
        control loop gives its ``wake``). Replaces an earlier callback."""
        with self._lock:
            if self._exits is not None:
                self._exits.close()
            self._exits = ExitWatcher(callback)
            for pod in self._tracked.values():
                self._exits.watch(pod.pid)

    def prestart_supervisors(self) -> None:
        """Start the supervisors kept ahead of pods now rather than at the first launch."""
        self._warm.start()

    def waiting_supervisors(self) -> list[int]:
        """The pids of the supervisors started ahead of pods that wait for one now."""
        return self._warm.idle_pids()

    def nodes(self) -> list[Node]:
        """Return the nodes given at construction (or this machine, discovered); with a GPU
        fault seen by the health watcher, the node holding the GPUs is marked unhealthy."""
        faults = self._gpu_health.faults() if self._gpu_health is not None else {}
        if not faults:
            return list(self._nodes)
        reason = "; ".join(faults[i] for i in sorted(faults))
        return [replace(n, unhealthy_reason=reason) if n.gpus else n for n in self._nodes]

    def held_capacity(self) -> list[HeldCapacity]:
        """Nothing but phalanx places pods on local nodes."""
        return []

    def rendezvous(self, job: str, attempt: int, first_node: str) -> RendezvousInfo:
        """Return 127.0.0.1 and a TCP port that was free a moment ago."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        return RendezvousInfo("127.0.0.1", port)

    def launch(self, pod: PodLaunch) -> None:
        """Start ``pod`` under a supervisor. Idempotent: a no-op once the pod has started
        (pid.json), ended (exit.json) or been asked to stop (stop.json, then a STOPPED event);
        a pod whose launch.json was written but which never started (the control plane died
        in between) is started now, as the same attempt.

        Raises ValueError for a pod id that is not a safe file name. Anything that keeps the
        pod from starting (a supervisor that cannot be spawned, an environment the OS refuses)
        gives a FAILED event with reason LaunchError, never an exception: it is the
        workload's fault, not the node's, and the pod's devices are released with it.
        """
        pod_dir = self._pod_dir(pod.pod_id)
        if pod_dir is None:
            raise ValueError(f"pod id {pod.pod_id!r} must match {_POD_ID.pattern}")
        with self._lock:
            if pod.pod_id in self._tracked or _has_started(pod_dir):
                return
            if (pod_dir / "stop.json").exists():
                self._events.append(_never_started(pod.pod_id, time.time()))
                return
            pod_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            log_path = pod_dir / "output.log"
            record = _read_optional(pod_dir / "launch.json")
            if record is not None:  # written before a crash, never started: start it now
                _append_log(log_path, "the launch was interrupted; starting the pod again")
            else:
                if pod.image:
                    _append_log(log_path, f"image {pod.image!r} is ignored by the local backend")
                work_dir = self._work_dir / pod.pod_id
                env = _pod_env(pod, self._python, self._pod_user, work_dir)
                record = {
                    "pod_id": pod.pod_id,
                    "node": pod.node,
                    "command": list(pod.command),
                    "args": list(pod.args),
                    "env": env,
                    "working_dir": str(work_dir / pod.working_dir),
                    "memory_limit_bytes": pod.memory_limit_bytes,
                }
                try:
                    self._prepare_dirs(work_dir, env)
                except OSError as exc:
                    message = f"cannot prepare the pod's directories: {exc}"
                    self._not_started(pod.pod_id, pod_dir, message)
                    return
                if self._pod_user is not None:
                    record["user"] = {"uid": self._pod_user.uid, "gid": self._pod_user.gid}
                write_json_atomic(pod_dir / "launch.json", record, is_durable=False)
            self._spawn(pod.pod_id, pod_dir, record)
        self._warm.start()

    def stop(self, pod_id: str, grace_period_s: float) -> None:
        """Record stop.json, then SIGTERM the pod (its supervisor relays to the whole group);
        ``poll_events`` SIGKILLs the group once the grace period is over. No-op if gone."""
        with self._lock:
            pod = self._tracked.get(pod_id) or self._track_if_running(pod_id)
            if pod is None:
                self._stop_unstarted(pod_id)
                return
            if not self._is_alive(pod):
                return
            now = time.time()
            deadline = now + max(0.0, grace_period_s)
            is_first = pod.stop_deadline is None
            if pod.stop_deadline is not None and pod.stop_deadline <= deadline:
                return
            write_json_atomic(
                pod.pod_dir / "stop.json",
                {"requested_at": now, "grace_period_s": max(0.0, grace_period_s)},
            )
            pod.stop_deadline = deadline
            if grace_period_s <= 0:
                self._kill_group(pod)
            elif is_first:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pod.pid, signal.SIGTERM)

    def poll_events(self) -> list[PodEvent]:
        """Return events since the last call without blocking: reap ended supervisors and kill
        the groups of pods whose stop grace period is over."""
        with self._lock:
            now = time.time()
            faults = self._faults()
            for pod in list(self._tracked.values()):
                if self._is_alive(pod):
                    if pod.node in faults and not pod.fault:
                        pod.fault = faults[pod.node] or f"injected fault on node {pod.node}"
                        self._kill_group(pod)
                        continue
                    is_overdue = pod.stop_deadline is not None and now >= pod.stop_deadline
                    if is_overdue and not pod.is_killed:
                        self._kill_group(pod)
                    continue
                del self._tracked[pod.pod_id]
                self._events.append(self._finished_event(pod.pod_id, now, pod))
            events, self._events = self._events, []
            return events

    def adopt(self, pod_ids: Iterable[str]) -> list[PodEvent]:
        """Track the pods in ``pod_ids`` that still run; return an event for each that ended
        (SUCCEEDED/FAILED/STOPPED from its files), never started or vanished (LOST)."""
        events: list[PodEvent] = []
        with self._lock:
            now = time.time()
            for pod_id in pod_ids:
                pod_dir = self._pod_dir(pod_id)
                if pod_id in self._tracked:
                    continue
                if pod_dir is None or not pod_dir.is_dir():
                    message = f"no pod directory for {pod_id!r} under {self._pods_dir}"
                    events.append(
                        PodEvent(pod_id, PodEventKind.LOST, now, None, "NotFound", message)
                    )
                    continue
                pod = self._load(pod_id, pod_dir)
                if pod is not None and self._is_alive(pod):
                    self._track(pod)
                    continue
                events.append(self._finished_event(pod_id, now, pod))
        return events

    def read_logs(self, pod_id: str, offset: int = 0, limit: int = 1 << 20) -> bytes:
        """Return up to ``limit`` bytes of the pod's output.log from ``offset``; b"" if none."""
        pod_dir = self._pod_dir(pod_id)
        if pod_dir is None:
            return b""
        if offset >= 1 << 62:  # past any file; seek would overflow
            return b""
        try:
            with (pod_dir / "output.log").open("rb") as log:
                log.seek(max(0, offset))
                return log.read(max(0, limit))
        except FileNotFoundError:
            return b""

    def close(self) -> None:
        """Stop watching; pods keep running and a later backend can ``adopt`` them."""
        with self._lock:
            self._tracked.clear()
            self._events.clear()
            if self._exits is not None:
                self._exits.close()
                self._exits = None
        self._close_warm()
        if self._gpu_health is not None:
            self._gpu_health.close()

    # -- internals; callers hold self._lock ------------------------------------------------

    def _prepare_dirs(self, work_dir: Path, env: dict[str, str]) -> None:
        """Create the pod's working directory and its job's checkpoint directory: owned by the
        pod user (0700) when there is one, else the server's."""
        checkpoint = env.get("PHALANX_CHECKPOINT_DIR")
        if self._pod_user is None:
            work_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            return
        own_directory(work_dir, self._pod_user)
        if checkpoint:
            own_directory(Path(checkpoint), self._pod_user)

    def _spawn(self, pod_id: str, pod_dir: Path, record: dict[str, object]) -> None:
        """Start the supervisor of a pod whose launch.json (``record``) is written; track it,
        or record why it could not start (exit.json, reason LaunchError) and report it
        FAILED."""
        log_path = pod_dir / "output.log"
        env_record = record.get("env")
        env = (
            {str(k): str(v) for k, v in env_record.items()} if isinstance(env_record, dict) else {}
        )
        node = str(record.get("node", ""))
        argv = _supervisor_argv(self._python, pod_dir, record)
        warm = self._warm.hand(argv[4:], env)  # what follows python -I -S supervisor.py
        if warm is not None:
            self._started(pod_id, pod_dir, node, *warm)
            return
        try:
            pid = os.posix_spawnp(
                self._python,
                argv,
                env,
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (
                        os.POSIX_SPAWN_OPEN,
                        1,
                        str(log_path),
                        os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                        0o600,
                    ),
                    (os.POSIX_SPAWN_DUP2, 1, 2),
                ],
                setsid=True,
                setsigdef=_DEFAULT_SIGNALS,
            )
        except OSError as exc:
            message = f"cannot start the pod supervisor with {self._python!r}: {exc}"
            self._not_started(pod_id, pod_dir, message)
            return
        except ValueError as exc:  # a NUL byte or '=' in the environment: the OS refuses it
            message = (
                f"cannot start the pod: {exc}; variable names must not contain '=' and no "
                "variable name or value, command or argument may contain a NUL character"
            )
            self._not_started(pod_id, pod_dir, message)
            return
        self._started(pod_id, pod_dir, node, pid, read_start_ticks(pid))

    def _started(
        self, pod_id: str, pod_dir: Path, node: str, pid: int, start_ticks: int | None
    ) -> None:
        """Record the pod's supervisor (pid.json; it writes the same itself, so a crash just
        after the start cannot leave a started pod without one for long), track it, report
        the pod RUNNING."""
        pid_record = {"pid": pid, "start_ticks": start_ticks}
        write_json_atomic(pod_dir / "pid.json", pid_record, is_durable=False)
        self._track(_TrackedPod(pod_id, pod_dir, pid, start_ticks, node=node))
        self._events.append(PodEvent(pod_id, PodEventKind.RUNNING, time.time()))

    def _not_started(self, pod_id: str, pod_dir: Path, message: str) -> None:
        """Record why the pod could not start (exit.json, reason LaunchError); report it."""
        _append_log(pod_dir / "output.log", message)
        status = {"exit_code": supervisor.NOT_STARTED_EXIT_CODE, "signal": None}
        write_json_atomic(
            pod_dir / "exit.json",
            {**status, "message": message, "reason": supervisor.LAUNCH_ERROR},
        )
        self._events.append(self._finished_event(pod_id, time.time(), None))

    def _pod_dir(self, pod_id: str) -> Path | None:
        if not _POD_ID.match(pod_id) or pod_id in (".", ".."):
            return None
        return self._pods_dir / pod_id

    def _faults(self) -> dict[str, str]:
        """Injected node faults: node name → message."""
        try:
            paths = list(self._faults_dir.iterdir())
        except OSError:
            return {}
        out = {}
        for path in paths:
            with contextlib.suppress(OSError):
                out[path.name] = path.read_text(encoding="utf-8").strip()
        return out

    def _load(self, pod_id: str, pod_dir: Path) -> _TrackedPod | None:
        """Return the pod as recorded in pid.json and stop.json, or None without pid.json."""
        pid_info = _read_optional(pod_dir / "pid.json")
        if pid_info is None:
            return None
        pid, start = pid_info.get("pid"), pid_info.get("start_ticks")
        if not isinstance(pid, int):
            return None
        pod = _TrackedPod(pod_id, pod_dir, pid, start if isinstance(start, int) else None)
        launch = _read_optional(pod_dir / "launch.json") or {}
        pod.node = str(launch.get("node", ""))
        stop = _read_optional(pod_dir / "stop.json")
        if stop is not None:
            requested_at, grace_s = stop.get("requested_at"), stop.get("grace_period_s")
            if isinstance(requested_at, int | float) and isinstance(grace_s, int | float):
                pod.stop_deadline = float(requested_at) + float(grace_s)
        return pod

    def _stop_unstarted(self, pod_id: str) -> None:
        """A stop for a pod that never started (no pid.json: its launch failed before the
        supervisor ran, or never reached the backend): record the stop, so that no later
        launch starts it, and report it STOPPED once, so its devices are released."""
        pod_dir = self._pod_dir(pod_id)
        if pod_dir is None or _has_started(pod_dir) or (pod_dir / "stop.json").exists():
            return
        pod_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_json_atomic(pod_dir / "stop.json", {"requested_at": time.time(), "grace_period_s": 0})
        self._events.append(_never_started(pod_id, time.time()))

    def _track_if_running(self, pod_id: str) -> _TrackedPod | None:
        pod_dir = self._pod_dir(pod_id)
        pod = None if pod_dir is None else self._load(pod_id, pod_dir)
        if pod is None or not self._is_alive(pod):
            return None
        self._track(pod)
        return pod

    def _track(self, pod: _TrackedPod) -> None:
        self._tracked[pod.pod_id] = pod
        if self._exits is not None:
            self._exits.watch(pod.pid)

    def _is_alive(self, pod: _TrackedPod) -> bool:
        """Return whether the pod's supervisor runs; reap it if it is our child and ended."""
        if pod.is_gone:
            return False
        stat = read_proc_stat(pod.pid)
        if stat is None or (pod.start_ticks is not None and int(stat[19]) != pod.start_ticks):
            pod.is_gone = True  # gone, or the pid now belongs to another process
            return False
        try:
            reaped, _ = os.waitpid(pod.pid, os.WNOHANG)
        except ChildProcessError:  # started by an earlier control plane: its state tells
            reaped = pod.pid if stat[0] in ("Z", "X") else 0
        pod.is_gone = reaped != 0
        return not pod.is_gone

    def _kill_group(self, pod: _TrackedPod) -> None:
        """SIGKILL the pod's process group, unless its pid has been reused by a stranger (the
        group id cannot be reused while any member of our group is alive)."""
        stat = read_proc_stat(pod.pid)
        if stat is not None and pod.start_ticks is not None and int(stat[19]) != pod.start_ticks:
            return
        pod.is_killed = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pod.pid, signal.SIGKILL)

    def _finished_event(self, pod_id: str, now: float, pod: _TrackedPod | None) -> PodEvent:
        """Return the event for a pod whose supervisor is gone, read from its files."""
        pod_dir = self._pods_dir / pod_id
        if pod is not None and pod.fault:
            self._kill_group(pod)
            message = f"node {pod.node} failed: {pod.fault}"
            return PodEvent(pod_id, PodEventKind.LOST, now, None, NODE_FAULT, message)
        status = _read_optional(pod_dir / "exit.json")
        is_stop_requested = (pod_dir / "stop.json").exists()
        if status is None and pod is not None:
            self._kill_group(pod)  # the workload may outlive a killed supervisor; end it
        if status is None:
            if is_stop_requested:
                message = "stopped on request; killed when the grace period ended"
                return PodEvent(pod_id, PodEventKind.STOPPED, now, None, "Stopped", message)
            message = (
                "the pod's supervisor ended without an exit status (killed, or the machine "
                "restarted)"
                if pod is not None
                else "the pod was never started (no pid.json)"
            )
            return PodEvent(pod_id, PodEventKind.LOST, now, None, "SupervisorLost", message)
        code, signum = status.get("exit_code"), status.get("signal")
        detail = str(status.get("message") or "")
        if isinstance(signum, int) and signum > 0:
            exit_code: int | None = 128 + signum
            summary = f"terminated by signal {_signal_name(signum)}"
        elif isinstance(code, int):
            exit_code, summary = code, f"exited with code {code}"
        else:
            exit_code, summary = None, "ended without an exit code"
        summary = f"{summary}: {detail}" if detail else summary
        if is_stop_requested:
            return PodEvent(
                pod_id,
                PodEventKind.STOPPED,
                now,
                exit_code,
                "Stopped",
                f"stopped on request; {summary}",
            )
        if exit_code == 0:
            return PodEvent(pod_id, PodEventKind.SUCCEEDED, now, 0, "Completed", summary)
        if status.get("reason") == OOM_KILLED:
            return PodEvent(pod_id, PodEventKind.FAILED, now, exit_code, OOM_KILLED, detail)
        if status.get("reason") == supervisor.LAUNCH_ERROR:  # the workload's fault, not the node's
            return PodEvent(
                pod_id, PodEventKind.FAILED, now, exit_code, supervisor.LAUNCH_ERROR, summary
            )
        reason = "Signal" if isinstance(signum, int) and signum > 0 else "Error"
        return PodEvent(pod_id, PodEventKind.FAILED, now, exit_code, reason, summary)


def _pod_env(
    pod: PodLaunch, python: str, user: PodUser | None = None, work_dir: Path | None = None
) -> dict[str, str]:
    """Return the pod's environment: a few inherited basics, the pod's env, and the devices.

    The control plane's interpreter directory goes first on PATH, so ``python`` in a pod is
    the Python phalanx runs in (its virtualenv, with phalanx importable), as users expect.
    Under a pod ``user``, HOME is the pod's ``work_dir``, USER and LOGNAME its name, TMPDIR
    is not passed on, and PHALANX_CHECKPOINT_DIR is the real path (it may lie behind a link
    the pod user cannot pass; see isolation.pod_root).
    """
    env = {key: os.environ[key] for key in _INHERITED_ENV if key in os.environ}
    env["PATH"] = os.pathsep.join([str(Path(python).parent), env.get("PATH", os.defpath)])
    if user is not None:
        env.pop("TMPDIR", None)
        env.update(USER=user.name, LOGNAME=user.name)
        if work_dir is not None:
            env["HOME"] = str(work_dir)
    env.update(pod.env)
    if user is not None and "PHALANX_CHECKPOINT_DIR" in env:
        env["PHALANX_CHECKPOINT_DIR"] = os.path.realpath(env["PHALANX_CHECKPOINT_DIR"])
    env.update({k: pod.secrets[r.secret][r.key].decode() for k, r in pod.secret_env.items()})
    # NVML numbers devices in PCI bus order; make CUDA agree so the indices mean the same GPUs.
    env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    env["CUDA_VISIBLE_DEVICES"] = ",".join(str(device.index) for device in pod.devices)
    return env


def _supervisor_argv(python: str, pod_dir: Path, record: dict[str, object]) -> list[str]:
    """The supervisor's command line for the launch ``record`` (see supervisor.py): started
    with ``-I -S``, as it needs nothing outside the standard library's built-in modules."""
    argv = [python, "-I", "-S", supervisor.__file__, str(pod_dir)]
    if record.get("working_dir"):
        argv += ["--cwd", str(record["working_dir"])]
    limit = record.get("memory_limit_bytes")
    if isinstance(limit, int) and limit > 0:
        argv += ["--memory-limit", str(limit)]
    user = record.get("user")
    if isinstance(user, dict):  # the server is root: the workload runs as the pod user
        argv += ["--user", f"{int(user['uid'])}:{int(user['gid'])}"]
    command, args = record.get("command"), record.get("args")
    argv.append("--")
    argv += [str(item) for item in command] if isinstance(command, list) else []
    argv += [str(item) for item in args] if isinstance(args, list) else []
    return argv


def write_json_atomic(path: Path, data: object, is_durable: bool = True) -> None:
    """Write ``data`` as JSON to ``path`` so that readers see the old file or the whole new one:
    a temporary file in the same directory, fsynced when ``is_durable`` (the file must
    survive a crash of the machine, not only of this process: see the module docstring),
    then renamed over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(json.dumps(data))
        if is_durable:
            f.flush()
            os.fsync(f.fileno())
    tmp.replace(path)


def read_json(path: Path) -> dict[str, object]:
    """Return the JSON object in ``path``; raises OSError or ValueError (not an object too)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return data


def _has_started(pod_dir: Path) -> bool:
    """Whether the pod's supervisor was started (pid.json) or the pod has ended (exit.json)."""
    return (pod_dir / "pid.json").exists() or (pod_dir / "exit.json").exists()


def _never_started(pod_id: str, now: float) -> PodEvent:
    message = "stopped on request before it started"
    return PodEvent(pod_id, PodEventKind.STOPPED, now, None, "Stopped", message)


def _append_log(log_path: Path, message: str) -> None:
    with log_path.open("ab") as log:
        log.write(f"phalanx: {message}\n".encode())


def _read_optional(path: Path) -> dict[str, object] | None:
    try:
        return read_json(path)
    except (OSError, ValueError):
        return None


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
