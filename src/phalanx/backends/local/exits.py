"""Telling the control loop at once when a local pod's supervisor ends.

The loop learns of pod exits by polling the backend once per tick; a short pod (a pipeline
step) would otherwise wait up to a tick for its end to be seen, and its dependents with it.
``ExitWatcher`` holds a pidfd (Linux 5.3+) per watched supervisor and calls ``on_exit`` from
a thread of its own as soon as any of them ends; ``on_exit`` only wakes the loop, which then
polls as usual. The thread runs only while there is something to watch: a backend with no
live pod holds no thread and no descriptor. Where pidfds are not available the watcher does
nothing and the ticks alone tell.

Must not import phalanx.controllers, phalanx.store or phalanx.api.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
from collections.abc import Callable

__all__ = ["ExitWatcher"]

log = logging.getLogger(__name__)


class ExitWatcher:
    """Calls ``on_exit()`` (from a thread of its own) whenever a watched process ends."""

    def __init__(self, on_exit: Callable[[], None]) -> None:
        self.on_exit = on_exit
        self.is_supported = hasattr(os, "pidfd_open")
        self._lock = threading.Lock()
        #: pidfds not yet taken in by the thread.
        self._added: list[int] = []
        #: The running thread and the pipe that wakes it; None while nothing is watched.
        self._thread: threading.Thread | None = None
        self._wake_w: int | None = None
        self._closed = False

    def watch(self, pid: int) -> None:
        """Call ``on_exit`` once process ``pid`` has ended (at once if it already has)."""
        if not self.is_supported:
            return
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            self.on_exit()
            return
        except OSError as exc:  # e.g. a kernel without pidfds: polling still tells
            log.info("cannot watch pod supervisor %d for its end (%s); ticks will tell", pid, exc)
            self.is_supported = False
            return
        with self._lock:  # the thread closes its descriptors under the lock only
            if self._closed:
                os.close(fd)
                return
            self._added.append(fd)
            if self._thread is None:
                wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
                self._thread = threading.Thread(
                    target=self._run, args=(wake_r,), name="phalanx-pod-exits", daemon=True
                )
                self._thread.start()
            else:
                self._wake()

    def close(self) -> None:
        """Stop the thread and close every pidfd."""
        with self._lock:
            self._closed = True
            thread = self._thread
            self._wake()
        if thread is not None:
            thread.join(timeout=5)

    def _wake(self) -> None:
        if self._wake_w is not None:
            with contextlib.suppress(BlockingIOError):
                os.write(self._wake_w, b"x")

    def _run(self, wake_r: int) -> None:
        poll = select.poll()
        poll.register(wake_r, select.POLLIN)
        watched: set[int] = set()
        added: list[int] = []
        try:
            while True:
                with self._lock:
                    added, self._added = self._added, []
                    if self._closed or not (watched or added):
                        self._stop(wake_r, [*watched, *added])
                        return
                for fd in added:
                    poll.register(fd, select.POLLIN)
                    watched.add(fd)
                has_ended = False
                for fd, _ in poll.poll():
                    if fd == wake_r:
                        with contextlib.suppress(BlockingIOError):
                            os.read(wake_r, 4096)
                    else:  # a pidfd is readable once its process has ended
                        poll.unregister(fd)
                        watched.discard(fd)
                        os.close(fd)
                        has_ended = True
                if has_ended and not self._closed:
                    self.on_exit()
        except Exception:  # the loop's ticks still see every exit; only the hurry is lost
            log.exception("watching pod supervisors for their end failed")
            with self._lock:
                self._stop(wake_r, [*watched, *added, *self._added])
                self._added = []

    def _stop(self, wake_r: int, fds: list[int]) -> None:
        """The thread ends (caller holds the lock): close its descriptors; a later ``watch``
        starts another."""
        for fd in {*fds, wake_r, *([self._wake_w] if self._wake_w is not None else [])}:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._thread, self._wake_w = None, None
