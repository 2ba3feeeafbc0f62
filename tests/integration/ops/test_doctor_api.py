"""The doctor and the estimates through the real API, and the SDK's methods for them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opsharness import FLAVOR, TOKEN, SimPlane, job, queue

from asgi_client import BASE_URL, AppTransport, app_client
from phalanx.api import create_app
from phalanx.client import ApiError, Client
from phalanx.ops.arrivals import recent_arrivals
from phalanx.ops.estimates import estimate_plane


@pytest.fixture
def client(sim: SimPlane, tmp_path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:  # type: ignore[no-untyped-def]
    for name in ("PHALANX_SERVER", "PHALANX_TOKEN", "PHALANX_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    with Client(
        server=BASE_URL,
        token=TOKEN,
        data_dir=tmp_path / "client",
        transport=AppTransport(create_app(sim.plane, TOKEN)),
    ) as sdk:
        yield sdk


def quota_used_up(sim: SimPlane) -> None:
    sim.apply([FLAVOR, queue("q", gpus=8)])
    sim.apply([job("holder", 8, maxRuntime="10m")])
    sim.run(60)
    sim.apply([job("waiter", 4, maxRuntime="5m")])
    sim.run(2)


def test_doctor_names_the_queue_and_who_holds_it(sim: SimPlane, client: Client) -> None:
    quota_used_up(sim)
    report = client.doctor()
    assert report["target"] == ""
    [finding] = report["findings"]
    assert (finding["code"], finding["object"], finding["subject"]) == (
        "QuotaExhausted",
        "queue/q",
        "job/waiter",
    )
    assert finding["severity"] == "warning"
    facts = finding["evidence"]["facts"]
    assert facts["holders"] == ["holder"]
    assert (facts["used"], facts["nominal"], facts["needed"]) == (8000, 8000, 4000)
    assert "raise queue q's nominal" in finding["fix"]
    assert 0 < finding["confidence"] <= 1
    # One object: the job it affects, the queue it lies in; the holder itself is fine.
    assert client.doctor("job", "waiter")["findings"] == report["findings"]
    assert client.doctor("queue", "q")["findings"] == report["findings"]
    assert client.doctor("job", "holder")["findings"] == []
    assert client.doctor("node", "n1")["findings"] == []


def test_doctor_refuses_unknown_kinds_and_objects(sim: SimPlane, client: Client) -> None:
    quota_used_up(sim)
    with pytest.raises(ApiError) as bad_kind:
        client.doctor("pod", "x")
    assert bad_kind.value.status == 400
    assert "phalanx doctor job|node|queue|service|pipelinerun NAME" in bad_kind.value.message
    for kind in ("job", "node", "queue", "service", "pipelinerun"):
        with pytest.raises(ApiError) as missing:
            client.doctor(kind, "nope")
        assert missing.value.status == 404


def test_estimates_say_when_and_after_whom(sim: SimPlane, client: Client) -> None:
    quota_used_up(sim)
    [estimate] = client.estimates()
    # The holder started 62 s ago with maxRuntime 10m: it ends in 538 s, the waiter starts.
    assert estimate["job"] == "waiter"
    assert estimate["queue"] == "q"
    assert estimate["waits_on"] == "QuotaExceeded"
    assert estimate["after"] == ["holder"]
    assert estimate["wait_s"] == pytest.approx(538, abs=1)
    assert estimate["start_at"] == pytest.approx(sim.clock.now + 538, abs=1)


def test_estimates_are_right_in_virtual_time(sim: SimPlane, client: Client) -> None:
    # Three 8-GPU jobs of 10 minutes on one queue of 8: they start 10 minutes apart.
    sim.apply([FLAVOR, queue("q", gpus=8)])
    for name in ("a", "b", "c"):
        sim.backend.set_runtime(name, 600)
    sim.plane.apply([job(n, 8, maxRuntime="10m") for n in ("a", "b", "c")])
    sim.plane.tick()
    estimates = {e["job"]: e for e in client.estimates()}
    start = sim.clock.now
    assert estimates["b"]["start_at"] == pytest.approx(start + 600, abs=1)
    assert estimates["c"]["start_at"] == pytest.approx(start + 1200, abs=1)
    sim.run(1300, tick_s=10)
    started = {j["name"]: j["started_at"] for j in client.jobs()}
    assert started["b"] == pytest.approx(start + 600, abs=11)
    assert started["c"] == pytest.approx(start + 1200, abs=21)


def test_metrics_route_is_in_openapi(sim: SimPlane) -> None:
    with app_client(create_app(sim.plane, TOKEN), None) as http:
        paths = http.get("/openapi.json").json()["paths"]
    assert {
        "/metrics",
        "/api/v1/doctor",
        "/api/v1/doctor/{kind}/{name}",
        "/api/v1/estimates",
    } <= set(paths)


def test_what_if_estimates(sim: SimPlane, client: Client) -> None:
    quota_used_up(sim)  # holder has q's 8 GPUs for 538 s more; the waiter needs 4
    [now] = client.estimates()
    assert now["wait_s"] == pytest.approx(538, abs=1)
    # With 12 GPUs of quota the waiter fits beside the holder at once (16 GPUs on 2 nodes).
    [more] = client.estimates(queue_gpus={"q": 12})
    assert more["wait_s"] == 0
    # Drain n2 as well: the holder fills n1, so it waits for the holder again.
    [drained] = client.estimates(queue_gpus={"q": 12}, drain=["n2"])
    assert drained["wait_s"] == pytest.approx(538, abs=1)
    # Nothing changed for real.
    assert client.estimates() == [now]
    for bad in ({"queue_gpus": {"nope": 1}}, {"drain": ["n9"]}):
        with pytest.raises(ApiError) as refused:
            client.estimates(**bad)  # type: ignore[arg-type]
        assert refused.value.status == 400
        assert "what-if: no" in refused.value.message


def test_recent_submissions_are_expected_again_and_delay_what_they_pass(sim: SimPlane) -> None:
    # Two 8-GPU nodes. At 0: "urgent" (priority 5, runs 60 s) and "h1" (10 min); at 100 s
    # "h2" (10 min) takes urgent's node; at 110 s "big" (2 pods of 8) needs both nodes: it
    # waits for h1 and h2. Assuming the last 300 s of submissions come again, urgent comes
    # back at 300 s and runs before big.
    sim.apply([FLAVOR, queue("q", gpus=16)])
    sim.apply([job("urgent", 8, priority=5)], runtime_s=60)
    sim.apply([job("h1", 8, maxRuntime="10m")])
    sim.run(100)
    sim.apply([job("h2", 8, maxRuntime="10m")])
    sim.run(10)
    sim.apply([job("big", 8, replicas=2, maxRuntime="10m")])
    now = sim.clock.now
    expected = recent_arrivals(sim.plane, now, 300.0)
    names = ["urgent~next", "h1~next", "h2~next", "big~next"]
    assert [w.spec.name for w in expected] == names  # in submission order
    created = {j.name: j.created_at for j in sim.store.list_jobs(manifests=False)}
    for w in expected:
        assert w.not_before == created[w.spec.name.removesuffix("~next")] + 300.0
    assert expected[0].spec.priority == 5
    assert [w.spec.name for w in recent_arrivals(sim.plane, now, 5.0)] == ["big~next"]
    plain = estimate_plane(sim.plane)
    repeated = estimate_plane(sim.plane, repeat_s=300.0)
    assert set(plain) == set(repeated) == {"big"}  # expected arrivals get no estimate
    assert plain["big"].start_at is not None and repeated["big"].start_at is not None
    assert repeated["big"].start_at > plain["big"].start_at


def test_a_wait_behind_an_inflow_of_higher_priority_work_is_flagged(
    sim: SimPlane, client: Client
) -> None:
    # Within 30 minutes three jobs of priority 5 ask the whole cluster (two 8-GPU nodes) for
    # 10 minutes each, 1.0 times what it serves; quotas are far above it.
    sim.apply([FLAVOR, queue("q", gpus=64)])
    sim.apply([job("high-0", 8, replicas=2, priority=5, maxRuntime="10m")])
    sim.run(2)
    sim.apply([job("low", 8, maxRuntime="10m")])
    sim.apply([job(f"high-{i}", 8, replicas=2, priority=5, maxRuntime="10m") for i in (1, 2)])
    sim.run(2)
    by_job = {e["job"]: e for e in client.estimates()}
    assert by_job["low"]["higher_priority_load"] == pytest.approx(1.0)
    assert by_job["high-1"]["higher_priority_load"] == 0.0
    assert by_job["low"]["wait_s"] is not None  # the forward run's start, told all the same
    [busy] = [f for f in client.doctor("job", "low")["findings"] if f["code"] == "CapacityBusy"]
    assert busy["evidence"]["facts"]["higher_priority_load"] == pytest.approx(1.0)
    assert "later than estimated while it keeps coming" in busy["fix"]
