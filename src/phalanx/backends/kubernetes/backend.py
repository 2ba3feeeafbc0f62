"""The Kubernetes backend: watched Nodes and Pods in, bound Pods and headless Services out.

Client choice: the official ``kubernetes`` package. It is maintained with the API itself,
speaks every auth method a kubeconfig can name (tokens, certificates, exec plugins) and has
in-cluster config; we use it only at this edge and type its JSON as plain dicts.

What it does:
- watches Nodes and *all* Pods. Pods phalanx did not create still hold capacity on their node:
  ``reservations()`` reports them so the scheduler never counts that capacity as free;
- ``launch`` creates a Pod on the chosen node (the scheduler already decided), labelled with
  job, pod set, index, attempt and rank, requesting ``nvidia.com/gpu: k`` for whole GPUs so the
  device plugin keeps working. A single pod is created bound (``spec.nodeName``). The pods of a
  gang start together: each is created *unbound* (``schedulerName: phalanx``, so no other
  scheduler takes it; its node and the gang's size in annotations), and once every pod of the
  gang exists they are all bound in one burst (the ``pods/binding`` subresource): one thread
  frames every bind of the gang as a stream of one HTTP/2 connection and writes them all with
  one socket write, so the API server reads them together, before it reads any answer
  (binds.py; over HTTP/1.1, back to back on a connection each, when the ``h2`` package is
  missing or the server does not choose HTTP/2); through a proxy they go through the client,
  a thread each.
  No pod of a gang holds a node while another is still being created. A crash between the two
  steps leaves unbound pods: after a restart the watch finds them, and ``poll_events`` binds
  every gang whose pods all exist (the controllers' relaunch creates any that are missing);
- a headless Service per gang attempt, created once (before the gang's first pod), selects its
  rank-0 pod, so ``MASTER_ADDR`` (the Service's name) resolves to it;
- a fractional-GPU pod requests no ``nvidia.com/gpu`` (two of them could not share one device
  through the device plugin). Instead phalanx creates one *reservation pod* per shared device,
  bound to the node and requesting ``nvidia.com/gpu: 1``: the kubelet and device plugin account
  that device as taken, so no other pod is handed it. The reservation pod prints the device the
  plugin gave it (``NVIDIA_VISIBLE_DEVICES``), and the sharing pods get that value in their own
  ``NVIDIA_VISIBLE_DEVICES`` (until it is known — or on clusters without a device plugin, such
  as KWOK — the device's index). The reservation is deleted when no pod shares the device;
- reports pods that do not start (a container waiting with ``ImagePullBackOff``,
  ``ErrImagePull``, ``CreateContainerConfigError``, …: ``convert.NOT_STARTING``) as WAITING
  events, once per reason; the startup timeout of the controllers decides when to give up;
- reports pod events: running, succeeded, failed with exit code and reason (``OOMKilled``,
  ``Error``), evicted, and lost when the pod vanished or its node went NotReady or away;
- writes the Secrets a pod's env refers to as real ``Secret`` objects of the same name in the
  pod's namespace (labelled ``app.kubernetes.io/managed-by: phalanx`` and
  ``phalanx.dev/secret``; updated when the value changed; one of that name phalanx did not
  create is never overwritten: the launch fails naming it) and refers to them with
  ``valueFrom.secretKeyRef``, so no value appears in a pod spec;
- stops pods by graceful deletion, and deletes a gang's Service when its pods are gone;
- finds its own objects by label after a restart and creates nothing twice (409 is a no-op).

Must not import phalanx.backends.local, controllers, store or api.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.client.rest import ApiException

from phalanx.backends.base import HeldCapacity, PodEvent, PodEventKind, PodLaunch, RendezvousInfo
from phalanx.backends.kubernetes.binds import BindAnswer, BindRequest, BindSender
from phalanx.backends.kubernetes.convert import (
    ANNOTATION_DEVICES,
    ANNOTATION_GANG_SIZE,
    ANNOTATION_NODE,
    LABEL_ATTEMPT,
    LABEL_INDEX,
    LABEL_JOB,
    LABEL_POD_SET,
    LABEL_RANK,
    LABEL_ROLE,
    MANAGED_BY,
    MANAGER,
    SCHEDULER_NAME,
    Obj,
    annotations_of,
    is_deleting,
    is_managed,
    is_ready,
    is_terminal,
    labels_of,
    name_of,
    namespace_of,
    node_from_k8s,
    node_of,
    pod_requests,
    termination_of,
    waiting_of,
)
from phalanx.model.objects import DeviceShare, Node
from phalanx.model.resources import GPU, format_cpu, format_memory

log = logging.getLogger(__name__)

MASTER_PORT = 29500
GC_INTERVAL_S = 5.0
#: Binds in flight at once: a gang of up to this many pods has every bind sent together.
BIND_WORKERS = 16
#: How long a gang's binders wait for each other before sending anyway (a safety net: they
#: are queued together, so they meet within one round trip of the binds before them).
BIND_MEET_TIMEOUT_S = 5.0
DEFAULT_IMAGE = "python:3.12-slim"
_SHARE_IMAGE = "busybox:1.36"


def service_name(job: str, attempt: int) -> str:
    """The headless Service of one gang attempt (a DNS-1035 label: starts with a letter)."""
    return f"px-{job}-a{attempt}"[:63].rstrip("-")


def share_pod_name(node: str, device: int) -> str:
    """The reservation pod holding one shared device of a node."""
    return f"px-gpu-share-{node}-{device}"[:253]


class KubernetesError(RuntimeError):
    """The cluster could not be reached or refused a request phalanx cannot do without."""


#: One attempt of a gang: (namespace, job, attempt), as in the pods' labels.
GangKey = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class _Unbound:
    """A pod of a gang that exists on the cluster and waits to be bound with the others."""

    namespace: str
    node: str
    gang: GangKey
    size: int


class KubernetesBackend:
    """Runs pods on a Kubernetes cluster; see the module docstring."""

    name = "kubernetes"

    def __init__(
        self,
        *,
        kubeconfig: str | None = None,
        context: str | None = None,
        namespace: str = "default",
        default_image: str = DEFAULT_IMAGE,
        api_client: Any | None = None,
        clock: Callable[[], float] = time.time,
        api_workers: int = 8,
    ) -> None:
        self.namespace = namespace
        self.default_image = default_image
        self.clock = clock
        # Connections for every API worker, binder, watch and the garbage collector at once:
        # a smaller pool discards connections and pays a TLS handshake for each new one.
        self.api = api_client or _api_client(kubeconfig, context, api_workers + BIND_WORKERS + 8)
        self.core = k8s.CoreV1Api(self.api)
        # A gang's binds leave together from one thread (binds.py); through a proxy, or
        # with an injected client, they go through the client, one thread each.
        self._binder = (
            BindSender(self.api.configuration, self._bind_headers)
            if api_client is None and BindSender.supports(self.api.configuration)
            else None
        )
        self._lock = threading.RLock()
        self._nodes: dict[str, Obj] = {}
        self._pods: dict[tuple[str, str], Obj] = {}
        self._ours: dict[str, tuple[str, str]] = {}  # pod id -> (namespace, name)
        self._reported: dict[str, PodEventKind] = {}
        self._stopping: set[str] = set()
        self._events: list[PodEvent] = []
        self._share_devices: dict[str, str] = {}  # reservation pod name -> device (from its log)
        self._launching: set[str] = set()
        #: Pod id → the waiting reason last reported (PodEventKind.WAITING, once per reason).
        self._waiting: dict[str, str] = {}
        self._next_gc = 0.0
        self._converted: dict[str, tuple[str, Node]] = {}  # node name -> (resourceVersion, Node)
        #: Every phalanx pod of a gang on the cluster (watched, or created by us), by gang.
        self._gang_pods: dict[GangKey, set[str]] = {}
        #: Pod creations of a gang in flight in this process (its pods are not bound before).
        self._creating: dict[GangKey, int] = {}
        #: Gang pods on the cluster that are not bound yet, and those being bound now.
        self._unbound: dict[str, _Unbound] = {}
        self._binding: set[str] = set()
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=api_workers, thread_name_prefix="phalanx-k8s-api"
        )
        # Binds have their own workers, so a gang's burst never queues behind other creations.
        self._bind_pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=BIND_WORKERS, thread_name_prefix="phalanx-k8s-bind"
        )
        self._stop = threading.Event()
        self._collecting = threading.Event()  # a garbage collection is queued or running
        self._threads: list[threading.Thread] = []
        try:
            self._relist_nodes()
            self._relist_pods()
        except ApiException as exc:
            raise KubernetesError(f"cannot list nodes and pods: {exc.status} {exc.reason}") from exc
        except Exception as exc:  # urllib3 raises connection errors of several kinds
            raise KubernetesError(f"cannot reach the Kubernetes API server: {exc}") from exc
        for target, name in (
            (self._watch_nodes, "phalanx-k8s-nodes"),
            (self._watch_pods, "phalanx-k8s-pods"),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    # ---- informers ----

    def _relist_nodes(self) -> str:
        listing = _raw(self.core.list_node(_preload_content=False))
        with self._lock:
            self._nodes = {name_of(n): n for n in listing.get("items") or []}
            for name, node in self._nodes.items():
                self._on_node(name, node)
        return str((listing.get("metadata") or {}).get("resourceVersion", ""))

    def _relist_pods(self) -> str:
        listing = _raw(self.core.list_pod_for_all_namespaces(_preload_content=False))
        with self._lock:
            seen = set()
            for pod in listing.get("items") or []:
                key = (namespace_of(pod), name_of(pod))
                seen.add(key)
                self._on_pod("MODIFIED", pod)
            for key in [k for k in self._pods if k not in seen]:
                self._on_pod("DELETED", self._pods[key])
        return str((listing.get("metadata") or {}).get("resourceVersion", ""))

    def _watch(
        self,
        relist: Callable[[], str],
        lister: Callable[..., Any],
        handle: Callable[[str, Obj], None],
    ) -> None:
        version = ""
        while not self._stop.is_set():
            try:
                if not version:
                    version = relist()
                # Events stay JSON dicts (deserialize=False): the client's models would cost
                # more CPU than everything else the watch does, and are never used.
                stream = k8s_watch.Watch().stream(
                    lister,
                    resource_version=version,
                    timeout_seconds=60,
                    allow_watch_bookmarks=True,
                    deserialize=False,
                )
                for event in stream:
                    if self._stop.is_set():
                        return
                    obj = event.get("object") or {}
                    kind = event["type"]
                    if kind == "ERROR":
                        version = ""  # 410 Gone and friends: relist
                        break
                    version = str((obj.get("metadata") or {}).get("resourceVersion", version))
                    if kind != "BOOKMARK":
                        with self._lock:
                            handle(kind, obj)
            except Exception as exc:  # network blips, 410 Gone: relist and go on
                log.debug("watch restarts after %s", exc)
                version = ""
                self._stop.wait(0.5)

    def _watch_nodes(self) -> None:
        def handle(kind: str, node: Obj) -> None:
            name = name_of(node)
            if kind == "DELETED":
                self._nodes.pop(name, None)
                self._lose_pods_on(name, "NodeDeleted", f"node {name} was deleted")
            else:
                self._nodes[name] = node
                self._on_node(name, node)

        self._watch(self._relist_nodes, self.core.list_node, handle)

    def _watch_pods(self) -> None:
        self._watch(self._relist_pods, self.core.list_pod_for_all_namespaces, self._on_pod)

    def _on_node(self, name: str, node: Obj) -> None:
        if not is_ready(node):
            self._lose_pods_on(name, "NodeNotReady", f"node {name} is NotReady")

    def _lose_pods_on(self, node: str, reason: str, message: str) -> None:
        for pod_id, key in list(self._ours.items()):
            pod = self._pods.get(key)
            if pod is not None and node_of(pod) == node and not is_terminal(pod):
                self._report(pod_id, PodEventKind.LOST, None, reason, message)
                self._delete(key, grace_period_s=0)

    def _on_pod(self, kind: str, pod: Obj) -> None:
        key = (namespace_of(pod), name_of(pod))
        labels = labels_of(pod)
        if kind == "DELETED":
            self._pods.pop(key, None)
        else:
            self._pods[key] = pod
        if not is_managed(pod) or labels.get(LABEL_ROLE) != "pod":
            return
        pod_id = key[1]
        self._ours[pod_id] = key
        self._track_gang(kind, pod_id, pod)
        if kind == "DELETED":
            self._ours.pop(pod_id, None)
            self._waiting.pop(pod_id, None)
            if pod_id in self._stopping:
                self._report(pod_id, PodEventKind.STOPPED, None, "Stopped", "deleted on request")
            else:
                self._report(
                    pod_id,
                    PodEventKind.LOST,
                    None,
                    "Deleted",
                    "the pod was deleted outside phalanx",
                )
            self._stopping.discard(pod_id)
            return
        phase = (pod.get("status") or {}).get("phase")
        if phase == "Pending":
            waiting = waiting_of(pod)
            if waiting is not None and self._waiting.get(pod_id) != waiting[0]:
                self._waiting[pod_id] = waiting[0]
                self._events.append(
                    PodEvent(pod_id, PodEventKind.WAITING, self.clock(), None, *waiting)
                )
        elif phase == "Running":
            self._report(pod_id, PodEventKind.RUNNING, None, "", "")
        elif phase in ("Succeeded", "Failed"):
            ended = termination_of(pod)
            if pod_id in self._stopping or (pod.get("metadata") or {}).get("deletionTimestamp"):
                self._report(
                    pod_id, PodEventKind.STOPPED, ended.exit_code, "Stopped", "stopped on request"
                )
            elif phase == "Succeeded":
                self._report(pod_id, PodEventKind.SUCCEEDED, ended.exit_code or 0, "Completed", "")
            elif ended.reason == "Evicted":
                self._report(pod_id, PodEventKind.LOST, None, "Evicted", ended.message)
            else:
                self._report(
                    pod_id,
                    PodEventKind.FAILED,
                    ended.exit_code,
                    ended.reason or "Error",
                    ended.message,
                )

    def _track_gang(self, kind: str, pod_id: str, pod: Obj) -> None:
        """Keep the gang indexes in step with one watched pod of ours."""
        annotations = annotations_of(pod)
        size = _int(annotations.get(ANNOTATION_GANG_SIZE, ""))
        if size < 2:
            return
        labels = labels_of(pod)
        gang = (namespace_of(pod), labels.get(LABEL_JOB, ""), labels.get(LABEL_ATTEMPT, ""))
        if kind == "DELETED":
            members = self._gang_pods.get(gang)
            if members is not None:
                members.discard(pod_id)
                if not members:
                    del self._gang_pods[gang]
        else:
            self._gang_pods.setdefault(gang, set()).add(pod_id)
        if kind == "DELETED" or node_of(pod) or is_deleting(pod) or is_terminal(pod):
            self._unbound.pop(pod_id, None)
            self._binding.discard(pod_id)
        elif pod_id not in self._stopping:
            node = annotations.get(ANNOTATION_NODE, "")
            self._unbound[pod_id] = _Unbound(gang[0], node, gang, size)

    def _report(
        self, pod_id: str, kind: PodEventKind, exit_code: int | None, reason: str, message: str
    ) -> None:
        previous = self._reported.get(pod_id)
        if previous == kind or previous in (
            PodEventKind.SUCCEEDED,
            PodEventKind.FAILED,
            PodEventKind.STOPPED,
            PodEventKind.LOST,
        ):
            return
        self._reported[pod_id] = kind
        self._events.append(PodEvent(pod_id, kind, self.clock(), exit_code, reason, message))

    # ---- Backend protocol ----

    def nodes(self) -> list[Node]:
        with self._lock:
            out = []
            for name, node in sorted(self._nodes.items()):
                version = str((node.get("metadata") or {}).get("resourceVersion", ""))
                cached = self._converted.get(name)
                if cached is None or cached[0] != version:
                    cached = self._converted[name] = (version, node_from_k8s(node))
                out.append(cached[1])
            return out

    def held_capacity(self) -> list[HeldCapacity]:
        """What pods phalanx did not create hold on their nodes (not yet finished, bound)."""
        with self._lock:
            return [
                HeldCapacity(node_of(pod), pod_requests(pod))
                for pod in self._pods.values()
                if not is_managed(pod) and not is_terminal(pod) and node_of(pod)
            ]

    def rendezvous(self, job: str, attempt: int, first_node: str) -> RendezvousInfo:
        # The Service is created with the gang's pods (launch), in their namespace; its short
        # name resolves from inside that namespace.
        return RendezvousInfo(service_name(job, attempt), MASTER_PORT)

    def launch(self, pod: PodLaunch) -> None:
        """Queue the pod's creation on a small pool of API workers and return: one control
        loop creating pods one request at a time would be bound by round trips. A creation
        that fails is reported as a FAILED event (reason ``LaunchError``)."""
        with self._lock:
            if (
                pod.pod_id in self._ours
                or pod.pod_id in self._reported
                or pod.pod_id in self._launching
            ):
                return
            self._launching.add(pod.pod_id)
            gang = _gang_key(pod) if _gang_size(pod) > 1 else None
            # The gang's Service is made once, with its first pod: none of its pods is on the
            # cluster or being created (after a restart, pods found there mean it exists).
            with_service = gang is not None and not (
                self._creating.get(gang) or self._gang_pods.get(gang)
            )
            if gang is not None:
                self._creating[gang] = self._creating.get(gang, 0) + 1
        self._pool.submit(self._create, pod, with_service)

    def _create(self, pod: PodLaunch, with_service: bool = False) -> None:
        size = _gang_size(pod)
        created = False
        try:
            env = dict(pod.env)
            if size == 1:
                # A gang of one meets itself: its own hostname (in its /etc/hosts) needs no Service.
                env["MASTER_ADDR"] = _hostname(pod)
            elif with_service:
                self._ensure_service(pod)
            self._ensure_secrets(pod)
            shares = [d for d in pod.devices if d.milli < 1000]
            if shares:
                env["NVIDIA_VISIBLE_DEVICES"] = self._ensure_share(pod.node, shares[0])
            _create_once(
                self.core.create_namespaced_pod,
                pod.namespace,
                self._pod_manifest(pod, env),
                f"pod {pod.pod_id}",
            )
            created = True
        except Exception as exc:  # any failure to create is the pod's failure, never the loop's
            with self._lock:
                self._report(pod.pod_id, PodEventKind.FAILED, 128, "LaunchError", str(exc))
        finally:
            with self._lock:
                self._launching.discard(pod.pod_id)
                if size > 1:
                    gang = _gang_key(pod)
                    left = self._creating.get(gang, 1) - 1
                    if left > 0:
                        self._creating[gang] = left
                    else:
                        self._creating.pop(gang, None)
                    if created and pod.pod_id not in self._ours:  # the watch has not seen it yet
                        self._gang_pods.setdefault(gang, set()).add(pod.pod_id)
                        self._unbound.setdefault(
                            pod.pod_id, _Unbound(pod.namespace, pod.node, gang, size)
                        )
        if size > 1:
            self._bind_complete_gangs()

    def _bind_complete_gangs(self) -> None:
        """Bind, in one burst, the unbound pods of every gang whose pods all exist and none of
        whose creations are still in flight in this process.

        A gang's binds are queued together (under the lock, so two callers never interleave
        them) and meet at a barrier once built, so they leave together: none is sent while a
        sibling still waits for a worker or is being serialised. Groups are at most
        BIND_WORKERS binds, so a group's binders always all get a worker (the queue is FIFO:
        every task before the group's first is taken before it)."""
        with self._lock:
            if not self._unbound:
                return
            waiting: dict[GangKey, list[tuple[str, _Unbound]]] = {}
            for pod_id, unbound in self._unbound.items():
                if pod_id not in self._binding and pod_id not in self._stopping:
                    waiting.setdefault(unbound.gang, []).append((pod_id, unbound))
            burst: list[tuple[str, _Unbound]] = []
            for gang, pods in waiting.items():
                size = max(u.size for _, u in pods)
                if self._creating.get(gang) or len(self._gang_pods.get(gang, ())) < size:
                    continue
                burst += pods
            self._binding.update(pod_id for pod_id, _ in burst)
            # Whether each target node can take the pod is read now, under the lock.
            refused = {pod_id: self._refusal(unbound.node) for pod_id, unbound in burst}
            groups: dict[GangKey, list[tuple[str, _Unbound]]] = {}
            for pod_id, unbound in burst:
                if refused[pod_id] is not None:
                    self._bind_pool.submit(self._bind, pod_id, unbound, refused[pod_id])
                else:
                    groups.setdefault(unbound.gang, []).append((pod_id, unbound))
            for pods in groups.values():
                if self._binder is not None:
                    self._bind_pool.submit(self._bind_gang, pods)
                    continue
                for start in range(0, len(pods), BIND_WORKERS):
                    group = pods[start : start + BIND_WORKERS]
                    meet = threading.Barrier(len(group))
                    for pod_id, unbound in group:
                        self._bind_pool.submit(self._bind, pod_id, unbound, None, meet)

    def _refusal(self, node: str) -> tuple[str, str] | None:
        """Why a pod cannot be bound to ``node`` now ((reason, message)), or None."""
        found = self._nodes.get(node)
        if found is None:
            return "NodeDeleted", f"node {node} was deleted before the gang was bound"
        if not is_ready(found):
            return "NodeNotReady", f"node {node} went NotReady before the gang was bound"
        return None

    def _bind(
        self,
        pod_id: str,
        unbound: _Unbound,
        refusal: tuple[str, str] | None,
        meet: threading.Barrier | None = None,
    ) -> None:
        """Bind one pod of a complete gang to its node (409, bound already, is fine), once
        every binder of its group has reached ``meet``."""
        failure: tuple[PodEventKind, str, str] | None = None
        if refusal is not None:
            failure = (PodEventKind.LOST, *refusal)
        else:
            body: Obj = {
                "apiVersion": "v1",
                "kind": "Binding",
                "metadata": {"name": pod_id, "namespace": unbound.namespace},
                "target": {"apiVersion": "v1", "kind": "Node", "name": unbound.node},
            }
            if meet is not None:
                # A broken barrier (a sibling waited too long) sends now, as without one.
                with contextlib.suppress(threading.BrokenBarrierError):
                    meet.wait(BIND_MEET_TIMEOUT_S)
            try:
                # Read to the end: an unread response keeps its connection out of the pool,
                # and the next request pays a new connection and TLS handshake.
                _release(
                    self.core.create_namespaced_pod_binding(
                        pod_id, unbound.namespace, body, _preload_content=False
                    )
                )
            except ApiException as exc:
                if exc.status not in (404, 409):  # gone (the watch says so) or bound already
                    failure = (
                        PodEventKind.FAILED,
                        "LaunchError",
                        f"cannot bind pod {pod_id} to node {unbound.node}: {exc.status} "
                        f"{exc.reason}: {_body(exc)}",
                    )
            except Exception as exc:  # connection errors: the pod's failure, never the loop's
                failure = (
                    PodEventKind.FAILED,
                    "LaunchError",
                    f"cannot bind pod {pod_id} to node {unbound.node}: {exc}",
                )
        if failure is not None:
            self._bind_failed(pod_id, unbound, *failure)

    def _bind_gang(self, pods: list[tuple[str, _Unbound]]) -> None:
        """Bind every pod of one gang: all requests sent back to back, then all answers read
        (see binds.py)."""
        assert self._binder is not None
        try:
            answers = self._binder.bind(
                [BindRequest(u.namespace, pod_id, u.node) for pod_id, u in pods]
            )
        except Exception as exc:  # the pods' failure, never the loop's
            answers = [BindAnswer(0, error=str(exc))] * len(pods)
        for (pod_id, unbound), answer in zip(pods, answers, strict=True):
            # 404: gone (the watch says so); 409: bound already.
            if 200 <= answer.status < 300 or answer.status in (404, 409):
                continue
            why = answer.error or f"{answer.status}: {answer.body}"
            self._bind_failed(
                pod_id,
                unbound,
                PodEventKind.FAILED,
                "LaunchError",
                f"cannot bind pod {pod_id} to node {unbound.node}: {why}",
            )

    def _bind_headers(self) -> dict[str, str]:
        """The client's headers and credentials for a request (a refreshed token included)."""
        headers = {str(k): str(v) for k, v in (self.api.default_headers or {}).items()}
        headers["User-Agent"] = str(self.api.user_agent)
        for setting in self.api.configuration.auth_settings().values():
            if setting.get("in") == "header" and setting.get("value"):
                headers[str(setting["key"])] = str(setting["value"])
        return headers

    def _bind_failed(
        self, pod_id: str, unbound: _Unbound, kind: PodEventKind, reason: str, message: str
    ) -> None:
        """A pod of a gang that could not be bound: reported, and deleted when LOST."""
        log.warning("pod %s not bound: %s: %s", pod_id, reason, message)
        with self._lock:
            self._binding.discard(pod_id)
            self._unbound.pop(pod_id, None)
            self._report(
                pod_id, kind, 128 if kind is PodEventKind.FAILED else None, reason, message
            )
        if kind is PodEventKind.LOST:
            self._delete((unbound.namespace, pod_id), grace_period_s=0)

    def _pod_manifest(self, pod: PodLaunch, env: dict[str, str]) -> Obj:
        whole = sum(1 for d in pod.devices if d.milli >= 1000)
        size = _gang_size(pod)
        # A single pod is created bound; a gang's pods wait unbound for the gang's burst.
        placement: Obj = {"nodeName": pod.node} if size == 1 else {"schedulerName": SCHEDULER_NAME}
        gang_annotations = (
            {} if size == 1 else {ANNOTATION_NODE: pod.node, ANNOTATION_GANG_SIZE: str(size)}
        )
        requests = {
            "cpu": format_cpu(pod.resources.cpu_milli or 1),
            "memory": format_memory(pod.resources.memory_bytes or 1),
        }
        limits: dict[str, str] = {}
        if pod.memory_limit_bytes:
            limits["memory"] = format_memory(pod.memory_limit_bytes)
        if whole:
            requests[GPU] = limits[GPU] = str(whole)
        container: Obj = {
            "name": "main",
            "image": pod.image or self.default_image,
            "command": list(pod.command),
            "args": list(pod.args),
            "env": [{"name": k, "value": v} for k, v in sorted(env.items())]
            + [
                {"name": k, "valueFrom": {"secretKeyRef": {"name": r.secret, "key": r.key}}}
                for k, r in sorted(pod.secret_env.items())
            ],
            "resources": {"requests": requests, **({"limits": limits} if limits else {})},
        }
        if pod.working_dir:
            container["workingDir"] = pod.working_dir
        volumes: list[Obj] = []
        checkpoint_dir = env.get("PHALANX_CHECKPOINT_DIR", "")
        if checkpoint_dir:
            # The pod sees its checkpoint directory at the very path the control plane uses, so
            # a control plane that mounts the same (ReadWriteMany) claim at <data-dir>/checkpoints
            # reads the workload's status reports with no credentials or route to the pod.
            mount: Obj = {"name": "phalanx-checkpoint", "mountPath": checkpoint_dir}
            if pod.checkpoint_claim:
                mount["subPath"] = checkpoint_dir.rstrip("/").rsplit("/", 1)[-1]
                volumes.append(
                    {
                        "name": "phalanx-checkpoint",
                        "persistentVolumeClaim": {"claimName": pod.checkpoint_claim},
                    }
                )
            else:  # kept across the pod's own life only; name a claim to keep it across restarts
                volumes.append({"name": "phalanx-checkpoint", "emptyDir": {}})
            container["volumeMounts"] = [mount]
        rank = env.get("RANK", "")
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod.pod_id,
                "namespace": pod.namespace,
                "labels": {
                    MANAGED_BY: MANAGER,
                    LABEL_ROLE: "pod",
                    LABEL_JOB: pod.job,
                    LABEL_POD_SET: pod.pod_set,
                    LABEL_INDEX: str(pod.index),
                    LABEL_ATTEMPT: str(pod.attempt),
                    LABEL_RANK: rank,
                },
                "annotations": {
                    **pod.annotations,
                    ANNOTATION_DEVICES: ",".join(f"{d.index}:{d.milli}" for d in pod.devices),
                    **gang_annotations,
                },
            },
            "spec": {
                **placement,
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": max(0, round(pod.grace_period_s)),
                "hostname": _hostname(pod),
                "containers": [container],
                **({"volumes": volumes} if volumes else {}),
            },
        }

    def _ensure_secrets(self, pod: PodLaunch) -> None:
        """Create or update the Secrets ``pod``'s env refers to in its namespace. Raises
        OSError when the API refuses, or a Secret of that name is not phalanx's."""
        for name, values in sorted(pod.secrets.items()):
            data = {k: base64.b64encode(v).decode() for k, v in sorted(values.items())}
            body: Obj = {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": name,
                    "labels": {MANAGED_BY: MANAGER, LABEL_SECRET: name},
                },
                "type": "Opaque",
                "data": data,
            }
            try:
                self.core.create_namespaced_secret(pod.namespace, body)
                continue
            except ApiException as exc:
                if exc.status != 409:
                    raise OSError(
                        f"cannot create secret {name}: {exc.status} {exc.reason}: {_body(exc)}"
                    ) from exc
            found = self.api.sanitize_for_serialization(
                self.core.read_namespaced_secret(name, pod.namespace)
            )
            if labels_of(found).get(LABEL_SECRET) != name:
                raise OSError(
                    f"a Secret named {name} exists in namespace {pod.namespace} and was not "
                    "created by phalanx; phalanx will not overwrite it: rename the phalanx "
                    "Secret (and the secretKeyRef) or delete that Secret"
                )
            if (found.get("data") or {}) != data:
                self.core.replace_namespaced_secret(name, pod.namespace, body)

    def _ensure_service(self, pod: PodLaunch) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": service_name(pod.job, pod.attempt),
                "labels": {
                    MANAGED_BY: MANAGER,
                    LABEL_JOB: pod.job,
                    LABEL_ATTEMPT: str(pod.attempt),
                },
            },
            "spec": {
                "clusterIP": "None",
                "publishNotReadyAddresses": True,
                "selector": {LABEL_JOB: pod.job, LABEL_ATTEMPT: str(pod.attempt), LABEL_RANK: "0"},
                "ports": [{"name": "rendezvous", "port": MASTER_PORT}],
            },
        }
        _create_once(
            self.core.create_namespaced_service,
            pod.namespace,
            body,
            f"service {service_name(pod.job, pod.attempt)}",
        )

    def _ensure_share(self, node: str, share: DeviceShare) -> str:
        """Make sure the device is reserved on the node; return what to put in the sharing
        pod's NVIDIA_VISIBLE_DEVICES (the plugin's device id once known, else the index)."""
        name = share_pod_name(node, share.index)
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "labels": {MANAGED_BY: MANAGER, LABEL_ROLE: "gpu-share"},
                "annotations": {ANNOTATION_DEVICES: f"{share.index}:1000"},
            },
            "spec": {
                "nodeName": node,
                "restartPolicy": "Always",
                "terminationGracePeriodSeconds": 0,
                "containers": [
                    {
                        "name": "reserve",
                        "image": _SHARE_IMAGE,
                        "command": [
                            "sh",
                            "-c",
                            'echo "PHALANX_DEVICE=${NVIDIA_VISIBLE_DEVICES:-}"; exec sleep 2147483647',
                        ],
                        "resources": {
                            "requests": {"cpu": "1m", "memory": "4Mi", GPU: "1"},
                            "limits": {GPU: "1"},
                        },
                    }
                ],
            },
        }
        _create_once(
            self.core.create_namespaced_pod,
            self.namespace,
            body,
            f"GPU {share.index} reservation on {node}",
        )
        return self._share_devices.get(name) or self._read_share_device(name) or str(share.index)

    def _read_share_device(self, name: str) -> str:
        try:
            text = self.core.read_namespaced_pod_log(name, self.namespace, limit_bytes=4096)
        except ApiException:
            return ""  # not running yet, or no kubelet to ask (KWOK)
        for line in str(text).splitlines():
            if line.startswith("PHALANX_DEVICE=") and line.split("=", 1)[1]:
                self._share_devices[name] = line.split("=", 1)[1]
                return self._share_devices[name]
        return ""

    def stop(self, pod_id: str, grace_period_s: float) -> None:
        with self._lock:
            key = self._ours.get(pod_id)
            if key is None or self._reported.get(pod_id) in (
                PodEventKind.SUCCEEDED,
                PodEventKind.FAILED,
                PodEventKind.STOPPED,
                PodEventKind.LOST,
            ):
                return
            self._stopping.add(pod_id)
            self._unbound.pop(pod_id, None)  # a gang being stopped is never bound
        self._delete(key, grace_period_s)

    def _delete(self, key: tuple[str, str], grace_period_s: float) -> None:
        try:
            _release(
                self.core.delete_namespaced_pod(
                    key[1],
                    key[0],
                    grace_period_seconds=max(0, round(grace_period_s)),
                    _preload_content=False,
                )
            )
        except ApiException as exc:
            if exc.status != 404:
                log.warning("deleting pod %s/%s failed: %s", key[0], key[1], exc.status)

    def pod_address(self, pod_id: str) -> tuple[str, bool] | None:
        """The IP of one of our pods and whether its ``Ready`` condition is True (None: an
        unknown pod, or one without an IP yet): where the serving router reaches a replica,
        and whether it may (readiness from the pod's conditions, as kubelet's probes set)."""
        with self._lock:
            key = self._ours.get(pod_id)
            pod = self._pods.get(key) if key is not None else None
        if pod is None:
            return None
        status = pod.get("status") or {}
        ip = status.get("podIP")
        if not ip:
            return None
        conditions = status.get("conditions") or []
        is_ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in conditions
            if isinstance(c, dict)
        )
        return str(ip), is_ready

    def poll_events(self) -> list[PodEvent]:
        # Gangs whose pods all exist but were not bound (a restart between creating and
        # binding, a bind that found its pod missing from the watch yet): bind them now.
        self._bind_complete_gangs()
        # Collecting garbage lists Services from the API: every few seconds is plenty, and on
        # an API worker, so the control loop never waits for the API server.
        if time.monotonic() >= self._next_gc and not self._collecting.is_set():
            self._next_gc = time.monotonic() + GC_INTERVAL_S
            self._collecting.set()
            self._pool.submit(self._collect_garbage)
        with self._lock:
            events, self._events = self._events, []
        return events

    def _collect_garbage(self) -> None:
        """Delete gang Services and GPU reservations no live phalanx pod needs any more."""
        try:
            self._collect_garbage_once()
        except Exception as exc:  # best effort; the next round tries again
            log.warning("collecting Kubernetes garbage failed: %s", exc)
        finally:
            self._collecting.clear()

    def _collect_garbage_once(self) -> None:
        with self._lock:
            live = [
                p
                for p in self._pods.values()
                if is_managed(p) and labels_of(p).get(LABEL_ROLE) == "pod" and not is_terminal(p)
            ]
            gangs: set[tuple[str, str | None, str | None]] = {
                (namespace_of(p), labels_of(p).get(LABEL_JOB), labels_of(p).get(LABEL_ATTEMPT))
                for p in live
            }
            # A gang whose first pod is being created has its Service but no pod yet, and pods
            # just created may not have reached the watch yet.
            gangs.update(self._creating)
            gangs.update(u.gang for u in self._unbound.values())
            shared = {
                (node_of(p), d.split(":")[0])
                for p in live
                for d in _devices(p)
                if not d.endswith(":1000")
            }
            reservations = [
                p
                for p in self._pods.values()
                if is_managed(p) and labels_of(p).get(LABEL_ROLE) == "gpu-share"
            ]
        for pod in reservations:
            device = next(iter(_devices(pod)), "").split(":")[0]
            if (node_of(pod), device) not in shared and not (pod.get("metadata") or {}).get(
                "deletionTimestamp"
            ):
                self._delete((namespace_of(pod), name_of(pod)), 0)
                self._share_devices.pop(name_of(pod), None)
        try:
            services = _raw(
                self.core.list_service_for_all_namespaces(
                    label_selector=f"{MANAGED_BY}={MANAGER}", _preload_content=False
                )
            )
        except Exception:  # best effort; next poll tries again
            return
        for svc in services.get("items") or []:
            labels = labels_of(svc)
            if (namespace_of(svc), labels.get(LABEL_JOB), labels.get(LABEL_ATTEMPT)) not in gangs:
                try:
                    _release(
                        self.core.delete_namespaced_service(
                            name_of(svc), namespace_of(svc), _preload_content=False
                        )
                    )
                except ApiException as exc:
                    if exc.status != 404:
                        log.warning("deleting service %s failed: %s", name_of(svc), exc.status)

    def adopt(self, pod_ids: Iterable[str]) -> list[PodEvent]:
        """Pods are found by name (their pod id) in the watched list. Those that ended while
        nobody watched were queued as events by the first list; they are returned here. Pods
        that are gone are LOST."""
        wanted = set(pod_ids)
        with self._lock:
            ended = [
                e for e in self._events if e.pod_id in wanted and e.kind is not PodEventKind.RUNNING
            ]
            self._events = [e for e in self._events if e not in ended]
            for pod_id in sorted(wanted):
                if (
                    pod_id not in self._ours
                    and pod_id not in self._reported
                    and pod_id not in self._launching
                ):
                    self._reported[pod_id] = PodEventKind.LOST
                    ended.append(
                        PodEvent(
                            pod_id,
                            PodEventKind.LOST,
                            self.clock(),
                            None,
                            "NotFound",
                            "no such pod on the cluster",
                        )
                    )
        return ended

    def read_logs(self, pod_id: str, offset: int = 0, limit: int = 1 << 20) -> bytes:
        with self._lock:
            key = self._ours.get(pod_id)
        if key is None:
            return b""
        try:
            text = self.core.read_namespaced_pod_log(key[1], key[0])
        except ApiException:
            return b""
        data = str(text).encode()
        return data[offset : offset + limit]

    def close(self) -> None:
        self._stop.set()
        self._pool.shutdown(wait=True)
        self._bind_pool.shutdown(wait=True)
        if self._binder is not None:
            self._binder.close()


