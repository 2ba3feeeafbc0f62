"""Routes of pipelines: Pipelines and PipelineRuns with their status, a step's log, and the
lineage of an artifact. They answer the stored manifests as they are (metadata, spec, status),
so they declare no response model. Runs are created with POST /apply like any object (the CLI's
``phalanx pipeline run`` compiles the DAG and applies a PipelineRun). Must not import client
or cli.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from phalanx.controllers.errors import NotFoundError
from phalanx.controllers.plane import ControlPlane
from phalanx.pipelines import lineage
from phalanx.pipelines.reconciler import KIND, LABEL_STEP
from phalanx.store import ObjectRecord

API_PREFIX = "/api/v1"


def object_json(obj: ObjectRecord) -> dict[str, Any]:
    """A stored Pipeline or PipelineRun as the API shows it: manifest, metadata and status."""
    metadata = dict(obj.manifest.get("metadata") or {})
    metadata.update(
        name=obj.name,
        uid=obj.uid,
        resourceVersion=str(obj.resource_version),
        generation=obj.generation,
        creationTimestamp=obj.created_at,
    )
    return {
        "apiVersion": obj.manifest.get("apiVersion"),
        "kind": obj.kind,
        "metadata": metadata,
        "spec": obj.manifest.get("spec") or {},
        "status": obj.manifest.get("status") or {},
    }


def pipelines_router(plane: ControlPlane) -> APIRouter:
    """The pipeline routes over ``plane``'s store (authorization is the app's middleware)."""
    router = APIRouter(prefix=API_PREFIX, tags=["pipelines"])
    store = plane.store

    def one(kind: str, name: str) -> ObjectRecord:
        obj = store.get_object(kind, name)
        if obj is None:
            raise NotFoundError(kind.lower(), name)
        return obj

    @router.get("/pipelines", summary="Pipelines (compiled DAGs)", response_model=None)
    def list_pipelines() -> list[dict[str, Any]]:
        return [object_json(o) for o in store.list_objects("Pipeline")]

    @router.get("/pipelines/{name}", summary="One pipeline", response_model=None)
    def get_pipeline(name: str) -> dict[str, Any]:
        return object_json(one("Pipeline", name))

    @router.get("/pipelineruns", summary="Pipeline runs with per-step state", response_model=None)
    def list_runs() -> list[dict[str, Any]]:
        return [object_json(o) for o in store.list_objects(KIND)]

    @router.get(
        "/pipelineruns/{name}", summary="One pipeline run with per-step state", response_model=None
    )
    def get_run(name: str) -> dict[str, Any]:
        return object_json(one(KIND, name))

    @router.get(
        "/pipelineruns/{name}/logs",
        summary="Output of one step's pod, from a byte offset",
        response_class=Response,
    )
    def step_logs(
        name: str,
        step: Annotated[str, Query(description="the step's name")],
        pod: Annotated[str | None, Query()] = None,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> Response:
        run = one(KIND, name)
        steps = (run.manifest.get("status") or {}).get("steps") or {}
        status = steps.get(step)
        if status is None:
            raise NotFoundError(
                "step",
                step,
                f'pipeline run "{name}" has no step "{step}"; its steps: '
                + ", ".join(sorted(steps)),
            )
        job = status.get("job")
        if not job:
            raise NotFoundError(
                "job",
                step,
                f'step "{step}" of run "{name}" ran no job ({status.get("state")}'
                + (
                    f", cached from run {status['cachedFrom']['run']}, step "
                    f"{status['cachedFrom']['step']}"
                    if "cachedFrom" in status
                    else ""
                )
                + ")",
            )
        data, next_offset, finished = plane.read_logs(job, pod, None, offset)
        return Response(
            data,
            media_type="text/plain; charset=utf-8",
            headers={
                "X-Next-Offset": str(next_offset),
                "X-Finished": "1" if finished else "0",
                "X-Job": job,
                LABEL_STEP.replace("/", "-"): step,
            },
        )

    @router.get(
        "/lineage/{artifact}",
        summary="Which runs and steps made an artifact, and what",
        response_model=None,
    )
    def get_lineage(
        artifact: str,
        direction: Annotated[str, Query(pattern="^(up|down|both)$")] = "both",
    ) -> dict[str, Any]:
        runs = [(o.name, o.manifest.get("status") or {}) for o in store.list_objects(KIND)]
        found = lineage.productions(runs)
        matches = lineage.resolve(artifact, found)
        if not matches:
            raise NotFoundError(
                "artifact", artifact, f'no run produced or used artifact "{artifact}"'
            )
        if len(matches) > 1:
            raise NotFoundError(
                "artifact",
                artifact,
                f'"{artifact}" matches {len(matches)} artifacts; give more of the hash',
            )
        out: dict[str, Any] = {"artifact": matches[0]}
        if direction in ("up", "both"):
            out["upstream"] = lineage.upstream(matches[0], found).to_json()
        if direction in ("down", "both"):
            out["downstream"] = lineage.downstream(matches[0], found).to_json()
        return out

    return router
