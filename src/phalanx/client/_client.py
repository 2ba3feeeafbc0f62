"""``Client``: the Python SDK over the REST API (``/api/v1``), built on httpx.

Every method is one request (``jobs`` reads every page, ``follow_logs`` and ``wait_for``
poll, ``watch`` streams) and returns the JSON the server sent, typed with the TypedDicts of
``_types``; job list items with the fields the server leaves out of them put back
(``schemas.full_job_item``), so that a listed job has every field of ``JobInfo``. ``transport`` is the seam tests replace (``httpx.MockTransport``, or an adapter
running the app in-process).
"""

from __future__ import annotations

import json
import os
import shlex
import ssl
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Generic, TypeVar, cast
from urllib.parse import quote, urlencode

import httpx

from phalanx import __version__
from phalanx.api.schemas import (
    CONTINUE_HEADER,
    RESOURCE_VERSION_HEADER,
    AuditInfo,
    SecretInfo,
    TokenCreate,
    TokenCreated,
    TokenInfo,
    UserCreate,
    UserInfo,
    WhoAmIInfo,
    full_job_item,
)
from phalanx.client._discovery import ServerLocation, locate_server, running_servers
from phalanx.client._errors import (
    ApiError,
    ClientError,
    JobFinishedError,
    ServerUnavailableError,
)
from phalanx.client._types import (
    ApplyOutcome,
    ApplyRequest,
    DoctorReport,
    ErrorDetailInfo,
    EstimateInfo,
    FlavorInfo,
    JobInfo,
    KindInfo,
    LogChunk,
    NodeInfo,
    QueueInfo,
    VersionInfo,
    WatchEvent,
)

API_PREFIX = "/api/v1"
#: Phases after which a job never runs again.
FINISHED_PHASES = ("Succeeded", "Failed", "Cancelled")
#: Jobs per request when ``jobs()`` reads every page (the server accepts up to 5000).
DEFAULT_CHUNK_SIZE = 500
#: Seconds a watch may go without a byte (the server sends a heartbeat every few seconds).
WATCH_READ_TIMEOUT_S = 60.0

Manifests = Sequence[Mapping[str, object]]
T = TypeVar("T")


