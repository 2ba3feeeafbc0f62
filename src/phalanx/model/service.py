"""Kind Service, as data: a replica template, replica bounds, autoscaling target, rollout and
traffic settings; parse (every problem with its field path and a fix) and write back.

A replica is one gang of ``template.pods`` pods (usually one; more for tensor parallelism),
run as a Job the Service owns. ``revision_of(template)`` names a template by its content: a
changed template is a new revision. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from phalanx.model.llm import LLMSpec, llm_to_manifest, parse_llm
from phalanx.model.objects import SecretKeyRef
from phalanx.model.resources import Resources
from phalanx.model.specs import (
    API_VERSION,
    SpecError,
    _Collector,
    _env_and_refs,
    _header,
    _labels,
    _pod_resources,
    _secret_ref_manifest,
    format_duration,
    parse_duration_s,
)

#: The traffic target that means "whatever revision the template is now".
LATEST = "latest"
#: Labels every replica Job carries.
SERVICE_LABEL = "phalanx.dev/service"
REVISION_LABEL = "phalanx.dev/revision"
#: Annotation on a replica Job: the port its first pod listens on.
PORT_ANNOTATION = "phalanx.dev/port"

_REVISION = re.compile(r"^[0-9a-f]{10}$")
_PATH = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$")
_HOST = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?(:\d{1,5})?$")
MAX_PODS_PER_REPLICA = 64
MAX_REPLICAS = 1000


class ScaleMetric(StrEnum):
    """What the autoscaler holds at its target per replica."""

    CONCURRENCY = "concurrency"  # requests in flight
    RPS = "rps"  # requests per second


@dataclass(frozen=True, slots=True)
class ReplicaTemplate:
    """What each pod of a replica runs, and what it needs."""

    command: tuple[str, ...]
    resources: Resources = field(default_factory=Resources)
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    #: Variables read from Secrets when each replica's pods launch (``valueFrom.secretKeyRef``),
    #: resolved as for a Job's pods: the value is never in the template, the Job or describe.
    secret_env: Mapping[str, SecretKeyRef] = field(default_factory=dict)
    working_dir: str = ""
    image: str = ""
    #: Pods per replica, admitted together as one gang.
    pods: int = 1


@dataclass(frozen=True, slots=True)
class ReadinessProbe:
    """A replica is ready once ``GET path`` answers 2xx within ``timeout_s``."""

    path: str = "/"
    period_s: float = 1.0
    timeout_s: float = 1.0


@dataclass(frozen=True, slots=True)
class Autoscaling:
    """Knative-like: hold ``metric`` at ``target`` per replica over ``stable_window_s``; react
    within ``panic_window_s`` when load passes ``panic_threshold`` × target."""

    metric: ScaleMetric = ScaleMetric.CONCURRENCY
    target: float = 10.0
    stable_window_s: float = 60.0
    panic_window_s: float = 6.0
    panic_threshold: float = 2.0


@dataclass(frozen=True, slots=True)
class Rollout:
    """A template change replaces replicas with at most ``max_surge`` extra and
    ``max_unavailable`` missing at a time."""

    max_surge: int = 1
    max_unavailable: int = 0


@dataclass(frozen=True, slots=True)
class TrafficTarget:
    """``percent`` of requests go to ``revision`` (a revision name, or ``latest``)."""

    revision: str
    percent: int


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """A stored Service, parsed."""

    name: str
    queue: str
    template: ReplicaTemplate
    priority: int = 0
    port: int = 8080
    readiness: ReadinessProbe = field(default_factory=ReadinessProbe)
    min_replicas: int = 1
    max_replicas: int = 1
    autoscaling: Autoscaling = field(default_factory=Autoscaling)
    scale_to_zero_after_s: float = 300.0
    #: Ready replicas a rollout never goes below; None: desired − max(1, maxUnavailable).
    min_available: int | None = None
    rollout: Rollout = field(default_factory=Rollout)
    traffic: tuple[TrafficTarget, ...] = ()
    max_concurrency: int = 0
    queue_limit: int = 100
    cold_start_timeout_s: float = 60.0
    path_prefix: str = ""
    hosts: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    #: ``spec.llm``: an OpenAI-compatible model server behind the LLM gateway (None: not one).
    llm: LLMSpec | None = None

    @property
    def revision(self) -> str:
        """The revision the template is now."""
        return revision_of(self.template, self.port)

    @property
    def route_prefix(self) -> str:
        """The path prefix the router matches: ``pathPrefix``, by default ``/<name>``."""
        return self.path_prefix or f"/{self.name}"


def template_manifest(template: ReplicaTemplate) -> dict[str, object]:
    """The manifest form of ``template`` (what ``spec.template`` holds once normalised)."""
    out: dict[str, object] = {"command": list(template.command)}
    if template.args:
        out["args"] = list(template.args)
    if template.secret_env:  # the list form: a mapping cannot say valueFrom
        out["env"] = template_env(template)
    elif template.env:
        out["env"] = dict(template.env)
    if template.working_dir:
        out["workingDir"] = template.working_dir
    if template.image:
        out["image"] = template.image
    out["resources"] = template.resources.to_quantities()
    out["pods"] = template.pods
    return out


def template_env(template: ReplicaTemplate) -> list[dict[str, object]]:
    """``template``'s environment in the list form: plain variables, then those read from
    Secrets (``{name, valueFrom: {secretKeyRef: {name, key[, optional]}}}``)."""
    plain: list[dict[str, object]] = [{"name": k, "value": v} for k, v in template.env.items()]
    return plain + [
        {"name": k, "valueFrom": {"secretKeyRef": _secret_ref_manifest(ref)}}
        for k, ref in template.secret_env.items()
    ]


def revision_of(template: ReplicaTemplate, port: int) -> str:
    """The revision name of ``template`` serving on ``port``: 10 hex digits of a hash of
    their normalised manifest, so the same template is always the same revision."""
    text = json.dumps({"template": template_manifest(template), "port": port}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


_SERVICE_FIELDS = (
    "queue",
    "priority",
    "template",
    "port",
    "readinessProbe",
    "minReplicas",
    "maxReplicas",
    "autoscaling",
    "scaleToZeroAfter",
    "minAvailable",
    "rollout",
    "traffic",
    "maxConcurrency",
    "queueLimit",
    "coldStartTimeout",
    "route",
    "llm",
)
_TEMPLATE_FIELDS = ("command", "args", "env", "workingDir", "image", "resources", "pods")


def parse_service(manifest: Mapping[str, object], source: str = "") -> ServiceSpec:
    """Return the ServiceSpec in ``manifest``; raise SpecError listing every problem."""
    c = _Collector()
    name, metadata = _header(c, manifest, "Service")
    labels = _labels(c, "metadata.labels", metadata.get("labels"))
    annotations = _labels(c, "metadata.annotations", metadata.get("annotations"))
    spec = c.mapping("spec", manifest.get("spec"), required=True)
    c.unknown("spec", spec, _SERVICE_FIELDS)
    queue = spec.get("queue")
    if not isinstance(queue, str) or not queue:
        c.add("spec.queue", queue, "is required: the name of the queue replicas are admitted by")
        queue = ""
    priority = c.integer("spec.priority", spec.get("priority", 0)) or 0
    template = _template(c, spec.get("template"))
    port = c.integer("spec.port", spec.get("port", 8080), minimum=1, maximum=65535) or 8080
    readiness = _readiness(c, spec.get("readinessProbe"))
    min_replicas = c.integer(
        "spec.minReplicas", spec.get("minReplicas", 1), minimum=0, maximum=MAX_REPLICAS
    )
    min_replicas = 1 if min_replicas is None else min_replicas
    max_replicas = c.integer(
        "spec.maxReplicas",
        spec.get("maxReplicas", max(1, min_replicas)),
        minimum=1,
        maximum=MAX_REPLICAS,
    )
    max_replicas = max(1, min_replicas) if max_replicas is None else max_replicas
    if max_replicas < min_replicas:
        c.add(
            "spec.maxReplicas",
            max_replicas,
            f"must be at least spec.minReplicas ({min_replicas}); raise it or lower minReplicas",
        )
    autoscaling = _autoscaling(c, spec.get("autoscaling"))
    scale_to_zero = c.check(
        "spec.scaleToZeroAfter", spec.get("scaleToZeroAfter", 300.0), parse_duration_s
    )
    min_available = None
    if spec.get("minAvailable") is not None:
        min_available = c.integer(
            "spec.minAvailable", spec["minAvailable"], minimum=0, maximum=MAX_REPLICAS
        )
        if min_available is not None and min_available > max_replicas:
            c.add(
                "spec.minAvailable",
                min_available,
                f"must be at most spec.maxReplicas ({max_replicas})",
            )
    rollout = _rollout(c, spec.get("rollout"))
    traffic = _traffic(c, spec.get("traffic"))
    max_concurrency = c.integer(
        "spec.maxConcurrency", spec.get("maxConcurrency", 0), minimum=0, maximum=1_000_000
    )
    queue_limit = c.integer(
        "spec.queueLimit", spec.get("queueLimit", 100), minimum=0, maximum=1_000_000
    )
    cold_start = c.check(
        "spec.coldStartTimeout", spec.get("coldStartTimeout", 60.0), parse_duration_s
    )
    path_prefix, hosts = _route(c, spec.get("route"))
    llm = parse_llm(c, spec.get("llm"))
    if c.errors:
        raise SpecError(c.errors, source)
    assert template is not None
    return ServiceSpec(
        name=name,
        queue=queue,
        template=template,
        priority=priority,
        port=port,
        readiness=readiness,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        autoscaling=autoscaling,
        scale_to_zero_after_s=300.0 if scale_to_zero is None else scale_to_zero,
        min_available=min_available,
        rollout=rollout,
        traffic=traffic,
        max_concurrency=max_concurrency or 0,
        queue_limit=100 if queue_limit is None else queue_limit,
        cold_start_timeout_s=60.0 if cold_start is None else cold_start,
        path_prefix=path_prefix,
        hosts=hosts,
        labels=labels,
        annotations=annotations,
        llm=llm,
    )


def _template(c: _Collector, value: object) -> ReplicaTemplate | None:
    data = c.mapping("spec.template", value, required=True)
    if not data:
        if value is not None and isinstance(value, Mapping):
            c.add("spec.template", value, "must give at least command: the program to run")
        return None
    c.unknown("spec.template", data, _TEMPLATE_FIELDS)
    command = c.strings("spec.template.command", data.get("command"))
    if not command:
        c.add(
            "spec.template.command",
            data.get("command"),
            "is required: the server to run, listening on $PORT",
        )
    args = c.strings("spec.template.args", data.get("args"))
    env, secret_env = _env_and_refs(c, "spec.template.env", data.get("env"))
    for reserved in ("PORT", "PHALANX_PORT"):
        if reserved in env or reserved in secret_env:
            c.add(
                f"spec.template.env.{reserved}",
                env.get(reserved, "valueFrom"),
                "is set by phalanx (the port the replica must listen on); remove it",
            )
    texts: dict[str, str] = {}
    for key, hint in (("workingDir", "a path"), ("image", "an image such as python:3.12")):
        raw = data.get(key, "")
        if not isinstance(raw, str):
            c.add(f"spec.template.{key}", raw, f"must be {hint}")
            raw = ""
        texts[key] = c.text(f"spec.template.{key}", raw) or ""
    resources = _pod_resources(c, "spec.template.resources", data.get("resources"))
    pods = c.integer(
        "spec.template.pods", data.get("pods", 1), minimum=1, maximum=MAX_PODS_PER_REPLICA
    )
    return ReplicaTemplate(
        command=command,
        resources=resources,
        args=args,
        env=env,
        secret_env=secret_env,
        working_dir=texts["workingDir"],
        image=texts["image"],
        pods=pods or 1,
    )


def _readiness(c: _Collector, value: object) -> ReadinessProbe:
    data = c.mapping("spec.readinessProbe", value)
    c.unknown("spec.readinessProbe", data, ("path", "period", "timeout"))
    path = data.get("path", "/")
    if not isinstance(path, str) or not _PATH.match(path) or len(path) > 1024:
        c.add("spec.readinessProbe.path", path, "must be an HTTP path starting with /, e.g. /ready")
        path = "/"
    period = c.check("spec.readinessProbe.period", data.get("period", 1.0), parse_duration_s)
    timeout = c.check("spec.readinessProbe.timeout", data.get("timeout", 1.0), parse_duration_s)
    for key, seconds in (("period", period), ("timeout", timeout)):
        if seconds is not None and not 0.01 <= seconds <= 3600:
            c.add(f"spec.readinessProbe.{key}", data.get(key), "must be between 10ms and 1h")
    return ReadinessProbe(str(path), period or 1.0, timeout or 1.0)


def _autoscaling(c: _Collector, value: object) -> Autoscaling:
    data = c.mapping("spec.autoscaling", value)
    path = "spec.autoscaling"
    c.unknown(path, data, ("metric", "target", "stableWindow", "panicWindow", "panicThreshold"))
    metric = data.get("metric", ScaleMetric.CONCURRENCY.value)
    if metric not in {m.value for m in ScaleMetric}:
        c.add(f"{path}.metric", metric, "must be concurrency (requests in flight) or rps")
        metric = ScaleMetric.CONCURRENCY.value
    numbers: dict[str, float] = {}
    for key, default, low in (("target", 10.0, 0.01), ("panicThreshold", 2.0, 1.0)):
        raw = data.get(key, default)
        if (
            isinstance(raw, bool)
            or not isinstance(raw, int | float)
            or not low <= float(raw) <= 1e6
        ):
            c.add(f"{path}.{key}", raw, f"must be a number between {low:g} and 1000000")
            raw = default
        numbers[key] = float(raw)
    stable = c.check(f"{path}.stableWindow", data.get("stableWindow", 60.0), parse_duration_s)
    panic = c.check(f"{path}.panicWindow", data.get("panicWindow", 6.0), parse_duration_s)
    if stable is not None and stable < 1:
        c.add(f"{path}.stableWindow", data.get("stableWindow"), "must be at least 1s")
    if panic is not None and stable is not None and not 0 < panic <= stable:
        c.add(
            f"{path}.panicWindow",
            data.get("panicWindow"),
            f"must be above 0 and at most stableWindow ({format_duration(stable)})",
        )
    return Autoscaling(
        ScaleMetric(metric),
        numbers["target"],
        60.0 if stable is None else stable,
        6.0 if panic is None else panic,
        numbers["panicThreshold"],
    )


def _rollout(c: _Collector, value: object) -> Rollout:
    data = c.mapping("spec.rollout", value)
    c.unknown("spec.rollout", data, ("maxSurge", "maxUnavailable"))
    surge = c.integer(
        "spec.rollout.maxSurge", data.get("maxSurge", 1), minimum=0, maximum=MAX_REPLICAS
    )
    unavailable = c.integer(
        "spec.rollout.maxUnavailable",
        data.get("maxUnavailable", 0),
        minimum=0,
        maximum=MAX_REPLICAS,
    )
    if surge == 0 and unavailable == 0:
        c.add(
            "spec.rollout",
            dict(data),
            "maxSurge and maxUnavailable cannot both be 0 (no replica could ever be "
            "replaced); set maxSurge: 1",
        )
    return Rollout(1 if surge is None else surge, 0 if unavailable is None else unavailable)


def _traffic(c: _Collector, value: object) -> tuple[TrafficTarget, ...]:
    out: list[TrafficTarget] = []
    for i, item in enumerate(c.sequence("spec.traffic", value)):
        path = f"spec.traffic[{i}]"
        entry = c.mapping(path, item, required=True)
        c.unknown(path, entry, ("revision", "percent"))
        revision = entry.get("revision")
        if not isinstance(revision, str) or not (revision == LATEST or _REVISION.match(revision)):
            c.add(
                f"{path}.revision",
                revision,
                "must be latest or a revision name (10 hex digits, see `phalanx describe service`)",
            )
            continue
        if any(t.revision == revision for t in out):
            c.add(f"{path}.revision", revision, "is listed twice; list each revision once")
            continue
        percent = c.integer(f"{path}.percent", entry.get("percent"), minimum=0, maximum=100)
        if percent is not None:
            out.append(TrafficTarget(revision, percent))
    if out and sum(t.percent for t in out) != 100:
        c.add(
            "spec.traffic",
            [f"{t.revision}={t.percent}" for t in out],
            f"percents must add up to 100 (they add up to {sum(t.percent for t in out)})",
        )
    return tuple(out)


def _route(c: _Collector, value: object) -> tuple[str, tuple[str, ...]]:
    data = c.mapping("spec.route", value)
    c.unknown("spec.route", data, ("pathPrefix", "hosts"))
    prefix = data.get("pathPrefix", "")
    if prefix != "" and (
        not isinstance(prefix, str)
        or not _PATH.match(prefix)
        or prefix == "/"
        or prefix.endswith("/")
        or len(prefix) > 256
    ):
        c.add(
            "spec.route.pathPrefix",
            prefix,
            "must be a path such as /models/iris: starting with /, not ending with /",
        )
        prefix = ""
    hosts: list[str] = []
    for i, host in enumerate(c.strings("spec.route.hosts", data.get("hosts"))):
        if not _HOST.match(host) or len(host) > 253:
            c.add(f"spec.route.hosts[{i}]", host, "must be a host name such as iris.example.com")
        else:
            hosts.append(host.lower())
    return str(prefix), tuple(hosts)


def service_to_manifest(service: ServiceSpec) -> dict[str, object]:
    """Return the manifest that parses back to ``service`` (defaults written out)."""
    spec: dict[str, object] = {
        "queue": service.queue,
        "priority": service.priority,
        "template": template_manifest(service.template),
        "port": service.port,
        "readinessProbe": {
            "path": service.readiness.path,
            "period": format_duration(service.readiness.period_s),
            "timeout": format_duration(service.readiness.timeout_s),
        },
        "minReplicas": service.min_replicas,
        "maxReplicas": service.max_replicas,
        "autoscaling": {
            "metric": service.autoscaling.metric.value,
            "target": service.autoscaling.target,
            "stableWindow": format_duration(service.autoscaling.stable_window_s),
            "panicWindow": format_duration(service.autoscaling.panic_window_s),
            "panicThreshold": service.autoscaling.panic_threshold,
        },
        "scaleToZeroAfter": format_duration(service.scale_to_zero_after_s),
        "rollout": {
            "maxSurge": service.rollout.max_surge,
            "maxUnavailable": service.rollout.max_unavailable,
        },
        "maxConcurrency": service.max_concurrency,
        "queueLimit": service.queue_limit,
        "coldStartTimeout": format_duration(service.cold_start_timeout_s),
    }
    if service.min_available is not None:
        spec["minAvailable"] = service.min_available
    if service.traffic:
        spec["traffic"] = [{"revision": t.revision, "percent": t.percent} for t in service.traffic]
    route: dict[str, object] = {}
    if service.path_prefix:
        route["pathPrefix"] = service.path_prefix
    if service.hosts:
        route["hosts"] = list(service.hosts)
    if route:
        spec["route"] = route
    if service.llm is not None:
        spec["llm"] = llm_to_manifest(service.llm)
    metadata: dict[str, object] = {"name": service.name}
    if service.labels:
        metadata["labels"] = dict(service.labels)
    if service.annotations:
        metadata["annotations"] = dict(service.annotations)
    return {"apiVersion": API_VERSION, "kind": "Service", "metadata": metadata, "spec": spec}


__all__ = [
    "LATEST",
    "PORT_ANNOTATION",
    "REVISION_LABEL",
    "SERVICE_LABEL",
    "Autoscaling",
    "ReadinessProbe",
    "ReplicaTemplate",
    "Rollout",
    "ScaleMetric",
    "ServiceSpec",
    "TrafficTarget",
    "parse_service",
    "revision_of",
    "service_to_manifest",
    "template_manifest",
]
