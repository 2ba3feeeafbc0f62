"""Typed views of raw Kubernetes objects (JSON dicts from the API) at the edge.

Nothing here talks to a cluster: Node and Pod dicts in, phalanx model objects out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from phalanx.model.objects import GpuDevice, Node, Taint
from phalanx.model.resources import GPU, Resources, cpu_milli, gpu_quota_milli, memory_bytes

Obj = dict[str, Any]

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "phalanx"
LABEL_JOB = "phalanx.dev/job"
LABEL_POD_SET = "phalanx.dev/pod-set"
LABEL_INDEX = "phalanx.dev/index"
LABEL_ATTEMPT = "phalanx.dev/attempt"
LABEL_RANK = "phalanx.dev/rank"
LABEL_ROLE = "phalanx.dev/role"  # "pod" for workload pods, "gpu-share" for device reservations
ANNOTATION_DEVICES = "phalanx.dev/devices"
#: On the pods of a gang, created unbound: the node phalanx decided, and how many pods the
#: gang has. The backend binds them all once every pod of the gang exists.
ANNOTATION_NODE = "phalanx.dev/node"
ANNOTATION_GANG_SIZE = "phalanx.dev/gang-size"
#: The scheduler name of a gang's unbound pods: no other scheduler takes them, phalanx binds
#: them itself (the ``pods/binding`` subresource).
SCHEDULER_NAME = "phalanx"
GPU_PRODUCT = "nvidia.com/gpu.product"

TERMINAL_PHASES = ("Succeeded", "Failed")


def _meta(obj: Obj) -> Obj:
    meta = obj.get("metadata") or {}
    return meta if isinstance(meta, dict) else {}


def name_of(obj: Obj) -> str:
    return str(_meta(obj).get("name", ""))


def namespace_of(obj: Obj) -> str:
    return str(_meta(obj).get("namespace", "default"))


def labels_of(obj: Obj) -> dict[str, str]:
    return {str(k): str(v) for k, v in (_meta(obj).get("labels") or {}).items()}


def is_managed(obj: Obj) -> bool:
    """Whether phalanx created this object."""
    return labels_of(obj).get(MANAGED_BY) == MANAGER


def is_ready(node: Obj) -> bool:
    for condition in (node.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return bool(condition.get("status") == "True")
    return False


def node_from_k8s(node: Obj) -> Node:
    """A phalanx Node from a Kubernetes Node: allocatable CPU, memory and ``nvidia.com/gpu``
    (one GpuDevice per whole GPU, model from the GPU Operator's ``nvidia.com/gpu.product``
    label), labels, NoSchedule/NoExecute taints, the Ready condition and cordoning."""
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    labels = labels_of(node)
    gpus = gpu_quota_milli(allocatable.get(GPU, 0)) // 1000
    model = labels.get(GPU_PRODUCT, "")
    taints = tuple(
        Taint(str(t.get("key", "")), str(t.get("value", "") or ""), str(t.get("effect", "")))
        for t in (node.get("spec") or {}).get("taints") or []
    )
    if (node.get("spec") or {}).get("unschedulable"):
        taints = (*taints, Taint("node.kubernetes.io/unschedulable", "", "NoSchedule"))
    return Node(
        name=name_of(node),
        allocatable=Resources(
            cpu_milli(allocatable.get("cpu", 0)),
            memory_bytes(allocatable.get("memory", 0)),
            gpus * 1000,
        ),
        gpus=tuple(GpuDevice(i, f"{name_of(node)}-gpu{i}", model) for i in range(gpus)),
        labels=labels,
        taints=taints,
        is_ready=is_ready(node),
    )


def pod_requests(pod: Obj) -> Resources:
    """What a pod holds on its node: the sum of its containers' requests (limits for
    extended resources such as GPUs, which must equal requests)."""
    total = Resources()
    for container in (pod.get("spec") or {}).get("containers") or []:
        resources = container.get("resources") or {}
        requests = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        total = total + Resources(
            cpu_milli(requests.get("cpu", 0)),
            memory_bytes(requests.get("memory", 0)),
            gpu_quota_milli(requests.get(GPU, 0)),
        )
    return total


def is_terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in TERMINAL_PHASES


def node_of(pod: Obj) -> str:
    return str((pod.get("spec") or {}).get("nodeName") or "")


def annotations_of(obj: Obj) -> dict[str, str]:
    return {str(k): str(v) for k, v in (_meta(obj).get("annotations") or {}).items()}


def is_deleting(obj: Obj) -> bool:
    return bool(_meta(obj).get("deletionTimestamp"))


@dataclass(frozen=True, slots=True)
class Termination:
    """How a pod's main container ended."""

    exit_code: int | None
    reason: str
    message: str


def termination_of(pod: Obj) -> Termination:
    """The exit code and reason (``OOMKilled``, ``Error``, ``Evicted``…) of a finished pod."""
    status = pod.get("status") or {}
    for container in status.get("containerStatuses") or []:
        terminated = (container.get("state") or {}).get("terminated")
        if terminated:
            return Termination(
                terminated.get("exitCode"),
                str(terminated.get("reason") or ""),
                str(terminated.get("message") or ""),
            )
    return Termination(None, str(status.get("reason") or ""), str(status.get("message") or ""))


#: Reasons a container waits that mean the pod is not starting (as opposed to the normal
#: ``ContainerCreating`` and ``PodInitializing``): the image cannot be pulled, the container
#: cannot be made from its spec, or the kubelet cannot run it.
NOT_STARTING = frozenset(
    {
        "ImagePullBackOff",
        "ErrImagePull",
        "ErrImageNeverPull",
        "InvalidImageName",
        "RegistryUnavailable",
        "CreateContainerConfigError",
        "CreateContainerError",
        "PreCreateHookError",
        "PreStartHookError",
        "RunContainerError",
        "CrashLoopBackOff",
    }
)


def waiting_of(pod: Obj) -> tuple[str, str] | None:
    """(reason, message) of the first container of a pending pod that is not starting (a
    reason in NOT_STARTING), or None."""
    status = pod.get("status") or {}
    for key in ("initContainerStatuses", "containerStatuses"):
        for container in status.get(key) or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            reason = str(waiting.get("reason") or "")
            if reason in NOT_STARTING:
                return reason, str(waiting.get("message") or "")
    return None
