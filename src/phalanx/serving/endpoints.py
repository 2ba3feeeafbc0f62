"""What the router is told about services, and what it tells back. Pure data; no I/O.

The Service controller turns stored Services and their replicas into ``Route`` values and
hands them to a router (in process: ``RouteSource``; a standalone ``phalanx router``: the
same values as JSON from the API). The router reports load per service (``LoadSample``) for
the autoscaler, and ``demand`` when a request waits for a service that has no ready replica
(the scale-from-zero trigger).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One replica the router may send requests to: ``url`` is ``http://host:port``."""

    url: str
    revision: str
    replica: str
    ready: bool = True


@dataclass(frozen=True, slots=True)
class Route:
    """How requests reach one service.

    A request matches when its path starts with ``path_prefix`` (the prefix is removed before
    forwarding when ``strip_prefix``) or its Host header is one of ``hosts``. ``traffic`` maps
    revisions to percentages that sum to 100 (empty: every ready endpoint, whatever its
    revision). ``max_concurrency`` is the most requests one replica serves at once (0: no
    limit); beyond it requests wait, at most ``queue_limit`` of them, then get 429 with
    Retry-After. A request for a service with no ready endpoint waits up to
    ``cold_start_timeout_s`` for one.
    """

    service: str
    path_prefix: str
    hosts: tuple[str, ...] = ()
    endpoints: tuple[Endpoint, ...] = ()
    traffic: tuple[tuple[str, float], ...] = ()
    max_concurrency: int = 0
    queue_limit: int = 100
    cold_start_timeout_s: float = 60.0
    strip_prefix: bool = True
    #: Free-form settings for later layers (the LLM gateway's models and routing policy).
    extra: Mapping[str, Any] = field(default_factory=dict)

    def ready_endpoints(self) -> tuple[Endpoint, ...]:
        return tuple(e for e in self.endpoints if e.ready)


@dataclass(frozen=True, slots=True)
class LoadSample:
    """The router's view of one service at ``at`` (seconds, the router's clock):
    ``in_flight`` requests being served, ``waiting`` requests held (no ready replica, or
    every replica at its concurrency limit), ``requests_total`` a monotonic count of
    requests received, ``rejected_total`` of those answered 429/503 by the router.
    ``in_flight_avg`` is the time-weighted mean of ``in_flight`` since the router's previous
    sample (None from a router that does not measure it): the concurrency the autoscaler
    wants, which an instant count misses for short requests. ``source`` names the router
    that measured it ("" for the router beside the server), so that the samples of several
    routers are summed rather than interleaved (``phalanx.serving.load``)."""

    service: str
    at: float
    in_flight: int
    waiting: int
    requests_total: int
    rejected_total: int = 0
    in_flight_avg: float | None = None
    #: From the LLM gateway, what the replicas' engines report (None: not known): requests
    #: waiting in them, summed, and their KV-cache usage (a fraction), averaged.
    engine_waiting: float | None = None
    kv_cache_usage: float | None = None
    source: str = ""
    #: What the replicas answered through this router: (replica, status class ``2xx`` …
    #: ``5xx``, monotonic count), sorted. The router's own 429/503/502 are not in it.
    responses: tuple[tuple[str, str, int], ...] = ()


class RouteSource(Protocol):
    """Where a router reads its routes (called often; must be cheap)."""

    def routes(self) -> Sequence[Route]: ...


class LoadSink(Protocol):
    """Where a router reports load and demand."""

    def report(self, samples: Sequence[LoadSample]) -> None: ...

    def demand(self, service: str) -> None:
        """A request waits for ``service``, which has no ready replica."""
        ...


def route_to_json(route: Route) -> dict[str, Any]:
    """The JSON form of ``route`` (the API's ``/api/v1/routes`` answer)."""
    return {
        "service": route.service,
        "pathPrefix": route.path_prefix,
        "hosts": list(route.hosts),
        "endpoints": [
            {"url": e.url, "revision": e.revision, "replica": e.replica, "ready": e.ready}
            for e in route.endpoints
        ],
        "traffic": [{"revision": r, "percent": p} for r, p in route.traffic],
        "maxConcurrency": route.max_concurrency,
        "queueLimit": route.queue_limit,
        "coldStartTimeoutSeconds": route.cold_start_timeout_s,
        "stripPrefix": route.strip_prefix,
        "extra": dict(route.extra),
    }


def route_from_json(data: Mapping[str, Any]) -> Route:
    """Inverse of ``route_to_json``; raises KeyError/TypeError/ValueError on a malformed one."""
    return Route(
        service=str(data["service"]),
        path_prefix=str(data["pathPrefix"]),
        hosts=tuple(str(h) for h in data.get("hosts", ())),
        endpoints=tuple(
            Endpoint(
                url=str(e["url"]),
                revision=str(e["revision"]),
                replica=str(e["replica"]),
                ready=bool(e.get("ready", True)),
            )
            for e in data.get("endpoints", ())
        ),
        traffic=tuple((str(t["revision"]), float(t["percent"])) for t in data.get("traffic", ())),
        max_concurrency=int(data.get("maxConcurrency", 0)),
        queue_limit=int(data.get("queueLimit", 100)),
        cold_start_timeout_s=float(data.get("coldStartTimeoutSeconds", 60.0)),
        strip_prefix=bool(data.get("stripPrefix", True)),
        extra=dict(data.get("extra", {})),
    )


def load_to_json(sample: LoadSample) -> dict[str, Any]:
    return {
        "service": sample.service,
        "at": sample.at,
        "inFlight": sample.in_flight,
        "waiting": sample.waiting,
        "requestsTotal": sample.requests_total,
        "rejectedTotal": sample.rejected_total,
        "inFlightAvg": sample.in_flight_avg,
        "engineWaiting": sample.engine_waiting,
        "kvCacheUsage": sample.kv_cache_usage,
        "source": sample.source,
        "responses": [list(r) for r in sample.responses],
    }


def load_from_json(data: Mapping[str, Any]) -> LoadSample:
    return LoadSample(
        service=str(data["service"]),
        at=float(data["at"]),
        in_flight=int(data["inFlight"]),
        waiting=int(data["waiting"]),
        requests_total=int(data["requestsTotal"]),
        rejected_total=int(data.get("rejectedTotal", 0)),
        in_flight_avg=(None if data.get("inFlightAvg") is None else float(data["inFlightAvg"])),
        engine_waiting=(
            None if data.get("engineWaiting") is None else float(data["engineWaiting"])
        ),
        kv_cache_usage=(None if data.get("kvCacheUsage") is None else float(data["kvCacheUsage"])),
        source=str(data.get("source", "")),
        responses=_responses(data.get("responses", ())),
    )


#: The most (replica, status class) counts one load sample may carry.
MAX_RESPONSE_COUNTS = 4096
_CODE_CLASSES = frozenset({"1xx", "2xx", "3xx", "4xx", "5xx"})


def _responses(items: Any) -> tuple[tuple[str, str, int], ...]:
    """``responses`` of a load sample's JSON: [[replica, "2xx"…"5xx", count], …]. Raises
    ValueError or TypeError naming what is wrong."""
    if len(items) > MAX_RESPONSE_COUNTS:
        raise ValueError(f"responses: at most {MAX_RESPONSE_COUNTS} counts, got {len(items)}")
    out = []
    for replica, code_class, n in items:
        if code_class not in _CODE_CLASSES:
            raise ValueError(f"responses: status class {code_class!r} is not one of 1xx … 5xx")
        out.append((str(replica), str(code_class), int(n)))
    return tuple(out)
