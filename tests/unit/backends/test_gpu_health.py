"""GPU health from NVML events, with a fake NVML module (no GPU here): critical XIDs mark the
device broken and the backend's node unhealthy; the control plane quarantines it at once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from phalanx.backends.local.backend import LocalBackend
from phalanx.backends.local.gpu_health import GpuHealthWatcher
from phalanx.backends.local.nodes import parse_nodes_option
from phalanx.controllers.plane import ControlPlane, ControlPlaneConfig
from phalanx.store import open_store


class NVMLError_Timeout(Exception):  # noqa: N801, N818 - NVML's own name
    pass


@dataclass
class Event:
    eventData: int  # noqa: N815 - NVML's field name
    device: int


@dataclass
class FakeNvml:
    """Just what the watcher calls; device handles are their indices."""

    count: int = 2
    events: list[Event] = field(default_factory=list)
    registered: list[int] = field(default_factory=list)
    nvmlEventTypeXidCriticalError: int = 8  # noqa: N815

    def nvmlInit(self) -> None:
        pass

    def nvmlEventSetCreate(self) -> str:
        return "set"

    def nvmlDeviceGetCount(self) -> int:
        return self.count

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceRegisterEvents(self, handle: int, kinds: int, event_set: str) -> None:
        self.registered.append(handle)

    def nvmlEventSetWait(self, event_set: str, timeout_ms: int) -> Event:
        if not self.events:
            raise NVMLError_Timeout()
        return self.events.pop(0)

    def nvmlDeviceGetIndex(self, handle: int) -> int:
        return handle


def watcher(nvml: FakeNvml) -> GpuHealthWatcher:
    w = GpuHealthWatcher(nvml, wait_ms=10)
    w._nvml = nvml  # registration without the background thread: poll by hand
    nvml.nvmlInit()
    w._event_set = nvml.nvmlEventSetCreate()
    return w


def test_only_critical_xids_mark_a_device_broken() -> None:
    nvml = FakeNvml(events=[Event(13, 0), Event(31, 1), Event(79, 1), Event(48, 0)])
    w = watcher(nvml)
    for _ in range(5):
        w.poll_once()  # the fifth times out
    assert w.faults() == {1: "critical XID 79 on GPU 1", 0: "critical XID 48 on GPU 0"}


def test_start_registers_every_device_and_close_stops() -> None:
    nvml = FakeNvml(count=3)
    w = GpuHealthWatcher(nvml, wait_ms=10)
    assert w.start()
    assert nvml.registered == [0, 1, 2]
    w.close()


def test_an_unhealthy_node_is_quarantined_at_once_and_gets_no_pods(tmp_path: Path) -> None:
    nvml = FakeNvml(events=[Event(79, 0)])
    w = watcher(nvml)
    w.poll_once()
    nodes = parse_nodes_option("1x2")
    backend = LocalBackend(tmp_path, nodes, gpu_health=w)
    assert backend.nodes()[0].unhealthy_reason == "critical XID 79 on GPU 0"
    store = open_store(None, tmp_path)
    try:
        plane = ControlPlane(store, backend, ControlPlaneConfig(tmp_path))
        plane.tick()
        view = plane.get_node("node-0")
        assert view.node.is_quarantined
        assert view.quarantine is not None and "XID 79" in view.quarantine.reason
    finally:
        store.close()
