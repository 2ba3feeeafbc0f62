"""Parse and validate Kubernetes-style manifests (``apiVersion: phalanx.dev/v1alpha1``).

A manifest is rejected whole: every problem is collected with its field path, the bad value
and what would be valid, and raised as one SpecError. ``*_to_manifest`` turns objects back into
manifests so that what is stored and shown round-trips through the same parser.

Pure: no I/O; callers load YAML and hand in plain mappings.
"""

from __future__ import annotations

import math
import re
import reprlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar

from phalanx.model.metadata import (
    LABEL_VALUE,
    MAX_ANNOTATIONS_BYTES,
    OwnerReference,
    is_label_key,
)
from phalanx.model.objects import (
    DEFAULT_STARTUP_TIMEOUT_S,
    FailurePolicy,
    FlavorQuotas,
    JobSpec,
    OnFailure,
    PodSet,
    PreemptionPolicy,
    Queue,
    QueueAccess,
    ResourceFlavor,
    ResourceQuota,
    RestartPolicy,
    RestartPolicyKind,
    SecretKeyRef,
    Taint,
    Toleration,
    TopologyConstraint,
    TopologyMode,
)
from phalanx.model.resources import (
    CPU,
    GPU,
    MEMORY,
    RESOURCE_NAMES,
    UNLIMITED,
    QuantityError,
    Resources,
    cpu_milli,
    format_amount,
    gpu_milli,
    gpu_quota_milli,
    memory_bytes,
)

API_VERSION = "phalanx.dev/v1alpha1"
KINDS = ("Job", "Queue", "ResourceFlavor")

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
#: A key of a Secret, as Kubernetes allows: letters, digits, '-', '_' and '.'.
SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")
_DURATION = re.compile(r"^(\d{1,20}(?:\.\d{1,400})?)(ms|s|m|h|d)?$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}

T = TypeVar("T")

#: Values in error messages are shown this short: a value may be huge (a YAML alias bomb
#: expands to millions of items) and the message must not be.
_VALUE_REPR = reprlib.Repr()
_VALUE_REPR.maxstring = _VALUE_REPR.maxother = 200
_VALUE_REPR.maxlong = 60
_VALUE_REPR.maxlevel = 3

#: Bounds where infinity or overflow could enter (each value accepted must also be stored,
#: read back and added up without surprises).
MAX_DURATION_S = 365 * 86400.0  # durations: at most one year
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1  # priority, weight and maxRestarts (as Kubernetes)
#: Pods of one job (all its pod sets together), by default; ``SpecLimits`` changes it.
DEFAULT_MAX_REPLICAS = 10_000
#: Longest command/args/env string, and most entries in command+args or env, of a pod set.
MAX_STRING_BYTES = 128 * 1024
MAX_ENV_VARS = 1_000


@dataclass(frozen=True, slots=True)
class SpecLimits:
    """Limits a deployment may change (``max_replicas``: the most pods one job may ask
    for, all pod sets together)."""

    max_replicas: int = DEFAULT_MAX_REPLICAS


DEFAULT_LIMITS = SpecLimits()


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem in a manifest: where, what was there, and how to fix it."""

    path: str
    value: object
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message} (got {_VALUE_REPR.repr(self.value)})"


class SpecError(ValueError):
    """A manifest was rejected; ``errors`` lists every problem found."""

    def __init__(self, errors: Sequence[FieldError], source: str = "") -> None:
        self.errors = tuple(errors)
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__(prefix + "; ".join(str(e) for e in self.errors))


class _Collector:
    """Accumulates field errors while a manifest is read."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def add(self, path: str, value: object, message: str) -> None:
        self.errors.append(FieldError(path, value, message))

    def check(self, path: str, value: object, convert: Callable[[object], T]) -> T | None:
        try:
            return convert(value)
        except (QuantityError, ValueError, TypeError) as exc:
            self.add(path, value, str(exc))
            return None

    def mapping(self, path: str, value: object, *, required: bool = False) -> Mapping[str, object]:
        if value is None:
            if required:
                self.add(path, value, "is required and must be a mapping")
            return {}
        if not isinstance(value, Mapping):
            self.add(path, value, "must be a mapping (key: value)")
            return {}
        return value

    def sequence(self, path: str, value: object) -> Sequence[object]:
        if value is None:
            return ()
        if isinstance(value, str) or not isinstance(value, Sequence):
            self.add(path, value, "must be a list")
            return ()
        return value

    def name(self, path: str, value: object) -> str:
        if not isinstance(value, str) or not _NAME.match(value) or len(value) > 63:
            self.add(
                path,
                value,
                "must be a DNS-1123 label: lowercase letters, digits and '-', "
                "starting and ending with a letter or digit, at most 63 characters",
            )
            return ""
        return value

    def integer(
        self, path: str, value: object, *, minimum: int = INT32_MIN, maximum: int = INT32_MAX
    ) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(path, value, "must be an integer")
            return None
        if value < minimum:
            self.add(path, value, f"must be >= {minimum}")
            return None
        if value > maximum:
            self.add(path, value, f"must be at most {maximum}")
            return None
        return value

    def strings(self, path: str, value: object) -> tuple[str, ...]:
        items = self.sequence(path, value)
        out: list[str] = []
        for i, item in enumerate(items):
            if isinstance(item, str | int | float) and not isinstance(item, bool):
                text = self.text(f"{path}[{i}]", item)
                if text is not None:
                    out.append(text)
            else:
                self.add(f"{path}[{i}]", item, "must be a string")
        return tuple(out)

    def text(self, path: str, value: str | int | float) -> str | None:
        """``value`` as a string a process can be given: no NUL byte (no argument or
        environment string can hold one), at most MAX_STRING_BYTES, from a finite number."""
        if isinstance(value, float) and not math.isfinite(value):
            self.add(path, value, "must be a string or a finite number; quote it")
            return None
        text = str(value)
        if "\0" in text:
            self.add(path, text, "must not contain a NUL character (\\0); remove it")
            return None
        if len(text.encode(errors="replace")) > MAX_STRING_BYTES:
            self.add(
                path,
                f"{text[:40]}... ({len(text)} characters)",
                f"must be at most {MAX_STRING_BYTES} bytes; pass large data in a file",
            )
            return None
        return text

    def unknown(self, path: str, data: Mapping[str, object], allowed: Sequence[str]) -> None:
        for key in data:
            if key not in allowed:
                self.add(
                    f"{path}.{key}" if path else str(key),
                    data[key],
                    f"is not a known field; valid fields: {', '.join(allowed)}",
                )


def parse_duration_s(value: object) -> float:
    """Return seconds for ``30``, ``"90s"``, ``"5m"``, ``"2h"``, ``"1d"``; raise ValueError."""
    seconds: float | None = None
    if isinstance(value, bool):
        raise ValueError("must be a duration such as 30s, 5m or 2h")
    if isinstance(value, int) and value > MAX_DURATION_S:
        seconds = math.inf  # float(10**400) would overflow
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.match(value.strip())
        if match:
            seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds is None or math.isnan(seconds):
        raise ValueError("must be a duration such as 30s, 5m or 2h (a bare number means seconds)")
    if seconds < 0:
        raise ValueError("must be a duration >= 0")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"must be at most one year ({format_duration(MAX_DURATION_S)})")
    return seconds


