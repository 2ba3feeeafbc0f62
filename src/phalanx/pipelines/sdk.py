"""The Python SDK: ``@task`` and ``@pipeline``.

Calling tasks inside a pipeline function does not run them: each call adds a step to the
DAG and returns a ``TaskFuture`` that later calls take as an input. Inputs are type-checked
as the DAG is built (annotations against the upstream task's return annotation, or against
a literal value) and again when values arrive. ``task.map(...)`` fans a task out over lists;
``with when(future):`` makes the steps created inside it conditional on a step's output.
Outside a pipeline, a task is a plain function call.
"""

from __future__ import annotations

import contextlib
import functools
import re
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from phalanx.pipelines.artifacts import _is_json
from phalanx.pipelines.codehash import code_hash, pin_bytecode
from phalanx.pipelines.record import Record
from phalanx.pipelines.typecheck import (
    NO_ANNOTATION,
    PipelineTypeError,
    accepts,
    compatible,
    type_name,
)

if TYPE_CHECKING:  # the kinds are imported when a DAG is built, not by a step's process
    import inspect

    from phalanx.kinds.pipeline import PipelineSpec, StepSpec

# Every step's process imports this module (the user's module does, for @task) only to
# declare tasks and pipelines: it must not import inspect (a signature is made when first
# used) nor dataclasses (the records below are Records; see record.py).

P = ParamSpec("P")
R = TypeVar("R")
_STEP_NAME = re.compile(r"[^a-z0-9-]+")


class TaskFuture(Record, Generic[R]):
    """The output of a step not yet run: pass it to other tasks."""

    __slots__ = ("step", "task")
    step: str
    task: Task[..., R]

    def __init__(self, step: str, task: Task[..., R]) -> None:
        self._set(step=step, task=task)

    @property
    def returns(self) -> object:
        return self.task.returns


class unmapped(Record):  # noqa: N801 - reads as a marker in calls: task.map(xs, k=unmapped([1, 2]))
    """Pass a list whole to every call of ``task.map`` instead of fanning out over it."""

    __slots__ = ("value",)
    value: object

    def __init__(self, value: object) -> None:
        self._set(value=value)


class _Graph:
    """The DAG being built: steps in the order they were created (a topological order)."""

    __slots__ = ("condition", "names", "steps", "tasks")

    def __init__(self) -> None:
        self.steps: list[StepSpec] = []
        self.tasks: dict[str, Task[..., Any]] = {}
        self.names: set[str] = set()
        self.condition: tuple[str, bool] | None = None

    def step_name(self, base: str) -> str:
        name = _STEP_NAME.sub("-", base.lower().replace("_", "-")).strip("-")[:40] or "step"
        candidate, n = name, 1
        while candidate in self.names:
            n += 1
            candidate = f"{name}-{n}"
        self.names.add(candidate)
        return candidate


_BUILDING: list[_Graph] = []


