"""The dashboard's pages (the jobs pages are in ``jobs``, Services and pipeline runs in
``workloads``): each ``render_*`` takes what the API answered (decoded JSON) and
returns the page's HTML, whole or, with ``partial``, only what goes inside ``<main>`` (the
script swaps it in when the page's objects change).

A section whose API request was refused arrives as ``Refused``: it is replaced by a note
("not allowed for your role"), never drawn from other data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from phalanx.web import charts
from phalanx.web.markup import (
    Json,
    badge,
    esc,
    facts,
    gpus,
    layout,
    q,
    quantity,
    query,
    table,
    when,
)

PHASES = ("Pending", "Admitted", "Running", "Succeeded", "Failed", "Cancelled", "Preempted")


@dataclass(frozen=True, slots=True)
class Refused:
    """An API request the token in use may not make: its status and the API's message."""

    status: int
    message: str


def refused_note(refused: Refused, what: str) -> str:
    """Return the note that stands in for a refused section."""
    text = "not allowed for your role" if refused.status == 403 else refused.message
    return f'<p class="refused" data-status="{refused.status}">{esc(what)}: {esc(text)}</p>'


def page_html(title: str, body: str, active: str, page: str, partial: bool, **data: object) -> str:
    return body if partial else layout(title, body, active=active, page=page, data=data)


# ---- overview ----


@dataclass(frozen=True, slots=True)
class Overview:
    """What the overview shows: GPU samples (epoch s, allocated, total), queues, pending jobs
    per reason code, jobs per phase, the doctor's findings; a Refused section is noted."""

    samples: Sequence[tuple[float, float, float]]
    queues: list[Json] | Refused
    pending_by_reason: Sequence[tuple[str, float]] | Refused
    phases: Mapping[str, float] | Refused
    doctor: Json | Refused
    revision: str = ""


def queue_rows(queues: list[Json]) -> list[tuple[str, float, float, float]]:
    """Return (queue/flavor, GPUs used, nominal, borrowed) of every queue's flavors."""
    rows = []
    for queue in queues:
        for usage in queue.get("usage", []):
            used = quantity(usage["used"].get("nvidia.com/gpu"))
            nominal = quantity(usage["nominal"].get("nvidia.com/gpu"))
            label = (
                queue["name"] if len(queue["usage"]) == 1 else f"{queue['name']}/{usage['flavor']}"
            )
            rows.append((label, used, nominal, max(0.0, used - nominal)))
    return rows


def render_overview(data: Overview, *, partial: bool = False) -> str:
    """Return the overview: GPU allocation over time, queue usage against quota (with what
    is borrowed), pending jobs by reason code, jobs by phase, the doctor's findings."""
    parts = ['<h1>Overview</h1><div class="grid">']
    parts.append(
        '<section id="allocation"><h2>GPU allocation</h2>'
        f"{charts.allocation_over_time(data.samples)}</section>"
    )
    if isinstance(data.queues, Refused):
        quota = refused_note(data.queues, "queues")
    else:
        quota = charts.quota_bars(queue_rows(data.queues))
    parts.append(f'<section id="quota"><h2>Queues: GPUs used against quota</h2>{quota}</section>')
    if isinstance(data.pending_by_reason, Refused):
        pending = refused_note(data.pending_by_reason, "pending jobs")
    else:
        pending = charts.count_bars(data.pending_by_reason)
    parts.append(f'<section id="pending"><h2>Pending jobs by reason</h2>{pending}</section>')
    if isinstance(data.phases, Refused):
        phases = refused_note(data.phases, "jobs")
    else:
        phases = (
            '<ul class="phases">'
            + "".join(
                f'<li><a href="/ui/jobs{query({"phase": p})}">{badge(p)}</a> '
                f'<span data-phase-count="{esc(p)}">{data.phases.get(p, 0):g}</span></li>'
                for p in PHASES
            )
            + "</ul>"
        )
    parts.append(f'<section id="phases"><h2>Jobs by phase</h2>{phases}</section></div>')
    parts.append(
        f'<section id="findings"><h2>Doctor findings</h2>{_findings(data.doctor)}</section>'
    )
    return page_html(
        "Overview", "".join(parts), "/", "overview", partial, rv=data.revision, watch="Job,Queue"
    )


