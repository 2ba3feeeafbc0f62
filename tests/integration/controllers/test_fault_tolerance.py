"""Fault tolerance end to end with real processes: checkpoints through phalanx.train, SIGTERM
with a grace period and a save-now hook, failure policies by cause (OOM, node-side, hang),
node quarantine, and a PyTorch DDP gang that resumes from its checkpoint after a worker is
killed and ends with the parameters of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from harness import PY, Harness, job_manifest, queue_manifests

from phalanx.backends.local.backend import inject_node_fault
from phalanx.controllers.health import QuarantinePolicy

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def small(manifest: dict[str, object]) -> dict[str, object]:
    """Ask for 100m CPU per pod, so several pods share the test machine's virtual nodes."""
    for ps in manifest["spec"]["podSets"]:  # type: ignore[index]
        ps["resources"]["cpu"] = "100m"
    return manifest


SAVE_ON_SIGTERM = """
import time
from phalanx import train
run = train.init()
run.report_progress(1)
while not run.should_stop:
    time.sleep(0.05)
run.report_checkpoint(7, "ckpt-7")
print("saved on SIGTERM", flush=True)
"""


def test_cancel_sends_sigterm_and_the_sdk_saves_within_the_grace_period(
    harness: Harness,
) -> None:
    harness.plane.apply(queue_manifests())
    job = small(
        job_manifest("saver", SAVE_ON_SIGTERM, failurePolicy={"terminationGracePeriod": "20s"})
    )
    harness.plane.apply([job])
    harness.run_until(lambda: (p := harness.job("saver").progress) is not None and p.step == 1)
    harness.plane.cancel_job("saver")
    harness.run_until(lambda: not harness.plane.store.pods(live_only=True))
    view = harness.job("saver")
    assert view.progress is not None and view.progress.checkpoint_step == 7
    assert view.progress.checkpoint_path == "ckpt-7"
    assert "saved on SIGTERM" in harness.logs("saver")
    assert view.manifest["spec"]["failurePolicy"] == {"terminationGracePeriod": "20s"}  # type: ignore[index]


def test_oom_fails_fast_with_a_message_naming_the_memory_limit(harness: Harness) -> None:
    harness.plane.apply(queue_manifests())
    hog = "import time; x = bytearray(300 * 1024 * 1024); time.sleep(30)"
    job = small(
        job_manifest(
            "hog",
            hog,
            restartPolicy={"policy": "OnFailure", "maxRestarts": 3, "backoff": "0.1s"},
            failurePolicy={"enforceMemory": True},
        )
    )
    harness.plane.apply([job])
    harness.run_until(lambda: harness.phase("hog") == "Failed")
    view = harness.job("hog")
    assert view.reason_code == "OOMKilled"
    facts = view.reason_facts
    assert (facts["cause"], facts["memory_limit_bytes"], facts["outcome"]) == (
        "OOM",
        64 * 2**20,
        "FailByPolicy",
    )
    assert view.restarts == 0


def test_no_progress_within_the_hang_timeout_is_reported_as_a_hang(harness: Harness) -> None:
    harness.plane.apply(queue_manifests())
    job = small(
        job_manifest(
            "stuck",
            "import time; time.sleep(60)",
            restartPolicy={"policy": "OnFailure", "maxRestarts": 0},
            failurePolicy={"hangTimeout": "1s", "terminationGracePeriod": "1s"},
        )
    )
    harness.plane.apply([job])
    harness.run_until(lambda: harness.phase("stuck") == "Failed")
    view = harness.job("stuck")
    assert view.reason_code == "Hang"
    facts = view.reason_facts
    assert (facts["cause"], facts["has_reported"], facts["hang_timeout_s"]) == ("Hang", False, 1.0)


def test_a_node_that_keeps_failing_pods_is_quarantined_and_the_gang_avoids_it(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path, "3x2", QuarantinePolicy(threshold=2, min_jobs=1, cooldown_s=3600))
    try:
        h.plane.apply(queue_manifests())
        inject_node_fault(tmp_path, "node-0", "GPU fell off the bus (test)")
        gang = small(
            job_manifest(
                "gang",
                "import time; time.sleep(0.5)",
                gpus=2,
                replicas=2,
                restartPolicy={"policy": "OnFailure", "maxRestarts": 0, "backoff": "0.1s"},
            )
        )
        h.plane.apply([gang])
        h.run_until(lambda: h.phase("gang") == "Succeeded", timeout_s=30)
        job = h.job("gang")
        first = [p.node for p in job.pods if p.attempt == 1]
        assert "node-0" in first  # the fault was met: the first attempt ran there
        assert all(p.node != "node-0" for p in job.pods if p.attempt == job.attempt)
        assert job.restarts == 0  # node-side failures do not count against maxRestarts
        assert any(
            e.reason == "Restarting" and (e.facts["cause"], e.facts["node"]) == ("Node", "node-0")
            for e in job.events
        )
        node = h.plane.get_node("node-0")
        assert node.node.is_quarantined and node.quarantine is not None
        assert node.quarantine.code == "Quarantined"
        assert node.quarantine.facts["cause"] == "NodeSideFailures"
        assert {f.reason for f in node.failures} == {"NodeFault"}
        # Released by hand: evidence is cleared and the node takes pods again.
        h.plane.release_node("node-0")
        assert not h.plane.get_node("node-0").node.is_quarantined
    finally:
        h.plane.store.close()


