"""Nodes of the local backend: this machine, declared virtual nodes, and the CLI shorthand."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from phalanx.backends.local.nodes import (
    NodeSpecError,
    discover_nodes,
    load_virtual_nodes,
    parse_nodes_option,
)
from phalanx.model.objects import NODE_TOPOLOGY, Taint
from phalanx.model.resources import Resources

NODES_YAML = """
nodes:
- name: gpu-node
  count: 2
  cpu: 8
  memory: 32Gi
  gpus: 4
  gpuModel: H100 80GB
  labels: {phalanx.dev/rack: r1}
  taints: ["dedicated=train:NoSchedule"]
- name: cpu-node
  cpu: 500m
  memory: 1Gi
"""


def test_virtual_nodes_expand_count_and_carry_labels_and_taints() -> None:
    nodes = load_virtual_nodes(NODES_YAML)

    assert [n.name for n in nodes] == ["gpu-node-0", "gpu-node-1", "cpu-node"]
    gpu_node = nodes[1]
    assert gpu_node.allocatable == Resources(8000, 32 << 30, 4000)
    assert [d.index for d in gpu_node.gpus] == [0, 1, 2, 3]
    assert {d.model for d in gpu_node.gpus} == {"H100 80GB"}
    assert len({d.uuid for n in nodes for d in n.gpus}) == 8
    assert dict(gpu_node.labels) == {
        NODE_TOPOLOGY: "gpu-node-1",
        "nvidia.com/gpu.product": "H100-80GB",
        "nvidia.com/gpu.count": "4",
        "phalanx.dev/rack": "r1",
    }
    assert gpu_node.taints == (Taint("dedicated", "train", "NoSchedule"),)
    cpu_node = nodes[2]
    assert cpu_node.allocatable == Resources(500, 1 << 30, 0)
    assert cpu_node.gpus == ()
    assert dict(cpu_node.labels) == {NODE_TOPOLOGY: "cpu-node"}


def test_virtual_nodes_default_gpu_model(tmp_path: Path) -> None:
    path = tmp_path / "nodes.yaml"
    path.write_text("nodes:\n- {name: a, cpu: 2, memory: 4Gi, gpus: 1}\n")

    for source in (path, str(path)):
        (node,) = load_virtual_nodes(source)
        assert node.gpu_model == "Virtual-GPU"
        assert node.labels["nvidia.com/gpu.product"] == "Virtual-GPU"


@pytest.mark.parametrize(
    ("text", "path", "value"),
    [
        pytest.param("nodes: []", "nodes", "[]", id="empty-list"),
        pytest.param("- name: a", "nodes", "name", id="not-a-mapping"),
        pytest.param("nodes: [1]", "nodes[0]", "1", id="entry-not-mapping"),
        pytest.param("nodes: [{cpu: 1, memory: 1Gi}]", "nodes[0].name", "None", id="name-missing"),
        pytest.param("nodes: [{name: A_b, cpu: 1, memory: 1Gi}]", "nodes[0].name", "A_b", id="name-bad"),
        pytest.param("nodes: [{name: a, memory: 1Gi}]", "nodes[0].cpu", "None", id="cpu-missing"),
        pytest.param("nodes: [{name: a, cpu: lots, memory: 1Gi}]", "nodes[0].cpu", "lots", id="cpu-bad"),
        pytest.param("nodes: [{name: a, cpu: 0, memory: 1Gi}]", "nodes[0].cpu", "0", id="cpu-zero"),
        pytest.param("nodes: [{name: a, cpu: 1, memory: 1Gb}]", "nodes[0].memory", "1Gb", id="memory-bad"),
        pytest.param("nodes: [{name: a, cpu: 1}]", "nodes[0].memory", "None", id="memory-missing"),
        pytest.param("nodes: [{name: a, cpu: 1, memory: 1Gi, gpus: -1}]", "nodes[0].gpus", "-1", id="gpus-negative"),
        pytest.param("nodes: [{name: a, cpu: 1, memory: 1Gi, gpus: 1.5}]", "nodes[0].gpus", "1.5", id="gpus-fraction"),
        pytest.param("nodes: [{name: a, cpu: 1, memory: 1Gi, count: 0}]", "nodes[0].count", "0", id="count-zero"),
        pytest.param("nodes: [{name: a, cpu: 1, memory: 1Gi, gpuModel: ''}]", "nodes[0].gpuModel", "''", id="model-empty"),
        pytest.param("nodes: [{name: a, cpu: 1, memory: 1Gi, labels: [x]}]", "nodes[0].labels", "['x']", id="labels-not-mapping"),
        pytest.param("nodes: [{name: a, cpu: 1, memory: 1Gi, labels: {k: true}}]", "nodes[0].labels.k", "True", id="label-bool"),
        pytest.param("nodes: [{name: a, cpu: 1, memory: 1Gi, taints: [nope]}]", "nodes[0].taints[0]", "nope", id="taint-bad"),
        pytest.param("nodes: [{name: a, cpu: 1, memory: 1Gi, taints: x}]", "nodes[0].taints", "x", id="taints-not-list"),
        pytest.param("nodes: [{name: a, cpu: 1, memory: 1Gi, gpu: 1}]", "nodes[0].gpu", "1", id="unknown-field"),
        pytest.param(
            "nodes: [{name: a, cpu: 1, memory: 1Gi}, {name: b, cpu: 1, memory: 1Gx}]",
            "nodes[1].memory", "1Gx", id="second-entry",
        ),
        pytest.param(
            "nodes: [{name: a-0, cpu: 1, memory: 1Gi}, {name: a, count: 2, cpu: 1, memory: 1Gi}]",
            "nodes[1].name", "a-0", id="duplicate-after-expansion",
        ),
        pytest.param(f"nodes: [{{name: {'a' * 62}, count: 2, cpu: 1, memory: 1Gi}}]", "nodes[0].name", "a" * 62, id="expanded-too-long"),
        pytest.param("nodes: [{name: a", "nodes", "nodes: [{name: a", id="bad-yaml"),
    ],
)  # fmt: skip
def test_bad_virtual_nodes_name_the_field_and_value(text: str, path: str, value: str) -> None:
    with pytest.raises(NodeSpecError) as info:
        load_virtual_nodes(text)

    message = str(info.value)
    assert f"{path}:" in message
    assert value in message
    assert any(e.path == path for e in info.value.errors)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(NodeSpecError) as info:
        load_virtual_nodes("nodes: [{name: a, cpu: x, memory: y}, {name: B}]")

    assert [e.path for e in info.value.errors] == [
        "nodes[0].cpu",
        "nodes[0].memory",
        "nodes[1].name",
        "nodes[1].cpu",
        "nodes[1].memory",
    ]


def test_a_file_names_itself_in_errors(tmp_path: Path) -> None:
    path = tmp_path / "nodes.yaml"
    path.write_text("nodes: [{name: a, cpu: 1}]\n")

    with pytest.raises(NodeSpecError, match=r"nodes\.yaml: nodes\[0\]\.memory"):
        parse_nodes_option(str(path))


def test_shorthand_declares_equal_nodes() -> None:
    nodes = parse_nodes_option("4x8")

    assert [n.name for n in nodes] == ["node-0", "node-1", "node-2", "node-3"]
    for node in nodes:
        assert len(node.gpus) == 8
        assert node.allocatable.gpu_milli == 8000
        assert node.allocatable.cpu_milli >= 1000
        assert node.allocatable.cpu_milli % 1000 == 0
        assert node.allocatable.memory_bytes >= 1 << 30
        assert node.labels["nvidia.com/gpu.count"] == "8"
        assert node.labels[NODE_TOPOLOGY] == node.name


def test_shorthand_cpu_only_nodes_have_no_gpu_labels() -> None:
    nodes = parse_nodes_option("2x0")

    assert [n.name for n in nodes] == ["node-0", "node-1"]
    assert all(n.gpus == () and "nvidia.com/gpu.product" not in n.labels for n in nodes)


@pytest.mark.parametrize("value", ["0x8", "4", "4x", "x8", "four", "4x8x2", "missing.yaml"])
def test_bad_nodes_option_says_what_is_accepted(value: str) -> None:
    with pytest.raises(NodeSpecError, match=r"--nodes: .*e\.g\.") as info:
        parse_nodes_option(value)

    assert repr(value) in str(info.value)


def test_discover_nodes_reports_this_machine() -> None:
    (node,) = discover_nodes("Test-Host")

    assert node.name == "test-host"
    assert node.labels[NODE_TOPOLOGY] == "test-host"
    assert node.allocatable.cpu_milli >= 1000
    assert node.allocatable.memory_bytes > 1 << 20
    assert node.allocatable.gpu_milli == 1000 * len(node.gpus)
    if node.gpus:
        assert node.labels["nvidia.com/gpu.count"] == str(len(node.gpus))
        assert " " not in node.labels["nvidia.com/gpu.product"]
    else:
        assert "nvidia.com/gpu.count" not in node.labels


@pytest.mark.skipif(importlib.util.find_spec("pynvml") is None, reason="nvidia-ml-py missing")
def test_discover_nodes_matches_nvml() -> None:
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        expected = 0
    else:
        expected = pynvml.nvmlDeviceGetCount()
        pynvml.nvmlShutdown()

    (node,) = discover_nodes()

    assert len(node.gpus) == expected
    assert [d.index for d in node.gpus] == list(range(expected))