def _findings(doctor: Json | Refused) -> str:
    if isinstance(doctor, Refused):
        return refused_note(doctor, "doctor")
    rows = (
        f'<tr class="severity-{esc(f["severity"])}"><td>{esc(f["severity"])}</td>'
        f"<td><code>{esc(f['code'])}</code></td><td>{_object_link(f['object'])}</td>"
        f"<td>{_object_link(f['subject'])}</td><td>{esc(f['summary'])}"
        f"{facts(f['evidence']['facts'])}</td><td><code>{esc(f['fix'])}</code></td></tr>"
        for f in doctor["findings"]
    )
    return table(
        ("Severity", "Code", "Cause in", "Affects", "Summary and evidence", "Fix"),
        rows,
        empty="No problems found.",
    )


def _object_link(ref: str) -> str:
    kind, _, name = ref.partition("/")
    if kind == "job" and name:
        return f'<a href="/ui/jobs/{q(name)}">{esc(ref)}</a>'
    if kind == "node" and name:
        return f'<a href="/ui/nodes#node-{esc(name)}">{esc(ref)}</a>'
    if kind == "queue" and name:
        return f'<a href="/ui/jobs{query({"queue": name})}">{esc(ref)}</a>'
    return esc(ref)


# ---- queues ----


def render_queues(queues: list[Json], revision: str, *, partial: bool = False) -> str:
    """Return the queues with their quota use per flavor, borrowing, and job counts."""
    rows = []
    for queue in queues:
        for i, usage in enumerate(queue["usage"] or [{"flavor": "-", "used": {}, "nominal": {}}]):
            used = quantity(usage["used"].get("nvidia.com/gpu"))
            nominal = quantity(usage["nominal"].get("nvidia.com/gpu"))
            borrowed = max(0.0, used - nominal)
            first = i == 0
            rows.append(
                f'<tr data-queue="{esc(queue["name"])}">'
                f"<td>{queue_link(queue['name']) if first else ''}</td>"
                f"<td>{esc(queue['cohort'] or '-') if first else ''}</td>"
                f"<td>{esc(usage['flavor'])}</td>"
                f"<td>{used:g} / {nominal:g}</td>"
                f'<td class="{"borrowing" if borrowed else ""}">{borrowed:g}</td>'
                f"<td>{esc(usage['used'].get('cpu', '0'))} / {esc(usage['nominal'].get('cpu', '-'))}</td>"
                f"<td>{queue['pending'] if first else ''}</td>"
                f"<td>{queue['admitted'] if first else ''}</td></tr>"
            )
    body = (
        "<h1>Queues</h1>"
        f"<section><h2>GPUs used against quota</h2>{charts.quota_bars(queue_rows(queues))}</section>"
        + table(
            (
                "Queue",
                "Cohort",
                "Flavor",
                "GPUs used / quota",
                "Borrowed",
                "CPU used / quota",
                "Pending",
                "Admitted",
            ),
            rows,
            table_id="queues",
            empty="No queues: apply a Queue manifest.",
        )
    )
    return page_html(
        "Queues", body, "/ui/queues", "queues", partial, rv=revision, watch="Queue,Job"
    )


def queue_link(name: str) -> str:
    return f'<a href="/ui/jobs{query({"queue": name})}">{esc(name)}</a>'


# ---- nodes ----


def render_nodes(
    nodes: list[Json],
    holders: Mapping[tuple[str, int], Sequence[tuple[str, str, int]]],
    revision: str,
    *,
    partial: bool = False,
) -> str:
    """Return every node with its GPU device map: each device with who holds it (job, pod
    and share in thousandths, from ``holders`` by (node, device index)), and quarantine with
    its evidence."""
    cards = "".join(_node(n, holders) for n in nodes) or '<p class="empty">No nodes.</p>'
    body = f'<h1>Nodes</h1><div class="nodes">{cards}</div>'
    return page_html("Nodes", body, "/ui/nodes", "nodes", partial, rv=revision, watch="Job")


