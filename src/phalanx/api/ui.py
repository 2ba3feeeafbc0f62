"""The web dashboard at ``/`` (pages under ``/ui``), served by the API server itself.

Every page reads what it shows *through the API*: the handlers call ``/api/v1/...`` (and
``/metrics``) in-process with the bearer token of the signed-in browser, so the API's
authentication and any role checks decide what a page may show, and there is one read path
(``controllers.queries`` and ``ops`` behind the API). A section the API refuses (403) is
replaced by "not allowed for your role"; a 401 sends the browser to the sign-in page. The
HTML comes from ``phalanx.web`` (pure renderers); live updates come from ``/ui/watch``, which
relays ``GET /api/v1/watch`` (server-sent events) for the same token.

Sign-in: the token is kept in an HttpOnly, ``SameSite=Strict`` cookie (``Secure`` over
HTTPS), so page scripts never see it and other sites' pages never send it. The dashboard only
reads; its two form posts (sign in, sign out) also check that ``Origin`` names this server.
This module is the dashboard's whole HTTP edge (routes, the in-process reader of the API,
the stream relay), hence its length; the HTML is ``phalanx.web``'s. Must not import client or
cli.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from fastapi import APIRouter, Request, Response
from prometheus_client.parser import text_string_to_metric_families
from starlette.responses import HTMLResponse, RedirectResponse, StreamingResponse
from starlette.types import ASGIApp, Message

from phalanx.api.schemas import CONTINUE_HEADER, RESOURCE_VERSION_HEADER
from phalanx.web import (
    render_job,
    render_jobs,
    render_login,
    render_nodes,
    render_overview,
    render_problem,
    render_queues,
    render_reports,
    static_file,
)
from phalanx.web.jobs import SORT_KEYS, JobFilter, LogTail, tail_lines
from phalanx.web.markup import Json, quantity
from phalanx.web.pages import Overview, Refused
from phalanx.web.workloads import render_pipeline_run, render_pipeline_runs, render_services

COOKIE = "phalanx_token"
#: How much of a pod's output the job page reads to show its tail.
LOG_READ_BYTES = 256 * 1024
#: GPU allocation samples kept for the overview's chart, and the least time between two.
HISTORY_SAMPLES = 720
HISTORY_MIN_GAP_S = 2.0
_INTERNAL = "http://phalanx.internal"


@dataclass(frozen=True, slots=True)
class Answer:
    """An API answer: status, decoded JSON body (None when not JSON), headers."""

    status: int
    body: Any
    headers: httpx.Headers

    def refusal(self) -> Refused | None:
        """The Refused this answer stands for, or None when it succeeded."""
        if self.status < 400:
            return None
        message = ""
        if isinstance(self.body, dict):
            error = self.body.get("error")
            message = str(error.get("message", "")) if isinstance(error, dict) else ""
        return Refused(self.status, message or f"HTTP {self.status}")


class NotSignedInError(Exception):
    """The API answered 401 for the browser's token (or it has none)."""


class AllocationHistory:
    """GPU allocation samples (epoch s, allocated, total) in memory, newest last: one taken
    each time a page reads the nodes, at most every ``HISTORY_MIN_GAP_S``. The long history
    is Prometheus's (deploy/grafana)."""

    def __init__(self) -> None:
        self._samples: deque[tuple[float, float, float]] = deque(maxlen=HISTORY_SAMPLES)
        self._lock = threading.Lock()

    def record(self, nodes: list[Json], now: float) -> None:
        allocated = sum(quantity(n["used"].get("nvidia.com/gpu")) for n in nodes)
        total = sum(len(n["gpus"]) for n in nodes)
        with self._lock:
            if self._samples and now - self._samples[-1][0] < HISTORY_MIN_GAP_S:
                self._samples[-1] = (self._samples[-1][0], allocated, total)
                return
            self._samples.append((now, allocated, total))

    def samples(self) -> list[tuple[float, float, float]]:
        with self._lock:
            return list(self._samples)


