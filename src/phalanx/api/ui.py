"""The web dashboard at ``/`` (pages under ``/ui``), served by the API server itself.

Every page reads what it shows *through the API*: the handlers call ``/api/v1/...`` (and
``/metrics``) in-process with the bearer token of the signed-in browser, so the API's
authentication and any role checks decide what a page may show, and there is one read path
(``controllers.queries`` and ``ops`` behind the API). A section the API refuses (403) is
replaced by "not allowed for your role"; a 401 sends the browser to the sign-in page. The
HTML comes from ``phalanx.web`` (pure renderers); live updates come from ``/ui/watch``, which
relays ``GET /api/v1/watch`` (server-sent events) for the same token, or, for Services and
pipeline runs, draws each changed one afresh (``phalanx.api.ui_live``).

Sign-in: the token is kept in an HttpOnly, ``SameSite=Strict`` cookie (``Secure`` over
HTTPS), so page scripts never see it and other sites' pages never send it. The dashboard only
reads; its two form posts (sign in, sign out) also check that ``Origin`` names this server.
This module is the dashboard's HTTP edge (routes, the in-process reader of the API, the
start-up warm-up), hence its length; the streams are ``ui_live``'s, the HTML is
``phalanx.web``'s. Must not import client or cli.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import httpx
from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client.parser import text_string_to_metric_families
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, RedirectResponse
from starlette.types import ASGIApp

from phalanx.api.schemas import CONTINUE_HEADER, RESOURCE_VERSION_HEADER
from phalanx.api.ui_live import (
    LIVE_KINDS,
    SERVICE,
    LiveSettings,
    LiveStream,
    NotAllowedError,
    relay,
    streaming,
    unauthorized,
)
from phalanx.controllers.queries import Queries
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
from phalanx.web.workloads import (
    render_pipeline_run,
    render_pipeline_runs,
    render_services,
    run_row,
    service_section,
)

COOKIE = "phalanx_token"
#: How much of a pod's output the job page reads to show its tail.
LOG_READ_BYTES = 256 * 1024
#: GPU allocation samples kept for the overview's chart, and the least time between two.
HISTORY_SAMPLES = 720
HISTORY_MIN_GAP_S = 2.0
_INTERNAL = "http://phalanx.internal"
log = logging.getLogger(__name__)


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


#: Draws a page from one API answer and the browser's token.
PageDraw = Callable[["Answer", str | None], str | Awaitable[str]]


class LiveRender(Protocol):
    """Draws a live page: the API's answer, the revision its stream starts from."""

    def __call__(self, body: Any, revision: str = "", /, *, partial: bool = False) -> str: ...


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


def warm_up(app: FastAPI, queries: Queries) -> None:
    """Build, off the request path, what a fresh server's first requests would otherwise
    pay for (measured on the jobs page with 10,000 jobs stored, bench/dashboard_bench.py):
    the request and response models of every route, which FastAPI builds on the first
    request that reaches a router (about 0.4 s of CPU: building the OpenAPI document builds
    them), the compiled SQL of a page of jobs, and what the first requests import or read
    (the event loop's worker threads, the page assets and their hashes): two requests that
    need no token are served in-process. Run in a thread at start; what a request needs
    meanwhile waits for the part it needs, as it would have built it itself."""
    try:
        app.openapi()
        # Built again when asked for, so routes added after start are documented too.
        app.openapi_schema = None
        queries.page_jobs(limit=1)
        asyncio.run(_first_requests(app))
    except Exception:  # a store closed before the warm-up ran: nothing to warm
        log.debug("warm-up stopped", exc_info=True)


async def _first_requests(app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=_INTERNAL) as client:
        for path in ("/healthz", "/ui/login"):  # a route run in a worker thread; a page
            await client.get(path)


def start_warm_up(app: FastAPI, queries: Queries) -> None:
    """Run ``warm_up`` in a daemon thread, unless ``PHALANX_UI_WARM_UP=0`` (the test suite
    starts hundreds of short-lived servers, each of which would spend the warm-up's CPU)."""
    if os.environ.get("PHALANX_UI_WARM_UP", "1") == "0":
        return
    threading.Thread(target=warm_up, args=(app, queries), name="warm-up", daemon=True).start()


