"""Pure output helpers: tables, ages, quantities, devices, and the rows of ``get``."""

from __future__ import annotations

import pytest

from phalanx.cli.describe import describe_job, format_devices
from phalanx.cli.doctor import overload_note, start_text
from phalanx.cli.tables import (
    format_age,
    humanize_memory,
    job_rows,
    node_rows,
    render_table,
    truncate,
)
from phalanx.client import DeviceInfo, EstimateInfo, JobInfo, NodeInfo

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, "0s"),
        (-3, "0s"),
        (59.9, "59s"),
        (119, "119s"),
        (120, "2m"),
        (200, "3m20s"),
        (600, "10m"),
        (179 * 60, "179m"),
        (3 * 3600, "3h"),
        (5 * 3600 + 10 * 60, "5h10m"),
        (30 * 3600, "30h"),
        (3 * 86400, "3d"),
        (3 * 86400 + 4 * 3600, "3d4h"),
        (40 * 86400, "40d"),
        (800 * 86400, "2y"),
    ],
)
def test_format_age_reads_like_kubectl(seconds: float, expected: str) -> None:
    assert format_age(seconds) == expected


def test_render_table_aligns_columns_three_spaces_apart() -> None:
    assert render_table(["NAME", "PHASE"], [["a-long-name", "Running"], ["b", "Pending"]]) == (
        "NAME          PHASE\na-long-name   Running\nb             Pending"
    )


@pytest.mark.parametrize(
    ("text", "width", "expected"),
    [
        ("short", 10, "short"),
        ("exactly ten", 11, "exactly ten"),
        ("a much longer reason", 10, "a much lo…"),
        ("multi\nline   text", 20, "multi line text"),
    ],
)
def test_truncate(text: str, width: int, expected: str) -> None:
    assert truncate(text, width) == expected


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [
        ("12342048Ki", "11.8Gi"),
        ("16Gi", "16Gi"),
        ("512Mi", "512Mi"),
        ("0", "0"),
        ("bogus", "bogus"),
    ],
)
def test_humanize_memory(quantity: str, expected: str) -> None:
    assert humanize_memory(quantity) == expected


@pytest.mark.parametrize(
    ("devices", "expected"),
    [
        ([], "<none>"),
        ([{"index": 0, "milli": 1000}, {"index": 1, "milli": 1000}], "0,1"),
        ([{"index": 3, "milli": 500}], "3(0.5)"),
    ],
)
def test_format_devices(devices: list[DeviceInfo], expected: str) -> None:
    assert format_devices(devices) == expected


def make_job_info(**overrides: object) -> JobInfo:
    job: dict[str, object] = {
        "metadata": {
            "name": "train",
            "uid": "5e" * 16,
            "labels": {"team": "a", "tier": "batch"},
            "annotations": {},
            "ownerReferences": [],
            "resourceVersion": 12,
            "generation": 1,
            "creationTimestamp": "",
        },
        "name": "train",
        "queue": "team-a",
        "priority": 10,
        "phase": "Pending",
        "is_finished": False,
        "reason_code": "QuotaExceeded",
        "message": "queue team-a uses 16/16 nvidia.com/gpu of flavor h100 " + "x" * 80,
        "flavor": "",
        "attempt": 0,
        "restarts": 0,
        "pod_count": 4,
        "running_pods": 0,
        "request": {"nvidia.com/gpu": "32"},
        "created_at": NOW - 200,
        "created_at_iso": "",
        "admitted_at": None,
        "admitted_at_iso": None,
        "started_at": None,
        "started_at_iso": None,
        "finished_at": None,
        "finished_at_iso": None,
        "manifest": {
            "spec": {
                "podSets": [
                    {
                        "name": "worker",
                        "replicas": 4,
                        "resources": {"nvidia.com/gpu": "8"},
                        "command": ["python", "-c", "print(1)\nprint(2)"],
                    }
                ]
            }
        },
        "pods": [],
        "events": [],
    }
    job.update(overrides)
    return job  # type: ignore[return-value]


def test_job_rows_truncate_the_reason_unless_wide() -> None:
    headers, rows = job_rows([make_job_info()], NOW, wide=False)
    assert headers == ["NAME", "QUEUE", "PRIORITY", "PHASE", "PODS", "AGE", "REASON"]
    assert rows[0][:6] == ["train", "team-a", "10", "Pending", "0/4", "3m20s"]
    assert len(rows[0][6]) == 60 and rows[0][6].endswith("…")
    _, wide_rows = job_rows([make_job_info()], NOW, wide=True)
    assert wide_rows[0][6:9] == ["<none>", "0", "<none>"]
    assert not wide_rows[0][9].endswith("…")


