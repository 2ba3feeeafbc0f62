"""High availability with real processes: two ``phalanx up --ha`` servers on one PostgreSQL
store and one data dir (the local backend's pods live there, so the follower can adopt the
leader's). The leader is SIGKILLed mid-run; the follower must take over, adopt the running
pods rather than relaunch them, and finish every job: no job lost or run twice, no GPU held
by two pods at once. Prints the failover time: SIGKILL → the new leader's first tick.

``PHALANX_TEST_LEASE_TTL`` sets the lease (default 3 s, to keep the test short; the server's
default is 10 s)."""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from ha_servers import UpServer, kill_leftover_pods, wait_until
from phalanx.store import open_store
from phalanx.testing import queue_manifests

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

LEASE_TTL_S = float(os.environ.get("PHALANX_TEST_LEASE_TTL", "3"))

POD = """
import os, time
def line(what):
    with open(os.environ["LEDGER"], "a") as out:
        out.write(f"{time.time():.6f} {what} {os.environ['PHALANX_JOB']} "
                  f"{os.environ['PHALANX_POD_SET']}-{os.environ['PHALANX_INDEX']} "
                  f"{os.environ['PHALANX_ATTEMPT']} {os.environ['PHALANX_NODE']} "
                  f"{os.environ['CUDA_VISIBLE_DEVICES'] or '-'}\\n")
line("start"); time.sleep(float(os.environ["SECONDS_TO_RUN"])); line("end")
"""


class Server(UpServer):
    """One ``phalanx up --ha`` process (two virtual nodes of 2 GPUs) and a client of its URL."""

    def __init__(self, data_dir: Path, store_url: str, name: str) -> None:
        super().__init__(data_dir, store_url, name, lease_ttl_s=LEASE_TTL_S, nodes="2x2")

    def health(self) -> dict[str, object]:
        return self.client.health()

    def lease(self) -> dict[str, object]:
        lease = self.health()["lease"]
        assert isinstance(lease, dict)
        return lease


def job(name: str, ledger: Path, seconds: float, gpus: int, replicas: int = 1) -> dict[str, object]:
    return {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "queue": "q",
            "podSets": [
                {
                    "name": "w",
                    "replicas": replicas,
                    "command": [sys.executable, "-c", POD],
                    "env": {"SECONDS_TO_RUN": str(seconds), "LEDGER": str(ledger)},
                    "resources": {"cpu": "100m", "memory": "32Mi", "nvidia.com/gpu": gpus},
                }
            ],
        },
    }


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


def is_live(server: Server, name: str) -> bool:
    return any(p["phase"] in ("Pending", "Running") for p in server.client.job(name)["pods"])


