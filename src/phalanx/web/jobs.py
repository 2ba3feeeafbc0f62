"""The jobs pages: one page of jobs (filter, sort, paging; rows the script patches from the
watch stream) and one job (status, reason with its facts, progress, pods and their devices,
events, a log tail). Like ``pages``: the API's JSON in, HTML out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from phalanx.web.markup import Json, ago, badge, esc, facts, gpus, q, query, table, when
from phalanx.web.pages import PHASES, Refused, page_html, queue_link, refused_note

SORT_KEYS = ("created", "name", "queue", "phase", "priority")
LOG_TAIL_LINES = 100


@dataclass(frozen=True, slots=True)
class JobFilter:
    """The jobs page's filter: ``queue`` and ``selector`` go to the API; ``phase`` and
    ``sort`` apply to the page the API returned (its order is FIFO)."""

    queue: str = ""
    selector: str = ""
    phase: str = ""
    sort: str = "created"
    is_descending: bool = False
    limit: int = 100
    continue_token: str = ""

    def params(self, **changes: object) -> dict[str, object]:
        """Return the filter as query parameters, with ``changes``."""
        out: dict[str, object] = {
            "queue": self.queue,
            "labelSelector": self.selector,
            "phase": self.phase,
            "sort": "" if self.sort == "created" else self.sort,
            "desc": "1" if self.is_descending else "",
            "limit": "" if self.limit == 100 else self.limit,
            "continue": self.continue_token,
        }
        out.update(changes)
        return out


def sort_jobs(jobs: list[Json], key: str, is_descending: bool) -> list[Json]:
    """Return ``jobs`` ordered by ``key`` (one of SORT_KEYS)."""
    if key == "created":
        return list(reversed(jobs)) if is_descending else jobs
    field_of = {"name": "name", "queue": "queue", "phase": "phase", "priority": "priority"}[key]
    return sorted(jobs, key=lambda j: (j[field_of], j["created_at"]), reverse=is_descending)


def job_row(job: Json) -> str:
    """Return one row of the jobs table; the script renders the same cells from watch
    events (``app.js``: ``jobCells``)."""
    reason = job.get("reason") or {}
    return (
        f'<tr data-job="{esc(job["name"])}" data-phase="{esc(job["phase"])}" '
        f'data-queue="{esc(job["queue"])}">'
        f'<td><a href="/ui/jobs/{q(job["name"])}">{esc(job["name"])}</a></td>'
        f"<td>{esc(job['queue'])}</td>"
        f'<td class="phase">{badge(job["phase"])}</td>'
        f'<td class="reason" title="{esc(reason.get("message", job["message"]))}">'
        f"{esc(job['reason_code'])}</td>"
        f'<td class="pods">{job["running_pods"]}/{job["pod_count"]}</td>'
        f"<td>{gpus(job['request'])}</td>"
        f"<td>{job['priority']}</td>"
        f'<td class="age" data-at="{job["created_at"]}">{ago(job["created_at"])}</td></tr>'
    )


def render_jobs(
    jobs: list[Json],
    flt: JobFilter,
    next_token: str,
    revision: str,
    *,
    partial: bool = False,
) -> str:
    """Return one page of jobs with the filter form, sort links and paging links."""
    shown = sort_jobs(
        [j for j in jobs if not flt.phase or j["phase"] == flt.phase], flt.sort, flt.is_descending
    )
    phases = "".join(f"<option{' selected' if p == flt.phase else ''}>{p}</option>" for p in PHASES)
    sorts = "".join(
        f'<option value="{k}"{" selected" if k == flt.sort else ""}>{k}</option>' for k in SORT_KEYS
    )
    form = (
        '<form class="filter" method="get" action="/ui/jobs">'
        f'<label>Queue <input name="queue" value="{esc(flt.queue)}" placeholder="all"></label>'
        f'<label>Phase <select name="phase"><option value="">all</option>{phases}</select></label>'
        f'<label>Labels <input name="labelSelector" value="{esc(flt.selector)}" placeholder="team=a,tier!=batch"></label>'
        f'<label>Sort <select name="sort">{sorts}</select></label>'
        f'<label><input type="checkbox" name="desc" value="1"{" checked" if flt.is_descending else ""}> descending</label>'
        f'<label>Per page <input name="limit" type="number" min="1" max="5000" value="{flt.limit}"></label>'
        "<button>Apply</button></form>"
    )
    paging = []
    if flt.continue_token:
        paging.append(f'<a href="/ui/jobs{query(flt.params(**{"continue": ""}))}">First page</a>')
    if next_token:
        paging.append(
            f'<a rel="next" href="/ui/jobs{query(flt.params(**{"continue": next_token}))}">Next page</a>'
        )
    body = (
        f"<h1>Jobs</h1>{form}"
        + table(
            ("Name", "Queue", "Phase", "Reason", "Pods", "GPUs", "Priority", "Age"),
            (job_row(j) for j in shown),
            table_id="jobs",
            empty="No jobs match.",
        )
        + f'<nav class="paging">{" ".join(paging)}</nav>'
        + '<p class="live" id="live">live updates: connecting…</p>'
    )
    return page_html(
        "Jobs",
        body,
        "/ui/jobs",
        "jobs",
        partial,
        rv=revision,
        watch="Job",
        queue=flt.queue,
        phase=flt.phase,
        selector=flt.selector,
        last_page="1" if not next_token else "",
    )


@dataclass(frozen=True, slots=True)
class LogTail:
    """The end of one pod's output, or why it cannot be shown."""

    pod: str
    text: str = ""
    refused: Refused | None = None
    pods: Sequence[str] = field(default_factory=tuple)