def test_node_rows_show_use_against_capacity() -> None:
    node: NodeInfo = {
        "name": "n1",
        "is_ready": True,
        "is_quarantined": True,
        "gpu_model": "H100",
        "allocatable": {"cpu": "32", "memory": "256Gi", "nvidia.com/gpu": "8"},
        "used": {"cpu": "4", "nvidia.com/gpu": "2.5"},
        "gpus": [],
        "labels": {},
        "taints": [{"key": "maintenance", "value": "", "effect": "NoSchedule"}],
        "pods": ["a/worker-0"],
    }
    headers, rows = node_rows([node], wide=True)
    assert headers == ["NAME", "READY", "GPUS", "CPU", "MEMORY", "MODEL", "PODS", "TAINTS"]
    assert rows == [
        [
            "n1",
            "True,Quarantined",
            "2.5/8",
            "4/32",
            "0/256Gi",
            "H100",
            "1",
            "maintenance=:NoSchedule",
        ]
    ]


def test_describe_job_keeps_the_pod_set_table_on_one_line_per_pod_set() -> None:
    text = describe_job(make_job_info(), NOW)
    pod_sets = text.split("Pod Sets:\n")[1].split("Status:")[0].splitlines()
    assert len(pod_sets) == 2
    assert pod_sets[1].split()[:5] == ["worker", "4", "0", "0", "8"]
    assert "Queued For:" in text and "3m20s" in text
    assert "\n  Reason:     QuotaExceeded\n" in text


def make_estimate(wait_s: float | None, load: float) -> EstimateInfo:
    return {
        "job": "j",
        "queue": "q",
        "start_at": None if wait_s is None else NOW + wait_s,
        "wait_s": wait_s,
        "waits_on": "Unschedulable",
        "after": ["holder"],
        "higher_priority_load": load,
    }


@pytest.mark.parametrize(
    ("wait_s", "load", "expected"),
    [(600, 0.0, "in 10m"), (600, 0.99, "in 10m"), (600, 1.0, "in 10m+"), (0, 2.5, "now+")],
)
def test_a_start_behind_an_inflow_of_higher_priority_work_is_marked(
    wait_s: float, load: float, expected: str
) -> None:
    assert start_text(make_estimate(wait_s, load)) == expected
    assert start_text(make_estimate(None, load)) == "unknown"


def test_describe_says_a_start_holds_only_if_higher_priority_work_stops_coming() -> None:
    calm = describe_job(make_job_info(), NOW, make_estimate(600, 0.5))
    assert "Estimated start: in 10m (after holder end)" in calm and "Start later" not in calm
    busy = describe_job(make_job_info(), NOW, make_estimate(600, 1.6))
    assert "in 10m+ (after holder end)" in busy
    assert "Start later: while higher-priority work keeps coming: lately it asks 1.6× what" in busy


def test_a_wide_table_explains_the_plus_only_when_it_shows_one() -> None:
    calm = {"a": make_estimate(600, 0.2), "b": make_estimate(None, 3.0)}  # b: "unknown", no +
    assert overload_note(["a", "b", "not-pending"], calm) == ""
    busy = {**calm, "c": make_estimate(60, 1.2)}
    assert overload_note(["a", "b"], busy) == ""  # c is not in the table
    note = overload_note(["a", "c"], busy)
    assert note.startswith("START +: higher-priority work arrives faster than the cluster")


def test_describe_tells_the_steps_in_all_and_the_end_at_this_pace() -> None:
    progress = {
        "step": 120,
        "reported_at": NOW - 5,
        "checkpoint_step": None,
        "checkpoint_at": None,
        "checkpoint_at_iso": None,
        "checkpoint_path": "",
        "total_steps": 1000,
        "expected_end_at": NOW + 1500,
    }
    text = describe_job(make_job_info(phase="Running", progress=progress), NOW)
    assert "Progress:" in text and "step 120 of 1000 (" in text
    assert "ago)); ends in 25m at this pace\n" in text
    done = describe_job(make_job_info(phase="Succeeded", progress=progress), NOW)
    assert "step 120 of 1000 (" in done and "at this pace" not in done
    unknown = {**progress, "total_steps": None, "expected_end_at": None}
    text = describe_job(make_job_info(phase="Running", progress=unknown), NOW)
    assert "step 120 (" in text and "at this pace" not in text