def _node(node: Json, holders: Mapping[tuple[str, int], Sequence[tuple[str, str, int]]]) -> str:
    state = (
        "quarantined" if node["is_quarantined"] else ("ready" if node["is_ready"] else "notready")
    )
    devices = []
    for gpu in node["gpus"]:
        held = holders.get((node["name"], gpu["index"]), ())
        who = "".join(
            f'<li><a href="/ui/jobs/{q(job)}">{esc(job)}/{esc(pod)}</a>'
            f"{'' if milli == 1000 else f' ({milli / 1000:g})'}</li>"
            for job, pod, milli in held
        )
        share = gpu["used_milli"] / 1000
        devices.append(
            f'<div class="gpu{" free" if not gpu["used_milli"] else ""}" data-node="{esc(node["name"])}" '
            f'data-index="{gpu["index"]}" data-used-milli="{gpu["used_milli"]}" '
            f'data-holders="{esc(",".join(f"{j}/{p}:{m}" for j, p, m in held))}">'
            f'<div class="fill" style="height:{share * 100:.0f}%"></div>'
            f'<span class="index">GPU {gpu["index"]}</span>'
            f'<span class="model">{esc(gpu["model"])} {esc(gpu["memory"])}</span>'
            f'<ul class="holders">{who or "<li>free</li>"}</ul></div>'
        )
    quarantine = ""
    if node.get("quarantine"):
        qn = node["quarantine"]
        quarantine = (
            f'<div class="quarantine"><h3>Quarantined <code>{esc(qn["code"])}</code></h3>'
            f"<p>{esc(qn['reason'])}</p><p>since {when(qn['since'])}"
            f"{' until ' + when(qn['until']) if qn['until'] else ''}</p>{facts(qn['facts'])}</div>"
        )
    failures = ""
    if node["failures"]:
        failures = "<h3>Failures counted against it</h3>" + table(
            ("At", "Job", "Attempt", "Pod", "Reason"),
            (
                f"<tr><td>{when(f['at'])}</td><td>{esc(f['job'])}</td><td>{f['attempt']}</td>"
                f"<td>{esc(f['pod'])}</td><td>{esc(f['reason'])}</td></tr>"
                for f in node["failures"]
            ),
        )
    used, allocatable = node["used"], node["allocatable"]
    return (
        f'<section class="node node-{state}" id="node-{esc(node["name"])}">'
        f"<h2>{esc(node['name'])} {badge(state)}</h2>"
        f"<p>{esc(node['gpu_model'] or 'no GPUs')} · GPUs {gpus(used)} / {gpus(allocatable)} · "
        f"CPU {esc(used.get('cpu', '0'))} / {esc(allocatable.get('cpu', '-'))} · "
        f"memory {esc(used.get('memory', '0'))} / {esc(allocatable.get('memory', '-'))}</p>"
        f'<div class="gpumap">{"".join(devices) or "<p class=empty>No GPU devices.</p>"}</div>'
        f"{quarantine}{failures}</section>"
    )


# ---- simulator reports, login, problems ----


def render_reports(reports: Sequence[tuple[str, str]], directory: str) -> str:
    """Return the list of simulator reports: (file name, its HTML) each, newest first."""
    if not reports:
        body = (
            f'<h1>Simulations</h1><p class="empty">No simulator reports in <code>{esc(directory)}</code>: '
            "run <code>phalanx simulate … --report DIR/report.md</code> with DIR there.</p>"
        )
    else:
        body = "<h1>Simulations</h1>" + "".join(
            f'<section class="report"><h2>{esc(name)}</h2>{html}</section>'
            for name, html in reports
        )
    return layout("Simulations", body, active="/ui/reports", page="reports")


def render_login(message: str = "", next_path: str = "/") -> str:
    """Return the sign-in page: one field for the API's bearer token."""
    note = f'<p class="refused">{esc(message)}</p>' if message else ""
    body = (
        "<h1>Sign in</h1>"
        "<p>Paste the API token: <code>&lt;data_dir&gt;/token</code> on the server, or a user's token.</p>"
        f"{note}"
        '<form method="post" action="/ui/login" class="login">'
        f'<input type="hidden" name="next" value="{esc(next_path)}">'
        '<label>Token <input type="password" name="token" autocomplete="current-password" required autofocus></label>'
        "<button>Sign in</button></form>"
    )
    return layout("Sign in", body, active="", page="login", is_logged_in=False)


def render_problem(status: int, message: str) -> str:
    """Return an error page: the status and the API's message."""
    text = "not allowed for your role" if status == 403 else message
    return layout(
        "Error",
        f'<h1>{status}</h1><p class="refused" data-status="{status}">{esc(text)}</p>',
        active="",
        page="problem",
    )
