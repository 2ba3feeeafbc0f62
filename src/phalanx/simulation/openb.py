"""Loader for the Alibaba ``openb`` GPU trace (Weng et al., ATC '23; see
``../shared/data/openb/README.md``): the node list and the pod list.

Each openb pod becomes a one-pod job. GPU requests: ``num_gpu == 1`` with ``gpu_milli < 1000``
is a share of one device, ``gpu_milli == 1000`` a whole device, ``num_gpu == k > 1`` k whole
devices; ``gpu_spec`` lists the allowed models. Runtimes are ``deletion_time`` minus the time
the pod started (``scheduled_time`` when set, else ``creation_time``).

QoS classes map to a queue and a priority by ``DEFAULT_QOS`` (users override it, e.g.
``--qos BE=batch:0`` on the CLI): Guaranteed → queue ``guaranteed``, priority 3; LS (latency
sensitive) → ``ls``, 2; Burstable → ``burstable``, 1; BE (best effort) → ``be``, 0.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path

from phalanx.model.objects import Node, PodSet
from phalanx.model.resources import Resources
from phalanx.simulation.trace import Trace, TraceError, TraceJob, make_node

_MIB = 1 << 20

#: qos -> (queue, priority).
DEFAULT_QOS: Mapping[str, tuple[str, int]] = {
    "Guaranteed": ("guaranteed", 3),
    "LS": ("ls", 2),
    "Burstable": ("burstable", 1),
    "BE": ("be", 0),
}


def parse_qos_overrides(items: list[str]) -> dict[str, tuple[str, int]]:
    """Return DEFAULT_QOS with ``QOS=queue:priority`` overrides applied.

    Raises TraceError naming the bad item and the expected form.
    """
    out = dict(DEFAULT_QOS)
    for item in items:
        qos, sep, rest = item.partition("=")
        queue, _, prio = rest.partition(":")
        try:
            if not sep or not queue:
                raise ValueError
            out[qos] = (queue, int(prio or 0))
        except ValueError:
            raise TraceError(
                f"--qos {item!r}: expected QOS=queue:priority, e.g. BE=batch:0"
            ) from None
    return out


def load_openb_nodes(path: str | Path) -> tuple[Node, ...]:
    """Return the nodes of an openb node list (``sn,cpu_milli,memory_mib,gpu,model``)."""
    path = Path(path)
    nodes = []
    try:
        with path.open(newline="") as f:
            for line, row in enumerate(csv.DictReader(f), start=2):
                try:
                    nodes.append(
                        make_node(
                            row["sn"],
                            int(row["cpu_milli"]),
                            int(row["memory_mib"]) * _MIB,
                            int(row["gpu"]),
                            row.get("model") or "",
                        )
                    )
                except (KeyError, ValueError) as exc:
                    raise TraceError(
                        f"{path}:{line}: {exc}; expected columns sn,cpu_milli,memory_mib,gpu,model"
                    ) from exc
    except OSError as exc:
        raise TraceError(f"{path}: {exc}") from exc
    return tuple(nodes)


def openb_gpu_milli(num_gpu: int, gpu_milli: int) -> int:
    """Return the GPU thousandths of an openb pod (see the module docstring)."""
    if num_gpu <= 0:
        return 0
    if num_gpu == 1:
        return min(max(gpu_milli, 1), 1000)
    return num_gpu * 1000


#: Columns every openb pod list has; the others are optional (see ``load_openb_pods``).
REQUIRED_POD_COLUMNS = ("cpu_milli", "memory_mib", "num_gpu", "gpu_milli")


def load_openb_pods(path: str | Path, qos: Mapping[str, tuple[str, int]] = DEFAULT_QOS) -> Trace:
    """Return the openb pod list as a trace of one-pod jobs in creation order.

    Only the resource columns (``cpu_milli, memory_mib, num_gpu, gpu_milli``) are required, as
    in some of the FGD artifact's variant lists: without ``name`` pods are named
    ``openb-pod-<row>``; without ``creation_time`` they arrive in file order; without
    ``deletion_time`` every runtime is 1 s (fine for arrival-only runs; the trace's notes say
    so); ``gpu_spec`` and ``qos`` default to any model and BE.

    Raises TraceError naming the row and column on a malformed row or an unmapped qos, and the
    missing columns when a required one is absent.
    """
    path = Path(path)
    jobs = []
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            columns = list(reader.fieldnames or [])
    except OSError as exc:
        raise TraceError(f"{path}: {exc}") from exc
    missing = [c for c in REQUIRED_POD_COLUMNS if c not in columns]
    if missing:
        raise TraceError(
            f"{path}: missing column(s) {', '.join(missing)}; an openb pod list needs "
            f"{', '.join(REQUIRED_POD_COLUMNS)} (name, gpu_spec, qos, creation_time, "
            "deletion_time and scheduled_time are optional)"
        )
    notes = []
    if "creation_time" not in columns:
        notes.append("no creation_time column: pods arrive in file order")
    if "deletion_time" not in columns:
        notes.append("no deletion_time column: every runtime is 1 s (use arrival-only mode)")
    width = max(4, len(str(len(rows))))
    for line, row in enumerate(rows, start=2):
        try:
            gpu = openb_gpu_milli(int(row["num_gpu"]), int(row["gpu_milli"] or 0))
            created = float(row.get("creation_time") or 0)
            started = float(row.get("scheduled_time") or 0) or created
            deleted = float(row.get("deletion_time") or 0)
            name = row.get("name") or f"openb-pod-{line - 2:0{width}d}"
            cls = row.get("qos") or "BE"
            if cls not in qos:
                raise TraceError(
                    f"{path}:{line}: qos {cls!r} has no queue; map it with --qos {cls}=queue:priority"
                )
            queue, priority = qos[cls]
            resources = Resources(int(row["cpu_milli"]), int(row["memory_mib"]) * _MIB, gpu)
        except (KeyError, ValueError) as exc:
            raise TraceError(f"{path}:{line}: {exc}") from exc
        models = frozenset(m for m in (row.get("gpu_spec") or "").split("|") if m)
        jobs.append(
            TraceJob(
                name,
                created,
                max(1.0, deleted - max(created, started)),
                queue,
                (PodSet("pod", 1, resources),),
                "",
                priority,
                models,
            )
        )
    jobs.sort(key=lambda j: j.submit_s)  # stable: equal times keep file order
    return Trace(tuple(jobs), str(path), tuple(notes))
