"""Services on the KWOK cluster: replicas are pods bound like job pods (a replica of two pods is
one gang), their endpoints are pod IPs with readiness from the pods' Ready condition, and a
replica whose pod is deleted is replaced."""

from __future__ import annotations

import json

from cluster import Cluster, Plane, queue

from phalanx.serving.controller import ServiceController


def service(name: str, replicas: int) -> dict[str, object]:
    return {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "queue": "q",
            "port": 9000,
            "minReplicas": replicas,
            "maxReplicas": replicas,
            "template": {
                "command": ["python", "-m", "server"],
                "resources": {"cpu": 1, "memory": "1Gi", "nvidia.com/gpu": 4},
                "pods": 2,
            },
        },
    }


def test_replicas_are_bound_pods_reached_at_their_ip_when_ready(
    cluster: Cluster, plane: Plane
) -> None:
    services = ServiceController.attach(plane.plane)
    plane.plane.apply(queue())
    plane.plane.apply([service("llm", 2)])

    def endpoints() -> list[tuple[str, bool]]:
        routes = [r for r in services.routes() if r.service == "llm"]
        return [(e.url, e.ready) for e in routes[0].endpoints] if routes else []

    plane.run_until(lambda: len(endpoints()) == 2 and all(ready for _, ready in endpoints()))
    replicas = {r.name for r in services.view("llm").replicas}
    assert len(replicas) == 2
    ips = set()
    for replica in replicas:
        pods = cluster.pods(f"phalanx.dev/job={replica}")
        assert len(pods) == 2  # a gang of two pods per replica
        assert all(p["spec"]["nodeName"].startswith("kwok-gpu-") for p in pods)
        for pod in pods:
            env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
            assert env["PORT"] == "9000" and env["PHALANX_SERVICE"] == "llm"
            assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "4"
        first = next(p for p in pods if p["metadata"]["labels"]["phalanx.dev/rank"] == "0")
        ips.add(f"http://{first['status']['podIP']}:9000")
        rendezvous = json.loads(cluster.kubectl("get", "service", f"px-{replica}-a1", "-o", "json"))
        assert rendezvous["spec"]["clusterIP"] == "None"
    assert {url for url, _ in endpoints()} == ips
    # a deleted pod: the replica's gang restarts (or the replica is replaced) and is
    # routed to again once its new pods are ready
    victim = sorted(replicas)[0]
    cluster.kubectl(
        "delete", "pods", "-l", f"phalanx.dev/job={victim}", "--grace-period=0", "--force"
    )

    def recovered() -> bool:
        # Both replicas ready again, the victim at its new attempt's rank-0 pod (KWOK may give
        # the new pod the old one's IP: compare with the live pods, not with the old IPs).
        ready = {url for url, ok in endpoints() if ok}
        pods = cluster.pods(f"phalanx.dev/job={victim},phalanx.dev/rank=0")
        fresh = [
            p
            for p in pods
            if p["metadata"]["labels"].get("phalanx.dev/attempt") != "1"
            and not p["metadata"].get("deletionTimestamp")
            and p["status"].get("podIP")
        ]
        return (
            len(ready) == 2
            and len(fresh) == 1
            and f"http://{fresh[0]['status']['podIP']}:9000" in ready
        )

    plane.run_until(recovered, timeout_s=60)
    assert services.view("llm").ready == 2
    plane.plane.reconcilers.remove(services)
    services.close()
