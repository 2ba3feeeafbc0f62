"""Reports of a simulation: a Markdown or HTML page with the side-by-side table, per-run
figures, and PNG plots (allocation curve per policy; JCT CDF; allocation over time).

Plots need matplotlib (the ``sim`` extra); without it the report says so and has no images.
"""

from __future__ import annotations

import csv
import html
from collections.abc import Mapping
from pathlib import Path

from phalanx.simulation.api import SimulationReport, summary_rows
from phalanx.simulation.trace import TraceError


def read_published(
    path: str | Path, names: Mapping[str, str], workload: str | None = None
) -> dict[tuple[str, int], float]:
    """Mean published allocation % over seeds by (policy, arrived load %), from either format
    the FGD artifact uses:

    - long: columns ``policy, seed, arrived_load_pct, gpu_allocation_pct`` (one row a point);
    - wide (the artifact's ``analysis_allo_discrete.csv``): columns ``workload, sc_policy, tune,
      seed, total_gpus, 0, 1, ... 130``, one row per run with the allocation % at each
      arrived load %. Only the rows of ``workload`` (the trace file's stem, e.g.
      ``openb_pod_list_default``) count; a file of one workload is taken whatever its name.

    Policy names like ``06-FGD`` lose their number and map to ours through ``names``
    (published name -> ours). Raises TraceError naming the file and what is wrong.
    """
    path = Path(path)
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise TraceError(f"{path}: {exc}") from exc
    if not rows:
        raise TraceError(f"{path}: no rows")
    columns = set(rows[0])

    def ours(policy: str) -> str:
        name = policy.split("-", 1)[-1] if policy[:1].isdigit() else policy
        return names.get(name, name)

    sums: dict[tuple[str, int], list[float]] = {}
    if {"policy", "arrived_load_pct", "gpu_allocation_pct"} <= columns:
        for line, row in enumerate(rows, start=2):
            try:
                key = (ours(row["policy"]), int(float(row["arrived_load_pct"])))
                sums.setdefault(key, []).append(float(row["gpu_allocation_pct"]))
            except ValueError as exc:
                raise TraceError(f"{path}:{line}: {exc}") from exc
    elif {"workload", "sc_policy"} <= columns:
        loads = [c for c in rows[0] if c.strip().isdigit()]
        workloads = sorted({r["workload"] for r in rows})
        if workload in workloads or len(workloads) == 1:
            chosen = workload if workload in workloads else workloads[0]
        else:
            raise TraceError(
                f"{path}: no results for workload {workload!r} among {', '.join(workloads)}; "
                "name the trace file after the workload it replays (e.g. "
                f"{workloads[0]}.csv)"
            )
        for line, row in enumerate(rows, start=2):
            if row["workload"] != chosen:
                continue
            policy = ours(row["sc_policy"])
            for load in loads:
                if row[load] in ("", None):
                    continue
                try:
                    sums.setdefault((policy, int(load)), []).append(float(row[load]))
                except ValueError as exc:
                    raise TraceError(f"{path}:{line}: column {load}: {exc}") from exc
    else:
        raise TraceError(
            f"{path}: unknown published-results format (columns {', '.join(rows[0])}); expected "
            "policy,seed,arrived_load_pct,gpu_allocation_pct or workload,sc_policy,tune,seed,"
            "total_gpus,0,1,...,130"
        )
    return {k: sum(v) / len(v) for k, v in sums.items()}