def test_the_follower_takes_over_when_the_leader_is_killed(
    tmp_path: Path, postgres_url: str, servers: list[Server]
) -> None:
    data_dir, ledger = tmp_path / "data", tmp_path / "ledger.txt"
    data_dir.mkdir()
    try:
        # 1. two control planes on one store and one data dir: the first leads
        a = Server(data_dir, postgres_url, "a")
        servers.append(a)
        wait_until(lambda: a.health()["role"] == "leader", 30, "a to lead")
        b = Server(data_dir, postgres_url, "b")
        servers.append(b)
        assert (b.health()["status"], b.health()["role"]) == ("ok", "follower")
        assert b.lease()["leader"] == a.lease()["holder"]
        assert json.loads((data_dir / "server.json").read_text())["pid"] == a.pid

        # 2. writes through the follower: a gang of 2 and single pods, more than fits (4 GPUs)
        b.client.apply(queue_manifests(gpu=4, cpu=8))
        b.client.apply(
            [
                job("gang", ledger, 6.0, gpus=1, replicas=2),
                job("short", ledger, 2.0, gpus=1),  # ends while no one leads
                job("long", ledger, 6.0, gpus=1),
                job("later-1", ledger, 1.0, gpus=1),  # wait for capacity: the new leader
                job("later-2", ledger, 1.0, gpus=1),  # admits them
                job("victim", ledger, 120.0, gpus=0),
            ]
        )
        running = ("gang", "short", "long", "victim")
        wait_until(
            lambda: all(b.client.job(n)["phase"] == "Running" for n in running), 30, "jobs to run"
        )

        # 3. a cancel through the follower: the leader's next tick stops the pod
        cancelled_at = time.monotonic()
        assert b.client.cancel("victim")["phase"] == "Cancelled"
        wait_until(lambda: not is_live(b, "victim"), 10, "the cancelled pod to stop")
        stop_s = time.monotonic() - cancelled_at

        # 4. SIGKILL the leader mid-run; the follower takes over
        killed_at = time.time()
        a.kill()
        wait_until(lambda: b.lease()["first_tick_at"] is not None, 4 * LEASE_TTL_S, "failover")
        lease = b.lease()
        first_tick_at = lease["first_tick_at"]
        assert isinstance(first_tick_at, float)
        failover_s = first_tick_at - killed_at
        print(
            f"\nfailover (SIGKILL → first tick of the new leader, lease TTL {LEASE_TTL_S:g}s): "
            f"{failover_s:.2f}s; a follower's cancel stopped in {stop_s:.2f}s"
        )
        assert b.health()["role"] == "leader" and lease["holder"] == lease["leader"]
        assert failover_s <= LEASE_TTL_S + 2.0
        wait_until(
            lambda: json.loads((data_dir / "server.json").read_text())["pid"] == b.pid,
            5,
            "server.json to name the new leader",
        )

        # 5. every job finishes, each in one attempt: running pods were adopted, not relaunched
        names = ("gang", "short", "long", "later-1", "later-2")
        for name in names:
            info = b.client.wait_for(name, ("Succeeded", "Failed"), timeout_s=40)
            assert info["phase"] == "Succeeded", info["message"]
            assert info["attempt"] == 1, f"{name} ran {info['attempt']} attempts"
    finally:
        for server in servers:
            server.stop()
        kill_leftover_pods(data_dir)

    # 6. the ledger: every pod ran exactly once, and no device was held by two at once
    starts: Counter[tuple[str, str, str]] = Counter()
    spans: dict[tuple[str, str, str], tuple[float, str, str]] = {}
    intervals: dict[tuple[str, str], list[tuple[float, float, str]]] = defaultdict(list)
    for row in ledger.read_text().splitlines():
        at, what, name, pod, attempt, node, devices = row.split(" ")
        key = (name, pod, attempt)
        if what == "start":
            starts[key] += 1
            spans[key] = (float(at), node, devices)
        else:
            begin, node, devices = spans.pop(key)
            for device in devices.split(","):
                intervals[(node, device)].append((begin, float(at), f"{name}/{pod}"))
    assert starts == Counter(
        {
            ("gang", "w-0", "1"): 1,
            ("gang", "w-1", "1"): 1,
            ("short", "w-0", "1"): 1,
            ("long", "w-0", "1"): 1,
            ("later-1", "w-0", "1"): 1,
            ("later-2", "w-0", "1"): 1,
            ("victim", "w-0", "1"): 1,
        }
    )
    assert list(spans) == [("victim", "w-0", "1")], "only the cancelled pod did not finish"
    assert_no_overlap(intervals)

    # 7. the store agrees: no GPU device in two pods' lifetimes at once
    store = open_store(postgres_url, tmp_path, migrate=False)
    try:
        held: dict[tuple[str, str], list[tuple[float, float, str]]] = defaultdict(list)
        for pod in store.pods():
            assert pod.phase in ("Succeeded", "Stopped"), (pod.pod_id, pod.phase)
            assert pod.finished_at is not None
            for index, _milli in pod.devices:
                held[(pod.node, str(index))].append((pod.created_at, pod.finished_at, pod.pod_id))
        assert sum(len(v) for v in held.values()) == 6
        assert_no_overlap(held)
    finally:
        store.close()


def assert_no_overlap(intervals: dict[tuple[str, str], list[tuple[float, float, str]]]) -> None:
    for device, used in intervals.items():
        used.sort()
        for (_, end, first), (begin, _, second) in itertools.pairwise(used):
            assert begin >= end, f"{device} held by {first} and {second} at once"