def ui_router(
    reports_dir: Path,
    queries: Queries | None = None,
    is_stopping: Callable[[], bool] = lambda: False,
) -> APIRouter:
    """Return the dashboard's routes; ``reports_dir`` is where simulator reports are read
    from (``*.html`` files that ``phalanx simulate --report`` wrote). With ``queries`` the
    services and pipeline-run pages are live (``ui_live.LiveStream`` reads its revision
    log); ``is_stopping`` ends their streams when the server shuts down."""
    router = APIRouter(include_in_schema=False)
    api = ApiReader()
    history = AllocationHistory()

    async def page(request: Request, render: Callable[[str | None], Awaitable[str]]) -> Response:
        try:
            return _html(await render(_token(request)))
        except NotSignedInError:
            if _is_partial(request):
                return _html(render_problem(401, "sign in again"), 401)
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse("/ui/login?" + urlencode({"next": target}), status_code=303)

    async def read_page(
        request: Request, path: str, draw: PageDraw, params: Mapping[str, object] | None = None
    ) -> Response:
        """A page drawn from one API read (``draw(answer, token)``), or the API's refusal."""

        async def render(token: str | None) -> str:
            answer = await api.get(request, path, token, params)
            refused = answer.refusal()
            if refused is not None:
                return render_problem(refused.status, refused.message)
            drawn = draw(answer, token)
            return drawn if isinstance(drawn, str) else await drawn

        return await page(request, render)

    async def live_revision() -> str:
        """The revision log's newest revision, read before a live page's list (a write in
        between is sent again, which redraws the same object): "" when pages are not live."""
        return "" if queries is None else str(await run_in_threadpool(queries.revision))

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
        return await read_page(
            request,
            "/api/v1/queues",
            lambda answer, _: render_queues(
                answer.body, _revision(answer), partial=_is_partial(request)
            ),
        )

    @router.get("/ui/jobs", response_class=HTMLResponse)
    async def jobs_page(request: Request) -> Response:
        flt = _job_filter(request)
        # One read: the page of jobs (the queue filter is a text field, not a list of
        # queues, whose usage figures cost a pass over every active job).
        params = {
            "queue": flt.queue,
            "labelSelector": flt.selector,
            "limit": flt.limit,
            "continue": flt.continue_token,
        }
        return await read_page(
            request,
            "/api/v1/jobs",
            lambda answer, _: render_jobs(
                answer.body,
                flt,
                answer.headers.get(CONTINUE_HEADER, ""),
                _revision(answer),
                partial=_is_partial(request),
            ),
            params,
        )

    @router.get("/ui/jobs/{name}", response_class=HTMLResponse)
    async def job_page(request: Request, name: str) -> Response:
        async def draw(answer: Answer, token: str | None) -> str:
            pod = request.query_params.get("pod", "")
            logs = await _log_tail(request, token, answer.body, pod)
            return render_job(answer.body, logs, partial=_is_partial(request))

        return await read_page(request, f"/api/v1/jobs/{quote(name, safe='')}", draw)

    async def _log_tail(request: Request, token: str | None, job: Json, pod: str) -> LogTail | None:
        latest = max((p["attempt"] for p in job["pods"]), default=None)
        if latest is None:
            return None
        names = [p["name"] for p in job["pods"] if p["attempt"] == latest]
        chosen = pod if pod in names else names[0]
        path = f"/api/v1/jobs/{quote(job['name'], safe='')}/logs"
        params: dict[str, object] = {"pod": chosen, "attempt": latest}
        answer = await api.get(request, path, token, params)
        refused = answer.refusal()
        if refused is not None:
            return LogTail(chosen, refused=refused, pods=names)
        chunks: list[str] = []
        size = 0
        while answer.status == 200:
            chunks.append(answer.body["data"])
            size += len(answer.body["data"])
            if answer.body["finished"] or not answer.body["data"] or size >= LOG_READ_BYTES:
                break
            answer = await api.get(
                request, path, token, {**params, "offset": answer.body["next_offset"]}
            )
        return LogTail(chosen, tail_lines("".join(chunks)), pods=names)

    @router.get("/ui/nodes", response_class=HTMLResponse)
    async def nodes_page(request: Request) -> Response:
        async def render(token: str | None) -> str:
            answer = await nodes_sampled(request, token)
            refused = answer.refusal()
            if refused is not None:
                return render_problem(refused.status, refused.message)
            holders = await _holders(request, token, answer.body)
            return render_nodes(
                answer.body, holders, _revision(answer), partial=_is_partial(request)
            )

        return await page(request, render)

    async def _holders(
        request: Request, token: str | None, nodes: list[Json]
    ) -> dict[tuple[str, int], list[tuple[str, str, int]]]:
        """Who holds each device: the jobs whose pods the nodes list, one read each (the
        jobs on nodes now, not every job)."""
        jobs = sorted({ref.partition("/")[0] for n in nodes for ref in n["pods"]})
        answers = await asyncio.gather(
            *(api.get(request, f"/api/v1/jobs/{quote(job, safe='')}", token) for job in jobs)
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

    async def live_page(request: Request, path: str, render: LiveRender) -> Response:
        """A page of ``path``'s answer that its stream (``/ui/watch``) keeps live from the
        revision read before it."""
        revision = await live_revision()
        return await read_page(
            request,
            path,
            lambda answer, _: render(answer.body, revision, partial=_is_partial(request)),
        )

    @router.get("/ui/services", response_class=HTMLResponse)
    async def services_page(request: Request) -> Response:
        return await live_page(request, "/api/v1/services", render_services)

    @router.get("/ui/pipelineruns", response_class=HTMLResponse)
    async def runs_page(request: Request) -> Response:
        return await live_page(request, "/api/v1/pipelineruns", render_pipeline_runs)

    @router.get("/ui/pipelineruns/{name}", response_class=HTMLResponse)
    async def run_page(request: Request, name: str) -> Response:
        path = f"/api/v1/pipelineruns/{quote(name, safe='')}"
        return await live_page(request, path, render_pipeline_run)

    @router.get("/ui/reports", response_class=HTMLResponse)
    async def reports_page(request: Request) -> Response:
        # The same sign-in as every page: the API must accept the token.
        return await read_page(
            request,
            "/api/v1/version",
            lambda *_: render_reports(_read_reports(reports_dir), str(reports_dir)),
        )

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
        """Jobs, queues and flavors: the API's watch, relayed. Services and pipeline runs
        (``kinds=Service`` or ``PipelineRun``, one kind; ``name`` for one object;
        ``resourceVersion``, ``timeoutSeconds`` as the API's): drawn afresh on each change
        (``ui_live``)."""
        token = _token(request)
        params = request.query_params
        kind = params.get("kinds", "")
        if kind not in LIVE_KINDS:
            return await relay(request.app, "/api/v1/watch", request.url.query, token, request)
        if queries is None:
            return Response(status_code=404)
        try:
            # Refused here rather than in the stream: the page signs in again.
            await api.get(request, "/api/v1/version", token)
        except NotSignedInError:
            return unauthorized()
        after = params.get("resourceVersion") or request.headers.get("last-event-id") or ""
        if not after.isdigit():
            after = str(await run_in_threadpool(queries.revision))

        async def draw(kind: str, name: str) -> str | None:
            plural = "services" if kind == SERVICE else "pipelineruns"
            try:
                answer = await api.get(request, f"/api/v1/{plural}/{quote(name, safe='')}", token)
            except NotSignedInError:
                raise NotAllowedError from None
            if answer.status == 404:
                return None
            if answer.status != 200:
                return ""  # refused to this token: not sent
            if kind == SERVICE:
                return service_section(answer.body)
            if params.get("name"):
                return render_pipeline_run(answer.body, partial=True)
            return run_row(answer.body)

        async def routes() -> dict[str, str]:
            answer = await api.get(request, "/api/v1/routes", token)
            if answer.status != 200:
                return {}
            return {str(r["service"]): json.dumps(r, sort_keys=True) for r in answer.body}

        settings = LiveSettings()
        with contextlib.suppress(ValueError):  # as the API's watch: end after this long
            timeout_s = float(params.get("timeoutSeconds") or settings.timeout_s)
            settings = replace(settings, timeout_s=max(0.0, min(timeout_s, settings.timeout_s)))
        stream = LiveStream(
            queries,
            kind,
            int(after),
            draw,
            only=params.get("name", ""),
            settings=settings,
            is_stopping=is_stopping,
            routes=routes if kind == SERVICE else None,
        )
        return streaming(stream.stream())

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


def _revision(answer: Answer) -> str:
    return str(answer.headers.get(RESOURCE_VERSION_HEADER, ""))


def _job_filter(request: Request) -> JobFilter:
    """The jobs page's filter from its query string (bad numbers fall back to defaults)."""
    params = request.query_params
    try:
        limit = max(1, min(5000, int(params.get("limit") or 100)))
    except ValueError:
        limit = 100
    sort = params.get("sort") or "created"
    return JobFilter(
        queue=params.get("queue", ""),
        selector=params.get("labelSelector", ""),
        phase=params.get("phase", ""),
        sort=sort if sort in SORT_KEYS else "created",
        is_descending=params.get("desc") == "1",
        limit=limit,
        continue_token=params.get("continue", ""),
    )


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
