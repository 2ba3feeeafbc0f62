"""Pipelines: Python-first DAGs (``@task``/``@pipeline``) whose steps run in-process or as
queued, gang-scheduled jobs, with content-addressed artifacts, caching and lineage.

The SDK is what user code imports; it pulls in no server code (the reconciler lives in
``phalanx.pipelines.reconciler`` and is loaded by the server only). See docs/pipelines.md.
"""

from phalanx.pipelines.artifacts import ArtifactRef, ArtifactStore, Directory, File
from phalanx.pipelines.sdk import Pipeline, Task, TaskFuture, pipeline, task, unmapped, when
from phalanx.pipelines.typecheck import PipelineTypeError

__all__ = [
    "ArtifactRef",
    "ArtifactStore",
    "Directory",
    "File",
    "Pipeline",
    "PipelineTypeError",
    "Task",
    "TaskFuture",
    "pipeline",
    "task",
    "unmapped",
    "when",
]
