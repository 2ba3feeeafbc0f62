"""Running one step: resolve its inputs to artifact refs, compute its cache key, load the
values (type-checked as they arrive), call the task and store its output (type-checked too).

Shared by the in-process runner and by the step process of a job (``python -m
phalanx.pipelines.step``), so both compute the same keys and write the same artifacts. The
step's process computes no key: keys.py (and the dataclasses it uses) is imported by
``step_key`` only.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from phalanx.pipelines.artifacts import ArtifactRef, ArtifactStore, encode
from phalanx.pipelines.sdk import Task
from phalanx.pipelines.typecheck import NO_ANNOTATION, PipelineTypeError, check_value

if TYPE_CHECKING:
    from phalanx.kinds.pipeline import StepSpec


def load_task(ref: str) -> Task[..., Any]:
    """The task ``module:qualname`` names (a plain function is wrapped). Raises
    LookupError saying how the code should reach this process."""
    module_name, _, qualname = ref.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise LookupError(
            f"task {ref} cannot be loaded here ({exc}); the pipeline's code must be "
            "importable where steps run: the project directory on PYTHONPATH (local), or "
            "installed in the image / mounted (Kubernetes); see docs/pipelines.md"
        ) from exc
    return obj if isinstance(obj, Task) else Task(obj)


def input_refs(step: StepSpec, outputs: Mapping[str, ArtifactRef]) -> dict[str, ArtifactRef]:
    """Each input of ``step`` as an artifact ref: literals encoded (inline), upstream outputs
    from ``outputs``. Raises KeyError for an upstream with no output."""
    out: dict[str, ArtifactRef] = {}
    for name, given in step.inputs.items():
        if given.is_step:
            out[name] = outputs[given.step]
        else:
            encoded = encode(given.value)
            out[name] = ArtifactRef(
                encoded.hash, "json", len(encoded.data), encoded.type, encoded.data.decode()
            )
    return out


def step_key(step: StepSpec, refs: Mapping[str, ArtifactRef], image: str = "") -> str:
    """The cache key of ``step`` given its inputs' refs (see keys.cache_key)."""
    from phalanx.pipelines.keys import KeyInputs, cache_key

    return cache_key(
        KeyInputs(
            task=step.task,
            code_hash=step.code_hash,
            input_hashes={k: r.hash for k, r in refs.items()},
            cache_version=step.cache_version,
            image=image,
            replicas=step.replicas,
        )
    )


def call_step(
    task: Task[..., Any], step: str, refs: Mapping[str, ArtifactRef], store: ArtifactStore
) -> object:
    """Load the inputs, check them against the task's annotations, call it, check what it
    returned; return the value. Raises PipelineTypeError naming the step and field."""
    values: dict[str, object] = {}
    for name, ref in refs.items():
        expected = task.hints.get(name, NO_ANNOTATION)
        values[name] = check_value(step, f"input {name!r}", expected, store.get(ref))
    result = task.fn(**values)
    if task.returns is not NO_ANNOTATION:
        try:
            check_value(step, "output", task.returns, result)
        except PipelineTypeError as exc:
            raise PipelineTypeError(
                step, "output", str(exc).split("output: ", 1)[1] + f" (task {task.ref})"
            ) from None
    return result