def render_job(job: Json, logs: LogTail | None, *, partial: bool = False) -> str:
    """Return one job: status and reason with its facts, checkpoint progress, pods with their
    nodes and devices, the event timeline, and a log tail (when the token may read logs)."""
    reason = job.get("reason")
    status = (
        '<dl class="summary">'
        f'<dt>Phase</dt><dd id="phase">{badge(job["phase"])}</dd>'
        f"<dt>Queue</dt><dd>{queue_link(job['queue'])}</dd>"
        f"<dt>Flavor</dt><dd>{esc(job['flavor'] or '-')}</dd>"
        f"<dt>Priority</dt><dd>{job['priority']}</dd>"
        f"<dt>Attempt</dt><dd>{job['attempt']} ({job['restarts']} restarts)</dd>"
        f"<dt>Request</dt><dd>{esc(', '.join(f'{k}: {v}' for k, v in job['request'].items()) or '-')}"
        f" over {job['pod_count']} pods</dd>"
        f"<dt>Created</dt><dd>{when(job['created_at'])}</dd>"
        f"<dt>Admitted</dt><dd>{when(job['admitted_at'])}</dd>"
        f"<dt>Started</dt><dd>{when(job['started_at'])}</dd>"
        f"<dt>Finished</dt><dd>{when(job['finished_at'])}</dd></dl>"
    )
    why = (
        f'<section id="reason"><h2>Reason <code>{esc(reason["code"])}</code></h2>'
        f"<p>{esc(reason['message'])}</p>{facts(reason['facts'])}</section>"
        if reason
        else ""
    )
    body = (
        f'<h1>Job <span class="name">{esc(job["name"])}</span></h1>{status}{why}'
        f"{_progress(job.get('progress'))}{_pods(job['pods'])}{_events(job['events'])}"
        f"{_logs(job['name'], logs)}"
    )
    return page_html(
        f"Job {job['name']}",
        body,
        "/ui/jobs",
        "job",
        partial,
        rv=job["metadata"]["resourceVersion"],
        watch="Job",
        job=job["name"],
    )