def _gang_size(pod: PodLaunch) -> int:
    """How many pods the pod's gang has (``WORLD_SIZE``; 1: a single pod)."""
    return max(1, _int(pod.env.get("WORLD_SIZE", "1")))


def _gang_key(pod: PodLaunch) -> GangKey:
    return (pod.namespace, pod.job, str(pod.attempt))


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0


def _hostname(pod: PodLaunch) -> str:
    return f"{pod.pod_set}-{pod.index}"[:63]


def _devices(pod: Obj) -> list[str]:
    value = ((pod.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_DEVICES, "")
    return [d for d in str(value).split(",") if d]


#: On the Secrets phalanx writes: the phalanx Secret they hold.
LABEL_SECRET = "phalanx.dev/secret"


def _create_once(create: Callable[..., Any], namespace: str, body: Obj, what: str) -> None:
    """Create an object; one that exists already (409: made before a restart) is fine. The
    answer is read as bytes and dropped: building the client's models of a whole Pod costs
    more CPU than the request, and nothing reads them."""
    try:
        _release(create(namespace, body, _preload_content=False))
    except ApiException as exc:
        if exc.status != 409:
            raise OSError(f"cannot create {what}: {exc.status} {exc.reason}: {_body(exc)}") from exc


def _body(exc: ApiException) -> str:
    return str(getattr(exc, "body", "") or "")[:300]


def _release(response: Any) -> None:
    """Read a response taken with ``_preload_content=False`` to its end and hand its
    connection back to the client's pool."""
    try:
        response.data  # noqa: B018 - reading the body is what frees the connection
    finally:
        response.release_conn()


def _raw(response: Any) -> Obj:
    """The JSON body of a response read with ``_preload_content=False`` (no client models)."""
    try:
        body = json.loads(response.data or b"{}")
    finally:
        response.release_conn()
    return body if isinstance(body, dict) else {}


def _api_client(kubeconfig: str | None, context: str | None, pool_size: int) -> Any:
    """An API client from a kubeconfig, ``$KUBECONFIG``, or the in-cluster service account,
    keeping up to ``pool_size`` connections open."""
    try:
        configuration = k8s.Configuration()
        if (
            kubeconfig is None
            and not os.environ.get("KUBECONFIG")
            and os.environ.get("KUBERNETES_SERVICE_HOST")
        ):
            k8s_config.load_incluster_config(client_configuration=configuration)
        else:
            k8s_config.load_kube_config(
                config_file=kubeconfig, context=context, client_configuration=configuration
            )
        configuration.connection_pool_maxsize = max(
            pool_size, configuration.connection_pool_maxsize or 0
        )
        return k8s.ApiClient(configuration)
    except (k8s_config.ConfigException, OSError) as exc:
        where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        raise KubernetesError(
            f"cannot load Kubernetes config from {where}: {exc}; pass --kubeconfig"
        ) from exc