class Task(Generic[P, R]):
    """A function that a pipeline runs as a step (a Job on a server)."""

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str = "",
        resources: Mapping[str, object] | None = None,
        replicas: int = 1,
        retries: int = 0,
        cache: bool = True,
        cache_version: str = "",
        queue: str = "",
    ) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        self.ref = f"{fn.__module__}:{fn.__qualname__}"
        self.resources = {str(k): str(v) for k, v in (resources or {}).items()}
        if replicas < 1:
            raise ValueError(f"task {self.name}: replicas must be at least 1 (got {replicas})")
        if retries < 0:
            raise ValueError(f"task {self.name}: retries must be at least 0 (got {retries})")
        self.replicas = replicas
        self.retries = retries
        self.cache = cache
        self.cache_version = cache_version
        self.queue = queue
        functools.update_wrapper(self, fn)

    @functools.cached_property
    def signature(self) -> inspect.Signature:
        """The function's signature (made when first needed: building a DAG needs it, a
        step's process does not)."""
        import inspect

        return inspect.signature(self.fn)

    @functools.cached_property
    def hints(self) -> dict[str, Any]:
        """The function's resolved annotations; none when one cannot be resolved (then
        nothing is checked)."""
        return _type_hints(self.fn)

    @property
    def returns(self) -> object:
        """The return annotation, or NO_ANNOTATION."""
        return self.hints.get("return", NO_ANNOTATION)

    @property
    def code_hash(self) -> str:
        return code_hash(self.fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not _BUILDING:
            return self.fn(*args, **kwargs)
        return self._add_step(_BUILDING[-1], args, kwargs)

    def map(self, *args: Any, **kwargs: Any) -> list[TaskFuture[R]]:
        """Fan out: one step per element of the list/tuple arguments (all the same length);
        other arguments, and those wrapped in ``unmapped``, go whole to every step."""
        if not _BUILDING:
            raise RuntimeError(f"{self.name}.map(...) works inside a @pipeline function only")
        lengths = {len(v) for v in (*args, *kwargs.values()) if isinstance(v, list | tuple)}
        if len(lengths) > 1:
            raise PipelineTypeError(
                self.name, "map", f"mapped arguments have different lengths {sorted(lengths)}"
            )
        count = lengths.pop() if lengths else 1

        def pick(v: object, i: int) -> object:
            if isinstance(v, unmapped):
                return v.value
            return v[i] if isinstance(v, list | tuple) else v

        graph = _BUILDING[-1]
        return [
            self._add_step(
                graph,
                tuple(pick(a, i) for a in args),
                {k: pick(v, i) for k, v in kwargs.items()},
                name=f"{self.name}-{i}",
            )
            for i in range(count)
        ]

    def _add_step(
        self, graph: _Graph, args: Sequence[object], kwargs: Mapping[str, object], name: str = ""
    ) -> TaskFuture[R]:
        from phalanx.kinds.pipeline import StepInput, StepSpec

        step = graph.step_name(name or self.name)
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise PipelineTypeError(step, "inputs", f"{exc} (task {self.ref})") from None
        bound.apply_defaults()
        inputs: dict[str, StepInput] = {}
        for param, value in bound.arguments.items():
            expected = self.hints.get(param, NO_ANNOTATION)
            field_name = f"input {param!r}"
            if isinstance(value, TaskFuture):
                if not compatible(value.returns, expected):
                    raise PipelineTypeError(
                        step,
                        field_name,
                        f"expected {type_name(expected)}, but step {value.step!r} returns "
                        f"{type_name(value.returns)}",
                    )
                inputs[param] = StepInput(step=value.step)
                continue
            if isinstance(value, list | tuple | dict) and _holds_future(value):
                raise PipelineTypeError(
                    step,
                    field_name,
                    "a list or dict holding step outputs cannot be an input; pass each "
                    "output as its own argument, or gather them in a task",
                )
            if not accepts(expected, value):
                raise PipelineTypeError(
                    step,
                    field_name,
                    f"expected {type_name(expected)}, got {type(value).__qualname__} "
                    f"({value!r:.60})",
                )
            if not _is_json(value):
                raise PipelineTypeError(
                    step,
                    field_name,
                    f"a literal {type(value).__qualname__} cannot be stored in the pipeline "
                    "definition (JSON values only); produce it in a task instead",
                )
            inputs[param] = StepInput(value=list(value) if isinstance(value, tuple) else value)
        when_step, negate = graph.condition or ("", False)
        pin_bytecode(self.fn)  # steps' processes run the code hashed here
        graph.steps.append(
            StepSpec(
                name=step,
                task=self.ref,
                code_hash=self.code_hash,
                inputs=inputs,
                when_step=when_step,
                when_negated=negate,
                resources=self.resources,
                replicas=self.replicas,
                retries=self.retries,
                cache=self.cache,
                cache_version=self.cache_version,
                queue=self.queue,
                returns=type_name(self.returns),
            )
        )
        graph.tasks[step] = self
        return TaskFuture(step, self)


def _holds_future(value: object) -> bool:
    items = list(value.values()) if isinstance(value, dict) else list(value)  # type: ignore[call-overload]
    return any(isinstance(v, TaskFuture) for v in items)


@typing.overload
def task(fn: Callable[P, R]) -> Task[P, R]: ...
@typing.overload
def task(
    *,
    name: str = "",
    resources: Mapping[str, object] | None = None,
    replicas: int = 1,
    retries: int = 0,
    cache: bool = True,
    cache_version: str = "",
    queue: str = "",
) -> Callable[[Callable[P, R]], Task[P, R]]: ...
def task(
    fn: Callable[P, R] | None = None, **options: Any
) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
    """Declare a task. ``resources``: per-pod requests (``cpu``, ``memory``,
    ``nvidia.com/gpu``); ``replicas`` > 1 makes the step a gang; ``retries``: restarts on
    failure; ``cache=False`` never reuses an output; ``cache_version`` bumps the key by hand;
    ``queue``: the queue the step's job goes to (default: the run's)."""
    if fn is not None:
        return Task(fn, **options)
    return lambda f: Task(f, **options)


@contextlib.contextmanager
def when(condition: TaskFuture[Any], *, negate: bool = False) -> Iterator[None]:
    """Steps created inside run only if ``condition``'s output is truthy (falsy with
    ``negate``); otherwise they, and steps that need them, are Skipped."""
    if not _BUILDING:
        raise RuntimeError("when(...) works inside a @pipeline function only")
    graph = _BUILDING[-1]
    if graph.condition is not None:
        raise RuntimeError("when(...) blocks do not nest; compute the combined condition in a task")
    graph.condition = (condition.step, negate)
    try:
        yield
    finally:
        graph.condition = None


def _type_hints(fn: Callable[..., object]) -> dict[str, Any]:
    """``typing.get_type_hints(fn)``, or none when an annotation cannot be resolved."""
    try:
        return typing.get_type_hints(fn)
    except (NameError, TypeError):  # an annotation that cannot be resolved: unchecked
        return {}


class Built(Record):
    """A pipeline built for some parameters: its spec and the tasks of its steps."""

    __slots__ = ("spec", "tasks", "outputs")  # noqa: RUF023 - in __init__'s order (Record)
    spec: PipelineSpec
    tasks: Mapping[str, Task[..., Any]]
    outputs: object

    def __init__(
        self, spec: PipelineSpec, tasks: Mapping[str, Task[..., Any]], outputs: object
    ) -> None:
        self._set(spec=spec, tasks=tasks, outputs=outputs)


class Pipeline(Generic[P]):
    """A function whose task calls make a DAG; build, compile or run it."""

    def __init__(self, fn: Callable[P, object], *, name: str = "", queue: str = "") -> None:
        self.fn = fn
        self.name = name or _STEP_NAME.sub("-", fn.__name__.lower().replace("_", "-"))
        self.ref = f"{fn.__module__}:{fn.__qualname__}"
        self.queue = queue
        functools.update_wrapper(self, fn)

    @functools.cached_property
    def signature(self) -> inspect.Signature:
        """The function's signature (made when first needed, as Task's)."""
        import inspect

        return inspect.signature(self.fn)

    @functools.cached_property
    def hints(self) -> dict[str, Any]:
        return _type_hints(self.fn)

    def params(self, given: Mapping[str, object]) -> dict[str, object]:
        """The parameters with defaults filled in; raises PipelineTypeError naming a missing,
        unknown or mistyped parameter."""
        try:
            bound = self.signature.bind(**given)
        except TypeError as exc:
            raise PipelineTypeError(self.name, "parameters", str(exc)) from None
        bound.apply_defaults()
        for key, value in bound.arguments.items():
            expected = self.hints.get(key, NO_ANNOTATION)
            if not accepts(expected, value):
                raise PipelineTypeError(
                    self.name,
                    f"parameter {key!r}",
                    f"expected {type_name(expected)}, got {type(value).__qualname__} ({value!r:.60})",
                )
        return dict(bound.arguments)

    def build(self, **params: object) -> Built:
        """Call the function with ``params`` and return the DAG its task calls made."""
        from phalanx.kinds.pipeline import PipelineSpec

        values = self.params(params)
        graph = _Graph()
        _BUILDING.append(graph)
        try:
            outputs = self.fn(**values)  # type: ignore[arg-type,call-arg]
        finally:
            _BUILDING.pop()
        spec = PipelineSpec(
            name=self.name,
            steps=tuple(graph.steps),
            entrypoint=self.ref,
            params={k: v for k, v in values.items() if _is_json(v)},
            queue=self.queue,
        )
        return Built(spec, dict(graph.tasks), outputs)

    def compile(self, **params: object) -> dict[str, object]:
        """The Pipeline manifest (the YAML form) for ``params``."""
        from phalanx.kinds.pipeline import spec_manifest
        from phalanx.model.specs import API_VERSION

        built = self.build(**params)
        return {
            "apiVersion": API_VERSION,
            "kind": "Pipeline",
            "metadata": {"name": self.name},
            "spec": spec_manifest(built.spec),
        }

    def run(
        self,
        *,
        local: bool = True,
        artifacts: str | None = None,
        no_cache: bool = False,
        run_name: str = "",
        **params: object,
    ) -> Any:
        """Run in this process (``local=True``) and return a ``LocalRun`` with each step's
        state and the pipeline's outputs. Raises PipelineTypeError for a bad DAG. On a server,
        use ``phalanx pipeline run module:function`` instead."""
        if not local:
            raise ValueError(
                "Pipeline.run(local=False) is not supported; submit with "
                f"`phalanx pipeline run {self.ref}` to run each step as a job"
            )
        from phalanx.pipelines.local import run_local

        return run_local(
            self.build(**params), artifacts=artifacts, no_cache=no_cache, run_name=run_name
        )

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> object:
        return self.fn(*args, **kwargs)


def pipeline(fn: Callable[P, object] | None = None, *, name: str = "", queue: str = "") -> Any:
    """Declare a pipeline: a function whose task calls make the DAG. ``queue``: where its
    steps' jobs go unless a task names another."""
    if fn is not None:
        return Pipeline(fn, name=name, queue=queue)
    return lambda f: Pipeline(f, name=name, queue=queue)
