"""Example workloads and manifests shipped with phalanx (used by ``phalanx demo``)."""
