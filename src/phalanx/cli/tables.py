"""kubectl-like text output: aligned tables, ages, and the rows of ``phalanx get``.

Pure functions of the client's JSON and ``now`` (epoch seconds); no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal

from phalanx.client import FlavorInfo, JobInfo, NodeInfo, QueueInfo
from phalanx.model.resources import CPU, GPU, MEMORY, QuantityError, parse_quantity

NONE = "<none>"
REASON_WIDTH = 60
_GAP = "   "


def column_widths(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[int]:
    """Return the width of each column: its widest cell or header."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    return widths


def render_row(row: Sequence[str], widths: Sequence[int]) -> str:
    """Return one row with its cells padded to ``widths`` (wider cells push the columns
    after them right), three spaces apart; the last column is not padded."""
    cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
    return _GAP.join([*cells, row[-1]]).rstrip()


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Return rows under headers, columns left-aligned and three spaces apart (kubectl's
    look); the last column is not padded."""
    widths = column_widths(headers, rows)
    return "\n".join(render_row(row, widths) for row in [list(headers), *rows])


def format_age(seconds: float) -> str:
    """Return a duration as kubectl prints ages: ``45s``, ``3m20s``, ``95m``, ``5h10m``, ``3d``."""
    s = max(0, int(seconds))
    minutes, hours, days = s // 60, s // 3600, s // 86400
    if s < 120:
        return f"{s}s"
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if days < 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    return f"{days // 365}y"


def format_duration(seconds: float) -> str:
    """Return a short duration with sub-second precision below a minute (``0.4s``)."""
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    return format_age(seconds)


def truncate(text: str, width: int) -> str:
    """Return ``text`` on one line, cut to ``width`` characters with an ellipsis."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def humanize_memory(quantity: str) -> str:
    """Return a memory quantity readable at a glance (``12342048Ki`` → ``11.8Gi``)."""
    try:
        value = parse_quantity(quantity)
    except QuantityError:
        return quantity
    for suffix, unit in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if value >= unit:
            amount = value / Decimal(unit)
            text = f"{amount:.1f}".removesuffix(".0")
            return f"{text}{suffix}"
    return str(value)


def amount(quantities: Mapping[str, str], resource: str) -> str:
    """Return one resource of a quantity map for display (``0`` when absent)."""
    value = quantities.get(resource, "0")
    return humanize_memory(value) if resource == MEMORY else value


def used_of(used: Mapping[str, str], total: Mapping[str, str], resource: str) -> str:
    """Return ``used/total`` of one resource (``3/8``, ``2Gi/16Gi``)."""
    return f"{amount(used, resource)}/{amount(total, resource)}"


def job_rows(
    jobs: Sequence[JobInfo], now: float, *, wide: bool
) -> tuple[list[str], list[list[str]]]:
    """Return headers and rows of ``get jobs``."""
    headers = ["NAME", "QUEUE", "PRIORITY", "PHASE", "PODS", "AGE", "REASON"]
    if wide:
        headers[6:6] = ["FLAVOR", "RESTARTS", "NODES"]
    rows = []
    for job in jobs:
        reason = job["message"] or job["reason_code"]
        row = [
            job["name"],
            job["queue"],
            str(job["priority"]),
            job["phase"],
            f"{job['running_pods']}/{job['pod_count']}",
            format_age(now - job["created_at"]),
            reason if wide else truncate(reason, REASON_WIDTH),
        ]
        if wide:
            current = [p for p in job["pods"] if p["attempt"] == job["attempt"]]
            nodes = sorted({p["node"] for p in current if p["node"]})
            row[6:6] = [job["flavor"] or NONE, str(job["restarts"]), ",".join(nodes) or NONE]
        rows.append(row)
    return headers, rows


def queue_rows(queues: Sequence[QueueInfo], *, wide: bool) -> tuple[list[str], list[list[str]]]:
    """Return headers and rows of ``get queues``; quota columns read ``used/nominal``."""
    headers = ["NAME", "COHORT", "PENDING", "ADMITTED", "GPU", "CPU", "MEMORY"]
    if wide:
        headers.append("FLAVORS")
    rows = []
    for queue in queues:
        row = [
            queue["name"],
            queue["cohort"] or NONE,
            str(queue["pending"]),
            str(queue["admitted"]),
            used_of(queue["used"], queue["nominal"], GPU),
            used_of(queue["used"], queue["nominal"], CPU),
            used_of(queue["used"], queue["nominal"], MEMORY),
        ]
        if wide:
            row.append(",".join(u["flavor"] for u in queue["usage"]) or NONE)
        rows.append(row)
    return headers, rows


def node_ready(node: NodeInfo) -> str:
    """Return the READY cell: ``True``/``False``, with ``,Quarantined`` when quarantined."""
    ready = "True" if node["is_ready"] else "False"
    return f"{ready},Quarantined" if node["is_quarantined"] else ready


def node_rows(nodes: Sequence[NodeInfo], *, wide: bool) -> tuple[list[str], list[list[str]]]:
    """Return headers and rows of ``get nodes``; resource columns read ``used/total``."""
    headers = ["NAME", "READY", "GPUS", "CPU", "MEMORY", "MODEL"]
    if wide:
        headers += ["PODS", "TAINTS"]
    rows = []
    for node in nodes:
        row = [
            node["name"],
            node_ready(node),
            used_of(node["used"], node["allocatable"], GPU),
            used_of(node["used"], node["allocatable"], CPU),
            used_of(node["used"], node["allocatable"], MEMORY),
            node["gpu_model"] or NONE,
        ]
        if wide:
            taints = [f"{t['key']}={t['value']}:{t['effect']}" for t in node["taints"]]
            row += [str(len(node["pods"])), ",".join(taints) or NONE]
        rows.append(row)
    return headers, rows


def flavor_rows(flavors: Sequence[FlavorInfo]) -> tuple[list[str], list[list[str]]]:
    """Return headers and rows of ``get flavors``."""
    rows = [
        [f["name"], ",".join(f"{k}={v}" for k, v in sorted(f["node_labels"].items())) or NONE]
        for f in flavors
    ]
    return ["NAME", "NODE-LABELS"], rows
