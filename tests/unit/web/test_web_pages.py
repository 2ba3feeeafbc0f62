"""The dashboard's renderers on hand-made API JSON: what each page shows, escaping, refused
sections, the GPU map and the charts."""

from __future__ import annotations

import re
from typing import Any

import pytest

from phalanx.web import charts, render_job, render_jobs, render_nodes, render_overview
from phalanx.web.jobs import JobFilter, LogTail, sort_jobs
from phalanx.web.markup import quantity
from phalanx.web.pages import Overview, Refused, queue_rows
from phalanx.web.static import STATIC_FILES, static_file, static_url
from phalanx.web.workloads import (
    render_pipeline_run,
    render_pipeline_runs,
    render_services,
    step_layers,
)


def job(name: str, phase: str = "Running", **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": name,
        "queue": "a",
        "phase": phase,
        "reason": {"code": "QuotaExceeded", "message": "queue a uses 4/4", "facts": {"used": 4}},
        "reason_code": "QuotaExceeded",
        "message": "queue a uses 4/4",
        "running_pods": 1,
        "pod_count": 2,
        "request": {"nvidia.com/gpu": "2"},
        "priority": 0,
        "created_at": 1_700_000_000.0,
        "admitted_at": None,
        "started_at": None,
        "finished_at": None,
        "flavor": "default",
        "attempt": 1,
        "restarts": 0,
        "metadata": {"resourceVersion": 7},
        "pods": [],
        "events": [],
        "progress": None,
    }
    out.update(extra)
    return out


def test_values_are_escaped() -> None:
    html = render_jobs([job("<script>x</script>")], JobFilter(), "", "5")
    assert "<script>x</script>" not in html
    assert "&lt;script&gt;x&lt;/script&gt;" in html


@pytest.mark.parametrize(
    ("key", "descending", "expected"),
    [
        ("created", False, ["b", "a", "c"]),
        ("created", True, ["c", "a", "b"]),
        ("name", False, ["a", "b", "c"]),
        ("phase", True, ["b", "c", "a"]),
    ],
)
def test_jobs_sort_within_the_page(key: str, descending: bool, expected: list[str]) -> None:
    jobs = [job("b", "Running"), job("a", "Failed"), job("c", "Pending")]
    assert [j["name"] for j in sort_jobs(jobs, key, descending)] == expected


def test_the_jobs_page_filters_pages_and_says_where_to_watch_from() -> None:
    jobs = [job("a", "Running"), job("b", "Pending")]
    html = render_jobs(jobs, JobFilter(phase="Pending", queue="a", limit=2), "17", "42")
    assert re.findall(r'<tr data-job="(\w+)"', html) == ["b"]
    assert (
        'rel="next" href="/ui/jobs?queue=a&amp;phase=Pending&amp;limit=2&amp;continue=17"' in html
    )
    assert 'data-rv="42"' in html and 'data-watch="Job"' in html
    assert 'data-last_page=""' in html  # a next page exists: new jobs are not appended here


def test_a_refused_log_is_a_note_not_the_output() -> None:
    html = render_job(job("j"), LogTail("worker-0", refused=Refused(403, "needs user")))
    assert "logs: not allowed for your role" in html
    assert '<pre class="log">' not in html
    shown = render_job(job("j"), LogTail("worker-0", "line 1\nline 2", pods=["worker-0"]))
    assert '<pre class="log">line 1\nline 2</pre>' in shown


def test_the_job_page_shows_reason_facts_progress_and_devices() -> None:
    pods = [
        {
            "name": "worker-0",
            "pod_set": "worker",
            "index": 0,
            "attempt": 1,
            "node": "n1",
            "devices": [{"index": 3, "milli": 1000}, {"index": 4, "milli": 500}],
            "phase": "Running",
            "exit_code": None,
            "reason": "",
            "started_at": None,
            "finished_at": None,
        }
    ]
    progress = {"step": 200, "checkpoint_step": 150, "checkpoint_at": None, "checkpoint_path": "/c"}
    html = render_job(job("j", pods=pods, progress=progress), None)
    assert "GPU 3, GPU 4 (0.5)" in html
    assert "<dt>used</dt><dd>4</dd>" in html
    assert 'width="150.0"' in html  # the checkpoint bar: 150 of 200 steps
    assert "<dt>Step</dt><dd>200</dd>" in html
    html = render_job(job("j", pods=pods, progress={**progress, "total_steps": 1000}), None)
    assert "<dt>Step</dt><dd>200 of 1000</dd>" in html


def test_the_gpu_map_draws_every_device_with_its_holders() -> None:
    node = {
        "name": "n1",
        "is_ready": True,
        "is_quarantined": True,
        "gpu_model": "H100",
        "used": {"nvidia.com/gpu": "1500m"},
        "allocatable": {"nvidia.com/gpu": "4"},
        "gpus": [
            {"index": i, "model": "H100", "memory": "80Gi", "used_milli": u}
            for i, u in enumerate((1000, 500, 0, 0))
        ],
        "quarantine": {
            "since": 1.0,
            "until": None,
            "reason": "3 failures in 600 s",
            "code": "Quarantined",
            "facts": {"failures": 3},
        },
        "failures": [{"at": 1.0, "job": "x", "attempt": 1, "pod": "worker-0", "reason": "Xid 79"}],
    }
    holders = {("n1", 0): [("big", "worker-0", 1000)], ("n1", 1): [("half", "worker-0", 500)]}
    html = render_nodes([node], holders, "3")
    cells = re.findall(r'data-index="(\d)" data-used-milli="(\d+)" data-holders="([^"]*)"', html)
    assert cells == [
        ("0", "1000", "big/worker-0:1000"),
        ("1", "500", "half/worker-0:500"),
        ("2", "0", ""),
        ("3", "0", ""),
    ]
    assert "half/worker-0</a> (0.5)" in html
    assert "Quarantined" in html and "Xid 79" in html and "<dt>failures</dt><dd>3</dd>" in html


