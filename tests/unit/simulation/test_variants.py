"""Workload variants (simulation/variants.py), the openb loader's optional columns and the
published results in both of the FGD artifact's formats."""

from pathlib import Path

import pytest

from phalanx.model.objects import PodSet
from phalanx.model.resources import Resources
from phalanx.simulation.api import load_published
from phalanx.simulation.openb import load_openb_pods
from phalanx.simulation.trace import TraceError, TraceJob, make_node
from phalanx.simulation.variants import make_variant, variant_names, workload_mix, write_openb_csv

NODES = [make_node(f"t4-{i}", 32000, 128 << 30, 2, "T4") for i in range(4)] + [
    make_node(f"v100-{i}", 96000, 512 << 30, 8, "V100") for i in range(2)
]


def _job(name: str, cpu: int, gpu: int, t: float) -> TraceJob:
    return TraceJob(name, t, 10.0, "be", (PodSet("pod", 1, Resources(cpu, 1 << 30, gpu)),))


def _trace() -> list[TraceJob]:
    jobs = []
    for i in range(40):
        kind = i % 5
        if kind == 0:
            jobs.append(_job(f"cpu{i}", 2000 + 100 * i, 0, i))
        elif kind in (1, 2):
            jobs.append(_job(f"share{i}", 4000, 100 + 20 * i, i))
        elif kind == 3:
            jobs.append(_job(f"one{i}", 8000, 1000, i))
        else:
            jobs.append(_job(f"multi{i}", 16000, 4000 if i % 2 else 8000, i))
    return jobs


@pytest.mark.parametrize(
    ("name", "family", "target", "tolerance"),
    [
        ("cpu10", "cpu", 10, 3),
        ("cpu50", "cpu", 50, 3),
        ("gpushare20", "gpushare", 20, 2),  # 32 GPU jobs: steps of 3 %
        ("gpushare100", "gpushare", 100, 0),
        ("multigpu80", "multigpu", 80, 3),
        ("gpuspec33", "gpuspec", 33, 2),
    ],
)
def test_variant_reaches_its_share(name: str, family: str, target: int, tolerance: int) -> None:
    jobs = _trace()
    variant = make_variant(name, jobs, NODES)
    mix = variant.mix()
    assert abs(mix[family] - target) <= tolerance, mix
    assert variant == make_variant(name, jobs, NODES)  # seeded: the same trace every time
    assert make_variant(name, jobs, NODES, seed=7) != variant or family == "multigpu"
    assert [j.submit_s for j in variant.jobs] == sorted(j.submit_s for j in variant.jobs)
    assert len({j.name for j in variant.jobs}) == len(variant.jobs)


def test_variants_keep_what_their_family_does_not_change() -> None:
    jobs = _trace()
    base = workload_mix(jobs)
    assert make_variant("default", jobs, NODES).jobs == tuple(jobs)
    assert base["multigpu"] > 20  # already more than asked: nothing added
    assert make_variant("multigpu20", jobs, NODES).jobs == tuple(jobs)
    gpu = make_variant("cpu50", jobs, NODES).jobs
    assert [j for j in gpu if j.gpu_milli] == [j for j in jobs if j.gpu_milli]
    spec = make_variant("gpuspec33", jobs, NODES)
    assert {k: v for k, v in spec.mix().items() if k != "gpuspec"} == {
        k: v for k, v in base.items() if k != "gpuspec"
    }
    for job in spec.jobs:
        if job.gpu_models:
            (model,) = job.gpu_models
            # Only a model whose nodes could hold the job: 8-GPU jobs only on V100.
            assert model == "V100" or job.gpu_milli <= 2000


def test_unknown_variant_names_the_forms() -> None:
    with pytest.raises(ValueError, match="family one of cpu, gpushare, multigpu, gpuspec"):
        make_variant("gpus50", _trace(), NODES)
    with pytest.raises(ValueError, match="at most 100"):
        make_variant("cpu150", _trace(), NODES)
    assert variant_names()[0] == "default" and "gpuspec33" in variant_names()


def test_variant_round_trips_through_an_openb_pod_list(tmp_path: Path) -> None:
    variant = make_variant("gpuspec33", _trace(), NODES)
    path = tmp_path / "v.csv"
    write_openb_csv(variant.jobs, path)
    back = load_openb_pods(path).jobs
    assert [(j.name, j.pod_sets[0].resources, j.gpu_models) for j in back] == [
        (j.name, j.pod_sets[0].resources, j.gpu_models) for j in variant.jobs
    ]


def test_openb_pod_list_with_only_resource_columns(tmp_path: Path) -> None:
    path = tmp_path / "pods.csv"
    path.write_text("cpu_milli,memory_mib,num_gpu,gpu_milli\n4000,1024,1,500\n1000,512,0,0\n")
    trace = load_openb_pods(path)
    assert [j.name for j in trace.jobs] == ["openb-pod-0000", "openb-pod-0001"]  # file order
    assert trace.jobs[0].pod_sets[0].resources == Resources(4000, 1024 << 20, 500)
    assert any("file order" in note for note in trace.notes)
    path.write_text("name,cpu_milli,num_gpu\np0,4000,1\n")
    with pytest.raises(TraceError, match="missing column\\(s\\) memory_mib, gpu_milli"):
        load_openb_pods(path)


def test_openb_pod_list_without_creation_time_keeps_file_order(tmp_path: Path) -> None:
    path = tmp_path / "pods.csv"
    path.write_text(
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli\nz,1,1,0,0\na,1,1,1,1000\nm,1,1,1,300\n"
    )
    assert [j.name for j in load_openb_pods(path).jobs] == ["z", "a", "m"]


LONG = (
    "policy,seed,arrived_load_pct,gpu_allocation_pct\n"
    "06-FGD,42,100,95.0\n06-FGD,43,100,96.0\n05-BestFit,42,100,92.0\n"
)
WIDE = (
    "workload,sc_policy,tune,seed,total_gpus,0,1,100,130\n"
    "openb_pod_list_default,06-FGD,1.3,42,6212,0.2,1.0,95.0,95.5\n"
    "openb_pod_list_default,06-FGD,1.3,43,6212,0.2,1.0,96.0,96.5\n"
    "openb_pod_list_default,05-BestFit,1.3,42,6212,0.2,1.0,92.0,93.0\n"
    "openb_pod_list_cpu050,06-FGD,1.3,42,6212,0.2,1.0,80.0,81.0\n"
)


def test_published_results_in_both_formats(tmp_path: Path) -> None:
    long, wide = tmp_path / "long.csv", tmp_path / "wide.csv"
    long.write_text(LONG)
    wide.write_text(WIDE)
    from_long = load_published(str(long))
    assert from_long[("fgd", 100)] == 95.5 and from_long[("best-fit", 100)] == 92.0
    from_wide = load_published(str(wide), "openb_pod_list_default")
    assert from_wide[("fgd", 100)] == 95.5 and from_wide[("fgd", 130)] == 96.0
    assert from_wide[("best-fit", 130)] == 93.0
    assert load_published(str(wide), "openb_pod_list_cpu050")[("fgd", 100)] == 80.0
    with pytest.raises(TraceError, match="no results for workload 'mine' among"):
        load_published(str(wide), "mine")
    one = tmp_path / "one.csv"
    one.write_text("\n".join(WIDE.splitlines()[:3]) + "\n")
    assert load_published(str(one), "mine")[("fgd", 100)] == 95.5  # one workload: taken
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(TraceError, match="unknown published-results format"):
        load_published(str(bad))
