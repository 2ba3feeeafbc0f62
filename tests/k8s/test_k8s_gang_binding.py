"""The pods of a gang start together: all are created unbound, then bound in one burst once
every one exists; a crash between the two steps is repaired after a restart; the gang's
rendezvous Service is created once."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from typing import Any

import pytest
from cluster import Cluster, Plane, job, queue

from h2frames import DATA, HEADERS, written_frames
from phalanx.backends.kubernetes import http2
from phalanx.backends.kubernetes.binds import BindAnswer

pytestmark = pytest.mark.k8s


class _PodEvents:
    """One watch of the pods of a job, in the API server's order: (name, bound?) per event."""

    def __init__(self, cluster: Cluster, selector: str) -> None:
        self.events: list[tuple[str, str, bool]] = []
        self._proc = subprocess.Popen(
            [
                cluster.kubectl_bin,
                "--kubeconfig",
                cluster.kubeconfig,
                "get",
                "pods",
                "-l",
                selector,
                "--watch",
                "--output-watch-events",
                "-o",
                "json",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        time.sleep(1.0)  # the watch is established before anything is created

    def _read(self) -> None:
        assert self._proc.stdout is not None
        decoder = json.JSONDecoder()
        buffer = ""
        for line in self._proc.stdout:
            buffer += line
            try:
                event, _ = decoder.raw_decode(buffer.strip())
            except ValueError:
                continue
            buffer = ""
            pod: dict[str, Any] = event["object"]
            self.events.append(
                (event["type"], pod["metadata"]["name"], bool(pod["spec"].get("nodeName")))
            )

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.wait(10)
        self._thread.join(10)
        assert self._proc.stdout is not None
        self._proc.stdout.close()


def test_a_gang_is_created_whole_before_any_pod_is_bound(cluster: Cluster, plane: Plane) -> None:
    watch = _PodEvents(cluster, "phalanx.dev/job=wide")
    try:
        plane.plane.apply(queue())
        plane.plane.apply([job("wide", gpus=8, replicas=4)])
        plane.run_until(lambda: plane.job("wide").phase.value == "Running")
        plane.run_until(lambda: sum(bound for _, _, bound in watch.events) >= 4)
    finally:
        watch.stop()
    created = [name for kind, name, bound in watch.events if kind == "ADDED"]
    assert len(created) == 4
    # Every pod appears unbound; no pod is bound before the last one exists.
    first_bound = next(i for i, (_, _, bound) in enumerate(watch.events) if bound)
    last_created = max(i for i, (kind, _, _) in enumerate(watch.events) if kind == "ADDED")
    assert all(not bound for kind, _, bound in watch.events if kind == "ADDED")
    assert last_created < first_bound, watch.events
    pods = cluster.pods("phalanx.dev/job=wide")
    assert sorted(p["spec"]["nodeName"] for p in pods) == sorted(
        p.node for p in plane.job("wide").pods
    )
    for pod in pods:
        assert pod["spec"]["schedulerName"] == "phalanx"
        assert pod["metadata"]["annotations"]["phalanx.dev/gang-size"] == "4"
        assert pod["metadata"]["annotations"]["phalanx.dev/node"] == pod["spec"]["nodeName"]


def test_a_single_pod_is_created_bound(cluster: Cluster, plane: Plane) -> None:
    watch = _PodEvents(cluster, "phalanx.dev/job=solo")
    try:
        plane.plane.apply(queue())
        plane.plane.apply([job("solo", gpus=1)])
        plane.run_until(lambda: plane.job("solo").phase.value == "Running")
        plane.run_until(lambda: bool(watch.events))
    finally:
        watch.stop()
    assert watch.events[0][0] == "ADDED" and watch.events[0][2], watch.events


def test_the_gang_service_is_created_once(cluster: Cluster, plane: Plane) -> None:
    backend = plane.plane.backend
    calls: list[str] = []
    create = backend.core.create_namespaced_service

    def counting(namespace: str, body: dict[str, Any], **kwargs: Any) -> Any:
        calls.append(body["metadata"]["name"])
        return create(namespace, body, **kwargs)

    backend.core.create_namespaced_service = counting
    plane.plane.apply(queue())
    plane.plane.apply([job("eight", gpus=2, replicas=8), job("one", gpus=1)])
    plane.run_until(
        lambda: (
            plane.job("eight").phase.value == "Running"
            and plane.job("one").phase.value == "Running"
        )
    )
    assert calls == ["px-eight-a1"]
    cluster.kubectl("get", "service", "px-eight-a1")


def test_a_crash_between_creating_and_binding_is_repaired_after_restart(
    cluster: Cluster, plane: Plane
) -> None:
    """The first control plane creates the pods of a gang but dies before binding them, and
    creates only two of the other gang's four pods: the next one binds both, creating only the
    missing pods."""
    backend = plane.plane.backend
    backend._bind_complete_gangs = lambda: None  # type: ignore[method-assign]
    launch = backend.launch
    backend.launch = lambda pod: (  # type: ignore[method-assign]
        None if pod.job == "half" and pod.index >= 2 else launch(pod)
    )
    plane.plane.apply(queue())
    plane.plane.apply([job("whole", gpus=8, replicas=2), job("half", gpus=4, replicas=4)])

    def created() -> bool:
        return (
            len(cluster.pods("phalanx.dev/job=whole")) == 2
            and len(cluster.pods("phalanx.dev/job=half")) == 2
        )

    plane.run_until(created)
    for _ in range(5):  # more passes change nothing: no pod is bound while its gang is partial
        plane.plane.tick()
    assert not any(
        p["spec"].get("nodeName") for p in cluster.pods("app.kubernetes.io/managed-by=phalanx")
    )
    before = {p["metadata"]["name"]: p["metadata"]["uid"] for p in cluster.pods("phalanx.dev/job")}

    plane.restart()
    plane.run_until(
        lambda: (
            plane.job("whole").phase.value == "Running"
            and plane.job("half").phase.value == "Running"
        )
    )
    after = {p["metadata"]["name"]: p for p in cluster.pods("phalanx.dev/job")}
    assert len(after) == 6
    for name, uid in before.items():  # the pods made before the crash are the same objects
        assert after[name]["metadata"]["uid"] == uid
    decided = {p.pod_id: p.node for j in ("whole", "half") for p in plane.job(j).pods}
    assert {name: p["spec"]["nodeName"] for name, p in after.items()} == decided
    cluster.kubectl("get", "service", "px-whole-a1", "px-half-a1")


def test_a_gang_created_whole_but_never_bound_is_bound_after_restart(
    cluster: Cluster, plane: Plane
) -> None:
    """Nothing is left to create: the new control plane's backend binds what it finds."""
    backend = plane.plane.backend
    backend._bind_complete_gangs = lambda: None  # type: ignore[method-assign]
    plane.plane.apply(queue())
    plane.plane.apply([job("pair", gpus=8, replicas=2)])
    plane.run_until(lambda: len(cluster.pods("phalanx.dev/job=pair")) == 2)
    uids = {p["metadata"]["uid"] for p in cluster.pods("phalanx.dev/job=pair")}
    plane.restart()
    plane.run_until(lambda: plane.job("pair").phase.value == "Running")
    pods = cluster.pods("phalanx.dev/job=pair")
    assert {p["metadata"]["uid"] for p in pods} == uids
    assert sorted(p["spec"]["nodeName"] for p in pods) == sorted(
        p.node for p in plane.job("pair").pods
    )


def _connections_opened(backend: Any) -> int:
    """How many connections the backend's API client has opened so far (every one a TCP
    connect and a TLS handshake)."""
    pools = backend.api.rest_client.pool_manager.pools
    # keys(): the pool container refuses plain iteration (not thread-safe).
    opened = sum(pools[key].num_connections for key in pools.keys())  # noqa: SIM118
    return int(opened + (backend._binder.opened if backend._binder is not None else 0))


class _RecordingSocket:
    """A bind connection's socket, every write recorded."""

    def __init__(self, sock: Any, writes: list[bytes]) -> None:
        self.sock, self.writes = sock, writes

    def sendall(self, data: bytes, /) -> None:
        self.writes.append(bytes(data))
        self.sock.sendall(data)

    def recv(self, size: int, /) -> bytes:
        return bytes(self.sock.recv(size))

    def close(self) -> None:
        self.sock.close()


def test_a_gangs_binds_arrive_on_one_http2_connection_in_one_write(
    cluster: Cluster, plane: Plane
) -> None:
    """The API server chooses HTTP/2: the gang's eight binds are eight streams of one
    connection, all in one socket write (every HEADERS frame first), and all are answered 201
    Created, on the nodes phalanx chose."""
    if not http2.AVAILABLE and os.environ.get("PHALANX_REQUIRE_K8S") != "1":
        pytest.skip("h2 is not installed: pip install -e '.[kubernetes]'")
    binder = plane.plane.backend._binder
    assert binder is not None and binder.http2
    writes: list[bytes] = []
    connect, bind = binder._connect_http2, binder.bind
    answers: list[BindAnswer] = []

    def recording() -> Any:
        conn = connect()
        assert conn is not None, "the API server did not choose HTTP/2"
        conn._sock = _RecordingSocket(conn._sock, writes)
        return conn

    def answered(requests: Any) -> list[BindAnswer]:
        got = bind(requests)
        answers.extend(got)
        return got

    binder._connect_http2, binder.bind = recording, answered  # type: ignore[method-assign]
    binder.close()  # no idle connection left: the gang's binds go through a recorded one
    opened = binder.opened
    plane.plane.apply(queue())
    plane.plane.apply([job("eight", gpus=1, replicas=8)])
    plane.run_until(lambda: plane.job("eight").phase.value == "Running")
    plane.run_until(lambda: len(answers) == 8)
    assert binder.opened - opened == 1
    assert binder.http2
    carrying = [w for w in writes if any(k == HEADERS for k, _ in written_frames(w))]
    assert len(carrying) == 1, [written_frames(w) for w in writes]
    # Every HEADERS frame before the first DATA frame: the API server has a handler under way
    # for every bind before any can read its body and act.
    frames = [f for f in written_frames(carrying[0]) if f[0] in (HEADERS, DATA)]
    streams = [1, 3, 5, 7, 9, 11, 13, 15]
    assert frames == [(HEADERS, s) for s in streams] + [(DATA, s) for s in streams]
    assert [a.status for a in answers] == [201] * 8, answers
    pods = cluster.pods("phalanx.dev/job=eight")
    assert sorted(p["spec"]["nodeName"] for p in pods) == sorted(
        p.node for p in plane.job("eight").pods
    )


def test_over_http1_a_gangs_binds_are_all_sent_before_any_answer_is_read(
    cluster: Cluster, plane: Plane
) -> None:
    """Without HTTP/2, from one thread, back to back: no bind of the gang can be committed
    (and hold a node) while a sibling's bind still waits to be sent."""
    binder = plane.plane.backend._binder
    assert binder is not None
    binder.http2 = False
    steps: list[str] = []
    connect = binder._connect

    def recording() -> Any:
        conn = connect()
        request, getresponse = conn.request, conn.getresponse

        def send(method: str, url: str, **kwargs: Any) -> None:
            steps.append("send " + url.split("/pods/")[1].split("/", maxsplit=1)[0])
            request(method, url, **kwargs)

        def read() -> Any:
            steps.append("read")
            return getresponse()

        conn.request, conn.getresponse = send, read
        return conn

    binder._connect = recording
    binder.close()  # no idle connection left: every bind goes through a recorded one
    plane.plane.apply(queue())
    plane.plane.apply([job("eight", gpus=1, replicas=8)])
    plane.run_until(lambda: plane.job("eight").phase.value == "Running")
    sends = [s for s in steps if s.startswith("send ")]
    assert len(sends) == 8, steps
    assert len({s.split()[1] for s in sends}) == 8, steps
    assert steps.index("read") == 8, steps  # the eight sends come first


def test_binds_reuse_the_clients_connections(cluster: Cluster, plane: Plane) -> None:
    """A bind's answer is read and its connection handed back: three more gangs of eight pods
    (24 binds, 24 creates) open fewer new connections than they have binds."""
    plane.plane.apply(queue())
    plane.plane.apply([job("g0", gpus=1, replicas=8)])
    plane.run_until(lambda: plane.job("g0").phase.value == "Running")
    time.sleep(0.5)  # the last binds' answers are in
    before = _connections_opened(plane.plane.backend)
    for name in ("g1", "g2", "g3"):
        plane.plane.apply([job(name, gpus=1, replicas=8)])
        plane.run_until(lambda name=name: plane.job(name).phase.value == "Running")
        plane.run_until(
            lambda name=name: all(
                p["spec"].get("nodeName") for p in cluster.pods(f"phalanx.dev/job={name}")
            )
        )
    opened = _connections_opened(plane.plane.backend) - before
    assert opened < 24, f"{opened} new connections for 24 binds"


def test_without_the_bind_sender_gangs_are_bound_through_the_client(
    cluster: Cluster, plane: Plane
) -> None:
    """Through a proxy the backend has no bind sender: each bind goes through the API client
    on its own worker, and the gang is still bound whole, on the nodes phalanx chose."""
    backend = plane.plane.backend
    assert backend._binder is not None
    backend._binder.close()
    backend._binder = None
    plane.plane.apply(queue())
    plane.plane.apply([job("viaclient", gpus=1, replicas=8)])
    plane.run_until(lambda: plane.job("viaclient").phase.value == "Running")
    pods = cluster.pods("phalanx.dev/job=viaclient")
    assert sorted(p["spec"]["nodeName"] for p in pods) == sorted(
        p.node for p in plane.job("viaclient").pods
    )
