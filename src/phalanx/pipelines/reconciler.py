"""The PipelineRun reconciler: each step of a run becomes a Job owned by the run.

On every tick, for each PipelineRun not yet finished that was written, or whose running
steps' jobs were, since the last pass (the store's revision log says; every run is looked at
at start and every ``RESYNC_S``) (observe → decide → apply):

  1. observe the jobs of Running steps: Succeeded → read the step's result record from the
     artifact store, index its output in the cache; Failed or Cancelled → the step Failed
     (attempts are the job's, retries were the job's restart policy);
  2. mark steps that can never run (dag.blocked): UpstreamFailed or Skipped;
  3. for each ready step: Skipped if its condition is false; else compute its cache key
     (the same function as in-process runs); reuse the output of the run it resumes from or a
     cache hit (Cached, "cached from run R, step S"); otherwise submit a Job — a step of
     ``replicas`` > 1 is a gang, GPUs in its resources are devices placed like any job's;
     repeat 2–3 until nothing changes, so a fully cached run finishes in one tick;
  4. write the run's status (phase, per-step state, attempts, keys, artifacts, lineage) back
     to the PipelineRun object, if it changed, in the same store transaction that creates the
     new steps' jobs (a crash leaves both or neither); then the plane admits those jobs
     before this tick ends (``ControlPlane.jobs_added``).

A run whose artifact store is ``s3://`` may name a Secret (``spec.artifactsSecret``): its
steps' jobs get the Secret's AWS_* keys through ``secretKeyRef`` (never the values), and this
reconciler opens the store with the same values; a missing Secret or key fails the run.

A failure on one run is contained to it: an event on the run (credential values masked), the
others go on.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from phalanx import kinds
from phalanx.controllers.plane import ControlPlane
from phalanx.kinds.pipeline import PipelineSpec, StepSpec, parse_pipeline, parse_pipeline_run
from phalanx.model.reasons import Reason, ReasonCode
from phalanx.model.specs import API_VERSION, SpecError
from phalanx.pipelines import dag
from phalanx.pipelines.artifacts import ArtifactRef, ArtifactStore, default_url
from phalanx.pipelines.dag import RunPhase, StepState
from phalanx.pipelines.execution import input_refs, step_key
from phalanx.pipelines.schedule import parse_cron
from phalanx.pipelines.step import ENV_STEP
from phalanx.store import EventRecord, JobRecord, ObjectRecord, Store

log = logging.getLogger(__name__)

KIND = "PipelineRun"
LABEL_RUN = "phalanx.dev/pipelinerun"
LABEL_STEP = "phalanx.dev/step"
#: Inputs larger than this (as JSON) go to the artifact store instead of the pod's env.
ENV_LIMIT_BYTES = 96 * 1024
#: Step jobs read per store query (one SQL ``IN`` list).
JOBS_PER_QUERY = 400
#: Every unfinished run is reconciled at least this often, written to or not.
RESYNC_S = 10.0
#: Revision log entries read per pass; more means a flood: every run is looked at.
MAX_CHANGES = 10_000
#: The keys of a run's ``artifactsSecret``, each given to its steps as the variable of the
#: same name (botocore reads them); the first two are required, the rest used when present.
S3_SECRET_KEYS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_ENDPOINT_URL",
    "AWS_DEFAULT_REGION",
    "AWS_SESSION_TOKEN",
)
_REQUIRED_S3_KEYS = S3_SECRET_KEYS[:2]


def record_error(
    store: Store, reconciler: str, kind: str, name: str, exc: Exception | str, now: float
) -> None:
    """A ReconcileError event on the object a reconciler failed on (the loop goes on);
    ``exc`` is the exception, or the text to show for it."""
    error = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    reason = Reason(
        ReasonCode.RECONCILE_ERROR,
        {"reconciler": reconciler, "step": "reconcile", "error": error},
    )
    store.record_event(EventRecord.of(now, reason, kind=kind, name=name))


def job_name(run: str, index: int) -> str:
    """The Job of step ``index`` of ``run`` (a DNS label of at most 63 characters)."""
    return f"{run[:52]}-s{index}"


class PipelineRunReconciler:
    """Drives PipelineRuns: steps to jobs, cache hits, states, lineage."""

    name = "pipeline-runs"

    def __init__(self, plane: ControlPlane, python: str = sys.executable) -> None:
        self.plane = plane
        self.store = plane.store
        self.python = python
        self._stores: dict[str, ArtifactStore] = {}
        #: Values read from artifact Secrets: masked in anything this reconciler writes.
        self._secret_values: set[str] = set()
        self._finished: set[tuple[str, str]] = set()  # (name, uid) of finished runs
        self._parsed: dict[tuple[str, int], PipelineSpec] = {}  # (uid, generation) → spec
        #: The revision of the log read last (None: not yet), and when every run was.
        self._revision: int | None = None
        self._synced_at = -float("inf")
        #: The jobs of running steps → their run; a run's jobs, as seen at its last pass.
        self._run_of_job: dict[str, str] = {}
        self._jobs_of_run: dict[str, set[str]] = {}
        #: Runs whose last pass failed: tried again on the next, written to or not.
        self._failed: set[str] = set()

    def _artifacts(self, url: str, secret_name: str = "") -> ArtifactStore:
        """The artifact store at ``url``, opened with the S3 credentials in the Secret
        ``secret_name`` when one is named. Raises LookupError for a missing Secret or key."""
        url = url or default_url()
        if not secret_name:
            if url not in self._stores:
                self._stores[url] = ArtifactStore(url)
            return self._stores[url]
        record = self.store.get_object("Secret", secret_name)
        if record is None:
            raise LookupError(
                f"spec.artifactsSecret: secret {secret_name} not found; apply a Secret with "
                f"keys {', '.join(_REQUIRED_S3_KEYS)} (and AWS_ENDPOINT_URL for a server "
                "other than AWS)"
            )
        key = f"{url}\0{secret_name}\0{record.resource_version}"
        if key not in self._stores:
            data = self.plane.lifecycle.secrets.open(record.manifest).data
            missing = [k for k in _REQUIRED_S3_KEYS if k not in data]
            if missing:
                raise LookupError(
                    f"spec.artifactsSecret: secret {secret_name} has no key "
                    f"{', '.join(missing)} (its keys: {', '.join(sorted(data)) or 'none'}); "
                    f"give it {', '.join(_REQUIRED_S3_KEYS)}"
                )
            values = {k: data[k].decode() for k in S3_SECRET_KEYS if k in data}
            secrets = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
            self._secret_values |= {values[k] for k in secrets if len(values.get(k, "")) >= 4}
            client: dict[str, str] = {}
            if "AWS_ENDPOINT_URL" in values:
                client["endpoint_url"] = values["AWS_ENDPOINT_URL"]
            if "AWS_DEFAULT_REGION" in values:
                client["region_name"] = values["AWS_DEFAULT_REGION"]
            self._stores = {
                k: v for k, v in self._stores.items() if not k.startswith(f"{url}\0{secret_name}\0")
            }
            self._stores[key] = ArtifactStore(
                url,
                key=values["AWS_ACCESS_KEY_ID"],
                secret=values["AWS_SECRET_ACCESS_KEY"],
                token=values.get("AWS_SESSION_TOKEN"),
                client_kwargs=client,
            )
        return self._stores[key]

    def _mask(self, text: str) -> str:
        """``text`` with every credential value read from a Secret replaced by <hidden>."""
        for value in self._secret_values:
            text = text.replace(value, "<hidden>")
        return text

    def reconcile(self, now: float) -> None:
        names = self._touched_runs(now)
        if names is None:
            runs = self.store.list_objects(KIND)
        else:
            names |= self._failed
            runs = [r for n in sorted(names) if (r := self.store.get_object(KIND, n)) is not None]
        self._failed = set()
        for obj in runs:
            if (obj.name, obj.uid) in self._finished:
                continue
            try:
                self.reconcile_run(obj, now)
            except Exception as exc:  # contained to this run
                self._failed.add(obj.name)
                error = self._mask(f"{type(exc).__name__}: {exc}")
                if self._secret_values:  # a traceback could show a credential: the text only
                    log.error("pipeline run %s failed to reconcile: %s", obj.name, error)
                else:
                    log.exception("pipeline run %s failed to reconcile", obj.name)
                record_error(self.store, self.name, KIND, obj.name, error, now)

    def _touched_runs(self, now: float) -> set[str] | None:
        """The runs written since the last pass, or whose running steps' jobs were (from
        the revision log); None when every run must be looked at: the first pass, every
        ``RESYNC_S``, a Pipeline written (its runs read their steps from it), or a log
        compacted past the last pass or flooded."""
        after = self._revision
        if after is None or now - self._synced_at >= RESYNC_S:
            self._revision, self._synced_at = self.store.revision(), now
            return None
        changes, oldest = self.store.changes(after, limit=MAX_CHANGES)
        if changes:
            self._revision = changes[-1].revision
        if (after > 0 and oldest > after + 1) or len(changes) >= MAX_CHANGES:
            return None
        out: set[str] = set()
        for change in changes:
            if change.kind == KIND:
                out.add(change.name)
            elif change.kind == "Job" and change.name in self._run_of_job:
                out.add(self._run_of_job[change.name])
            elif change.kind == "Pipeline":
                return None
        return out

    def _note_jobs(self, run: str, steps: Mapping[str, Mapping[str, Any]]) -> None:
        """Remember which jobs run's running steps have (their writes wake the run)."""
        for job in self._jobs_of_run.pop(run, set()):
            self._run_of_job.pop(job, None)
        jobs = {
            str(s["job"])
            for s in steps.values()
            if s.get("state") == StepState.RUNNING and "job" in s
        }
        if jobs:
            self._jobs_of_run[run] = jobs
            self._run_of_job.update(dict.fromkeys(jobs, run))

    def _spec(self, obj: ObjectRecord) -> PipelineSpec:
        # Parsed once per spec (its generation), not once per tick: a run of many steps
        # takes milliseconds to validate, every tick while it runs.
        key = (obj.uid, obj.generation)
        spec = self._parsed.get(key)
        if spec is None:
            spec = parse_pipeline_run(obj.manifest)
            self._parsed = {k: v for k, v in self._parsed.items() if k[0] != obj.uid}
            self._parsed[key] = spec
        if spec.pipeline and not spec.steps:
            source = self.store.get_object("Pipeline", spec.pipeline)
            if source is None:
                raise LookupError(f"pipeline {spec.pipeline!r} does not exist; apply it first")
            base = parse_pipeline(source.manifest)
            return PipelineSpec(
                name=spec.name,
                steps=base.steps,
                entrypoint=base.entrypoint,
                params={**base.params, **spec.params},
                image=spec.image or base.image,
                queue=spec.queue or base.queue,
                pipeline=spec.pipeline,
                artifacts=spec.artifacts,
                artifacts_secret=spec.artifacts_secret,
                no_cache=spec.no_cache,
                resumed_from=spec.resumed_from,
                code=spec.code,
            )
        return spec

    def reconcile_run(self, obj: ObjectRecord, now: float) -> None:
        status: dict[str, Any] = json.loads(json.dumps(obj.manifest.get("status") or {}))
        if status.get("phase") in (RunPhase.SUCCEEDED, RunPhase.FAILED):
            self._finished.add((obj.name, obj.uid))  # finished (or replaced) elsewhere
            self._note_jobs(obj.name, {})
            return
        before = json.dumps(status, sort_keys=True)
        try:
            spec = self._spec(obj)
            store = self._artifacts(spec.artifacts, spec.artifacts_secret)
        except (SpecError, LookupError) as exc:
            status.update(phase=RunPhase.FAILED.value, message=str(exc), finishedAt=now)
            self._write(obj, status, before, now)
            self._note_jobs(obj.name, {})
            return
        steps: dict[str, dict[str, Any]] = status.setdefault("steps", {})
        for s in spec.steps:
            steps.setdefault(s.name, {"state": StepState.PENDING.value, "attempts": 0})
        status.setdefault("phase", RunPhase.RUNNING.value)
        status.setdefault("startedAt", now)
        # 1. observe the jobs of running steps (read in one query per few hundred steps)
        running = [
            (job_name(spec.name, index), step)
            for index, step in enumerate(spec.steps)
            if steps[step.name]["state"] == StepState.RUNNING
        ]
        jobs = self._jobs([name for name, _ in running])
        for name, step in running:
            self._observe(spec, step, steps[step.name], store, name, jobs.get(name), now)
        # 2.-3. blocked steps, conditions, cache hits and new jobs, until nothing changes
        previous = self._previous_steps(spec)
        new_jobs: list[dict[str, object]] = []
        is_changed = True
        while is_changed:
            is_changed = False
            states = {n: StepState(s["state"]) for n, s in steps.items()}
            for name, state in dag.blocked(spec.steps, states).items():
                steps[name].update(state=state.value, finishedAt=now)
                is_changed = True
            states = {n: StepState(s["state"]) for n, s in steps.items()}
            for name in dag.ready(spec.steps, states):
                index, step = next((i, s) for i, s in enumerate(spec.steps) if s.name == name)
                self._start(spec, obj, index, step, steps, store, previous, new_jobs, now)
                is_changed = True
        # 4. the run's status and the new steps' jobs, in one store transaction
        phase = self._submit(obj, status, before, new_jobs, now) if new_jobs else None
        if phase is None:
            phase = _set_phase(status, now)
            self._write(obj, status, before, now)
        self._note_jobs(obj.name, steps if phase is RunPhase.RUNNING else {})
        if phase is not RunPhase.RUNNING:
            self._finished.add((obj.name, obj.uid))
            self._parsed.pop((obj.uid, obj.generation), None)

    def _previous_steps(self, spec: PipelineSpec) -> Mapping[str, Mapping[str, Any]]:
        if not spec.resumed_from:
            return {}
        previous = self.store.get_object(KIND, spec.resumed_from)
        if previous is None:
            return {}
        steps = (previous.manifest.get("status") or {}).get("steps") or {}
        return steps if isinstance(steps, dict) else {}

    def _outputs(self, steps: Mapping[str, Mapping[str, Any]]) -> dict[str, ArtifactRef]:
        return {n: ArtifactRef.from_json(s["output"]) for n, s in steps.items() if "output" in s}

    def _start(
        self,
        spec: PipelineSpec,
        obj: ObjectRecord,
        index: int,
        step: StepSpec,
        steps: dict[str, dict[str, Any]],
        store: ArtifactStore,
        previous: Mapping[str, Mapping[str, Any]],
        new_jobs: list[dict[str, object]],
        now: float,
    ) -> None:
        status = steps[step.name]
        outputs = self._outputs(steps)
        if step.when_step and not dag.is_condition_met(
            store.get(outputs[step.when_step]), step.when_negated
        ):
            status.update(state=StepState.SKIPPED.value, finishedAt=now)
            return
        refs = input_refs(step, outputs)
        key = step_key(step, refs, spec.image)
        status.update(cacheKey=key, inputs={k: r.hash for k, r in refs.items()}, startedAt=now)
        old = previous.get(step.name) or {}
        if old.get("cacheKey") == key and "output" in old:
            origin = old.get("cachedFrom") or {"run": spec.resumed_from, "step": step.name}
            status.update(
                state=StepState.CACHED.value,
                output=old["output"],
                cachedFrom=origin,
                finishedAt=now,
            )
            return
        entry = None if (spec.no_cache or not step.cache) else store.cache_entry(key)
        if entry is not None:
            status.update(
                state=StepState.CACHED.value,
                output=entry["output"],
                cachedFrom={"run": entry["run"], "step": entry["step"]},
                finishedAt=now,
            )
            return
        queue = step.queue or spec.queue
        if not queue:
            status.update(
                state=StepState.FAILED.value,
                message=f"step {step.name!r} has no queue: give the run one "
                "(`phalanx pipeline run --queue Q`) or the task (@task(queue=...))",
                finishedAt=now,
            )
            return
        name = job_name(spec.name, index)
        # Its first attempt: set now, rather than written again once the job is admitted.
        status.update(state=StepState.RUNNING.value, job=name, attempts=1)
        new_jobs.append(self._job_manifest(spec, obj, step, name, queue, refs, store))

    def _job_manifest(
        self,
        spec: PipelineSpec,
        obj: ObjectRecord,
        step: StepSpec,
        name: str,
        queue: str,
        refs: Mapping[str, ArtifactRef],
        store: ArtifactStore,
    ) -> dict[str, object]:
        payload: dict[str, object] = {
            "run": spec.name,
            "step": step.name,
            "task": step.task,
            "codeHash": step.code_hash,
            "artifacts": store.url,
            "inputs": {k: r.to_json() for k, r in refs.items()},
        }
        text = json.dumps(payload)
        if len(text) > ENV_LIMIT_BYTES:
            # Too large for the environment: the inputs go to the store, the pod reads them.
            record = f"inputs/{spec.name}/{step.name}.json"
            for ref_name, ref in refs.items():
                if ref.inline is not None:
                    refs_value = store.put(json.loads(ref.inline))
                    payload["inputs"][ref_name] = refs_value.to_json()  # type: ignore[index]
            store.write_record(record, {"inputs": payload["inputs"]})
            del payload["inputs"]
            payload["inputsRecord"] = record
            text = json.dumps(payload)
        code = spec.code
        env: list[dict[str, object]] = [{"name": ENV_STEP, "value": text}]
        python_path = code.get("pythonPath")
        if isinstance(python_path, list) and python_path:
            env.append({"name": "PYTHONPATH", "value": ":".join(str(p) for p in python_path)})
        if spec.artifacts_secret:  # references only: the values are read when the pod starts
            env += [
                {
                    "name": key,
                    "valueFrom": {
                        "secretKeyRef": {
                            "name": spec.artifacts_secret,
                            "key": key,
                            **({} if key in _REQUIRED_S3_KEYS else {"optional": True}),
                        }
                    },
                }
                for key in S3_SECRET_KEYS
            ]
        # The local backend's pods share this machine: they run the submitter's interpreter in
        # its directory. Elsewhere those paths mean nothing: the image's `python` runs.
        is_shared_machine = self.plane.backend.name == "local"
        python = str(code.get("python") or self.python) if is_shared_machine else "python"
        pod_set: dict[str, object] = {
            "name": "step",
            "replicas": step.replicas,
            "command": [python, "-m", "phalanx.pipelines.step"],
            "env": env,
            "resources": dict(step.resources) or {"cpu": "100m", "memory": "128Mi"},
        }
        if code.get("workingDir") and is_shared_machine:
            pod_set["workingDir"] = str(code["workingDir"])
        if spec.image:
            pod_set["image"] = spec.image
        return {
            "apiVersion": API_VERSION,
            "kind": "Job",
            "metadata": {
                "name": name,
                "labels": {LABEL_RUN: spec.name, LABEL_STEP: step.name},
                # annotations reach the pods (Kubernetes: the Pod's own annotations)
                "annotations": {LABEL_RUN: spec.name, LABEL_STEP: step.name},
                "ownerReferences": [{"kind": KIND, "name": obj.name, "uid": obj.uid}],
                # the run's owner owns its steps (their logs, their env)
                **({"owner": owner} if (owner := _owner(obj.manifest)) else {}),
            },
            "spec": {
                "queue": queue,
                "restartPolicy": {
                    "policy": "OnFailure" if step.retries else "Never",
                    "maxRestarts": step.retries,
                    "backoff": "0s",
                },
                "podSets": [pod_set],
            },
        }

    def _submit(
        self,
        obj: ObjectRecord,
        status: dict[str, Any],
        before: str,
        manifests: list[dict[str, object]],
        now: float,
    ) -> RunPhase:
        """Create the steps' jobs and write the run's status (its steps Running) in one store
        transaction, and tell the plane, whose jobs reconciler then runs once more before
        this tick ends (``ControlPlane.jobs_added``): a step's job is admitted and launched
        in the same pass as its upstream's end was recorded. Jobs refused whole (a spec or
        the store refusing one) fail their steps, saying why, and only the status is written.
        Returns the run's phase. Not through ``ControlPlane.apply``: that counts as an API
        submission, for which the loop rests after its tick, and the next step would wait."""
        steps: dict[str, dict[str, Any]] = status["steps"]
        try:
            parsed = [kinds.parse(m) for m in manifests]
            jobs = [
                (p.name, uuid.uuid4().hex, p.manifest, p.obj.queue, p.obj.priority) for p in parsed
            ]
            phase = _set_phase(status, now)
            self._write(obj, status, before, now, jobs)
        except (SpecError, ValueError) as exc:  # refused whole: the steps fail, saying why
            for manifest in manifests:
                labels = manifest["metadata"]["labels"]  # type: ignore[index]
                steps[labels[LABEL_STEP]].update(
                    state=StepState.FAILED.value, message=f"job refused: {exc}", finishedAt=now
                )
            phase = _set_phase(status, now)
            self._write(obj, status, before, now)
            return phase
        for (_, uid, *_), item in zip(jobs, parsed, strict=True):
            self.plane.specs.submitted(uid, item.obj)
        self.plane.jobs_added()
        return phase

    def _jobs(self, names: list[str]) -> dict[str, JobRecord]:
        """The jobs called ``names`` that exist, without their manifests."""
        out: dict[str, JobRecord] = {}
        for i in range(0, len(names), JOBS_PER_QUERY):
            chunk = names[i : i + JOBS_PER_QUERY]
            for job in self.store.list_jobs(names=chunk, manifests=False):
                out[job.name] = job
        return out

    def _observe(
        self,
        spec: PipelineSpec,
        step: StepSpec,
        status: dict[str, Any],
        store: ArtifactStore,
        name: str,
        job: JobRecord | None,
        now: float,
    ) -> None:
        if job is None:
            status.update(
                state=StepState.FAILED.value, message=f"job {name} is gone", finishedAt=now
            )
            return
        status["attempts"] = max(job.attempt, 1)
        if job.phase == "Succeeded":
            result = store.read_record(store.result_path(spec.name, step.name))
            if result is None:
                status.update(
                    state=StepState.FAILED.value,
                    message=f"job {name} succeeded but wrote no result to {store.url}",
                    finishedAt=now,
                )
                return
            ref = ArtifactRef.from_json(result["output"])
            store.record_cache(status["cacheKey"], ref, spec.name, step.name)
            status.update(
                state=StepState.SUCCEEDED.value,
                output=ref.to_json(),
                finishedAt=job.finished_at or now,
            )
        elif job.phase in ("Failed", "Cancelled"):
            status.update(
                state=StepState.FAILED.value,
                message=f"job {name} {job.phase.lower()}: {job.message}".strip(),
                finishedAt=job.finished_at or now,
            )

    def _write(
        self,
        obj: ObjectRecord,
        status: dict[str, Any],
        before: str,
        now: float,
        jobs: list[tuple[str, str, dict[str, Any], str, int]] | None = None,
    ) -> None:
        """Write the run's status if it changed, with ``jobs`` to create in the same
        transaction. Raises ValueError when the store refuses a job (nothing written)."""
        if not jobs and json.dumps(status, sort_keys=True) == before:
            return
        manifest = dict(obj.manifest)
        manifest["status"] = status
        self.store.apply([(KIND, obj.name, manifest)], jobs or [], now)


