"""Nodes of the local backend: this machine as one node, or declared virtual nodes sharing it.

``discover_nodes`` reads this machine (CPU affinity, /proc/meminfo, NVIDIA GPUs through NVML
when it loads). ``load_virtual_nodes`` reads a YAML list of virtual nodes, and
``parse_nodes_option`` accepts what the CLI's ``--nodes`` takes: such a file, or the shorthand
``NxG`` (N nodes with G GPUs each). Must not import controllers, store or api.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Callable, Mapping
from pathlib import Path

import yaml

from phalanx.model.objects import NODE_TOPOLOGY, GpuDevice, Node, Taint
from phalanx.model.resources import GPU_MILLI_PER_DEVICE, Resources, cpu_milli, memory_bytes
from phalanx.model.specs import FieldError, parse_taint

__all__ = [
    "DEFAULT_GPU_MODEL",
    "GPU_COUNT_LABEL",
    "GPU_PRODUCT_LABEL",
    "NodeSpecError",
    "discover_nodes",
    "load_virtual_nodes",
    "parse_nodes_option",
]

log = logging.getLogger(__name__)

GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_COUNT_LABEL = "nvidia.com/gpu.count"
DEFAULT_GPU_MODEL = "Virtual-GPU"

_GIB = 1 << 30
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SHORTHAND = re.compile(r"^(\d+)x(\d+)$")
_NODE_FIELDS = ("name", "count", "cpu", "memory", "gpus", "gpuModel", "labels", "taints")
_NAME_FIX = "use a DNS-1123 label: lowercase letters, digits and '-', at most 63 characters"


class NodeSpecError(ValueError):
    """A virtual node declaration was rejected; ``errors`` lists every problem found."""

    def __init__(self, errors: list[FieldError], source: str = "") -> None:
        self.errors = tuple(errors)
        prefix = f"{source}: " if source else ""
        super().__init__(prefix + "; ".join(str(e) for e in self.errors))


def discover_nodes(hostname: str | None = None) -> list[Node]:
    """Return this machine as one node named ``hostname`` (default: the host's name).

    GPUs come from NVML; when NVML is missing or fails the node simply has none.
    """
    name = (hostname or socket.gethostname()).lower()
    gpus = _nvml_gpus()
    allocatable = Resources(
        cpu_milli=_machine_cpu_milli(),
        memory_bytes=_machine_memory_bytes(),
        gpu_milli=len(gpus) * GPU_MILLI_PER_DEVICE,
    )
    return [Node(name, allocatable, gpus, _node_labels(name, gpus))]


def load_virtual_nodes(path_or_text: str | Path) -> list[Node]:
    """Return the virtual nodes declared in a YAML file (a Path, or a str naming an existing
    file) or in YAML text. Raises NodeSpecError naming each bad field, its value and the fix."""
    source = ""
    if isinstance(path_or_text, Path) or (
        "\n" not in path_or_text and Path(path_or_text).is_file()
    ):
        source = str(path_or_text)
        try:
            text = Path(path_or_text).read_text(encoding="utf-8")
        except OSError as exc:
            raise NodeSpecError([FieldError("file", source, f"cannot be read ({exc})")]) from exc
    else:
        text = path_or_text
    try:
        data: object = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise NodeSpecError(
            [FieldError("nodes", text[:80], f"is not valid YAML: {exc}")], source
        ) from exc
    errors: list[FieldError] = []
    if (
        not isinstance(data, Mapping)
        or set(data) != {"nodes"}
        or not isinstance(data["nodes"], list)
        or not data["nodes"]
    ):
        fix = "must be a mapping with one key, nodes: a non-empty list of {name, cpu, memory, ...}"
        raise NodeSpecError([FieldError("nodes", data, fix)], source)
    nodes: list[Node] = []
    seen: dict[str, str] = {}
    for i, item in enumerate(data["nodes"]):
        path = f"nodes[{i}]"
        for node in _virtual_nodes(path, item, errors):
            if node.name in seen:
                fix = f"is also the name of a node of {seen[node.name]}; give every node a unique name"
                errors.append(FieldError(f"{path}.name", node.name, fix))
            seen.setdefault(node.name, path)
            nodes.append(node)
    if errors:
        raise NodeSpecError(errors, source)
    return nodes


def parse_nodes_option(value: str) -> list[Node]:
    """Return nodes for the CLI's ``--nodes``: a YAML file path, or ``NxG`` shorthand (N nodes
    named node-0… with G GPUs each, sharing this machine's CPU and memory). Raises
    NodeSpecError."""
    if Path(value).is_file():
        return load_virtual_nodes(Path(value))
    match = _SHORTHAND.match(value.strip())
    if match is None:
        fix = "is neither an existing YAML file nor NxG shorthand; use e.g. 4x8 (4 nodes with 8 GPUs each), 2x0 (2 CPU-only nodes) or a path to a nodes file"
        raise NodeSpecError([FieldError("--nodes", value, fix)])
    count, gpus = int(match.group(1)), int(match.group(2))
    if count < 1:
        raise NodeSpecError(
            [FieldError("--nodes", value, "declares no node; use at least 1 node, e.g. 1x8")]
        )
    cpu = max(1000, _machine_cpu_milli() // count // 1000 * 1000)
    memory = max(_GIB, _machine_memory_bytes() // count)
    return [
        _virtual_node(f"node-{i}", cpu, memory, gpus, DEFAULT_GPU_MODEL, {}, ())
        for i in range(count)
    ]


def _virtual_nodes(path: str, item: object, errors: list[FieldError]) -> list[Node]:
    """Return the nodes one list entry expands to, appending any problems to ``errors``."""
    if not isinstance(item, Mapping):
        errors.append(FieldError(path, item, "must be a mapping with name, cpu and memory"))
        return []
    start = len(errors)
    for key in item:
        if key not in _NODE_FIELDS:
            errors.append(
                FieldError(
                    f"{path}.{key}",
                    item[key],
                    f"is not a known field; valid fields: {', '.join(_NODE_FIELDS)}",
                )
            )
    name = item.get("name")
    if not isinstance(name, str) or not _NAME.match(name) or len(name) > 63:
        errors.append(FieldError(f"{path}.name", name, f"is required; {_NAME_FIX}"))
    count = _integer(f"{path}.count", item.get("count", 1), 1, errors)
    cpu = _quantity(f"{path}.cpu", item.get("cpu"), cpu_milli, "e.g. 8 or 500m", errors)
    memory = _quantity(f"{path}.memory", item.get("memory"), memory_bytes, "e.g. 32Gi", errors)
    gpus = _integer(f"{path}.gpus", item.get("gpus", 0), 0, errors)
    model = item.get("gpuModel", DEFAULT_GPU_MODEL)
    if not isinstance(model, str) or not model.strip():
        errors.append(
            FieldError(f"{path}.gpuModel", model, "must be a non-empty string such as H100")
        )
    labels = _labels(f"{path}.labels", item.get("labels"), errors)
    taints = _taints(f"{path}.taints", item.get("taints"), errors)
    if len(errors) > start or not isinstance(name, str) or not isinstance(model, str):
        return []
    names = [name] if "count" not in item else [f"{name}-{i}" for i in range(count)]
    for expanded in names:
        if len(expanded) > 63:
            errors.append(
                FieldError(
                    f"{path}.name",
                    name,
                    f"expands to {expanded!r}, longer than 63 characters; shorten the name",
                )
            )
            return []
    return [_virtual_node(n, cpu, memory, gpus, model, labels, taints) for n in names]


def _virtual_node(
    name: str,
    cpu: int,
    memory: int,
    gpus: int,
    model: str,
    labels: Mapping[str, str],
    taints: tuple[Taint, ...],
) -> Node:
    devices = tuple(GpuDevice(i, f"VGPU-{name}-{i}", model) for i in range(gpus))
    allocatable = Resources(cpu, memory, gpus * GPU_MILLI_PER_DEVICE)
    return Node(name, allocatable, devices, {**_node_labels(name, devices), **labels}, taints)


def _integer(path: str, value: object, minimum: int, errors: list[FieldError]) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        errors.append(FieldError(path, value, f"must be an integer >= {minimum}"))
        return minimum
    return value


def _quantity(
    path: str,
    value: object,
    convert: Callable[[str | int | float], int],
    example: str,
    errors: list[FieldError],
) -> int:
    if value is None:
        errors.append(FieldError(path, value, f"is required; give a quantity, {example}"))
        return 0
    try:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError(f"{value!r} is not a quantity; use {example}")
        amount = convert(value)
    except ValueError as exc:
        errors.append(FieldError(path, value, str(exc)))
        return 0
    if amount <= 0:
        errors.append(FieldError(path, value, f"must be more than 0; {example}"))
    return amount


def _labels(path: str, value: object, errors: list[FieldError]) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        errors.append(FieldError(path, value, "must be a mapping of label: value"))
        return {}
    out: dict[str, str] = {}
    for key, item in value.items():
        if (
            not isinstance(key, str)
            or isinstance(item, bool)
            or not isinstance(item, str | int | float)
        ):
            errors.append(
                FieldError(f"{path}.{key}", item, "must be a string; quote values such as 'true'")
            )
        else:
            out[key] = str(item)
    return out


def _taints(path: str, value: object, errors: list[FieldError]) -> tuple[Taint, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        errors.append(FieldError(path, value, 'must be a list such as ["key=value:NoSchedule"]'))
        return ()
    out: list[Taint] = []
    for i, text in enumerate(value):
        try:
            if not isinstance(text, str):
                raise ValueError(f"{text!r} is not a taint; use key=value:NoSchedule")
            out.append(parse_taint(text))
        except ValueError as exc:
            errors.append(FieldError(f"{path}[{i}]", text, str(exc)))
    return tuple(out)


def _node_labels(name: str, gpus: tuple[GpuDevice, ...]) -> dict[str, str]:
    labels = {NODE_TOPOLOGY: name}
    if gpus:
        labels[GPU_PRODUCT_LABEL] = gpus[0].model.replace(" ", "-")
        labels[GPU_COUNT_LABEL] = str(len(gpus))
    return labels


def _machine_cpu_milli() -> int:
    return max(1, len(os.sched_getaffinity(0))) * 1000


def _machine_memory_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="ascii").splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        log.debug("cannot read /proc/meminfo; falling back to sysconf", exc_info=True)
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _nvml_gpus() -> tuple[GpuDevice, ...]:
    """Return this machine's GPUs from NVML, or () when NVML is absent or fails."""
    try:
        import pynvml
    except ImportError:
        log.debug("pynvml is not installed; no GPUs discovered")
        return ()
    try:
        pynvml.nvmlInit()
    except Exception:  # NVMLError or OSError from a broken driver: either way, no GPUs
        log.debug("NVML did not load; no GPUs discovered", exc_info=True)
        return ()
    try:
        devices: list[GpuDevice] = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            devices.append(
                GpuDevice(
                    index=int(pynvml.nvmlDeviceGetIndex(handle)),
                    uuid=_text(pynvml.nvmlDeviceGetUUID(handle)),
                    model=_text(pynvml.nvmlDeviceGetName(handle)),
                    memory_bytes=int(pynvml.nvmlDeviceGetMemoryInfo(handle).total),
                )
            )
        return tuple(devices)
    except Exception:  # any NVML error while listing devices means we cannot trust the list
        log.debug("NVML failed while listing GPUs; no GPUs discovered", exc_info=True)
        return ()
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # shutdown failures change nothing we report
            log.debug("nvmlShutdown failed", exc_info=True)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