class ApiReader:
    """Calls the API application in-process with a browser's token."""

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None

    def _http(self, app: ASGIApp) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url=_INTERNAL, timeout=None
            )
        return self._client

    async def get(
        self,
        request: Request,
        path: str,
        token: str | None,
        params: Mapping[str, object] | None = None,
    ) -> Answer:
        """GET ``path`` of the API as the browser's token; raises NotSignedInError on 401."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        kept = {k: str(v) for k, v in (params or {}).items() if v not in (None, "")}
        response = await self._http(request.app).get(path, params=kept, headers=headers)
        if response.status_code == 401:
            raise NotSignedInError
        body: Any = None
        if response.headers.get("content-type", "").startswith("application/json"):
            body = response.json()
        elif response.status_code < 400:
            body = response.text
        return Answer(response.status_code, body, response.headers)


def _token(request: Request) -> str | None:
    return request.cookies.get(COOKIE) or None


def _is_same_origin(request: Request) -> bool:
    """Whether a form post comes from a page of this server (Origin, else Referer)."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin:
        return True  # not a browser's cross-site post: browsers send Origin on POST
    parts = urlsplit(origin)
    return parts.netloc == request.headers.get("host", "") and parts.scheme in ("http", "https")


def _safe_next(path: str) -> str:
    """Only paths of this server, never another origin (``//host`` or a scheme)."""
    return path if path.startswith("/") and not path.startswith("//") else "/"


def _html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status, headers={"Cache-Control": "no-store"})


def _is_partial(request: Request) -> bool:
    return request.query_params.get("partial") == "1"


