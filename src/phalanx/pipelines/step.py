"""The process of one step's pod: ``python -m phalanx.pipelines.step``.

Reads what to run from ``PHALANX_PIPELINE_STEP`` (JSON: run, step, task, code hash, artifact
store URL and the inputs' artifact refs, small ones inline), or from the record that
variable's ``inputsRecord`` names when the inputs were too large for the environment. Loads
the task (the pipeline's code must be importable here: see docs/pipelines.md), checks that
its code hash is the one the pipeline was compiled with, calls it and, on rank 0 of a gang,
stores the output and writes ``results/<run>/<step>.json`` (one write for a small output).
Exit status 1 on failure, with the traceback on stderr (the step's log).
"""

from __future__ import annotations

import atexit
import json
import os
import sys

from phalanx.pipelines.artifacts import ArtifactRef, ArtifactStore
from phalanx.pipelines.execution import call_step, load_task

ENV_STEP = "PHALANX_PIPELINE_STEP"


def main() -> int:
    raw = os.environ.get(ENV_STEP)
    if not raw:
        print(f"{ENV_STEP} is not set: this runs as a pipeline step's pod", file=sys.stderr)
        return 2
    spec = json.loads(raw)
    store = ArtifactStore(spec["artifacts"])
    if "inputsRecord" in spec:
        spec["inputs"] = (store.read_record(spec["inputsRecord"]) or {})["inputs"]
    run, step = spec["run"], spec["step"]
    try:
        task = load_task(spec["task"])
        if spec.get("codeHash") and task.code_hash != spec["codeHash"]:
            raise RuntimeError(
                f"step {step!r}: the code of task {spec['task']} here (hash "
                f"{task.code_hash[:19]}…) differs from the code the pipeline was compiled "
                f"from ({spec['codeHash'][:19]}…); ship the same code (image or mounted "
                "package) or compile the pipeline again"
            )
        refs = {k: ArtifactRef.from_json(v) for k, v in spec["inputs"].items()}
        value = call_step(task, step, refs, store)
    except Exception:  # the step's failure: the traceback is the job's log
        import traceback  # only now: it imports textwrap, whose start-up costs every step

        traceback.print_exc()
        return 1
    if os.environ.get("RANK", "0") == "0":
        ref = store.put(value)
        store.write_record(store.result_path(run, step), {"output": ref.to_json()})
    return 0


def exit_now(status: int) -> None:
    """End the process with ``status`` without the interpreter's teardown (freeing every
    module and object one by one), which costs a trivial step more than its work. The
    result record is already written; atexit handlers still run and the output is flushed.
    While a thread of the task still runs, exit normally, which waits for it."""
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        sys.exit(status)
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    exit_now(main())
