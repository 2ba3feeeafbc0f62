"""Readiness probes over HTTP, off the control loop: a thread asks each target's readiness
path at its period (quickly while it is not yet ready, so a cold start is seen at once) and
keeps the answers; the Service controller reads them and is told when one changes.

Effectful (threads, sockets); must not import controllers.
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

#: How often a target that is not ready yet is asked, at most.
STARTING_PERIOD_S = 0.05


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """Ask ``GET url + path`` every ``period_s``; 2xx within ``timeout_s`` is ready."""

    url: str
    path: str
    period_s: float
    timeout_s: float


def probe_once(target: ProbeTarget) -> bool:
    """Return whether ``target`` answers its readiness path with 2xx in time."""
    parts = urlsplit(target.url)
    conn = http.client.HTTPConnection(
        parts.hostname or "127.0.0.1", parts.port or 80, timeout=target.timeout_s
    )
    try:
        conn.request("GET", target.path, headers={"User-Agent": "phalanx-probe"})
        response = conn.getresponse()
        response.read()
        return 200 <= response.status < 300
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


class ReadinessProber:
    """Probes a changing set of targets, each by a key (the replica's name)."""

    def __init__(
        self,
        on_change: Callable[[], None] = lambda: None,
        probe: Callable[[ProbeTarget], bool] = probe_once,
        workers: int = 8,
    ) -> None:
        self._on_change = on_change
        self._probe = probe
        self._lock = threading.Lock()
        self._targets: dict[str, ProbeTarget] = {}
        self._ready: dict[str, bool] = {}
        self._due: dict[str, float] = {}
        self._running: set[str] = set()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="phalanx-probe")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="phalanx-prober", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._pool.shutdown(wait=False, cancel_futures=True)

    def set_targets(self, targets: Mapping[str, ProbeTarget]) -> None:
        """Probe exactly ``targets`` from now on (a changed target starts not ready)."""
        with self._lock:
            for key in list(self._targets):
                if key not in targets or self._targets[key] != targets[key]:
                    del self._targets[key]
                    self._ready.pop(key, None)
                    self._due.pop(key, None)
            for key, target in targets.items():
                if key not in self._targets:
                    self._targets[key] = target
                    self._due[key] = 0.0

    def is_ready(self, key: str) -> bool:
        with self._lock:
            return self._ready.get(key, False)

    def ready(self) -> dict[str, bool]:
        """Every target's last answer (False until it first answers)."""
        with self._lock:
            return {key: self._ready.get(key, False) for key in self._targets}

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            with self._lock:
                due = [
                    (key, self._targets[key])
                    for key, at in self._due.items()
                    if at <= now and key not in self._running
                ]
                for key, _ in due:
                    self._running.add(key)
            for key, target in due:
                try:
                    self._pool.submit(self._check, key, target)
                except RuntimeError:  # the pool is shut down: we are stopping
                    return
            self._stop.wait(0.01)

    def _check(self, key: str, target: ProbeTarget) -> None:
        try:
            is_ready = self._probe(target)
        except Exception:  # a probe must never kill the prober
            log.exception("readiness probe of %s failed", key)
            is_ready = False
        changed = False
        with self._lock:
            self._running.discard(key)
            if self._targets.get(key) != target:
                return  # removed or replaced meanwhile
            changed = self._ready.get(key, False) != is_ready
            self._ready[key] = is_ready
            period = target.period_s if is_ready else min(target.period_s, STARTING_PERIOD_S)
            self._due[key] = time.monotonic() + period
        if changed:
            try:
                self._on_change()
            except Exception:
                log.exception("readiness change callback failed")