def ui_router(reports_dir: Path) -> APIRouter:
    """Return the dashboard's routes; ``reports_dir`` is where simulator reports are read
    from (``*.html`` files that ``phalanx simulate --report`` wrote)."""
    router = APIRouter(include_in_schema=False)
    api = ApiReader()
    history = AllocationHistory()

    async def page(request: Request, render: Any) -> Response:
        try:
            return _html(await render(_token(request)))
        except NotSignedInError:
            if _is_partial(request):
                return _html(render_problem(401, "sign in again"), 401)
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse("/ui/login?" + urlencode({"next": target}), status_code=303)

    async def nodes_sampled(request: Request, token: str | None) -> Answer:
        answer = await api.get(request, "/api/v1/nodes", token)
        if answer.status == 200:
            history.record(answer.body, time.time())
        return answer

    @router.get("/", response_class=HTMLResponse)
    async def overview(request: Request) -> Response:
        async def render(token: str | None) -> str:
            queues, metrics, doctor, _ = await asyncio.gather(
                api.get(request, "/api/v1/queues", token),
                api.get(request, "/metrics", token),
                api.get(request, "/api/v1/doctor", token),
                nodes_sampled(request, token),
            )
            pending: list[tuple[str, float]] | Refused
            phases: dict[str, float] | Refused
            refused = metrics.refusal()
            if refused is not None:
                pending = phases = refused
            else:
                pending, phases = _job_counts(str(metrics.body))
            return render_overview(
                Overview(
                    history.samples(),
                    queues.refusal() or queues.body,
                    pending,
                    phases,
                    doctor.refusal() or doctor.body,
                    queues.headers.get(RESOURCE_VERSION_HEADER, ""),
                ),
                partial=_is_partial(request),
            )

        return await page(request, render)

    @router.get("/ui/queues", response_class=HTMLResponse)
    async def queues_page(request: Request) -> Response:
        async def render(token: str | None) -> str:
            answer = await api.get(request, "/api/v1/queues", token)
            refused = answer.refusal()
            if refused is not None:
                return render_problem(refused.status, refused.message)
            revision = answer.headers.get(RESOURCE_VERSION_HEADER, "")
            return render_queues(answer.body, revision, partial=_is_partial(request))

        return await page(request, render)

    @router.get("/ui/jobs", response_class=HTMLResponse)
    async def jobs_page(request: Request) -> Response:
        params = request.query_params
        try:
            limit = max(1, min(5000, int(params.get("limit") or 100)))
        except ValueError:
            limit = 100
        sort = params.get("sort") or "created"
        flt = JobFilter(
            queue=params.get("queue", ""),
            selector=params.get("labelSelector", ""),
            phase=params.get("phase", ""),
            sort=sort if sort in SORT_KEYS else "created",
            is_descending=params.get("desc") == "1",
            limit=limit,
            continue_token=params.get("continue", ""),
        )

        async def render(token: str | None) -> str:
            # One read: the page of jobs (the queue filter is a text field, not a list of
            # queues, whose usage figures cost a pass over every active job).
            jobs = await api.get(
                request,
                "/api/v1/jobs",
                token,
                {
                    "queue": flt.queue,
                    "labelSelector": flt.selector,
                    "limit": flt.limit,
                    "continue": flt.continue_token,
                },
            )
            refused = jobs.refusal()
            if refused is not None:
                return render_problem(refused.status, refused.message)
            return render_jobs(
                jobs.body,
                flt,
                jobs.headers.get(CONTINUE_HEADER, ""),
                jobs.headers.get(RESOURCE_VERSION_HEADER, ""),
                partial=_is_partial(request),
            )

        return await page(request, render)

    @router.get("/ui/jobs/{name}", response_class=HTMLResponse)
    async def job_page(request: Request, name: str) -> Response:
        async def render(token: str | None) -> str:
            answer = await api.get(request, f"/api/v1/jobs/{name}", token)
            refused = answer.refusal()
            if refused is not None:
                return render_problem(refused.status, refused.message)
            job = answer.body
            logs = await _log_tail(request, token, job, request.query_params.get("pod", ""))
            return render_job(job, logs, partial=_is_partial(request))

        return await page(request, render)

    async def _log_tail(request: Request, token: str | None, job: Json, pod: str) -> LogTail | None:
        latest = max((p["attempt"] for p in job["pods"]), default=None)
        if latest is None:
            return None
        names = [p["name"] for p in job["pods"] if p["attempt"] == latest]
        chosen = pod if pod in names else names[0]
        answer = await api.get(
            request,
            f"/api/v1/jobs/{job['name']}/logs",
            token,
            {"pod": chosen, "attempt": latest},
        )
        refused = answer.refusal()
        if refused is not None:
            return LogTail(chosen, refused=refused, pods=names)
        chunks = [answer.body["data"]]
        offset, size = answer.body["next_offset"], len(answer.body["data"])
        while not answer.body["finished"] and answer.body["data"] and size < LOG_READ_BYTES:
            answer = await api.get(
                request,
                f"/api/v1/jobs/{job['name']}/logs",
                token,
                {"pod": chosen, "attempt": latest, "offset": offset},
            )
            if answer.status != 200:
                break
            chunks.append(answer.body["data"])
            offset, size = answer.body["next_offset"], size + len(answer.body["data"])
        return LogTail(chosen, tail_lines("".join(chunks)), pods=names)

    @router.get("/ui/nodes", response_class=HTMLResponse)
    async def nodes_page(request: Request) -> Response:
        async def render(token: str | None) -> str:
            answer = await nodes_sampled(request, token)
            refused = answer.refusal()
            if refused is not None:
                return render_problem(refused.status, refused.message)
            holders = await _holders(request, token, answer.body)
            revision = answer.headers.get(RESOURCE_VERSION_HEADER, "")
            return render_nodes(answer.body, holders, revision, partial=_is_partial(request))

        return await page(request, render)

    async def _holders(
        request: Request, token: str | None, nodes: list[Json]
    ) -> dict[tuple[str, int], list[tuple[str, str, int]]]:
        """Who holds each device: the jobs whose pods the nodes list, one read each (the
        jobs on nodes now, not every job)."""
        jobs = sorted({ref.partition("/")[0] for n in nodes for ref in n["pods"]})
        answers = await asyncio.gather(
            *(api.get(request, f"/api/v1/jobs/{job}", token) for job in jobs)
        )
        out: dict[tuple[str, int], list[tuple[str, str, int]]] = {}
        for answer in answers:
            if answer.status != 200:
                continue
            job = answer.body
            for pod in job["pods"]:
                if pod["attempt"] != job["attempt"] or pod["phase"] not in ("Pending", "Running"):
                    continue
                for device in pod["devices"]:
                    out.setdefault((pod["node"], device["index"]), []).append(
                        (job["name"], pod["name"], device["milli"])
                    )
        return out

    @router.get("/ui/services", response_class=HTMLResponse)
    async def services_page(request: Request) -> Response:
        async def render(token: str | None) -> str:
            answer = await api.get(request, "/api/v1/services", token)
            refused = answer.refusal()
            if refused is not None:
                return render_problem(refused.status, refused.message)
            return render_services(answer.body, partial=_is_partial(request))

        return await page(request, render)

    @router.get("/ui/pipelineruns", response_class=HTMLResponse)
    async def runs_page(request: Request) -> Response:
        async def render(token: str | None) -> str:
            answer = await api.get(request, "/api/v1/pipelineruns", token)
            refused = answer.refusal()
            if refused is not None:
                return render_problem(refused.status, refused.message)
            return render_pipeline_runs(answer.body, partial=_is_partial(request))

        return await page(request, render)

    @router.get("/ui/pipelineruns/{name}", response_class=HTMLResponse)
    async def run_page(request: Request, name: str) -> Response:
        async def render(token: str | None) -> str:
            answer = await api.get(request, f"/api/v1/pipelineruns/{name}", token)
            refused = answer.refusal()
            if refused is not None:
                return render_problem(refused.status, refused.message)
            return render_pipeline_run(answer.body, partial=_is_partial(request))

        return await page(request, render)

    @router.get("/ui/reports", response_class=HTMLResponse)
    async def reports_page(request: Request) -> Response:
        async def render(token: str | None) -> str:
            # The same sign-in as every page: the API must accept the token.
            answer = await api.get(request, "/api/v1/version", token)
            refused = answer.refusal()
            if refused is not None:
                return render_problem(refused.status, refused.message)
            return render_reports(_read_reports(reports_dir), str(reports_dir))

        return await page(request, render)

    @router.get("/ui/reports/files/{name:path}")
    async def report_file(request: Request, name: str) -> Response:
        """A report's plot (PNG), from the reports directory only, for a signed-in token."""
        try:
            answer = await api.get(request, "/api/v1/version", _token(request))
        except NotSignedInError:
            return Response(status_code=401)
        if answer.status != 200:
            return Response(status_code=answer.status)
        root = reports_dir.resolve()
        path = (root / name).resolve()
        if path.suffix.lower() != ".png" or not path.is_relative_to(root) or not path.is_file():
            return Response(status_code=404)
        return Response(path.read_bytes(), media_type="image/png")

    @router.get("/ui/watch")
    async def watch(request: Request) -> Response:
        token = _token(request)
        return await _relay(request.app, "/api/v1/watch", request.url.query, token, request)

    @router.get("/ui/login", response_class=HTMLResponse)
    async def login_form(request: Request) -> Response:
        return _html(render_login(next_path=_safe_next(request.query_params.get("next", "/"))))

    @router.post("/ui/login", response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        if not _is_same_origin(request):
            return _html(render_problem(403, "cross-site sign-in refused"), 403)
        form = parse_qs((await request.body()).decode("utf-8", errors="replace"))
        token = (form.get("token") or [""])[0].strip()
        next_path = _safe_next((form.get("next") or ["/"])[0])
        try:
            await api.get(request, "/api/v1/version", token)
        except NotSignedInError:
            return _html(render_login("That token is not accepted by this server.", next_path), 401)
        response = RedirectResponse(next_path, status_code=303)
        response.set_cookie(
            COOKIE,
            token,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response

    @router.post("/ui/logout")
    async def logout(request: Request) -> Response:
        if not _is_same_origin(request):
            return _html(render_problem(403, "cross-site sign-out refused"), 403)
        response = RedirectResponse("/ui/login", status_code=303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    @router.get("/ui/static/{name}")
    async def static(name: str) -> Response:
        try:
            asset = static_file(name)
        except KeyError:
            return Response(status_code=404)
        return Response(
            asset.body,
            media_type=asset.media_type,
            headers={"Cache-Control": "public, max-age=31536000, immutable"},
        )

    return router


def _job_counts(metrics_text: str) -> tuple[list[tuple[str, float]], dict[str, float]]:
    """(pending jobs per reason code, most first; jobs per phase) from ``/metrics``."""
    pending: dict[str, float] = {}
    phases: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name == "phalanx_pending_jobs":
            for sample in family.samples:
                reason = sample.labels.get("reason", "")
                pending[reason] = pending.get(reason, 0.0) + sample.value
        elif family.name == "phalanx_jobs":
            for sample in family.samples:
                phases[sample.labels.get("phase", "")] = sample.value
    ranked = sorted(((k, v) for k, v in pending.items() if v), key=lambda kv: (-kv[1], kv[0]))
    return ranked, phases


def _read_reports(directory: Path) -> list[tuple[str, str]]:
    """The simulator reports (``*.html``) in ``directory``, newest first, as (name, the
    report's body). A report's own images are not served: its tables are."""
    if not directory.is_dir():
        return []
    out = []
    files = sorted(directory.glob("*.html"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in files[:20]:
        text = path.read_text(encoding="utf-8", errors="replace")
        start, end = text.find("<body>"), text.rfind("</body>")
        body = text[start + 6 : end] if start >= 0 and end > start else text
        # The report's plots are beside it (<stem>_plots/); serve them from there.
        body = re.sub(r'src="(?![a-z]+:|/)', 'src="/ui/reports/files/', body)
        out.append((path.name, body))
    return out


async def _relay(
    app: ASGIApp, path: str, query_string: str, token: str | None, request: Request
) -> Response:
    """Call ``path`` of ``app`` in-process as ``token`` and stream its answer back as it
    comes (httpx's ASGI transport would wait for the end of a stream that never ends)."""
    headers = [(b"host", b"phalanx.internal")]
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    last_id = request.headers.get("last-event-id")
    if last_id:
        headers.append((b"last-event-id", last_id.encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query_string.encode(),
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 0),
        "server": ("phalanx.internal", 80),
    }
    messages: asyncio.Queue[Message] = asyncio.Queue()
    gone = asyncio.Event()

    async def receive() -> Message:
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        await messages.put(message)

    async def call() -> None:
        await app(scope, receive, send)

    task = asyncio.create_task(call())
    first = asyncio.create_task(messages.get())
    await asyncio.wait({task, first}, return_when=asyncio.FIRST_COMPLETED)
    if not first.done():
        first.cancel()
        task.result()  # raises what the app raised
        return Response(status_code=502)
    start = first.result()
    status = int(start.get("status", 500))
    response_headers = {
        k.decode(): v.decode()
        for k, v in start.get("headers", [])
        if k.lower() not in (b"content-length", b"transfer-encoding")
    }
    if status == 401:
        gone.set()
        task.cancel()
        return Response(
            json.dumps({"error": {"code": "Unauthorized", "message": "sign in again"}}),
            401,
            media_type="application/json",
        )

    async def body() -> AsyncIterator[bytes]:
        try:
            while True:
                message = await messages.get()
                if message["type"] != "http.response.body":
                    continue
                chunk = message.get("body", b"")
                if chunk:
                    yield chunk
                if not message.get("more_body", False):
                    return
        finally:
            gone.set()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=5)

    return StreamingResponse(body(), status_code=status, headers=response_headers)
