"""GPU health from NVML: critical XID errors and devices that stop answering.

``GpuHealthWatcher`` registers for NVML's critical-XID events and waits for them in a daemon
thread; ``faults()`` says which devices had one (or could not be queried). The local backend
reports a node with a faulty device as unhealthy (``Node.unhealthy_reason``) and the controllers
quarantine it at once. Without NVML (or without GPUs) the watcher does nothing.

``nvml`` is injectable (the ``pynvml`` module by default), so tests drive it with a fake.
Must not import controllers, store or api.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

log = logging.getLogger(__name__)

#: XIDs that mean the device (or its link) is broken rather than the program on it:
#: 46 GPU stopped processing, 48 double-bit ECC, 62/63/64 internal error / row remapping,
#: 74 NVLink error, 79 fell off the bus, 92/94/95 ECC (high rate / contained / uncontained),
#: 119/120 GSP errors.
CRITICAL_XIDS = frozenset({46, 48, 62, 63, 64, 74, 79, 92, 94, 95, 119, 120})


class GpuHealthWatcher:
    """Collects critical GPU faults per device index; thread-safe."""

    def __init__(self, nvml: Any | None = None, wait_ms: int = 1000) -> None:
        self._nvml: Any = nvml
        self._wait_ms = wait_ms
        self._lock = threading.Lock()
        self._faults: dict[int, str] = {}
        self._event_set: Any = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        """Register for XID events on every device and start waiting; False (and nothing
        started) when NVML is missing or refuses."""
        if self._nvml is None:
            try:
                import pynvml
            except ImportError:
                return False
            self._nvml = pynvml
        nvml = self._nvml
        try:
            nvml.nvmlInit()
            self._event_set = nvml.nvmlEventSetCreate()
            for i in range(nvml.nvmlDeviceGetCount()):
                handle = nvml.nvmlDeviceGetHandleByIndex(i)
                try:
                    nvml.nvmlDeviceRegisterEvents(
                        handle, nvml.nvmlEventTypeXidCriticalError, self._event_set
                    )
                except Exception:  # some devices do not support events; others still do
                    log.debug("cannot watch XID events on GPU %d", i, exc_info=True)
        except Exception:  # no driver, or NVML refused: no health information
            log.debug("NVML unavailable; GPU health is not watched", exc_info=True)
            return False
        self._thread = threading.Thread(target=self._run, name="phalanx-gpu-health", daemon=True)
        self._thread.start()
        return True

    def faults(self) -> dict[int, str]:
        """Return device index → why it is considered broken."""
        with self._lock:
            return dict(self._faults)

    def close(self) -> None:
        """Stop waiting for events."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=self._wait_ms / 1000 + 1)

    def poll_once(self) -> None:
        """Wait up to ``wait_ms`` for one event and record it if it is critical."""
        nvml: Any = self._nvml
        try:
            data = nvml.nvmlEventSetWait(self._event_set, self._wait_ms)
        except Exception as exc:  # a timeout is the usual case; anything else is logged
            if type(exc).__name__ != "NVMLError_Timeout":
                log.debug("waiting for NVML events failed", exc_info=True)
            return
        xid = int(data.eventData)
        if xid not in CRITICAL_XIDS:
            return
        try:
            index = int(nvml.nvmlDeviceGetIndex(data.device))
        except Exception:  # the device may be gone entirely (XID 79)
            index = -1
        reason = f"critical XID {xid} on GPU {index if index >= 0 else '?'}"
        log.warning("%s; its node will be quarantined", reason)
        with self._lock:
            self._faults.setdefault(index, reason)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self.poll_once()