def table_markdown(rows: list[dict[str, str]]) -> str:
    """A Markdown table of ``rows`` (all rows share the first row's columns)."""
    if not rows:
        return "(no runs)\n"
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(r.get(c, "") for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_plots(report: SimulationReport, directory: Path) -> list[Path]:
    """Write the PNG plots into ``directory``; return their paths ([] without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    directory.mkdir(parents=True, exist_ok=True)
    out: list[Path] = []
    if report.arrival:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for policy in report.request.policies:
            runs = [r for r in report.arrival if r.policy == policy]
            loads = range(0, int(report.request.inflation * 100) + 1)
            ys = [sum(r.allocation_at(x) for r in runs) / len(runs) for x in loads]
            ax.plot(list(loads), ys, label=policy)
        ax.plot([0, 100], [0, 100], color="grey", linewidth=0.5, linestyle=":")
        ax.set_xlabel("arrived load (% of GPU capacity)")
        ax.set_ylabel("GPU allocation (% of capacity)")
        ax.set_title("Allocation against arrived load (mean over seeds)")
        ax.legend()
        ax.grid(alpha=0.3)
        path = directory / "allocation_curve.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        out.append(path)
    if report.full:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for policy in report.request.policies:
            jcts = sorted(j for r in report.full if r.policy == policy for j in r.jcts_s)
            if jcts:
                ax.plot(jcts, [(i + 1) / len(jcts) for i in range(len(jcts))], label=policy)
        ax.set_xscale("log")
        ax.set_xlabel("job completion time (s)")
        ax.set_ylabel("fraction of jobs")
        ax.set_title("JCT CDF")
        ax.legend()
        ax.grid(alpha=0.3)
        path = directory / "jct_cdf.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        out.append(path)
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for policy in report.request.policies:
            fulls = [r for r in report.full if r.policy == policy]
            if fulls:
                xs = [t for t, _ in fulls[0].allocation_over_time]
                ys = [a for _, a in fulls[0].allocation_over_time]
                ax.step(xs, ys, where="post", label=f"{policy} (seed {fulls[0].seed})")
        ax.set_xlabel("virtual time (s)")
        ax.set_ylabel("GPU allocation (% of capacity)")
        ax.set_title("Allocation over time")
        ax.legend()
        ax.grid(alpha=0.3)
        path = directory / "allocation_over_time.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        out.append(path)
    return out


def render_markdown(report: SimulationReport, plots: list[Path], base: Path) -> str:
    """The report as Markdown; image links are relative to ``base``."""
    req = report.request
    lines = [
        "# phalanx simulation report",
        "",
        f"- trace: `{req.trace}`; nodes: `{req.nodes}`; queues: `{req.queues or 'default'}`",
        f"- mode: {req.mode}; policies: {', '.join(req.policies)}; seeds: "
        f"{', '.join(str(s) for s in req.seeds)}",
    ]
    if req.mode == "arrival":
        lines.append(f"- inflation: {req.inflation:g}x GPU capacity; order: {req.order}")
    lines += ["", "## Side by side (means over seeds)", "", table_markdown(summary_rows(report))]
    if report.full:
        lines += ["## Per-queue GPU share", ""]
        for r in report.full:
            shares = ", ".join(f"{q} {v * 100:.1f}%" for q, v in r.queue_share.items())
            lines.append(f"- {r.policy} seed {r.seed}: {shares} (Jain {r.jain_fairness:.3f})")
        lines += ["", "## Scheduler decision latency per cycle (wall clock)", ""]
        lines.append("| policy | pending ≤ | cycles | mean ms | max ms |")
        lines.append("|---|---:|---:|---:|---:|")
        for r in report.full:
            for bucket, cycles, mean_ms, max_ms in r.latency:
                lines.append(f"| {r.policy} | {bucket} | {cycles} | {mean_ms:.2f} | {max_ms:.2f} |")
        lines.append("")
    if plots:
        lines += ["## Plots", ""]
        lines += [f"![{p.stem}]({p.relative_to(base).as_posix()})" for p in plots]
    else:
        lines.append("(no plots: install matplotlib, e.g. `pip install 'phalanx[sim]'`)")
    return "\n".join(lines) + "\n"


def render_html(markdown: str) -> str:
    """A minimal HTML page around the Markdown (tables and images converted)."""
    body: list[str] = []
    in_table = False
    for line in markdown.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if all(set(c) <= set("-:") for c in cells):
                continue
            if not in_table:
                body.append("<table border=1 cellpadding=4>")
                in_table = True
            body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
            continue
        if in_table:
            body.append("</table>")
            in_table = False
        if line.startswith("!["):
            alt, src = line[2:].split("](", 1)
            body.append(f'<p><img alt="{html.escape(alt)}" src="{html.escape(src[:-1])}"></p>')
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{html.escape(line[level:].strip())}</h{level}>")
        elif line.strip():
            body.append(f"<p>{html.escape(line)}</p>")
    if in_table:
        body.append("</table>")
    return (
        "<!doctype html><html><head><meta charset=utf-8><title>phalanx simulation</title></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def write_report(report: SimulationReport, path: Path) -> list[Path]:
    """Write the report to ``path`` (``.html`` for HTML, else Markdown) with its plots in
    ``<stem>_plots/`` beside it; return the files written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    plots = write_plots(report, path.parent / f"{path.stem}_plots")
    markdown = render_markdown(report, plots, path.parent)
    path.write_text(render_html(markdown) if path.suffix.lower() == ".html" else markdown)
    return [path, *plots]