def format_duration(seconds: float) -> str:
    """Render seconds compactly (``90s`` → ``90s``, 7200 → ``2h``) and exactly: what
    ``parse_duration_s`` reads back is the same float."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    # repr is the shortest text that reads back as the same float; written out positionally
    # (no exponent), as the duration syntax has none.
    return f"{format(Decimal(repr(seconds)), 'f')}s"


def _header(
    c: _Collector, manifest: Mapping[str, object], kind: str
) -> tuple[str, Mapping[str, object]]:
    if manifest.get("apiVersion") != API_VERSION:
        c.add("apiVersion", manifest.get("apiVersion"), f"must be {API_VERSION}")
    c.unknown("", manifest, ("apiVersion", "kind", "metadata", "spec", "status"))
    metadata = c.mapping("metadata", manifest.get("metadata"), required=True)
    c.unknown("metadata", metadata, METADATA_FIELDS)
    name = c.name("metadata.name", metadata.get("name"))
    _label_map(c, "metadata.labels", metadata.get("labels"), is_label=True)
    _label_map(c, "metadata.annotations", metadata.get("annotations"), is_label=False)
    _owner_references(c, metadata.get("ownerReferences"))
    return name, metadata


#: Fields a manifest may set in ``metadata``; uid, resourceVersion, generation and
#: creationTimestamp are the store's and are ignored when present (as ``kubectl get -o yaml``
#: output applied back has them). ``owner`` is the API's: it sets it to the caller (or keeps
#: the recorded owner), whatever the manifest says (phalanx.auth.admission).
METADATA_FIELDS = (
    "name",
    "namespace",
    "labels",
    "annotations",
    "ownerReferences",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "owner",
)


def _label_map(c: _Collector, path: str, value: object, *, is_label: bool) -> None:
    """Check label or annotation keys and values (Kubernetes' syntax and sizes)."""
    size = 0
    for key, item in c.mapping(path, value).items():
        text = str(item) if isinstance(item, str | int | float) else ""
        size += len(str(key).encode()) + len(text.encode())
        if not isinstance(key, str) or not is_label_key(key):
            c.add(
                f"{path}.{key}",
                key,
                "is not a valid key: [prefix/]name, the name at most 63 characters of letters, "
                "digits, '-', '_' or '.', starting and ending with a letter or digit",
            )
        elif is_label and not LABEL_VALUE.match(text):
            c.add(
                f"{path}.{key}",
                item,
                "must be a label value: at most 63 characters of letters, digits, '-', '_' "
                "or '.', starting and ending with a letter or digit (or empty)",
            )
        elif "\0" in text:
            c.add(f"{path}.{key}", item, "must not contain a NUL character (\\0); remove it")
    if size > MAX_ANNOTATIONS_BYTES:
        c.add(path, f"{size} bytes", f"must be at most {MAX_ANNOTATIONS_BYTES} bytes in all")


def _owner_references(c: _Collector, value: object) -> tuple[OwnerReference, ...]:
    out: list[OwnerReference] = []
    for i, item in enumerate(c.sequence("metadata.ownerReferences", value)):
        path = f"metadata.ownerReferences[{i}]"
        ref = c.mapping(path, item, required=True)
        c.unknown(
            path, ref, ("apiVersion", "kind", "name", "uid", "controller", "blockOwnerDeletion")
        )
        kind, name, uid = ref.get("kind"), ref.get("name"), ref.get("uid", "")
        if not isinstance(kind, str) or not kind:
            c.add(f"{path}.kind", kind, "is required: the owner's kind, e.g. Queue")
        if not isinstance(name, str) or not name:
            c.add(f"{path}.name", name, "is required: the owner's name")
        if not isinstance(uid, str):
            c.add(f"{path}.uid", uid, "must be a string (the owner's metadata.uid)")
        if isinstance(kind, str) and isinstance(name, str) and isinstance(uid, str):
            out.append(OwnerReference(kind, name, uid))
    return tuple(out)


def metadata_manifest(manifest: Mapping[str, object]) -> dict[str, object]:
    """The user-set part of a valid manifest's metadata, normalised: name, namespace (when
    not default), labels, annotations and ownerReferences, with empty ones left out."""
    metadata = manifest.get("metadata")
    assert isinstance(metadata, Mapping)
    out: dict[str, object] = {"name": metadata["name"]}
    if metadata.get("namespace", "default") != "default":
        out["namespace"] = metadata["namespace"]
    for key in ("labels", "annotations"):
        value = metadata.get(key)
        if isinstance(value, Mapping) and value:
            out[key] = {str(k): str(v) for k, v in value.items()}
    owner = metadata.get("owner")
    if isinstance(owner, str) and owner:
        out["owner"] = owner
    owners = metadata.get("ownerReferences")
    if isinstance(owners, Sequence) and owners:
        out["ownerReferences"] = [
            OwnerReference(str(o["kind"]), str(o["name"]), str(o.get("uid", ""))).to_dict()
            for o in owners
            if isinstance(o, Mapping)
        ]
    return out


def _labels(c: _Collector, path: str, value: object) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, item in c.mapping(path, value).items():
        if not isinstance(item, str | int | float) or isinstance(item, bool):
            c.add(f"{path}.{key}", item, "must be a string")
        else:
            out[str(key)] = str(item)
    return out


def parse_manifest(manifest: object, source: str = "") -> JobSpec | Queue | ResourceFlavor:
    """Return the object a manifest describes; raise SpecError listing every problem."""
    if not isinstance(manifest, Mapping):
        raise SpecError(
            [
                FieldError(
                    "",
                    manifest,
                    "a manifest must be a mapping with apiVersion, kind, metadata, spec",
                )
            ],
            source,
        )
    kind = manifest.get("kind")
    if kind == "Job":
        return parse_job(manifest, source)
    if kind == "Queue":
        return parse_queue(manifest, source)
    if kind == "ResourceFlavor":
        return parse_flavor(manifest, source)
    raise SpecError([FieldError("kind", kind, f"must be one of {', '.join(KINDS)}")], source)


def parse_flavor(manifest: Mapping[str, object], source: str = "") -> ResourceFlavor:
    """Return the ResourceFlavor in ``manifest``; raise SpecError."""
    c = _Collector()
    name, _ = _header(c, manifest, "ResourceFlavor")
    spec = c.mapping("spec", manifest.get("spec"))
    c.unknown("spec", spec, ("nodeLabels",))
    labels = _labels(c, "spec.nodeLabels", spec.get("nodeLabels"))
    _label_map(c, "spec.nodeLabels", labels, is_label=True)
    if c.errors:
        raise SpecError(c.errors, source)
    return ResourceFlavor(name=name, node_labels=labels)


_QUOTA_CONVERTERS: dict[str, Callable[[str | int | float], int]] = {
    CPU: cpu_milli,
    MEMORY: memory_bytes,
    GPU: gpu_quota_milli,
}


#: How a queue's quota says "no limit" (nominal, borrowingLimit or lendingLimit).
UNLIMITED_QUOTA = "unlimited"


def _quota(c: _Collector, path: str, resource: str, value: object) -> int | None:
    """A quota amount: a quantity within the bounds, or ``unlimited``."""
    if value == UNLIMITED_QUOTA:
        return UNLIMITED
    return _quantity(c, path, resource, value)


def _quantity(c: _Collector, path: str, resource: str, value: object) -> int | None:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        c.add(path, value, "must be a quantity such as 4, 500m or 16Gi")
        return None
    return c.check(path, value, _QUOTA_CONVERTERS[resource])  # type: ignore[arg-type]


def parse_queue(manifest: Mapping[str, object], source: str = "") -> Queue:
    """Return the Queue in ``manifest``; raise SpecError."""
    c = _Collector()
    name, _ = _header(c, manifest, "Queue")
    spec = c.mapping("spec", manifest.get("spec"), required=True)
    c.unknown("spec", spec, ("cohort", "weight", "preemption", "flavors", "access"))
    access = _queue_access(c, spec.get("access"))
    cohort = spec.get("cohort", "")
    if cohort:
        cohort = c.name("spec.cohort", cohort)
    weight = c.integer("spec.weight", spec.get("weight", 1), minimum=1) or 1
    preemption = c.mapping("spec.preemption", spec.get("preemption"))
    c.unknown("spec.preemption", preemption, ("withinQueue", "reclaimWithinCohort"))
    within = preemption.get("withinQueue", PreemptionPolicy.LOWER_PRIORITY.value)
    if within not in {p.value for p in PreemptionPolicy}:
        c.add("spec.preemption.withinQueue", within, "must be LowerPriority or Never")
        within = PreemptionPolicy.LOWER_PRIORITY.value
    reclaim = preemption.get("reclaimWithinCohort", "Any")
    if reclaim not in ("Any", "Never"):
        c.add("spec.preemption.reclaimWithinCohort", reclaim, "must be Any or Never")
    flavors: list[FlavorQuotas] = []
    items = c.sequence("spec.flavors", spec.get("flavors"))
    if not items:
        c.add("spec.flavors", spec.get("flavors"), "must list at least one flavor with quotas")
    seen: set[str] = set()
    for i, item in enumerate(items):
        path = f"spec.flavors[{i}]"
        entry = c.mapping(path, item, required=True)
        c.unknown(path, entry, ("name", "resources"))
        fname = c.name(f"{path}.name", entry.get("name"))
        if fname in seen:
            c.add(f"{path}.name", fname, "is listed twice; list each flavor once")
        seen.add(fname)
        quotas: dict[str, ResourceQuota] = {}
        for rname, rvalue in c.mapping(
            f"{path}.resources", entry.get("resources"), required=True
        ).items():
            rpath = f"{path}.resources.{rname}"
            if rname not in RESOURCE_NAMES:
                c.add(
                    rpath,
                    rvalue,
                    f"is not a known resource; use one of {', '.join(RESOURCE_NAMES)}",
                )
                continue
            if isinstance(rvalue, Mapping):
                c.unknown(rpath, rvalue, ("nominal", "borrowingLimit", "lendingLimit"))
                nominal = _quota(c, f"{rpath}.nominal", rname, rvalue.get("nominal", 0))
                borrow = (
                    _quota(c, f"{rpath}.borrowingLimit", rname, rvalue["borrowingLimit"])
                    if "borrowingLimit" in rvalue
                    else UNLIMITED
                )
                lend = (
                    _quota(c, f"{rpath}.lendingLimit", rname, rvalue["lendingLimit"])
                    if "lendingLimit" in rvalue
                    else UNLIMITED
                )
            else:
                nominal, borrow, lend = _quota(c, rpath, rname, rvalue), UNLIMITED, UNLIMITED
            if nominal is None or borrow is None or lend is None:
                continue
            if lend != UNLIMITED and lend > nominal:
                c.add(
                    f"{rpath}.lendingLimit", format_amount(rname, lend), "must not exceed nominal"
                )
            quotas[rname] = ResourceQuota(nominal, borrow, lend)
        flavors.append(FlavorQuotas(fname, quotas))
    if c.errors:
        raise SpecError(c.errors, source)
    return Queue(
        name=name,
        flavors=tuple(flavors),
        cohort=str(cohort or ""),
        weight=weight,
        within_queue_preemption=PreemptionPolicy(within),
        reclaim_within_cohort=reclaim == "Any",
        access=access,
    )


#: A user or group name in a queue's ``spec.access`` (as ``phalanx user create`` allows).
_PRINCIPAL_NAME = re.compile(r"^[a-z0-9]([-a-z0-9_.@]{0,61}[a-z0-9])?$")


def _queue_access(c: _Collector, value: object) -> QueueAccess | None:
    """``spec.access`` of a queue: ``users`` and ``groups`` that may submit (None: anyone)."""
    if value is None:
        return None
    access = c.mapping("spec.access", value, required=True)
    c.unknown("spec.access", access, ("users", "groups"))
    lists: dict[str, tuple[str, ...]] = {}
    for key in ("users", "groups"):
        names = c.strings(f"spec.access.{key}", access.get(key))
        for i, name in enumerate(names):
            if not _PRINCIPAL_NAME.match(name):
                c.add(
                    f"spec.access.{key}[{i}]",
                    name,
                    "must be a user or group name: 1-63 lowercase letters, digits, '-', '_', "
                    "'.' or '@', starting and ending with a letter or digit",
                )
        lists[key] = tuple(sorted(set(names)))
    return QueueAccess(lists["users"], lists["groups"])


_POD_SET_FIELDS = (
    "name",
    "replicas",
    "resources",
    "command",
    "args",
    "env",
    "workingDir",
    "image",
    "tolerations",
)
_JOB_FIELDS = (
    "queue",
    "priority",
    "minAvailable",
    "topology",
    "maxRuntime",
    "restartPolicy",
    "failurePolicy",
    "checkpoint",
    "startupTimeout",
    "podSets",
)


def parse_job(
    manifest: Mapping[str, object], source: str = "", limits: SpecLimits = DEFAULT_LIMITS
) -> JobSpec:
    """Return the JobSpec in ``manifest``; raise SpecError listing every problem."""
    c = _Collector()
    name, metadata = _header(c, manifest, "Job")
    namespace = metadata.get("namespace", "default")
    namespace = c.name("metadata.namespace", namespace) if namespace != "default" else "default"
    labels = _labels(c, "metadata.labels", metadata.get("labels"))
    annotations = _labels(c, "metadata.annotations", metadata.get("annotations"))
    spec = c.mapping("spec", manifest.get("spec"), required=True)
    c.unknown("spec", spec, _JOB_FIELDS)
    queue = spec.get("queue")
    if not isinstance(queue, str) or not queue:
        c.add("spec.queue", queue, "is required: the name of the queue to submit to")
        queue = ""
    priority = c.integer("spec.priority", spec.get("priority", 0))
    pod_sets = _pod_sets(c, spec.get("podSets"), limits)
    total = sum(ps.replicas for ps in pod_sets)
    if total > limits.max_replicas and len(pod_sets) > 1:
        c.add(
            "spec.podSets",
            f"{total} pods",
            f"must ask for at most {limits.max_replicas} pods in all pod sets together; "
            "split the job",
        )
    min_available = None
    if "minAvailable" in spec:
        min_available = c.integer("spec.minAvailable", spec["minAvailable"], minimum=1)
        if min_available is not None and pod_sets and min_available > total:
            c.add("spec.minAvailable", min_available, f"must be at most the job's {total} pods")
    topology = _topology(c, spec.get("topology"))
    max_runtime_s = None
    if spec.get("maxRuntime") is not None:
        max_runtime_s = c.check("spec.maxRuntime", spec["maxRuntime"], parse_duration_s)
    restart = _restart_policy(c, spec.get("restartPolicy"))
    failure = _failure_policy(c, spec.get("failurePolicy"))
    startup_timeout_s = DEFAULT_STARTUP_TIMEOUT_S
    if spec.get("startupTimeout") is not None:
        startup = c.check("spec.startupTimeout", spec["startupTimeout"], parse_duration_s)
        if startup is not None and startup <= 0:
            c.add("spec.startupTimeout", spec["startupTimeout"], "must be longer than 0s, e.g. 10m")
        elif startup is not None:
            startup_timeout_s = startup
    checkpoint = c.mapping("spec.checkpoint", spec.get("checkpoint"))
    c.unknown("spec.checkpoint", checkpoint, ("persistentVolumeClaim",))
    claim = ""
    if "persistentVolumeClaim" in checkpoint:
        claim = c.name("spec.checkpoint.persistentVolumeClaim", checkpoint["persistentVolumeClaim"])
    if c.errors:
        raise SpecError(c.errors, source)
    return JobSpec(
        name=name,
        namespace=str(namespace),
        queue=queue,
        pod_sets=pod_sets,
        priority=priority or 0,
        min_available=min_available,
        topology=topology,
        max_runtime_s=max_runtime_s,
        restart_policy=restart,
        labels=labels,
        annotations=annotations,
        failure_policy=failure,
        checkpoint_claim=claim,
        startup_timeout_s=startup_timeout_s,
    )


def _pod_sets(c: _Collector, value: object, limits: SpecLimits) -> tuple[PodSet, ...]:
    items = c.sequence("spec.podSets", value)
    if not items:
        c.add(
            "spec.podSets",
            value,
            "must list at least one pod set (name, replicas, resources, command)",
        )
    out: list[PodSet] = []
    names: set[str] = set()
    for i, item in enumerate(items):
        path = f"spec.podSets[{i}]"
        entry = c.mapping(path, item, required=True)
        c.unknown(path, entry, _POD_SET_FIELDS)
        name = c.name(f"{path}.name", entry.get("name", "main"))
        if name in names:
            c.add(f"{path}.name", name, "is used by another pod set; pod set names must be unique")
        names.add(name)
        replicas = (
            c.integer(
                f"{path}.replicas",
                entry.get("replicas", 1),
                minimum=1,
                maximum=limits.max_replicas,
            )
            or 1
        )
        resources = _pod_resources(c, f"{path}.resources", entry.get("resources"))
        command = c.strings(f"{path}.command", entry.get("command"))
        if not command:
            c.add(
                f"{path}.command",
                entry.get("command"),
                "is required: the program to run and its arguments",
            )
        args = c.strings(f"{path}.args", entry.get("args"))
        env, secret_env = _env_and_refs(c, f"{path}.env", entry.get("env"))
        working_dir = entry.get("workingDir", "")
        if not isinstance(working_dir, str):
            c.add(f"{path}.workingDir", working_dir, "must be a path")
            working_dir = ""
        working_dir = c.text(f"{path}.workingDir", working_dir) or ""
        image = entry.get("image", "")
        if not isinstance(image, str):
            c.add(f"{path}.image", image, "must be an image reference such as python:3.12")
            image = ""
        image = c.text(f"{path}.image", image) or ""
        tolerations = _tolerations(c, f"{path}.tolerations", entry.get("tolerations"))
        out.append(
            PodSet(
                name,
                replicas,
                resources,
                command,
                args,
                env,
                working_dir,
                image,
                tolerations,
                secret_env,
            )
        )
    return tuple(out)


def _pod_resources(c: _Collector, path: str, value: object) -> Resources:
    data = c.mapping(path, value)
    parsed: dict[str, int] = {}
    converters: dict[str, Callable[[str | int | float], int]] = {
        CPU: cpu_milli,
        MEMORY: memory_bytes,
        GPU: gpu_milli,
    }
    for key, item in data.items():
        if key not in converters:
            c.add(
                f"{path}.{key}",
                item,
                f"is not a known resource; use one of {', '.join(RESOURCE_NAMES)}",
            )
            continue
        if not isinstance(item, str | int | float) or isinstance(item, bool):
            c.add(f"{path}.{key}", item, "must be a quantity such as 4, 500m or 16Gi")
            continue
        amount = c.check(f"{path}.{key}", item, converters[key])  # type: ignore[arg-type]
        if amount is not None:
            parsed[key] = amount
    return Resources(parsed.get(CPU, 0), parsed.get(MEMORY, 0), parsed.get(GPU, 0))


def _env(c: _Collector, path: str, value: object) -> dict[str, str]:
    """An environment of plain values only (``valueFrom`` is not a known field)."""
    return _env_and_refs(c, path, value, allows_refs=False)[0]


def _env_and_refs(
    c: _Collector, path: str, value: object, *, allows_refs: bool = True
) -> tuple[dict[str, str], dict[str, SecretKeyRef]]:
    """The environment of a pod set, as a list of ``{name, value}`` (or ``{name, valueFrom:
    {secretKeyRef: {name, key, optional}}}``) or a mapping; returns the plain variables and
    the ones read from Secrets. A name is a non-empty string without ``=`` or NUL (what an
    environment can hold); a value is a string or number without NUL."""
    # (path of the name, path of the value, the entry {name, value})
    pairs: list[tuple[str, str, Mapping[str, object]]] = []
    if isinstance(value, Sequence) and not isinstance(value, str):
        for i, item in enumerate(value):
            entry = c.mapping(f"{path}[{i}]", item, required=True)
            fields = ("name", "value", "valueFrom") if allows_refs else ("name", "value")
            c.unknown(f"{path}[{i}]", entry, fields)
            pairs.append((f"{path}[{i}].name", f"{path}[{i}].value", entry))
    else:
        for key, item in c.mapping(path, value).items():
            pairs.append((f"{path}.{key}", f"{path}.{key}", {"name": key, "value": item}))
    if len(pairs) > MAX_ENV_VARS:
        c.add(path, f"{len(pairs)} variables", f"must hold at most {MAX_ENV_VARS} variables")
        return {}, {}
    out: dict[str, str] = {}
    refs: dict[str, SecretKeyRef] = {}
    for name_path, value_path, entry in pairs:
        name, raw = entry.get("name"), entry.get("value", "")
        if not isinstance(name, str) or not name:
            c.add(name_path, name, "is required: the variable's name, e.g. BATCH_SIZE")
            continue
        if "=" in name or "\0" in name or len(name) > 1024:
            c.add(
                name_path,
                name,
                "is not a valid variable name: it must not contain '=' or a NUL character "
                "and be at most 1024 characters; e.g. BATCH_SIZE",
            )
            continue
        if name in out or name in refs:
            c.add(name_path, name, "is set twice; set each variable once")
            continue
        if "valueFrom" in entry and allows_refs:
            from_path = value_path.removesuffix(".value") + ".valueFrom"
            if "value" in entry:
                c.add(from_path, entry["valueFrom"], "cannot be given with value; use one")
                continue
            ref = _secret_key_ref(c, from_path, entry["valueFrom"])
            if ref is not None:
                refs[name] = ref
            continue
        if not isinstance(raw, str | int | float) or isinstance(raw, bool):
            c.add(value_path, raw, "must be a string (quote numbers and booleans)")
            continue
        text = c.text(value_path, raw)
        if text is not None:
            out[name] = text
    return out, refs


def _secret_key_ref(c: _Collector, path: str, value: object) -> SecretKeyRef | None:
    """``valueFrom`` of one variable: ``{secretKeyRef: {name, key, optional}}``."""
    source = c.mapping(path, value, required=True)
    c.unknown(path, source, ("secretKeyRef",))
    if "secretKeyRef" not in source:
        if source:
            return None
        c.add(f"{path}.secretKeyRef", None, "is required: {name: <secret>, key: <key>}")
        return None
    ref_path = f"{path}.secretKeyRef"
    ref = c.mapping(ref_path, source["secretKeyRef"], required=True)
    c.unknown(ref_path, ref, ("name", "key", "optional"))
    errors = len(c.errors)
    secret = c.name(f"{ref_path}.name", ref.get("name"))
    key = ref.get("key")
    if not isinstance(key, str) or not SECRET_KEY.match(key):
        c.add(
            f"{ref_path}.key",
            key,
            "must be a key of the Secret: letters, digits, '-', '_' or '.', at most 253",
        )
    optional = ref.get("optional", False)
    if not isinstance(optional, bool):
        c.add(f"{ref_path}.optional", optional, "must be true or false")
    if len(c.errors) > errors or not isinstance(key, str):
        return None
    return SecretKeyRef(secret, key, bool(optional))


def _tolerations(c: _Collector, path: str, value: object) -> tuple[Toleration, ...]:
    out: list[Toleration] = []
    for i, item in enumerate(c.sequence(path, value)):
        entry = c.mapping(f"{path}[{i}]", item, required=True)
        c.unknown(f"{path}[{i}]", entry, ("key", "operator", "value", "effect"))
        operator = str(entry.get("operator", "Equal"))
        if operator not in ("Equal", "Exists"):
            c.add(f"{path}[{i}].operator", operator, "must be Equal or Exists")
        out.append(
            Toleration(
                str(entry.get("key", "")),
                operator,
                str(entry.get("value", "")),
                str(entry.get("effect", "")),
            )
        )
    return tuple(out)


def _topology(c: _Collector, value: object) -> TopologyConstraint | None:
    if value is None:
        return None
    data = c.mapping("spec.topology", value)
    c.unknown("spec.topology", data, ("key", "mode"))
    key = data.get("key", TopologyConstraint().key)
    if not isinstance(key, str) or not key:
        c.add(
            "spec.topology.key",
            key,
            "must be a node label key, e.g. kubernetes.io/hostname or topology.kubernetes.io/zone",
        )
        key = TopologyConstraint().key
    mode = data.get("mode", TopologyMode.REQUIRED.value)
    if mode not in {m.value for m in TopologyMode}:
        c.add("spec.topology.mode", mode, "must be Required or Preferred")
        mode = TopologyMode.REQUIRED.value
    return TopologyConstraint(key=key, mode=TopologyMode(mode))


def _restart_policy(c: _Collector, value: object) -> RestartPolicy:
    if value is None:
        return RestartPolicy()
    if isinstance(value, str):
        value = {"policy": value}
    data = c.mapping("spec.restartPolicy", value)
    c.unknown("spec.restartPolicy", data, ("policy", "maxRestarts", "backoff", "maxBackoff"))
    kind = data.get("policy", RestartPolicyKind.NEVER.value)
    if kind not in {k.value for k in RestartPolicyKind}:
        c.add("spec.restartPolicy.policy", kind, "must be Never or OnFailure")
        kind = RestartPolicyKind.NEVER.value
    max_restarts = c.integer(
        "spec.restartPolicy.maxRestarts", data.get("maxRestarts", 3), minimum=0
    )
    backoff = c.check("spec.restartPolicy.backoff", data.get("backoff", 1.0), parse_duration_s)
    max_backoff = c.check(
        "spec.restartPolicy.maxBackoff", data.get("maxBackoff", 60.0), parse_duration_s
    )
    return RestartPolicy(
        RestartPolicyKind(kind),
        3 if max_restarts is None else max_restarts,
        1.0 if backoff is None else backoff,
        60.0 if max_backoff is None else max_backoff,
    )


_FAILURE_FIELDS = (
    "onOOM",
    "onNodeFailure",
    "hangTimeout",
    "terminationGracePeriod",
    "enforceMemory",
)


def _failure_policy(c: _Collector, value: object) -> FailurePolicy:
    if value is None:
        return FailurePolicy()
    data = c.mapping("spec.failurePolicy", value)
    c.unknown("spec.failurePolicy", data, _FAILURE_FIELDS)
    choices = ", ".join(o.value for o in OnFailure)

    def action(key: str, default: OnFailure) -> OnFailure:
        raw = data.get(key, default.value)
        if raw not in {o.value for o in OnFailure}:
            c.add(f"spec.failurePolicy.{key}", raw, f"must be one of {choices}")
            return default
        return OnFailure(raw)

    def duration(key: str) -> float | None:
        raw = data.get(key)
        return None if raw is None else c.check(f"spec.failurePolicy.{key}", raw, parse_duration_s)

    enforce = data.get("enforceMemory", False)
    if not isinstance(enforce, bool):
        c.add("spec.failurePolicy.enforceMemory", enforce, "must be true or false")
        enforce = False
    hang = duration("hangTimeout")
    if hang is not None and hang <= 0:
        c.add(
            "spec.failurePolicy.hangTimeout", data.get("hangTimeout"), "must be above 0 (e.g. 10m)"
        )
    return FailurePolicy(
        on_oom=action("onOOM", OnFailure.FAIL),
        on_node_failure=action("onNodeFailure", OnFailure.RESTART_FREE),
        hang_timeout_s=hang,
        termination_grace_s=duration("terminationGracePeriod"),
        enforce_memory=enforce,
    )


def _failure_manifest(fp: FailurePolicy) -> dict[str, object]:
    out: dict[str, object] = {}
    if fp.on_oom is not OnFailure.FAIL:
        out["onOOM"] = fp.on_oom.value
    if fp.on_node_failure is not OnFailure.RESTART_FREE:
        out["onNodeFailure"] = fp.on_node_failure.value
    if fp.hang_timeout_s is not None:
        out["hangTimeout"] = format_duration(fp.hang_timeout_s)
    if fp.termination_grace_s is not None:
        out["terminationGracePeriod"] = format_duration(fp.termination_grace_s)
    if fp.enforce_memory:
        out["enforceMemory"] = True
    return out


def job_to_manifest(job: JobSpec) -> dict[str, object]:
    """Return the manifest that parses back to ``job``."""
    spec: dict[str, object] = {"queue": job.queue, "priority": job.priority}
    if job.min_available is not None:
        spec["minAvailable"] = job.min_available
    if job.topology is not None:
        spec["topology"] = {"key": job.topology.key, "mode": job.topology.mode.value}
    if job.max_runtime_s is not None:
        spec["maxRuntime"] = format_duration(job.max_runtime_s)
    rp = job.restart_policy
    spec["restartPolicy"] = {
        "policy": rp.kind.value,
        "maxRestarts": rp.max_restarts,
        "backoff": format_duration(rp.backoff_s),
        "maxBackoff": format_duration(rp.max_backoff_s),
    }
    failure = _failure_manifest(job.failure_policy)
    if failure:
        spec["failurePolicy"] = failure
    if job.checkpoint_claim:
        spec["checkpoint"] = {"persistentVolumeClaim": job.checkpoint_claim}
    if job.startup_timeout_s != DEFAULT_STARTUP_TIMEOUT_S:
        spec["startupTimeout"] = format_duration(job.startup_timeout_s)
    pod_sets: list[dict[str, object]] = []
    for ps in job.pod_sets:
        entry: dict[str, object] = {
            "name": ps.name,
            "replicas": ps.replicas,
            "resources": ps.resources.to_quantities(),
            "command": list(ps.command),
        }
        if ps.args:
            entry["args"] = list(ps.args)
        if ps.secret_env:  # the list form: a mapping cannot say valueFrom
            entry["env"] = [{"name": k, "value": v} for k, v in ps.env.items()] + [
                {"name": k, "valueFrom": {"secretKeyRef": _secret_ref_manifest(ref)}}
                for k, ref in ps.secret_env.items()
            ]
        elif ps.env:
            entry["env"] = dict(ps.env)
        if ps.working_dir:
            entry["workingDir"] = ps.working_dir
        if ps.image:
            entry["image"] = ps.image
        if ps.tolerations:
            entry["tolerations"] = [
                {
                    k: v
                    for k, v in (
                        ("key", t.key),
                        ("operator", t.operator),
                        ("value", t.value),
                        ("effect", t.effect),
                    )
                    if v
                }
                for t in ps.tolerations
            ]
        pod_sets.append(entry)
    spec["podSets"] = pod_sets
    metadata: dict[str, object] = {"name": job.name}
    if job.namespace != "default":
        metadata["namespace"] = job.namespace
    if job.labels:
        metadata["labels"] = dict(job.labels)
    if job.annotations:
        metadata["annotations"] = dict(job.annotations)
    return {"apiVersion": API_VERSION, "kind": "Job", "metadata": metadata, "spec": spec}


def _secret_ref_manifest(ref: SecretKeyRef) -> dict[str, object]:
    out: dict[str, object] = {"name": ref.secret, "key": ref.key}
    if ref.is_optional:
        out["optional"] = True
    return out


def _quota_value(resource: str, amount: int) -> str:
    return UNLIMITED_QUOTA if amount >= UNLIMITED else format_amount(resource, amount)


def queue_to_manifest(queue: Queue) -> dict[str, object]:
    """Return the manifest that parses back to ``queue``."""
    flavors: list[dict[str, object]] = []
    for fq in queue.flavors:
        resources: dict[str, object] = {}
        for rname, quota in fq.resources.items():
            entry: dict[str, object] = {"nominal": _quota_value(rname, quota.nominal)}
            if quota.borrowing_limit != UNLIMITED:
                entry["borrowingLimit"] = _quota_value(rname, quota.borrowing_limit)
            if quota.lending_limit != UNLIMITED:
                entry["lendingLimit"] = _quota_value(rname, quota.lending_limit)
            resources[rname] = entry
        flavors.append({"name": fq.flavor, "resources": resources})
    spec: dict[str, object] = {
        "weight": queue.weight,
        "preemption": {
            "withinQueue": queue.within_queue_preemption.value,
            "reclaimWithinCohort": "Any" if queue.reclaim_within_cohort else "Never",
        },
        "flavors": flavors,
    }
    if queue.cohort:
        spec["cohort"] = queue.cohort
    if queue.access is not None:
        spec["access"] = {"users": list(queue.access.users), "groups": list(queue.access.groups)}
    return {
        "apiVersion": API_VERSION,
        "kind": "Queue",
        "metadata": {"name": queue.name},
        "spec": spec,
    }


def flavor_to_manifest(flavor: ResourceFlavor) -> dict[str, object]:
    """Return the manifest that parses back to ``flavor``."""
    return {
        "apiVersion": API_VERSION,
        "kind": "ResourceFlavor",
        "metadata": {"name": flavor.name},
        "spec": {"nodeLabels": dict(flavor.node_labels)},
    }


def parse_taint(text: str) -> Taint:
    """Parse ``key=value:Effect`` (value optional); raise ValueError."""
    key_value, _, effect = text.partition(":")
    key, _, value = key_value.partition("=")
    if not key or effect not in ("NoSchedule", "NoExecute", "PreferNoSchedule"):
        raise ValueError(f"{text!r} is not a taint; use key=value:NoSchedule")
    return Taint(key, value, effect)
