"""Trace loaders (openb, our CSV and YAML, cluster specs) and ``phalanx simulate``."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from phalanx.cli.main import app
from phalanx.simulation.openb import load_openb_nodes, load_openb_pods, parse_qos_overrides
from phalanx.simulation.trace import TraceError, load_nodes, load_trace
from phalanx.simulation.world import build_world, job_spec

OPENB_NODES = "sn,cpu_milli,memory_mib,gpu,model\nn0,16000,65536,2,T4\nn1,16000,65536,2,P100\n"
OPENB_PODS = (
    "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,"
    "deletion_time,scheduled_time\n"
    "p0,4000,1024,1,500,,LS,Running,0,100,0\n"
    "p1,4000,1024,2,1000,,BE,Running,10,50,20\n"
    "p2,1000,1024,0,0,,BE,Running,5,15,5\n"
    "p3,1000,1024,1,1000,P100,Guaranteed,Running,30,40,30\n"
)


@pytest.fixture
def openb(tmp_path: Path) -> tuple[Path, Path]:
    nodes = tmp_path / "nodes.csv"
    pods = tmp_path / "pods.csv"
    nodes.write_text(OPENB_NODES)
    pods.write_text(OPENB_PODS)
    return nodes, pods


def test_openb_loader_maps_gpus_qos_and_runtimes(openb: tuple[Path, Path]) -> None:
    nodes_path, pods_path = openb
    nodes = load_openb_nodes(nodes_path)
    assert [(n.name, len(n.gpus), n.allocatable.memory_bytes) for n in nodes] == [
        ("n0", 2, 64 << 30),
        ("n1", 2, 64 << 30),
    ]
    trace = load_openb_pods(pods_path)
    got = [
        (j.name, j.gpu_milli, j.queue, j.priority, j.runtime_s, sorted(j.gpu_models))
        for j in trace.jobs
    ]
    assert got == [
        ("p0", 500, "ls", 2, 100.0, []),
        ("p2", 0, "be", 0, 10.0, []),
        ("p1", 2000, "be", 0, 30.0, []),
        ("p3", 1000, "guaranteed", 3, 10.0, ["P100"]),
    ]
    overridden = load_openb_pods(pods_path, parse_qos_overrides(["BE=batch:1"]))
    assert {j.queue for j in overridden.jobs} == {"ls", "batch", "guaranteed"}
    with pytest.raises(TraceError, match="expected QOS=queue:priority"):
        parse_qos_overrides(["BE"])


def test_gpu_models_become_a_flavor_and_queue(openb: tuple[Path, Path]) -> None:
    nodes_path, pods_path = openb
    trace = load_openb_pods(pods_path)
    world = build_world(load_openb_nodes(nodes_path), trace.jobs)
    p3 = next(j for j in trace.jobs if j.name == "p3")
    spec = job_spec(p3)
    assert spec.queue == "guaranteed-models-p100"
    queue = next(q for q in world.queues if q.name == spec.queue)
    flavor = next(f for f in world.flavors if f.name == queue.flavors[0].flavor)
    assert [n.name for n in world.nodes if flavor.matches(n.labels)] == ["n1"]


def test_our_csv_and_yaml_formats(tmp_path: Path) -> None:
    csv_path = tmp_path / "t.csv"
    csv_path.write_text(
        "name,submit_s,runtime_s,queue,user,priority,pod_set,replicas,cpu,memory,gpu\n"
        "train,5,60,research,ana,1,worker,4,8,32Gi,1\n"
        "train,5,60,research,ana,1,ps,1,2,4Gi,0\n"
        "probe,1,5,dev,bo,0,main,1,500m,1Gi,0.25\n"
    )
    trace = load_trace(csv_path)
    assert [j.name for j in trace.jobs] == ["probe", "train"]
    train = trace.jobs[1]
    assert [(ps.name, ps.replicas, ps.resources.gpu_milli) for ps in train.pod_sets] == [
        ("worker", 4, 1000),
        ("ps", 1, 0),
    ]
    assert (train.user, train.priority, train.gpu_milli) == ("ana", 1, 4000)
    yaml_path = tmp_path / "t.yaml"
    yaml_path.write_text(
        "jobs:\n"
        "- name: train\n  submit_s: 5\n  runtime_s: 60\n  queue: research\n  user: ana\n"
        "  gpu_models: A100|H100\n"
        "  podSets:\n  - name: worker\n    replicas: 2\n"
        "    resources: {cpu: 8, memory: 32Gi, nvidia.com/gpu: 8}\n"
    )
    job = load_trace(yaml_path).jobs[0]
    assert (job.gpu_milli, sorted(job.gpu_models)) == (16000, ["A100", "H100"])
    bad = tmp_path / "bad.csv"
    bad.write_text("name,submit_s\nx,1\n")
    with pytest.raises(TraceError, match=r"bad.csv:2: missing runtime_s, queue"):
        load_trace(bad)


def test_yaml_cluster_spec(tmp_path: Path) -> None:
    spec = tmp_path / "cluster.yaml"
    spec.write_text(
        "nodes:\n- {prefix: h100, count: 2, cpu: 64, memory: 512Gi, gpus: 8, model: H100}\n"
    )
    nodes = load_nodes(spec)
    assert [(n.name, len(n.gpus), n.gpu_model) for n in nodes] == [
        ("h100-0", 8, "H100"),
        ("h100-1", 8, "H100"),
    ]


def test_simulate_command_side_by_side(openb: tuple[Path, Path], tmp_path: Path) -> None:
    nodes_path, pods_path = openb
    report = tmp_path / "out" / "report.md"
    report.parent.mkdir()
    args = ["simulate", str(pods_path), "--nodes", str(nodes_path), "-p", "best-fit", "-p"]
    args += ["random", "--seeds", "1-2", "--report", str(report)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "| best-fit | 2 |" in result.output and "| random | 2 |" in result.output
    assert "allocation_curve.png" in report.read_text()
    full = CliRunner().invoke(
        app,
        ["simulate", str(pods_path), "--nodes", str(nodes_path), "--mode", "full", "-o", "json"],
    )
    assert full.exit_code == 0, full.output
    data = json.loads(full.stdout[full.stdout.index("{") :])
    assert (data["full"][0]["completed"], data["full"][0]["engine"]) == (4, "controllers")
    args = ["simulate", str(pods_path), "--nodes", str(nodes_path), "--mode", "full"]
    session = CliRunner().invoke(app, [*args, "--engine", "session", "-o", "json"])
    assert session.exit_code == 0, session.output
    data = json.loads(session.stdout[session.stdout.index("{") :])
    assert (data["full"][0]["completed"], data["full"][0]["engine"]) == (4, "session")
    wrong = CliRunner().invoke(
        app, ["simulate", str(pods_path), "--nodes", str(nodes_path), "--engine", "fast"]
    )
    assert wrong.exit_code == 2 and "use controllers or session" in wrong.output
    bad = CliRunner().invoke(
        app, ["simulate", str(pods_path), "--nodes", str(nodes_path), "-p", "nope"]
    )
    assert bad.exit_code == 2 and "unknown placement policy 'nope'" in bad.output