def _set_phase(status: dict[str, Any], now: float) -> RunPhase:
    """Set the run's phase from its steps' states (and when it finished); return it."""
    phase = dag.run_phase({n: StepState(s["state"]) for n, s in status["steps"].items()})
    status["phase"] = phase.value
    if phase is not RunPhase.RUNNING:
        status.setdefault("finishedAt", now)
    return phase


def run_status_age_s(status: Mapping[str, Any], now: float | None = None) -> float:
    """Seconds since the run started (to now, or to when it finished)."""
    end = status.get("finishedAt") or (now if now is not None else time.time())
    return float(end) - float(status.get("startedAt") or end)


LABEL_PIPELINE = "phalanx.dev/pipeline"


class ScheduleReconciler:
    """Starts runs of Pipelines that have a ``schedule`` (cron, UTC) when it is due.

    Once per minute: for each scheduled Pipeline, the latest due time after its
    ``status.lastScheduleTime`` (or its creation). With a run of it still going, the
    concurrency policy decides: Allow starts another, Forbid skips this time, Replace cancels
    the running one (its running jobs, the run Failed) and starts a new one. The run is a
    PipelineRun of ``spec.pipeline`` owned by the Pipeline, with its queue, artifact store and
    code; the time is written to the Pipeline's status either way.
    """

    name = "pipeline-schedules"

    def __init__(self, store: Store, cancel_job: Callable[[str], object]) -> None:
        self.store = store
        self.cancel_job = cancel_job
        self._checked_minute = -1

    def reconcile(self, now: float) -> None:
        minute = int(now // 60)
        if minute == self._checked_minute:
            return
        self._checked_minute = minute
        for obj in self.store.list_objects("Pipeline"):
            try:
                self.reconcile_pipeline(obj, now)
            except Exception as exc:  # contained to this pipeline
                log.exception("schedule of pipeline %s failed", obj.name)
                record_error(self.store, self.name, "Pipeline", obj.name, exc, now)

    def reconcile_pipeline(self, obj: ObjectRecord, now: float) -> str | None:
        """Start a run of ``obj`` if one is due; return its name (None if none started)."""
        spec = parse_pipeline(obj.manifest)
        if spec.schedule is None:
            return None
        status = dict(obj.manifest.get("status") or {})
        last = float(status.get("lastScheduleTime") or obj.created_at)
        due = parse_cron(spec.schedule.cron).last_fire(last, now)
        if due is None:
            return None
        status["lastScheduleTime"] = due
        running = [
            r
            for r in self.store.list_objects(KIND)
            if r.labels.get(LABEL_PIPELINE) == obj.name
            and (r.manifest.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        ]
        name = f"{obj.name[:40]}-{time.strftime('%Y%m%d-%H%M', time.gmtime(due))}"
        started: str | None = None
        if running and spec.schedule.concurrency == "Forbid":
            status["lastSkipped"] = {
                "at": due,
                "because": "run " + ", ".join(r.name for r in running) + " is still going",
            }
        else:
            if spec.schedule.concurrency == "Replace":
                for run in running:
                    self._cancel_run(run, name, now)
            manifest = {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "metadata": {
                    "name": name,
                    "labels": {LABEL_PIPELINE: obj.name},
                    "ownerReferences": [{"kind": "Pipeline", "name": obj.name, "uid": obj.uid}],
                },
                "spec": {
                    k: v
                    for k, v in {
                        "pipeline": obj.name,
                        "queue": spec.queue,
                        "artifacts": spec.artifacts,
                        "artifactsSecret": spec.artifacts_secret,
                        "code": dict(spec.code),
                    }.items()
                    if v
                },
            }
            parsed = kinds.parse(manifest)
            self.store.apply([(KIND, name, parsed.manifest)], [], now)
            status["lastRun"] = started = name
        updated = dict(obj.manifest)
        updated["status"] = status
        self.store.apply([("Pipeline", obj.name, updated)], [], now)
        return started

    def _cancel_run(self, run: ObjectRecord, by: str, now: float) -> None:
        status = json.loads(json.dumps(run.manifest.get("status") or {}))
        for step in (status.get("steps") or {}).values():
            if step.get("state") == StepState.RUNNING and step.get("job"):
                self.cancel_job(step["job"])
            if step.get("state") in (StepState.RUNNING, StepState.PENDING):
                step.update(state=StepState.FAILED.value, message=f"replaced by run {by}")
        status.update(phase=RunPhase.FAILED.value, message=f"replaced by run {by}", finishedAt=now)
        manifest = dict(run.manifest)
        manifest["status"] = status
        self.store.apply([(KIND, run.name, manifest)], [], now)


def _owner(manifest: Mapping[str, Any]) -> str | None:
    """The ``metadata.owner`` of a stored manifest (None: written without one)."""
    metadata = manifest.get("metadata")
    owner = metadata.get("owner") if isinstance(metadata, Mapping) else None
    return owner if isinstance(owner, str) and owner else None
