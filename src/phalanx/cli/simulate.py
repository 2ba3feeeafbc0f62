"""``phalanx simulate``: replay a trace through the production scheduler in virtual time.

Runs locally (no server). Heavy imports happen inside the command, keeping CLI start-up light.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer


def _seeds(text: str) -> tuple[int, ...]:
    """``42-51`` or ``42,43,50`` -> seeds."""
    out: list[int] = []
    for raw in text.split(","):
        part = raw.strip()
        if "-" in part:
            lo, hi = part.split("-", 1)
            out.extend(range(int(lo), int(hi) + 1))
        elif part:
            out.append(int(part))
    return tuple(out)


def _weights(items: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items:
        for pair in item.split(","):
            name, sep, value = pair.partition("=")
            if not sep:
                raise typer.BadParameter(f"{pair!r}: expected plugin=weight, e.g. best-fit=0.1")
            out[name.strip()] = float(value)
    return out


def simulate(
    trace: Annotated[
        Path,
        typer.Argument(help="Trace: openb pod list CSV, or our CSV/YAML (docs/simulation.md)."),
    ],
    nodes: Annotated[
        Path, typer.Option("--nodes", help="Cluster: openb node list CSV or a YAML node spec.")
    ],
    queues: Annotated[
        Path | None, typer.Option("--queues", help="YAML with Queue/ResourceFlavor manifests.")
    ] = None,
    policy: Annotated[
        list[str] | None,
        typer.Option("--policy", "-p", help="Placement policy; repeat for a side-by-side table."),
    ] = None,
    weight: Annotated[
        list[str] | None,
        typer.Option("--weight", help="Score plugin weight override, e.g. best-fit=0.1."),
    ] = None,
    seeds: Annotated[str, typer.Option("--seeds", help="e.g. 42-51 or 42,43.")] = "42",
    mode: Annotated[
        str, typer.Option("--mode", help="arrival (arrival-only) or full.")
    ] = "arrival",
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help="Full mode: controllers (the production control plane) or session (faster, "
            "without the controllers' lifecycle).",
        ),
    ] = "controllers",
    order: Annotated[
        str, typer.Option("--order", help="Arrival-only job order: creation or shuffled (seeded).")
    ] = "creation",
    inflation: Annotated[
        float, typer.Option("--inflation", help="Arrival-only: inflate to this x GPU capacity.")
    ] = 1.3,
    qos: Annotated[
        list[str] | None,
        typer.Option("--qos", help="openb qos mapping override QOS=queue:priority."),
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="Use only the first N jobs.")] = None,
    workers: Annotated[int, typer.Option("--workers", "-j", help="Parallel runs.")] = 1,
    published: Annotated[
        Path | None,
        typer.Option(
            "--published",
            help="Published results CSV to compare with: the long format (policy, seed, "
            "arrived_load_pct, gpu_allocation_pct) or the FGD artifact's wide per-seed table "
            "(workload, sc_policy, tune, seed, total_gpus, 0..130; rows of the workload named "
            "like the trace file).",
        ),
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write a report (.md or .html) with PNG plots.")
    ] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="table or json.")] = "table",
) -> None:
    """Replay a GPU cluster trace through the production scheduler and compare policies."""
    from phalanx.simulation.api import SimulationRequest, summary_rows
    from phalanx.simulation.api import simulate as run
    from phalanx.simulation.report import table_markdown, write_report
    from phalanx.simulation.trace import TraceError

    if mode not in ("arrival", "full"):
        raise typer.BadParameter(f"--mode {mode!r}: use arrival or full")
    if engine not in ("controllers", "session"):
        raise typer.BadParameter(f"--engine {engine!r}: use controllers or session")
    if order not in ("creation", "shuffled"):
        raise typer.BadParameter(f"--order {order!r}: use creation or shuffled")
    request = SimulationRequest(
        trace=str(trace),
        nodes=str(nodes),
        policies=tuple(policy or ["fragmentation-aware"]),
        seeds=_seeds(seeds),
        mode=mode,  # type: ignore[arg-type]
        engine=engine,  # type: ignore[arg-type]
        queues=str(queues) if queues else None,
        order=order,  # type: ignore[arg-type]
        inflation=inflation,
        score_weights=_weights(weight or []),
        qos=tuple(qos or ()),
        limit=limit,
        workers=workers,
        published=str(published) if published else None,
    )

    def progress(done: int, total: int) -> None:
        width = 30
        filled = width * done // max(total, 1)
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} runs")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    try:
        result = run(request, progress=progress)
    except (TraceError, ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if report is not None:
        for path in write_report(result, report):
            typer.echo(f"wrote {path}", err=True)
    if output == "json":
        typer.echo(json.dumps(result.to_json(), indent=2, default=str))
    else:
        typer.echo(table_markdown(summary_rows(result)), nl=False)
