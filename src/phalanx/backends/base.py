"""The Backend protocol: report nodes and pod events, launch a pod on a node, stop a pod.

A backend never decides anything; controllers tell it what to run where. Every method is
idempotent (launching a pod id that already exists, or stopping one that is gone, is a no-op)
because controllers may repeat calls after a crash. Must not import controllers or store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from phalanx.model.objects import DeviceShare, Node, SecretKeyRef
from phalanx.model.resources import Resources


@dataclass(frozen=True, slots=True)
class PodLaunch:
    """Everything a backend needs to start one pod of one attempt of a job.

    ``env`` already holds the job's env plus the wiring of ARCHITECTURE.md §8 (PHALANX_*,
    WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT); the backend adds only what it alone
    knows (``CUDA_VISIBLE_DEVICES`` for the devices it maps).
    """

    pod_id: str
    job: str
    namespace: str
    pod_set: str
    index: int
    attempt: int
    node: str
    devices: tuple[DeviceShare, ...]
    resources: Resources
    command: tuple[str, ...]
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    working_dir: str = ""
    image: str = ""
    grace_period_s: float = 10.0
    #: Kill the pod, reported as an OOM-kill (reason ``OOMKilled``), when its processes use
    #: more memory than this; None: the backend's default (Kubernetes: the container limit).
    memory_limit_bytes: int | None = None
    #: The job's annotations (Kubernetes: put on the pod; the local backend ignores them).
    annotations: Mapping[str, str] = field(default_factory=dict)
    #: Kubernetes: the PersistentVolumeClaim mounted at PHALANX_CHECKPOINT_DIR ("": none).
    checkpoint_claim: str = ""
    #: Variables whose values come from Secrets (every one resolvable: the controllers
    #: checked), and the data of each Secret they name. The local backend puts the values
    #: in the environment; Kubernetes writes the Secrets and refers to them
    #: (``valueFrom.secretKeyRef``), so no value appears in the pod's spec.
    secret_env: Mapping[str, SecretKeyRef] = field(default_factory=dict)
    secrets: Mapping[str, Mapping[str, bytes]] = field(default_factory=dict, repr=False)


class PodEventKind(StrEnum):
    """What happened to a pod."""

    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    #: The pod ended because it was asked to stop (cancel, preemption, restart of the gang).
    STOPPED = "Stopped"
    #: The pod vanished without an exit status (node lost, process killed with its supervisor).
    LOST = "Lost"
    #: The pod has not started and the backend says why (reason: ``ImagePullBackOff``,
    #: ``CreateContainerConfigError``, …); it may still start. Reported once per reason.
    WAITING = "Waiting"


#: ``PodEvent.reason`` values with a meaning the controllers act on: a pod killed for its
#: memory use, and pods that failed because of their node (node-side; see failure policies).
OOM_KILLED = "OOMKilled"
NODE_FAULT = "NodeFault"


@dataclass(frozen=True, slots=True)
class PodEvent:
    """A change in a pod's state, observed by the backend at ``at`` (epoch seconds)."""

    pod_id: str
    kind: PodEventKind
    at: float
    exit_code: int | None = None
    reason: str = ""
    message: str = ""
    #: Facts that name what went wrong (e.g. the secret and key a launch could not find),
    #: added to the failure reason's facts.
    facts: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RendezvousInfo:
    """Where the pods of one gang attempt meet: torchrun's MASTER_ADDR and MASTER_PORT."""

    master_addr: str
    master_port: int


@dataclass(frozen=True, slots=True)
class HeldCapacity:
    """Capacity on a node held by a workload phalanx did not place (e.g. another team's pod)."""

    node: str
    resources: Resources


class Backend(Protocol):
    """A substrate that runs pods. See the module docstring for the idempotency contract."""

    name: str

    def nodes(self) -> list[Node]:
        """Return the nodes pods can be placed on, as observed now."""
        ...

    def held_capacity(self) -> list[HeldCapacity]:
        """Return capacity in use on the nodes by workloads phalanx did not place."""
        ...

    def rendezvous(self, job: str, attempt: int, first_node: str) -> RendezvousInfo:
        """Return the rendezvous address for one attempt of a gang whose rank 0 runs on
        ``first_node``. Called once per attempt; the result is stored with the pods."""
        ...

    def launch(self, pod: PodLaunch) -> None:
        """Start ``pod`` on its node; a no-op if ``pod.pod_id`` was launched before."""
        ...

    def stop(self, pod_id: str, grace_period_s: float) -> None:
        """Ask a pod to stop (SIGTERM, then SIGKILL after the grace period, or the backend's
        equivalent). Returns at once; a STOPPED (or exit) event follows. No-op if gone."""
        ...

    def poll_events(self) -> list[PodEvent]:
        """Return pod events observed since the previous call, oldest first."""
        ...

    def adopt(self, pod_ids: Iterable[str]) -> list[PodEvent]:
        """After a control-plane restart: take back the pods in ``pod_ids`` that still run
        and return an event for each that ended (or vanished) while nobody watched."""
        ...

    def read_logs(self, pod_id: str, offset: int = 0, limit: int = 1 << 20) -> bytes:
        """Return up to ``limit`` bytes of the pod's output starting at ``offset``; b"" if none."""
        ...

    def close(self) -> None:
        """Release resources held by the backend; pods keep running."""
        ...
