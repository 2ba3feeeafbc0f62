"""Pod supervisors started ahead of their pods, so a launch does not wait for one to start.

Starting a supervisor (``python -I -S supervisor.py``) costs a Python start-up, 10–20 ms, on
the path of every pod: for a chain of short pipeline steps, a tenth of each step. The pool
keeps ``size`` supervisors started with ``--wait``, each the leader of its own session and
process group (as a pod's supervisor must be), stdin a pipe from this process, stdout and
stderr /dev/null. ``hand`` gives one a pod: it writes the launch (``supervisor.encode_launch``)
to the pipe and closes it; the supervisor then points its output at the pod's log and goes on
exactly as one started for the pod would. A thread of the pool starts a replacement.

Every process the pool starts is accounted for:

- one handed a pod is the pod's supervisor from then on: the backend tracks and reaps it;
- an idle one reads end of file when the pool closes its pipe (``close``, which the backend
  calls from its own ``close`` or, for a backend dropped without one, when it is collected
  or at exit; or this process dies, even by SIGKILL: the kernel closes the pipe) and exits
  without doing anything; ``close`` reaps it, and SIGKILLs one that has not exited within
  ``CLOSE_TIMEOUT_S``;
- one found dead when its turn comes (killed by someone) is reaped and skipped.

A launch the pool cannot hand over (none idle, a launch larger than a pipe holds, a dead
supervisor) returns None, and the backend starts a supervisor for the pod as before.

Must not import phalanx.controllers, phalanx.store or phalanx.api.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from phalanx.backends.local import supervisor
from phalanx.backends.local.supervisor import read_start_ticks

__all__ = ["CLOSE_TIMEOUT_S", "WarmSupervisors"]

log = logging.getLogger(__name__)

#: How long ``close`` waits for idle supervisors to exit before it SIGKILLs them.
CLOSE_TIMEOUT_S = 2.0
#: The largest launch handed over a pipe: what an empty pipe takes without blocking (Linux's
#: default capacity is 64 KiB); a larger one (a huge environment) starts a supervisor.
MAX_LAUNCH_BYTES = 60_000
#: Ignored signals survive exec; the supervisors start with these at their defaults.
_DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGHUP, signal.SIGINT, signal.SIGTERM)


@dataclass(slots=True)
class _Idle:
    """A supervisor waiting for its launch on the pipe ``pipe_w``."""

    pid: int
    start_ticks: int | None
    pipe_w: int


class WarmSupervisors:
    """Keeps ``size`` supervisors waiting for a pod; see the module docstring."""

    def __init__(self, python: str, size: int, env: Mapping[str, str]) -> None:
        """``python``: the interpreter to run them with; ``env``: their own environment (a
        pod's workload gets the pod's, handed with the launch). Starts nothing until
        ``start``."""
        self.python = python
        self.size = max(0, size)
        self._env = dict(env)
        self._idle: list[_Idle] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        #: A start failed (warned once; later failures are logged at debug level).
        self._has_failed = False
        #: How many supervisors the pool has started, in all.
        self.started = 0

    def start(self) -> None:
        """Start the thread that keeps the pool full, unless it runs (no-op for a size of
        0). After a supervisor could not be started the thread ends; the next call tries
        again."""
        if self.size == 0:
            return
        with self._cond:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(
                    target=self._fill, name="phalanx-warm-supervisors", daemon=True
                )
                self._thread.start()

    def idle_pids(self) -> list[int]:
        """The pids of the supervisors waiting now."""
        with self._cond:
            return [idle.pid for idle in self._idle]

    def hand(self, argv: list[str], env: Mapping[str, str]) -> tuple[int, int | None] | None:
        """Hand the launch (``supervisor.main``'s ``argv``: the pod directory, options, ``--``
        and the command; the workload's ``env``) to a waiting supervisor; return its pid and
        start time, or None when none could take it (then start one as before)."""
        try:
            data = supervisor.encode_launch(argv, dict(env))
        except ValueError:  # the cold path reports it as the OS words it
            return None
        if len(data) > MAX_LAUNCH_BYTES:
            return None
        while True:
            with self._cond:
                if not self._idle:
                    return None
                idle = self._idle.pop(0)
                self._cond.notify_all()  # the thread starts a replacement
            if self._give(idle, data):
                return idle.pid, idle.start_ticks

    def close(self) -> None:
        """Stop the thread, close every idle supervisor's pipe (they exit) and reap them."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=30)
        with self._cond:
            idle, self._idle = self._idle, []
        for waiting in idle:
            os.close(waiting.pipe_w)
        deadline = time.monotonic() + CLOSE_TIMEOUT_S
        for waiting in idle:
            _reap(waiting.pid, deadline)

    # -- internals ---------------------------------------------------------------------

    def _give(self, idle: _Idle, data: bytes) -> bool:
        """Write the launch and close the pipe; False (the supervisor reaped) if it is dead
        or took only part of it (it then reads no whole launch and exits)."""
        try:
            os.set_blocking(idle.pipe_w, False)
            written = os.write(idle.pipe_w, data)
        except OSError as exc:  # EPIPE: it died while waiting
            if exc.errno not in (errno.EPIPE, errno.EAGAIN):
                log.warning("handing a launch to supervisor %d failed: %s", idle.pid, exc)
            written = -1
        os.close(idle.pipe_w)
        if written == len(data):
            return True
        _reap(idle.pid, time.monotonic() + CLOSE_TIMEOUT_S)
        return False

    def _fill(self) -> None:
        """The pool's thread: start supervisors while fewer than ``size`` wait."""
        while True:
            with self._cond:
                while not self._closed and len(self._idle) >= self.size:
                    self._cond.wait()
                if self._closed:
                    return
            try:
                idle = self._spawn()
            except OSError as exc:  # launches start their own supervisors; the next retries
                log.log(
                    logging.DEBUG if self._has_failed else logging.WARNING,
                    "cannot start a waiting pod supervisor: %s; pods start their own",
                    exc,
                )
                with self._cond:
                    self._has_failed, self._thread = True, None
                return
            with self._cond:
                is_kept = not self._closed  # closed meanwhile: close() took the list already
                if is_kept:
                    self._idle.append(idle)
            if not is_kept:
                os.close(idle.pipe_w)
                _reap(idle.pid, time.monotonic() + CLOSE_TIMEOUT_S)
                return

    def _spawn(self) -> _Idle:
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        try:
            pid = os.posix_spawn(
                self.python,
                [self.python, "-I", "-S", supervisor.__file__, supervisor.WAIT_FLAG],
                self._env,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, read_end, 0),
                    (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                    (os.POSIX_SPAWN_DUP2, 1, 2),
                ],
                setsid=True,
                setsigdef=_DEFAULT_SIGNALS,
            )
        except BaseException:
            os.close(write_end)
            raise
        finally:
            os.close(read_end)
        self.started += 1
        return _Idle(pid, read_start_ticks(pid), write_end)


def _reap(pid: int, deadline: float) -> None:
    """Wait for child ``pid`` to exit until ``deadline``, then SIGKILL its group and wait."""
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        time.sleep(0.005)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
