"""Builders for tests, shipped with the package so users' tests can use them too.

job = make_job("train").queue("team-a").gpus(8).replicas(4).obj()
"""

from phalanx.testing.builders import (
    FlavorBuilder,
    JobBuilder,
    NodeBuilder,
    QueueBuilder,
    job_manifest,
    make_admitted,
    make_flavor,
    make_job,
    make_node,
    make_queue,
    make_snapshot,
    queue_manifests,
)

__all__ = [
    "FlavorBuilder",
    "JobBuilder",
    "NodeBuilder",
    "QueueBuilder",
    "job_manifest",
    "make_admitted",
    "make_flavor",
    "make_job",
    "make_node",
    "make_queue",
    "make_snapshot",
    "queue_manifests",
]
