"""Pages of the long-lived and composite workloads: Services (revisions, traffic split,
replicas, the autoscaler's decisions) and pipeline runs (the DAG drawn with each step's state
and cache hits). Like ``pages``: the API's JSON in, HTML out.

The pages are live: ``service_section``, ``run_row`` and ``render_pipeline_run(partial=True)``
are also what the dashboard's watch stream sends for one changed Service or run (the script
puts it in place of the old one), so a page and its updates are drawn by the same code."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from phalanx.web.markup import Json, ago, badge, esc, q, table, when
from phalanx.web.pages import page_html

STEP_WIDTH, STEP_HEIGHT, COLUMN_GAP, ROW_GAP = 150, 34, 60, 14


def render_services(services: list[Json], revision: str = "", *, partial: bool = False) -> str:
    """Return every Service: replicas ready of desired, revisions with their traffic share,
    replicas with their phase, and the autoscaler's latest decisions; live from ``revision``
    (the revision log's, read before the list) when given."""
    sections = "".join(service_section(s) for s in services) or (
        '<p class="empty">No services: apply a Service manifest.</p>'
    )
    body = (
        f'<h1>Services</h1><div id="services">{sections}</div>'
        '<p class="live" id="live">live updates: connecting…</p>'
    )
    return page_html(
        "Services", body, "/ui/services", "services", partial, rv=revision, watch="Service"
    )


def service_section(service: Json) -> str:
    """Return one Service's section of the services page."""
    revisions = table(
        ("Revision", "Traffic", "Ready / replicas", "Latest", "Created"),
        (
            f'<tr data-revision="{esc(r["name"])}"><td>{esc(r["name"])}</td>'
            f'<td><span class="share" style="--share:{float(r["percent"]):g}%"></span>'
            f"{float(r['percent']):g} %</td><td>{r['ready']} / {r['replicas']}</td>"
            f"<td>{'yes' if r['latest'] else ''}</td><td>{ago(r['created_at'])} ago</td></tr>"
            for r in service.get("revisions", [])
        ),
        empty="No revisions yet.",
    )
    replicas = table(
        ("Replica", "Revision", "Phase", "Reason", "URL"),
        (
            f"<tr><td>{esc(r['name'])}</td><td>{esc(r['revision'])}</td><td>{badge(r['phase'])}"
            f"{' draining' if r.get('draining') else ''}</td>"
            f"<td>{esc((r.get('reason') or {}).get('code', ''))}</td><td><code>{esc(r['url'])}</code></td></tr>"
            for r in service.get("replicas", [])
        ),
        empty="No replicas.",
    )
    decisions = "".join(
        f"<li>{when(d['at'])} → {d['replicas']} replicas <code>{esc(d['code'])}</code> "
        f"{esc(d['reason'])}</li>"
        for d in service.get("decisions", [])[-5:]
    )
    error = f'<p class="refused">{esc(service["error"])}</p>' if service.get("error") else ""
    return (
        f'<section class="service" data-service="{esc(service["name"])}" '
        f'data-ready="{service["ready"]}">'
        f"<h2>{esc(service['name'])} <small>{service['ready']} ready of {service['desired']} "
        f"({service['min_replicas']}–{service['max_replicas']}), queue {esc(service['queue'])}"
        f"</small></h2>{error}<p><code>{esc(service.get('url', ''))}</code></p>"
        f"<h3>Revisions and traffic</h3>{revisions}<h3>Replicas</h3>{replicas}"
        f"{'<h3>Autoscaler</h3><ol class=timeline>' + decisions + '</ol>' if decisions else ''}"
        "</section>"
    )


def run_row(run: Json) -> str:
    """Return one run's row of the pipeline runs table: phase and how many steps ran, were
    cached or failed."""
    steps: Mapping[str, Json] = run.get("status", {}).get("steps") or {}
    states = [s.get("state", "Pending") for s in steps.values()]
    name = run["metadata"]["name"]
    phase = run.get("status", {}).get("phase", "Pending")
    return (
        f'<tr data-run="{esc(name)}" data-phase="{esc(phase)}">'
        f'<td><a href="/ui/pipelineruns/{q(name)}">{esc(name)}</a></td>'
        f"<td>{esc(run.get('spec', {}).get('pipeline', ''))}</td>"
        f'<td class="phase">{badge(phase)}</td>'
        f"<td>{len(steps)}</td><td>{states.count('Succeeded')}</td>"
        f"<td>{states.count('Cached')}</td><td>{states.count('Failed')}</td></tr>"
    )


def render_pipeline_runs(runs: list[Json], revision: str = "", *, partial: bool = False) -> str:
    """Return the pipeline runs, one ``run_row`` each; live from ``revision`` when given."""
    body = (
        "<h1>Pipeline runs</h1>"
        + table(
            ("Run", "Pipeline", "Phase", "Steps", "Succeeded", "Cached", "Failed"),
            (run_row(r) for r in runs),
            table_id="runs",
            empty="No pipeline runs.",
        )
        + '<p class="live" id="live">live updates: connecting…</p>'
    )
    return page_html(
        "Pipeline runs",
        body,
        "/ui/pipelineruns",
        "pipelineruns",
        partial,
        rv=revision,
        watch="PipelineRun",
    )


def step_layers(steps: list[Json]) -> dict[str, int]:
    """Return each step's column in the drawing: one more than its deepest input step."""
    inputs = {
        s["name"]: [
            i["step"]
            for i in (s.get("inputs") or {}).values()
            if isinstance(i, dict) and "step" in i
        ]
        for s in steps
    }
    layer: dict[str, int] = {}
    for s in steps:  # a step lists only steps before it as inputs
        layer[s["name"]] = 1 + max((layer.get(u, 0) for u in inputs[s["name"]]), default=-1)
    return layer


def render_pipeline_run(run: Json, revision: str = "", *, partial: bool = False) -> str:
    """Return one run: its DAG with each step's state (cache hits marked), and a table of the
    steps with their jobs; live from ``revision`` when given."""
    steps: list[Json] = list(run.get("spec", {}).get("steps") or [])
    status: Mapping[str, Any] = run.get("status", {}).get("steps") or {}
    layer = step_layers(steps)
    rows: dict[int, int] = {}
    where: dict[str, tuple[float, float]] = {}
    for s in steps:
        column = layer[s["name"]]
        row = rows.get(column, 0)
        rows[column] = row + 1
        where[s["name"]] = (
            10 + column * (STEP_WIDTH + COLUMN_GAP),
            10 + row * (STEP_HEIGHT + ROW_GAP),
        )
    width = 20 + (max(layer.values(), default=0) + 1) * (STEP_WIDTH + COLUMN_GAP)
    height = 20 + max(rows.values(), default=1) * (STEP_HEIGHT + ROW_GAP)
    edges = []
    for s in steps:
        x1, y1 = where[s["name"]]
        for value in (s.get("inputs") or {}).values():
            if isinstance(value, dict) and value.get("step") in where:
                x0, y0 = where[value["step"]]
                edges.append(
                    f'<line class="edge" x1="{x0 + STEP_WIDTH}" y1="{y0 + STEP_HEIGHT / 2}" '
                    f'x2="{x1}" y2="{y1 + STEP_HEIGHT / 2}"/>'
                )
    boxes = []
    for s in steps:
        x, y = where[s["name"]]
        state = (status.get(s["name"]) or {}).get("state", "Pending")
        cached = (status.get(s["name"]) or {}).get("cachedFrom")
        hit = f" (cache: {cached.get('run', '')})" if isinstance(cached, dict) else ""
        boxes.append(
            f'<g class="step phase-{esc(state.lower())}" data-step="{esc(s["name"])}" data-state="{esc(state)}">'
            f'<rect x="{x}" y="{y}" width="{STEP_WIDTH}" height="{STEP_HEIGHT}" rx="5"/>'
            f'<text x="{x + 8}" y="{y + 14}">{esc(s["name"])}</text>'
            f'<text class="state" x="{x + 8}" y="{y + 28}">{esc(state)}{esc(hit)}</text>'
            f"<title>{esc(s['name'])}: {esc(state)}{esc(hit)}</title></g>"
        )
    dag = (
        f'<svg class="dag" viewBox="0 0 {width} {height}" width="{width}" role="img" '
        f'aria-label="the run\'s steps">{"".join(edges)}{"".join(boxes)}</svg>'
    )
    table_rows = (
        f"<tr><td>{esc(s['name'])}</td><td><code>{esc(s.get('task', ''))}</code></td>"
        f"<td>{badge((status.get(s['name']) or {}).get('state', 'Pending'))}</td>"
        f"<td>{_job_link((status.get(s['name']) or {}).get('job'))}</td>"
        f"<td>{(status.get(s['name']) or {}).get('attempts', 0)}</td></tr>"
        for s in steps
    )
    name = run["metadata"]["name"]
    phase = run.get("status", {}).get("phase", "Pending")
    body = (
        f'<h1>Pipeline run <span class="name">{esc(name)}</span> '
        f'<span id="phase" data-phase="{esc(phase)}">{badge(phase)}</span></h1>'
        f'<section id="dag"><h2>Steps</h2>{dag}</section>'
        + table(("Step", "Task", "State", "Job", "Attempts"), table_rows, empty="No steps.")
        + '<p class="live" id="live">live updates: connecting…</p>'
    )
    return page_html(
        f"Run {name}",
        body,
        "/ui/pipelineruns",
        "pipelinerun",
        partial,
        rv=revision,
        watch="PipelineRun",
        run=name,
    )


def _job_link(job: object) -> str:
    if not isinstance(job, str) or not job:
        return "-"
    return f'<a href="/ui/jobs/{q(job)}">{esc(job)}</a>'