def _workload_pid(data_dir: Path, pod_id: str) -> int | None:
    """The pid of a local pod's workload: the child of its supervisor."""
    import json

    try:
        sup = json.loads((data_dir / "pods" / pod_id / "pid.json").read_text())["pid"]
        children = Path(f"/proc/{sup}/task/{sup}/children").read_text().split()
    except (OSError, ValueError, KeyError):
        return None
    return int(children[0]) if children else None


def _require_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        if os.environ.get("PHALANX_REQUIRE_TORCH") == "1":
            pytest.fail("torch is required here (PHALANX_REQUIRE_TORCH=1)")
        pytest.skip("torch is not installed; `pip install torch` to run the DDP test")


def _ddp_job(name: str) -> dict[str, object]:
    job = small(
        job_manifest(
            name,
            "",
            gpus=0,
            replicas=2,
            restartPolicy={"policy": "OnFailure", "maxRestarts": 2, "backoff": "0.1s"},
            failurePolicy={"terminationGracePeriod": "5s"},
        )
    )
    ps = job["spec"]["podSets"][0]  # type: ignore[index]
    ps["command"] = [PY, str(EXAMPLES / "ddp_train.py")]
    ps["env"] = {"STEPS": "40", "CHECKPOINT_EVERY": "10", "STEP_SLEEP_S": "0.1"}
    ps["resources"]["memory"] = "1Gi"
    return job


def test_ddp_gang_resumes_from_its_checkpoint_and_matches_an_uninterrupted_run(
    tmp_path: Path,
) -> None:
    _require_torch()
    import torch

    h = Harness(tmp_path, "2x0")
    try:
        h.plane.apply(queue_manifests(gpus=0))
        h.plane.apply([_ddp_job("ref"), _ddp_job("hit")])

        def checkpointed(name: str, step: int) -> bool:
            p = h.job(name).progress
            return p is not None and (p.checkpoint_step or -1) >= step

        h.run_until(lambda: checkpointed("hit", 9), timeout_s=90)
        victim = next(p for p in h.job("hit").pods if p.pod_set == "worker" and p.index == 1)
        pid = _workload_pid(tmp_path, victim.pod_id)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        h.run_until(
            lambda: h.phase("hit") == "Succeeded" and h.phase("ref") == "Succeeded",
            timeout_s=150,
        )
        hit, ref = h.job("hit"), h.job("ref")
        assert hit.restarts == 1 and hit.attempt == 2 and ref.attempt == 1
        assert any(e.reason == "Restarting" for e in hit.events)
        assert "resuming from step" in h.logs("hit", "worker-0")
        dirs = {p.name.rsplit("-", 1)[0]: p for p in (tmp_path / "checkpoints").iterdir()}
        a = torch.load(dirs["hit"] / "final.pt")
        b = torch.load(dirs["ref"] / "final.pt")
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key  # bitwise: fixed seeds, CPU, gloo
    finally:
        for job in h.plane.list_jobs():
            h.plane.cancel_job(job.name)
        h.run_until(lambda: not h.plane.store.pods(live_only=True), timeout_s=15)
        h.plane.store.close()


@pytest.mark.gpu
def test_ddp_uses_nccl_on_gpus() -> None:
    try:
        import torch
    except ImportError:
        pytest.skip("torch is not installed")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU on this machine (the nccl path runs only with one)")
    assert torch.distributed.is_nccl_available()


CHECKPOINTS_OFTEN = """
import time
from phalanx import train
run = train.init()
step = 0
while not run.should_stop:
    run.report_checkpoint(step)
    step += 1
    time.sleep(0.1)
"""

CHECKPOINTED_ONCE = """
import time
from phalanx import train
run = train.init()
run.report_checkpoint(0)
while not run.should_stop:
    time.sleep(0.1)
"""


def test_preemption_takes_the_victim_with_less_unsaved_work(harness: Harness) -> None:
    # Same queue, priority, GPUs. "fresh" is admitted first and checkpoints every 0.1 s;
    # "stale" is admitted later and checkpointed once. Without checkpoints the most recently
    # admitted ("stale") would go; by lost work, "fresh" goes.
    harness.plane.apply(queue_manifests(gpus=4))
    harness.plane.apply([small(job_manifest("fresh", CHECKPOINTS_OFTEN, gpus=2))])
    harness.run_until(lambda: harness.phase("fresh") == "Running")
    harness.plane.apply([small(job_manifest("stale", CHECKPOINTED_ONCE, gpus=2))])
    harness.run_until(
        lambda: (p := harness.job("stale").progress) is not None and p.checkpoint_step == 0
    )
    time.sleep(1.0)  # let stale's unsaved work grow
    harness.plane.apply([small(job_manifest("urgent", "print('urgent')", gpus=2, priority=10))])
    harness.run_until(lambda: harness.phase("urgent") == "Succeeded")
    fresh, stale = harness.job("fresh"), harness.job("stale")
    preempted = [e.facts for e in fresh.events if e.reason == "Preempted"]
    assert len(preempted) == 1 and preempted[0]["preemptor"] == "urgent"
    age = preempted[0]["last_checkpoint_age_s"]
    assert isinstance(age, float) and age < 0.5  # "last checkpoint 0s ago"
    assert not any(e.reason == "Preempted" for e in stale.events)
    assert stale.phase.value == "Running"