def _name(value: str) -> str:
    return quote(value, safe="")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list: ``continue_token`` asks for the next ("" on the last page);
    ``resource_version`` is the store's revision when it was read: ``watch`` from it to miss
    no change."""

    items: list[T]
    continue_token: str
    resource_version: int


def _page(response: httpx.Response, items: list[T]) -> Page[T]:
    version = response.headers.get(RESOURCE_VERSION_HEADER, "0")
    return Page(
        items,
        response.headers.get(CONTINUE_HEADER, ""),
        int(version) if version.isdigit() else 0,
    )


def _sse_data(lines: Iterable[str]) -> Iterator[str]:
    """Yield the ``data`` of each server-sent event in ``lines`` (comments and other
    fields skipped; several ``data`` lines of one event joined with newlines)."""
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value.removeprefix(" "))
    if data:
        yield "\n".join(data)


def _verify(ca_file: str) -> ssl.SSLContext | bool:
    """What httpx checks an https server's certificate against: the system's CAs, and
    ``ca_file`` (the server's own certificate when it made a self-signed one) when given."""
    if not ca_file:
        return True
    context = ssl.create_default_context()
    try:
        context.load_verify_locations(cafile=ca_file)
    except OSError as exc:
        raise ClientError(
            f"cannot read the CA certificate {ca_file} ({exc.strerror or exc}); point "
            "PHALANX_CA_FILE (or server.json's ca_file) at the server's certificate"
        ) from exc
    return context


class Client:
    """A connection to a phalanx server.

    Finds the server like this: ``server``/``token`` when given, else ``$PHALANX_SERVER`` /
    ``$PHALANX_TOKEN``, else what ``phalanx up`` wrote to ``<data_dir>/server.json`` and
    ``<data_dir>/token``. Methods raise ApiError when the server refuses a request and
    ServerUnavailableError when nothing answers. Use as a context manager or call ``close()``.
    """

    def __init__(
        self,
        server: str | None = None,
        token: str | None = None,
        data_dir: Path | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout_s: float = 10,
    ) -> None:
        location = locate_server(server, token, data_dir)
        self._location = location
        self.url = location.url
        self.data_dir = location.data_dir
        self.timeout_s = timeout_s
        headers = {"User-Agent": f"phalanx-client/{__version__}", "Accept": "application/json"}
        if location.token:
            headers["Authorization"] = f"Bearer {location.token}"
        self._http = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=timeout_s,
            transport=transport,
            verify=_verify(location.ca_file),
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- transport ------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json: object = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        try:
            response = self._http.request(
                method, path, params=params, json=json, content=content, headers=headers
            )
        except httpx.TimeoutException as exc:
            raise ServerUnavailableError(
                self.url,
                f"the phalanx server at {self.url} did not answer within {self.timeout_s:g}s",
            ) from exc
        except httpx.TransportError as exc:
            raise ServerUnavailableError(self.url, _unreachable_message(self._location)) from exc
        if response.status_code == 401:
            raise _unauthorized(_api_error(response), self._location)
        if response.status_code >= 400:
            raise _api_error(response)
        return response

    def _get(self, path: str, params: Mapping[str, str | int] | None = None) -> object:
        return self._request("GET", API_PREFIX + path, params=params).json()

    # -- apply ----------------------------------------------------------------------------

    def apply(
        self, manifests: Manifests | str | os.PathLike[str], source: str = ""
    ) -> list[ApplyOutcome]:
        """Create or update jobs, queues and flavors, all or nothing.

        ``manifests``: a list of manifests (mappings), or the path of a YAML file (a ``str``
        is always a path). Returns what happened to each. Raises ApiError (``SpecInvalid``
        with one detail per field error, ``Conflict``, ``BadRequest`` for bad YAML).
        """
        if isinstance(manifests, str | os.PathLike):
            return self.apply_file(manifests)
        body: ApplyRequest = {"manifests": [dict(m) for m in manifests], "source": source}
        return cast(
            "list[ApplyOutcome]", self._request("POST", API_PREFIX + "/apply", json=body).json()
        )

    def apply_file(self, path: str | os.PathLike[str]) -> list[ApplyOutcome]:
        """Apply every document of a (multi-document) YAML file; see ``apply``.

        Raises OSError when the file cannot be read.
        """
        return self.apply_yaml(Path(path).read_bytes(), source=str(path))

    def apply_yaml(self, text: str | bytes, source: str = "") -> list[ApplyOutcome]:
        """Apply multi-document YAML text; the server parses it and reports bad YAML with
        ``source``, line and column."""
        data = text.encode() if isinstance(text, str) else text
        response = self._request(
            "POST",
            API_PREFIX + "/apply",
            params={"source": source} if source else None,
            content=data,
            headers={"Content-Type": "application/yaml"},
        )
        return cast("list[ApplyOutcome]", response.json())

    # -- jobs -----------------------------------------------------------------------------

    def job_page(
        self,
        queue: str | None = None,
        *,
        selector: str | None = None,
        limit: int = DEFAULT_CHUNK_SIZE,
        continue_token: str = "",
    ) -> Page[JobInfo]:
        """Return one page of at most ``limit`` jobs, oldest first, of ``queue`` and matching
        the label ``selector`` (``team=a,tier!=batch``) if given; ``continue_token`` is the
        previous page's. Raises ApiError ``BadRequest`` for a bad selector or token."""
        params: dict[str, str | int] = {"limit": limit}
        if queue:
            params["queue"] = queue
        if selector:
            params["labelSelector"] = selector
        if continue_token:
            params["continue"] = continue_token
        response = self._request("GET", API_PREFIX + "/jobs", params=params)
        items = cast("list[JobInfo]", response.json())
        return _page(response, [full_job_item(item) for item in items])

    def job_pages(
        self,
        queue: str | None = None,
        *,
        selector: str | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> Iterator[Page[JobInfo]]:
        """Yield every page of jobs (see ``job_page``), ``chunk_size`` jobs per request."""
        token = ""
        while True:
            page = self.job_page(queue, selector=selector, limit=chunk_size, continue_token=token)
            yield page
            if not page.continue_token:
                return
            token = page.continue_token

    def jobs(
        self,
        queue: str | None = None,
        *,
        selector: str | None = None,
        limit: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> list[JobInfo]:
        """Return every job (at most ``limit``), oldest first, of ``queue`` and matching the
        label ``selector`` if given, reading ``chunk_size`` per request."""
        out: list[JobInfo] = []
        size = chunk_size if limit is None else min(chunk_size, max(limit, 1))
        for page in self.job_pages(queue, selector=selector, chunk_size=size):
            out += page.items
            if limit is not None and len(out) >= limit:
                return out[:limit]
        return out

    def job(self, name: str) -> JobInfo:
        """Return one job with its pods and events; ApiError ``NotFound`` if unknown."""
        return cast("JobInfo", self._get(f"/jobs/{_name(name)}"))

    def cancel(self, name: str) -> JobInfo:
        """Stop a job's pods and mark it Cancelled; return the job."""
        response = self._request("POST", f"{API_PREFIX}/jobs/{_name(name)}/cancel")
        return cast("JobInfo", response.json())

    def delete_job(self, name: str) -> None:
        """Cancel a job and remove it."""
        self._request("DELETE", f"{API_PREFIX}/jobs/{_name(name)}")

    def logs(
        self, job: str, pod: str | None = None, attempt: int | None = None, offset: int = 0
    ) -> LogChunk:
        """Return a pod's output from byte ``offset``. ``pod`` is ``<podset>-<index>``
        (default: the job's first pod); ``attempt`` defaults to the latest."""
        params: dict[str, str | int] = {"offset": offset}
        if pod is not None:
            params["pod"] = pod
        if attempt is not None:
            params["attempt"] = attempt
        return cast("LogChunk", self._get(f"/jobs/{_name(job)}/logs", params))

    def follow_logs(
        self,
        job: str,
        pod: str | None = None,
        attempt: int | None = None,
        offset: int = 0,
        poll_s: float = 0.5,
    ) -> Iterator[str]:
        """Yield a pod's output as it is written until the pod has finished.

        Waits while the job has no pod yet. Raises ApiError ``NotFound`` for an unknown job.
        """
        while True:
            try:
                chunk = self.logs(job, pod, attempt, offset)
            except ApiError as exc:
                if exc.status != 404:
                    raise
                # The job may exist without a pod yet: wait for one, unless it has finished.
                if self.job(job)["is_finished"]:
                    return
                time.sleep(poll_s)
                continue
            if chunk["data"]:
                yield chunk["data"]
            offset = chunk["next_offset"]
            if chunk["finished"]:
                return
            if not chunk["data"]:
                time.sleep(poll_s)

    def wait_for(
        self,
        job: str,
        phases: str | Iterable[str] = FINISHED_PHASES,
        timeout_s: float = 60,
        poll_s: float = 0.2,
    ) -> JobInfo:
        """Return the job once its phase is one of ``phases``.

        Raises JobFinishedError if it finishes in another phase, TimeoutError after
        ``timeout_s``, ApiError ``NotFound`` for an unknown job.
        """
        wanted = (phases,) if isinstance(phases, str) else tuple(phases)
        deadline = time.monotonic() + timeout_s
        while True:
            info = self.job(job)
            if info["phase"] in wanted:
                return info
            if info["is_finished"]:
                raise JobFinishedError(job, info["phase"], info["message"], wanted)
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f'job "{job}" is still {info["phase"]} after {timeout_s:g}s, '
                    f"not {' or '.join(wanted)}"
                    + (f": {info['message']}" if info["message"] else "")
                )
            time.sleep(poll_s)

    # -- queues, flavors, nodes -----------------------------------------------------------

    def queue_page(self, selector: str | None = None) -> Page[QueueInfo]:
        """Return every queue (matching the label ``selector`` if given) with the store's
        revision it was read at."""
        params = {"labelSelector": selector} if selector else None
        response = self._request("GET", API_PREFIX + "/queues", params=params)
        return _page(response, cast("list[QueueInfo]", response.json()))

    def queues(self, selector: str | None = None) -> list[QueueInfo]:
        """Return every queue (matching the label ``selector`` if given) with its quota use."""
        return self.queue_page(selector).items

    def queue(self, name: str) -> QueueInfo:
        """Return one queue; ApiError ``NotFound`` if unknown."""
        return cast("QueueInfo", self._get(f"/queues/{_name(name)}"))

    def delete_queue(self, name: str) -> None:
        """Delete a queue; ApiError ``Conflict`` while unfinished jobs use it."""
        self._request("DELETE", f"{API_PREFIX}/queues/{_name(name)}")

    def flavor_page(self, selector: str | None = None) -> Page[FlavorInfo]:
        """Return every resource flavor (matching the label ``selector`` if given) with the
        store's revision it was read at."""
        params = {"labelSelector": selector} if selector else None
        response = self._request("GET", API_PREFIX + "/flavors", params=params)
        return _page(response, cast("list[FlavorInfo]", response.json()))

    def flavors(self, selector: str | None = None) -> list[FlavorInfo]:
        """Return every resource flavor (matching the label ``selector`` if given)."""
        return self.flavor_page(selector).items

    def flavor(self, name: str) -> FlavorInfo:
        """Return one resource flavor; ApiError ``NotFound`` if unknown."""
        return cast("FlavorInfo", self._get(f"/flavors/{_name(name)}"))

    def delete_flavor(self, name: str) -> None:
        """Delete a resource flavor."""
        self._request("DELETE", f"{API_PREFIX}/flavors/{_name(name)}")

    def secrets(self) -> list[SecretInfo]:
        """Return every Secret: its keys and their sizes, never a value."""
        return cast("list[SecretInfo]", self._get("/secrets"))

    def secret(self, name: str) -> SecretInfo:
        """Return one Secret's keys and sizes (never a value); ApiError ``NotFound`` if
        unknown."""
        return cast("SecretInfo", self._get(f"/secrets/{_name(name)}"))

    def nodes(self) -> list[NodeInfo]:
        """Return every node with what is in use on it."""
        return cast("list[NodeInfo]", self._get("/nodes"))

    def node(self, name: str) -> NodeInfo:
        """Return one node; ApiError ``NotFound`` if unknown."""
        return cast("NodeInfo", self._get(f"/nodes/{_name(name)}"))

    def release_node(self, name: str) -> NodeInfo:
        """Release a node from quarantine (its evidence is forgotten); return the node."""
        response = self._request("POST", f"{API_PREFIX}/nodes/{_name(name)}/release")
        return cast("NodeInfo", response.json())

    # -- operations ------------------------------------------------------------------------

    def doctor(self, kind: str = "", name: str = "") -> DoctorReport:
        """Return the doctor's findings: for everything, or for one ``kind`` (``job``,
        ``node``, ``queue``) named ``name``. Raises ApiError ``NotFound`` for an unknown
        object, ``BadRequest`` for a kind the doctor does not look at."""
        if kind:
            return cast("DoctorReport", self._get(f"/doctor/{_name(kind)}/{_name(name)}"))
        return cast("DoctorReport", self._get("/doctor"))

    def estimates(
        self, queue_gpus: Mapping[str, float] | None = None, drain: Sequence[str] = ()
    ) -> list[EstimateInfo]:
        """Return when each pending job should start (soonest first) and what it waits on;
        what if ``queue_gpus`` set queues' nominal GPUs and the ``drain`` nodes took no new
        pods. Raises ApiError ``BadRequest`` naming an unknown queue or node."""
        params = [("queue_gpus", f"{q}={g:g}") for q, g in (queue_gpus or {}).items()]
        params += [("drain", node) for node in drain]
        query = f"?{urlencode(params)}" if params else ""
        return cast("list[EstimateInfo]", self._get(f"/estimates{query}"))

    # -- any kind -------------------------------------------------------------------------

    def kinds(self) -> list[KindInfo]:
        """Return the kinds the server knows, with every name each answers to."""
        return cast("list[KindInfo]", self._get("/kinds"))

    def delete(self, kind: str, name: str) -> None:
        """Delete an object of any applied kind (``kind``: any of its names, e.g. ``job``,
        ``queues``, ``rf``); what it owns is deleted after it. Raises ApiError ``NotFound``
        (an unknown kind's message lists the known ones) or ``Conflict``."""
        self._request("DELETE", f"{API_PREFIX}/{_name(kind)}/{_name(name)}")

    def watch(
        self,
        resource_version: int | None = None,
        kinds: Sequence[str] = (),
        timeout_s: float | None = None,
    ) -> Iterator[WatchEvent]:
        """Yield the changes to ``kinds`` (default: jobs, queues and flavors) after
        ``resource_version`` (default: from now) as they happen: ADDED, MODIFIED (with
        ``object``, the object as lists show it) and DELETED events, in revision order.

        Ends when the server ends the stream (after ``timeout_s`` if given, else its own
        limit, or when it shuts down): watch again from the last event's
        ``resourceVersion`` to go on. Raises ApiError 410 ``Expired`` when the revision is
        no longer in the server's log (list again, and watch from the list's
        ``resource_version``), ServerUnavailableError when the connection fails.
        """
        params: dict[str, str | int | float] = {}
        if resource_version is not None:
            params["resourceVersion"] = resource_version
        if kinds:
            params["kinds"] = ",".join(kinds)
        if timeout_s is not None:
            params["timeoutSeconds"] = timeout_s
        timeout = httpx.Timeout(self.timeout_s, read=WATCH_READ_TIMEOUT_S)
        try:
            with self._http.stream(
                "GET", API_PREFIX + "/watch", params=params, timeout=timeout
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    error = _api_error(response)
                    raise (
                        _unauthorized(error, self._location)
                        if response.status_code == 401
                        else error
                    )
                for data in _sse_data(response.iter_lines()):
                    event = cast("WatchEvent", json.loads(data))
                    if event["type"] == "ERROR":
                        body = event.get("error")
                        raise ApiError(
                            410,
                            str(body["code"]) if body else "Expired",
                            str(body["message"]) if body else "the watch expired; list again",
                        )
                    yield event
        except httpx.TimeoutException as exc:
            raise ServerUnavailableError(
                self.url,
                f"the phalanx server at {self.url} sent nothing on a watch for "
                f"{WATCH_READ_TIMEOUT_S:g}s",
            ) from exc
        except httpx.TransportError as exc:
            raise ServerUnavailableError(self.url, _unreachable_message(self._location)) from exc

    # -- server ---------------------------------------------------------------------------

    def health(self) -> dict[str, object]:
        """Return ``/healthz`` (needs no token): ``status``, ``version``, ``pid`` and what the
        control plane reports."""
        return cast("dict[str, object]", self._request("GET", "/healthz").json())

    def version(self) -> VersionInfo:
        """Return the server's version and the manifest apiVersion it accepts."""
        return cast("VersionInfo", self._get("/version"))

    # -- identity (admins; the audit log operators too) -----------------------------------

    def whoami(self) -> WhoAmIInfo:
        """The caller as the server sees it: user, role, groups, token id."""
        return cast("WhoAmIInfo", self._get("/whoami"))

    def users(self) -> list[UserInfo]:
        return cast("list[UserInfo]", self._get("/users"))

    def create_user(self, name: str, role: str, groups: Sequence[str] = ()) -> UserInfo:
        """Create a user (role admin, operator, user or viewer). Raises ApiError."""
        body: UserCreate = {"name": name, "role": role, "groups": list(groups)}
        return cast("UserInfo", self._request("POST", API_PREFIX + "/users", json=body).json())

    def delete_user(self, name: str) -> None:
        """Delete a user and every token of theirs."""
        self._request("DELETE", f"{API_PREFIX}/users/{_name(name)}")

    def tokens(self, user: str | None = None) -> list[TokenInfo]:
        """Tokens (never their secrets), of ``user`` or everyone."""
        return cast("list[TokenInfo]", self._get("/tokens", {"user": user} if user else None))

    def create_token(self, user: str, name: str, expires_in_s: float | None = None) -> TokenCreated:
        """A new token of ``user``; the token itself is in this answer only."""
        body: TokenCreate = {"user": user, "name": name, "expires_in_s": expires_in_s}
        return cast("TokenCreated", self._request("POST", API_PREFIX + "/tokens", json=body).json())

    def revoke_token(self, token_id: str) -> TokenInfo:
        """Revoke a token at once."""
        path = f"{API_PREFIX}/tokens/{_name(token_id)}/revoke"
        return cast("TokenInfo", self._request("POST", path).json())

    def audit(
        self,
        *,
        user: str | None = None,
        kind: str | None = None,
        name: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 1000,
    ) -> list[AuditInfo]:
        """Mutating calls matching every filter given, oldest first (the newest ``limit``)."""
        params: dict[str, str | int] = {"limit": limit}
        for key, value in (("user", user), ("kind", kind), ("name", name)):
            if value:
                params[key] = value
        for key, when in (("since", since), ("until", until)):
            if when is not None:
                params[key] = repr(when)
        return cast("list[AuditInfo]", self._get("/audit", params))


def _api_error(response: httpx.Response) -> ApiError:
    """Return the ApiError an error response describes (any body shape tolerated)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        details = error.get("details")
        return ApiError(
            response.status_code,
            str(error.get("code", "")) or f"HTTP{response.status_code}",
            str(error.get("message", "")) or response.reason_phrase,
            cast("list[ErrorDetailInfo]", details) if isinstance(details, list) else (),
            str(error.get("source", "") or ""),
        )
    text = response.text.strip()[:200]
    return ApiError(
        response.status_code,
        f"HTTP{response.status_code}",
        f"{response.status_code} {response.reason_phrase}" + (f": {text}" if text else ""),
    )


def _other_data_dir_fix(location: ServerLocation) -> str | None:
    """Return how to reach the servers running with another data dir, or None if none runs.

    A server listening at the very URL tried is named alone: it is the one the user meant.
    """
    others = running_servers(excluding=location.data_dir)
    at_url = [s for s in others if s.url.rstrip("/") == location.url]
    others = at_url or others
    if not others:
        return None
    if len(others) == 1:
        data_dir = shlex.quote(str(others[0].data_dir))
        return (
            f"a server is running with --data-dir {data_dir}: pass --data-dir {data_dir} "
            f"or set PHALANX_DATA_DIR={data_dir}"
        )
    listed = ", ".join(f"--data-dir {shlex.quote(str(s.data_dir))}" for s in others)
    return (
        f"servers are running with {listed}: pass one of them with --data-dir "
        "or set PHALANX_DATA_DIR"
    )


def _unreachable_message(location: ServerLocation) -> str | None:
    """Return why nothing answers when no server was named (the data dir has no server.json
    and the default URL is silent), or None for the plain message."""
    if location.url_source != "default":
        return None
    fix = _other_data_dir_fix(location) or (
        "start one with `phalanx up`, or pass the data dir of a running server with "
        "--data-dir or PHALANX_DATA_DIR"
    )
    return (
        f"no phalanx server for data dir {location.data_dir} (no server.json there, and "
        f"nothing answers at {location.url}); {fix}"
    )


def _unauthorized(error: ApiError, location: ServerLocation) -> ApiError:
    """Return ``error`` (a 401) saying which token was sent, from where, and how to send the
    right one: the server's data dir, or its token."""
    refused = {
        "none": "wants a bearer token and none was found (no --token or PHALANX_TOKEN, and "
        f"no token file in data dir {location.data_dir})",
        "token file": f"refused the token of data dir {location.data_dir}",
        "argument": "refused the token given with --token or PHALANX_TOKEN",
        "environment": "refused the token given with --token or PHALANX_TOKEN",
    }[location.token_source]
    if location.url_source == "default" and location.token_source == "none":
        cause = (
            f"no phalanx server for data dir {location.data_dir} (no server.json or token "
            f"there), and the one at {location.url} wants a token"
        )
    elif location.url_source == "default":
        cause = (
            f"no phalanx server for data dir {location.data_dir} (no server.json there), and "
            f"the one at {location.url} {refused}"
        )
    else:
        cause = f"the phalanx server at {location.url} {refused}"
    fix = _other_data_dir_fix(location)
    if fix:
        fix += " (or give its token with --token or PHALANX_TOKEN)"
    elif location.token_source in ("argument", "environment"):
        fix = (
            "give its token (the file `token` in its data dir) with --token or PHALANX_TOKEN, "
            "or leave both unset and pass its data dir with --data-dir or PHALANX_DATA_DIR"
        )
    else:
        fix = (
            "pass that server's data dir with --data-dir or PHALANX_DATA_DIR, or its token "
            "with --token or PHALANX_TOKEN"
        )
    return ApiError(error.status, error.code, f"{cause}; {fix}", error.details, error.source)


__all__ = ["FINISHED_PHASES", "Client", "Page"]
