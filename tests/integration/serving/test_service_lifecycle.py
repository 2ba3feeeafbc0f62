"""The Service controller's containment, deletion and crash safety: a Service that cannot be
reconciled gets an event and the others go on; deleting a Service deletes its replicas and
revisions; after a restart the replicas are adopted, not created again."""

from __future__ import annotations

from service_harness import ServingHarness, get, service_manifest


def test_a_bad_service_gets_an_event_and_the_others_go_on(serving: ServingHarness) -> None:
    serving.plane.apply(
        [
            service_manifest(
                "bad",
                traffic=[
                    {"revision": "0123456789", "percent": 50},
                    {"revision": "latest", "percent": 50},
                ],
            ),
            service_manifest("good"),
        ]
    )
    serving.wait_ready("good", 1)

    def events() -> list[str]:
        return [e.reason for e in serving.store.object_events("Service", "bad")]

    serving.wait("an event on the bad Service", lambda: "ReconcileError" in events())
    view = serving.view("bad")
    assert "never had" in view.error and view.replicas == ()
    stats = serving.plane.stats["services"]
    assert stats.object_errors >= 1 and stats.errors == 0  # contained, not a failed pass


def test_deleting_a_service_deletes_its_replicas_and_revisions(serving: ServingHarness) -> None:
    serving.plane.apply([service_manifest("gone", minReplicas=2)])
    serving.wait_ready("gone", 2)
    assert serving.store.list_objects("ServiceRevision")
    serving.plane.delete("service", "gone")
    serving.wait(
        "no replica and no revision",
        lambda: (
            not [j for j in serving.store.list_jobs() if j.labels.get("phalanx.dev/service")]
            and not serving.store.list_objects("ServiceRevision")
            and not serving.store.pods(live_only=True)
        ),
    )
    assert not any(r.service == "gone" for r in serving.services.routes())


def test_after_a_restart_the_replicas_are_adopted_not_created_again(
    serving: ServingHarness,
) -> None:
    serving.plane.apply([service_manifest("keep", minReplicas=2)])
    before = {r.name: r.url for r in serving.wait_ready("keep", 2).replicas}
    serving.restart()
    after = serving.wait_ready("keep", 2)
    assert {r.name: r.url for r in after.replicas} == before
    conn = serving.connection()
    status, data = get(conn, "/keep/x")
    conn.close()
    assert status == 200 and data["replica"] in before


class CountingStore:
    """The store, counting the reads that cost a query over many rows."""

    def __init__(self, store: object) -> None:
        self._store = store
        self.reads: list[str] = []

    def __getattr__(self, name: str) -> object:
        attr = getattr(self._store, name)
        if name in ("list_jobs", "list_objects", "pods", "changes"):
            self.reads.append(name)
        return attr


def test_a_pass_with_nothing_changed_reads_no_rows(serving: ServingHarness) -> None:
    serving.plane.apply([service_manifest("calm", minReplicas=2)])
    serving.wait_ready("calm", 2)
    counting = CountingStore(serving.services.store)
    serving.services.store = counting  # type: ignore[assignment]
    runs = serving.plane.stats["services"].runs
    serving.wait("20 passes", lambda: serving.plane.stats["services"].runs >= runs + 20)
    assert counting.reads == []