def test_the_overview_notes_refused_sections() -> None:
    data = Overview(
        samples=[(100.0, 2.0, 8.0), (110.0, 4.0, 8.0)],
        queues=[
            {
                "name": "b",
                "usage": [
                    {
                        "flavor": "default",
                        "used": {"nvidia.com/gpu": "6"},
                        "nominal": {"nvidia.com/gpu": "4"},
                    }
                ],
            }
        ],
        pending_by_reason=[("QuotaExceeded", 3.0)],
        phases={"Running": 2.0},
        doctor=Refused(403, "needs operator"),
        revision="9",
    )
    html = render_overview(data)
    assert "4 of 8 GPUs allocated now" in html
    assert "b: 2 borrowed" in html  # 6 used of a quota of 4
    assert "doctor: not allowed for your role" in html
    assert "QuotaExceeded: 3" in html


def test_queue_rows_and_quantities() -> None:
    usage = {"flavor": "f", "used": {"nvidia.com/gpu": "500m"}, "nominal": {"nvidia.com/gpu": "0"}}
    assert queue_rows([{"name": "q", "usage": [usage]}]) == [("q", 0.5, 0.0, 0.5)]
    assert quantity("16Gi") == 16 * 2**30
    assert quantity(None) == 0.0


def test_charts_without_data_say_so() -> None:
    assert "No samples yet" in charts.allocation_over_time([])
    assert "<svg" in charts.allocation_over_time([(1.0, 0.0, 8.0)])


def test_static_assets_ship_and_are_versioned_by_content() -> None:
    for name in STATIC_FILES:
        asset = static_file(name)
        assert asset.body
        assert static_url(name).endswith(f"?v={asset.digest}")
    with pytest.raises(KeyError):
        static_file("../__init__.py")


def test_a_pipeline_run_is_drawn_as_its_dag_with_states_and_cache_hits() -> None:
    steps = [
        {"name": "load", "task": "m:load"},
        {"name": "clean", "task": "m:clean", "inputs": {"raw": {"step": "load"}}},
        {"name": "stats", "task": "m:stats", "inputs": {"raw": {"step": "load"}}},
        {
            "name": "train",
            "task": "m:train",
            "inputs": {"a": {"step": "clean"}, "b": {"step": "stats"}, "lr": {"value": 0.1}},
        },
    ]
    assert step_layers(steps) == {"load": 0, "clean": 1, "stats": 1, "train": 2}
    run = {
        "metadata": {"name": "r1"},
        "spec": {"pipeline": "p", "steps": steps},
        "status": {
            "phase": "Running",
            "steps": {
                "load": {"state": "Cached", "cachedFrom": {"run": "r0", "step": "load"}},
                "clean": {"state": "Succeeded", "job": "r1-clean"},
                "stats": {"state": "Running", "job": "r1-stats"},
                "train": {"state": "Pending"},
            },
        },
    }
    html = render_pipeline_run(run)
    states = re.findall(r'data-step="(\w+)" data-state="(\w+)"', html)
    assert states == [
        ("load", "Cached"),
        ("clean", "Succeeded"),
        ("stats", "Running"),
        ("train", "Pending"),
    ]
    assert (
        html.count('<line class="edge"') == 4
    )  # load->clean, load->stats, clean->train, stats->train
    assert "(cache: r0)" in html
    assert '<a href="/ui/jobs/r1-clean">' in html
    listing = render_pipeline_runs([run])
    assert re.search(r"<td>4</td><td>1</td><td>1</td><td>0</td>", listing)


def test_a_service_shows_its_traffic_split() -> None:
    service = {
        "name": "llm",
        "queue": "a",
        "url": "/llm",
        "min_replicas": 1,
        "max_replicas": 4,
        "desired": 2,
        "ready": 2,
        "revisions": [
            {
                "name": "llm-1",
                "percent": 90,
                "ready": 1,
                "replicas": 1,
                "latest": False,
                "created_at": 1.0,
            },
            {
                "name": "llm-2",
                "percent": 10,
                "ready": 1,
                "replicas": 1,
                "latest": True,
                "created_at": 2.0,
            },
        ],
        "replicas": [
            {
                "name": "llm-1-a",
                "revision": "llm-1",
                "phase": "Ready",
                "url": "http://x",
                "reason": None,
            }
        ],
        "decisions": [{"at": 1.0, "replicas": 2, "code": "ScaleUp", "reason": "load"}],
        "error": "",
    }
    html = render_services([service])
    assert re.findall(r'data-revision="([\w-]+)"', html) == ["llm-1", "llm-2"]
    assert "90 %" in html and "10 %" in html
    assert "2 ready of 2 (1–4)" in html
