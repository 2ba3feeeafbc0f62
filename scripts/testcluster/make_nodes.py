#!/usr/bin/env python3
"""Emit a v1 List of fake GPU Node objects for kwok (JSON on stdout).

Used by scripts/testcluster/testcluster (`up` and `nodes`); pipe into
`kubectl create -f -`. Standard library only.

Every node:
  * is managed by kwok (annotation kwok.x-k8s.io/node=fake, label type=kwok);
  * reports capacity == allocatable (cpu, memory, pods, nvidia.com/gpu);
  * carries the labels the NVIDIA GPU Operator (GPU feature discovery) sets;
  * gets deterministic topology labels: nodes are dealt round-robin over the
    zones, and within a zone filled rack by rack.

    node i -> zone index  z = i % zones
              rack index  r = (i // zones) // nodes_per_rack   (within the zone)
    zone label  topology.kubernetes.io/zone = zone-<a|b|...>
    rack label  phalanx.dev/rack            = zone-<x>-rack-<r>
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import string
import sys

# GPU Operator labels that depend on the product; only emitted for products
# we know (memory in MiB as GFD reports it).
KNOWN_GPUS: dict[str, dict[str, str]] = {
    "NVIDIA-H100-80GB-HBM3": {"nvidia.com/gpu.family": "hopper", "nvidia.com/gpu.memory": "81559"},
    "NVIDIA-H200": {"nvidia.com/gpu.family": "hopper", "nvidia.com/gpu.memory": "143771"},
    "NVIDIA-A100-SXM4-80GB": {"nvidia.com/gpu.family": "ampere", "nvidia.com/gpu.memory": "81920"},
}

# Pod CIDRs: node i gets 10.64.0.0/10 split into /24s; node InternalIPs come
# from 172.16.0.0/12. Both give kwok distinct, stable addresses per node.
POD_SUPERNET = ipaddress.ip_network("10.64.0.0/10")
NODE_SUPERNET = ipaddress.ip_network("172.16.0.0/12")


def zone_name(z: int) -> str:
    letters = string.ascii_lowercase
    return "zone-" + (letters[z] if z < len(letters) else f"{z}")


def node_object(i: int, a: argparse.Namespace) -> dict:
    name = f"{a.prefix}{i:04d}"
    z = i % a.zones
    rack = (i // a.zones) // a.nodes_per_rack
    zone = zone_name(z)

    labels = {
        "type": "kwok",
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": a.instance_type,
        "topology.kubernetes.io/region": a.region,
        "topology.kubernetes.io/zone": zone,
        "phalanx.dev/rack": f"{zone}-rack-{rack}",
    }
    resources = {"cpu": a.cpu, "memory": a.memory, "pods": str(a.pods)}
    if a.gpus_per_node > 0:
        labels.update(
            {
                "nvidia.com/gpu.present": "true",
                "nvidia.com/gpu.product": a.gpu_product,
                "nvidia.com/gpu.count": str(a.gpus_per_node),
                **KNOWN_GPUS.get(a.gpu_product, {}),
            }
        )
        resources["nvidia.com/gpu"] = str(a.gpus_per_node)

    pod_cidr = None
    if i < POD_SUPERNET.num_addresses // 256:
        pod_cidr = ipaddress.ip_network(f"{POD_SUPERNET.network_address + i * 256}/24")
    node_ip = NODE_SUPERNET.network_address + 1 + i

    spec: dict = {}
    if pod_cidr is not None:
        spec = {"podCIDR": str(pod_cidr), "podCIDRs": [str(pod_cidr)]}

    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {
                "kwok.x-k8s.io/node": "fake",
                "node.alpha.kubernetes.io/ttl": "0",
            },
        },
        "spec": spec,
        # Nodes accept status on create; kwok's node stage keeps these values.
        "status": {
            "capacity": dict(resources),
            "allocatable": dict(resources),
            "addresses": [
                {"type": "InternalIP", "address": str(node_ip)},
                {"type": "Hostname", "address": name},
            ],
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "osImage": "kwok fake GPU node",
                "kubeletVersion": a.kubelet_version,
                "kubeProxyVersion": a.kubelet_version,
                "containerRuntimeVersion": "kwok",
                "kernelVersion": "kwok",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        },
    }


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, required=True, help="how many nodes to emit")
    p.add_argument("--start-index", type=int, default=0, help="index of the first node (to add more later)")
    p.add_argument("--prefix", default="kwok-gpu-", help="node name prefix; names are <prefix><index:04d>")
    p.add_argument("--gpus-per-node", type=int, default=8)
    p.add_argument("--gpu-product", default="NVIDIA-H100-80GB-HBM3")
    p.add_argument("--cpu", default="32")
    p.add_argument("--memory", default="256Gi")
    p.add_argument("--pods", type=int, default=110)
    p.add_argument("--zones", type=int, default=2)
    p.add_argument("--nodes-per-rack", type=int, default=2)
    p.add_argument("--region", default="local-1")
    p.add_argument("--instance-type", default="kwok-gpu")
    p.add_argument("--kubelet-version", default="v0.0.0-kwok")
    a = p.parse_args(argv)
    if a.nodes < 0 or a.start_index < 0 or a.zones < 1 or a.nodes_per_rack < 1 or a.gpus_per_node < 0:
        p.error("counts must be positive")

    items = [node_object(i, a) for i in range(a.start_index, a.start_index + a.nodes)]
    json.dump({"apiVersion": "v1", "kind": "List", "items": items}, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