def _progress(progress: Json | None) -> str:
    if not progress:
        return '<section id="progress"><h2>Progress</h2><p class="empty">No progress reported.</p></section>'
    step, saved = progress.get("step"), progress.get("checkpoint_step")
    bar = ""
    if step and saved is not None:
        share = max(0.0, min(1.0, saved / step))
        bar = (
            f'<svg class="progress" viewBox="0 0 200 12"><rect class="track" width="200" height="12"/>'
            f'<rect class="used" width="{share * 200:.1f}" height="12"/>'
            f"<title>checkpoint at step {saved} of {step} reached</title></svg>"
        )
    total = progress.get("total_steps")
    of_total = f" of {esc(total)}" if total is not None and step is not None else ""
    return (
        '<section id="progress"><h2>Progress</h2><dl class="summary">'
        f"<dt>Step</dt><dd>{esc(step if step is not None else '-')}{of_total}</dd>"
        f"<dt>Checkpoint</dt><dd>step {esc(saved if saved is not None else '-')} "
        f"{when(progress.get('checkpoint_at'))} {bar}</dd>"
        f"<dt>Path</dt><dd><code>{esc(progress.get('checkpoint_path') or '-')}</code></dd>"
        "</dl></section>"
    )


def device_text(devices: Sequence[Json]) -> str:
    """Return a pod's devices as ``GPU 0, GPU 3 (0.5)``."""
    return (
        ", ".join(
            f"GPU {d['index']}" + ("" if d["milli"] == 1000 else f" ({d['milli'] / 1000:g})")
            for d in devices
        )
        or "-"
    )


def _pods(pods: list[Json]) -> str:
    rows = (
        f'<tr data-pod="{esc(p["name"])}" data-attempt="{p["attempt"]}">'
        f"<td>{esc(p['name'])}</td><td>{p['attempt']}</td>"
        f'<td><a href="/ui/nodes#node-{esc(p["node"])}">{esc(p["node"])}</a></td>'
        f'<td class="devices">{esc(device_text(p["devices"]))}</td><td>{badge(p["phase"])}</td>'
        f"<td>{esc(p['exit_code'] if p['exit_code'] is not None else '-')}</td>"
        f"<td>{esc(p['reason'] or '-')}</td><td>{when(p['started_at'])}</td>"
        f"<td>{when(p['finished_at'])}</td></tr>"
        for p in sorted(pods, key=lambda p: (-p["attempt"], p["pod_set"], p["index"]))
    )
    return (
        '<section id="pods"><h2>Pods</h2>'
        + table(
            ("Pod", "Attempt", "Node", "Devices", "Phase", "Exit", "Reason", "Started", "Finished"),
            rows,
            empty="No pods yet.",
        )
        + "</section>"
    )


def _events(events: list[Json]) -> str:
    items = "".join(
        f'<li class="event-{esc(e["type"].lower())}">{when(e["at"])} '
        f"<code>{esc(e['reason'])}</code> {esc(e['message'])}{facts(e['facts'])}</li>"
        for e in events
    )
    inner = f'<ol class="timeline">{items}</ol>' if items else '<p class="empty">No events.</p>'
    return f'<section id="events"><h2>Events</h2>{inner}</section>'


def _logs(job: str, logs: LogTail | None) -> str:
    if logs is None:
        return '<section id="logs"><h2>Logs</h2><p class="empty">No pods yet.</p></section>'
    if logs.refused is not None:
        return f'<section id="logs"><h2>Logs</h2>{refused_note(logs.refused, "logs")}</section>'
    choices = " ".join(
        f'<a href="/ui/jobs/{q(job)}{query({"pod": p})}"{" class=active" if p == logs.pod else ""}>{esc(p)}</a>'
        for p in logs.pods
    )
    return (
        f'<section id="logs"><h2>Logs of {esc(logs.pod)}</h2><nav class="pods">{choices}</nav>'
        f'<pre class="log">{esc(logs.text) or "(no output yet)"}</pre></section>'
    )


def tail_lines(text: str, lines: int = LOG_TAIL_LINES) -> str:
    """Return the last ``lines`` lines of ``text``."""
    return "\n".join(text.splitlines()[-lines:])
