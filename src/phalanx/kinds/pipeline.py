"""Kinds Pipeline and PipelineRun: a DAG of tasks compiled from Python, and one run of it.

A ``Pipeline`` is the compiled, YAML form of a ``@pipeline`` function (``phalanx pipeline
compile`` writes it; it can live in git and be applied with ``phalanx apply -f``). A
``PipelineRun`` is one execution: the same steps (copied from its Pipeline or given inline),
where the code comes from, the artifact store, and a ``status`` the pipeline-run reconciler
writes (per-step state, attempts, cache keys, artifacts). Both are stored as plain objects.

Every step lists only steps before it as inputs, so a valid spec is acyclic by construction.
Imports only phalanx.model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from phalanx.kinds.registry import Kind, register
from phalanx.model.specs import DEFAULT_MAX_REPLICAS, SpecError, _Collector, _header

_STEP_FIELDS = (
    "name",
    "task",
    "codeHash",
    "inputs",
    "when",
    "resources",
    "replicas",
    "retries",
    "cache",
    "cacheVersion",
    "queue",
    "returns",
)
#: The most steps one pipeline may list (each becomes a job when it runs).
MAX_STEPS = 10_000
_GRAPH_FIELDS = ("entrypoint", "params", "image", "queue", "steps")
_PIPELINE_FIELDS = (*_GRAPH_FIELDS, "schedule", "artifacts", "artifactsSecret", "code")
_RUN_FIELDS = (
    *_GRAPH_FIELDS,
    "pipeline",
    "artifacts",
    "artifactsSecret",
    "noCache",
    "resumedFrom",
    "code",
)
_POLICIES = ("Allow", "Forbid", "Replace")
_RESOURCES = ("cpu", "memory", "nvidia.com/gpu")


@dataclass(frozen=True, slots=True)
class StepInput:
    """One input of a step: a literal JSON ``value``, or the output of an earlier ``step``."""

    value: object = None
    step: str = ""

    @property
    def is_step(self) -> bool:
        return bool(self.step)


@dataclass(frozen=True, slots=True)
class StepSpec:
    """One step of a pipeline: a call of a task (``module:qualname``) with its inputs."""

    name: str
    task: str
    code_hash: str = ""
    inputs: Mapping[str, StepInput] = field(default_factory=dict)
    #: Run only if the output of this step is truthy (``when_negated``: falsy); else Skipped.
    when_step: str = ""
    when_negated: bool = False
    resources: Mapping[str, str] = field(default_factory=dict)
    replicas: int = 1
    retries: int = 0
    cache: bool = True
    cache_version: str = ""
    queue: str = ""
    returns: str = ""

    @property
    def upstream(self) -> tuple[str, ...]:
        """The steps this one waits for, in input order (its condition last)."""
        names = [i.step for i in self.inputs.values() if i.is_step]
        if self.when_step:
            names.append(self.when_step)
        return tuple(dict.fromkeys(names))


@dataclass(frozen=True, slots=True)
class Schedule:
    """Run the pipeline on a cron expression; ``concurrency``: Allow, Forbid or Replace a run
    still going when the next is due."""

    cron: str
    concurrency: str = "Forbid"


@dataclass(frozen=True, slots=True)
class PipelineSpec:
    """A Pipeline (``run`` fields empty) or a PipelineRun."""

    name: str
    steps: tuple[StepSpec, ...] = ()
    entrypoint: str = ""
    params: Mapping[str, object] = field(default_factory=dict)
    image: str = ""
    queue: str = ""
    schedule: Schedule | None = None
    # PipelineRun only:
    pipeline: str = ""
    artifacts: str = ""
    #: A Secret holding the S3 credentials of ``artifacts`` (an ``s3://`` URL): the steps'
    #: jobs get its keys as AWS_* variables, the server reads the store with them.
    artifacts_secret: str = ""
    no_cache: bool = False
    resumed_from: str = ""
    code: Mapping[str, object] = field(default_factory=dict)

    def step(self, name: str) -> StepSpec:
        """The step called ``name``; raises KeyError."""
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)


def _json_value(c: _Collector, path: str, value: object, depth: int = 0) -> bool:
    """Whether ``value`` is plain JSON (finite numbers, string keys); adds an error if not."""
    if value is None or isinstance(value, bool | int | str):
        return True
    if isinstance(value, float):
        if math.isfinite(value):
            return True
        c.add(path, value, "must be a finite number")
        return False
    if depth < 32 and isinstance(value, list | tuple):
        return all(_json_value(c, f"{path}[{i}]", v, depth + 1) for i, v in enumerate(value))
    if depth < 32 and isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            c.add(path, value, "must have string keys")
            return False
        return all(_json_value(c, f"{path}.{k}", v, depth + 1) for k, v in value.items())
    c.add(path, value, "must be a JSON value (null, boolean, number, string, list, mapping)")
    return False


def _steps(c: _Collector, value: object, *, required: bool) -> tuple[StepSpec, ...]:
    items = c.sequence("spec.steps", value)
    if required and not items:
        c.add("spec.steps", value, "must list at least one step (name, task, inputs)")
    if len(items) > MAX_STEPS:
        c.add("spec.steps", f"{len(items)} steps", f"must list at most {MAX_STEPS} steps")
        items = items[:MAX_STEPS]
    out: list[StepSpec] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        path = f"spec.steps[{i}]"
        data = c.mapping(path, item, required=True)
        c.unknown(path, data, _STEP_FIELDS)
        name = c.name(f"{path}.name", data.get("name"))
        if name in seen:
            c.add(f"{path}.name", name, "must be unique among the steps; rename one")
        task = data.get("task")
        if not isinstance(task, str) or ":" not in task:
            c.add(f"{path}.task", task, "is required: the task as module:qualname")
            task = ""
        inputs: dict[str, StepInput] = {}
        for key, ref in c.mapping(f"{path}.inputs", data.get("inputs")).items():
            ref_map = c.mapping(f"{path}.inputs.{key}", ref, required=True)
            c.unknown(f"{path}.inputs.{key}", ref_map, ("value", "step"))
            if "step" in ref_map:
                upstream = ref_map["step"]
                if upstream not in seen:
                    c.add(
                        f"{path}.inputs.{key}.step",
                        upstream,
                        "must name a step listed before this one",
                    )
                inputs[str(key)] = StepInput(step=str(upstream))
            elif "value" in ref_map:
                _json_value(c, f"{path}.inputs.{key}.value", ref_map["value"])
                inputs[str(key)] = StepInput(value=ref_map["value"])
            elif ref_map:
                c.add(f"{path}.inputs.{key}", ref, "must have `value` or `step`")
        when = c.mapping(f"{path}.when", data.get("when"))
        c.unknown(f"{path}.when", when, ("step", "negate"))
        when_step = str(when.get("step", "")) if when else ""
        if not isinstance(when.get("negate", False), bool):
            c.add(f"{path}.when.negate", when.get("negate"), "must be true or false")
        if when and when_step not in seen:
            c.add(f"{path}.when.step", when_step, "must name a step listed before this one")
        resources = c.mapping(f"{path}.resources", data.get("resources"))
        for key, amount in resources.items():
            if key not in _RESOURCES:
                c.add(f"{path}.resources.{key}", amount, f"use one of {', '.join(_RESOURCES)}")
            elif isinstance(amount, bool) or not isinstance(amount, str | int | float):
                c.add(f"{path}.resources.{key}", amount, "must be a quantity such as 2 or 16Gi")
        replicas = c.integer(
            f"{path}.replicas", data.get("replicas", 1), minimum=1, maximum=DEFAULT_MAX_REPLICAS
        )
        retries = c.integer(f"{path}.retries", data.get("retries", 0), minimum=0)
        cache = data.get("cache", True)
        if not isinstance(cache, bool):
            c.add(f"{path}.cache", cache, "must be true or false")
            cache = True
        texts = {}
        for key in ("codeHash", "cacheVersion", "queue", "returns"):
            text = data.get(key, "")
            if not isinstance(text, str):
                c.add(f"{path}.{key}", text, "must be a string")
                text = ""
            texts[key] = text
        seen.add(name)
        out.append(
            StepSpec(
                name=name,
                task=task,
                code_hash=texts["codeHash"],
                inputs=inputs,
                when_step=when_step,
                when_negated=bool(when.get("negate", False)),
                resources={str(k): str(v) for k, v in resources.items()},
                replicas=replicas or 1,
                retries=retries or 0,
                cache=cache,
                cache_version=texts["cacheVersion"],
                queue=texts["queue"],
                returns=texts["returns"],
            )
        )
    return tuple(out)


def _text(c: _Collector, spec: Mapping[str, object], key: str) -> str:
    value = spec.get(key, "")
    if not isinstance(value, str):
        c.add(f"spec.{key}", value, "must be a string")
        return ""
    return value


def _parse(manifest: Mapping[str, object], source: str, kind: str) -> PipelineSpec:
    c = _Collector()
    name, _ = _header(c, manifest, kind)
    spec = c.mapping("spec", manifest.get("spec"), required=True)
    is_run = kind == "PipelineRun"
    c.unknown("spec", spec, _RUN_FIELDS if is_run else _PIPELINE_FIELDS)
    pipeline = _text(c, spec, "pipeline") if is_run else ""
    steps = _steps(c, spec.get("steps"), required=not pipeline)
    if is_run and pipeline and steps:
        c.add("spec.steps", "...", "give either spec.pipeline or spec.steps, not both")
    params = c.mapping("spec.params", spec.get("params"))
    _json_value(c, "spec.params", dict(params))
    schedule = None
    if not is_run and spec.get("schedule") is not None:
        data = c.mapping("spec.schedule", spec.get("schedule"))
        c.unknown("spec.schedule", data, ("cron", "concurrencyPolicy"))
        cron = data.get("cron")
        if not isinstance(cron, str) or len(cron.split()) != 5:
            c.add("spec.schedule.cron", cron, "must be a cron expression of 5 fields")
            cron = ""
        policy = data.get("concurrencyPolicy", "Forbid")
        if policy not in _POLICIES:
            c.add("spec.schedule.concurrencyPolicy", policy, "must be Allow, Forbid or Replace")
            policy = "Forbid"
        schedule = Schedule(str(cron), str(policy))
    no_cache = spec.get("noCache", False)
    if not isinstance(no_cache, bool):
        c.add("spec.noCache", no_cache, "must be true or false")
        no_cache = False
    code = c.mapping("spec.code", spec.get("code"))
    if code:
        c.unknown("spec.code", code, ("workingDir", "pythonPath", "python"))
        _json_value(c, "spec.code", dict(code))
    texts = {key: _text(c, spec, key) for key in ("entrypoint", "image", "queue", "artifacts")}
    artifacts_secret = ""
    if spec.get("artifactsSecret") is not None:
        artifacts_secret = c.name("spec.artifactsSecret", spec.get("artifactsSecret"))
        if not texts["artifacts"].startswith("s3://"):
            c.add(
                "spec.artifacts",
                texts["artifacts"],
                "must be an s3:// URL when spec.artifactsSecret is given (only S3 stores "
                "take their credentials from a Secret); set spec.artifacts: s3://bucket/prefix "
                "or drop spec.artifactsSecret",
            )
    resumed_from = _text(c, spec, "resumedFrom") if is_run else ""
    if c.errors:
        raise SpecError(c.errors, source)
    return PipelineSpec(
        name=name,
        steps=steps,
        entrypoint=texts["entrypoint"],
        params=dict(params),
        image=texts["image"],
        queue=texts["queue"],
        schedule=schedule,
        pipeline=pipeline,
        artifacts=texts["artifacts"],
        artifacts_secret=artifacts_secret,
        no_cache=no_cache,
        resumed_from=resumed_from,
        code=dict(code),
    )


def parse_pipeline(manifest: Mapping[str, object], source: str = "") -> PipelineSpec:
    """The Pipeline in ``manifest``; raises SpecError listing every problem."""
    return _parse(manifest, source, "Pipeline")


def parse_pipeline_run(manifest: Mapping[str, object], source: str = "") -> PipelineSpec:
    """The PipelineRun in ``manifest``; raises SpecError listing every problem."""
    return _parse(manifest, source, "PipelineRun")


def step_manifest(step: StepSpec) -> dict[str, object]:
    """The normalised manifest of one step (defaults left out)."""
    out: dict[str, object] = {"name": step.name, "task": step.task}
    if step.code_hash:
        out["codeHash"] = step.code_hash
    if step.inputs:
        out["inputs"] = {
            k: ({"step": i.step} if i.is_step else {"value": i.value})
            for k, i in step.inputs.items()
        }
    if step.when_step:
        out["when"] = {"step": step.when_step, **({"negate": True} if step.when_negated else {})}
    if step.resources:
        out["resources"] = dict(step.resources)
    for key, value, default in (
        ("replicas", step.replicas, 1),
        ("retries", step.retries, 0),
        ("cache", step.cache, True),
        ("cacheVersion", step.cache_version, ""),
        ("queue", step.queue, ""),
        ("returns", step.returns, ""),
    ):
        if value != default:
            out[key] = value
    return out


def spec_manifest(spec: PipelineSpec) -> dict[str, object]:
    """The normalised ``spec`` of a Pipeline or PipelineRun (empty fields left out)."""
    out: dict[str, object] = {}
    for key, value in (
        ("pipeline", spec.pipeline),
        ("entrypoint", spec.entrypoint),
        ("params", dict(spec.params)),
        ("image", spec.image),
        ("queue", spec.queue),
        ("artifacts", spec.artifacts),
        ("artifactsSecret", spec.artifacts_secret),
        ("noCache", spec.no_cache),
        ("resumedFrom", spec.resumed_from),
        ("code", dict(spec.code)),
    ):
        if value:
            out[key] = value
    if spec.steps:
        out["steps"] = [step_manifest(s) for s in spec.steps]
    if spec.schedule is not None:
        out["schedule"] = {
            "cron": spec.schedule.cron,
            "concurrencyPolicy": spec.schedule.concurrency,
        }
    return out


def steps_of(manifests: Sequence[Mapping[str, object]]) -> tuple[StepSpec, ...]:
    """Parse a list of step manifests (as stored); raises SpecError."""
    c = _Collector()
    steps = _steps(c, list(manifests), required=False)
    if c.errors:
        raise SpecError(c.errors)
    return steps


PIPELINE = register(
    Kind(
        name="Pipeline",
        plural="pipelines",
        short_names=("pipeline", "pl"),
        description="a DAG of tasks compiled from Python (phalanx pipeline compile)",
        parse=parse_pipeline,
        spec_manifest=spec_manifest,
    )
)

PIPELINE_RUN = register(
    Kind(
        name="PipelineRun",
        plural="pipelineruns",
        short_names=("pipelinerun", "plr"),
        description="one run of a pipeline: each step a job, with cached artifacts and lineage",
        parse=parse_pipeline_run,
        spec_manifest=spec_manifest,
    )
)
