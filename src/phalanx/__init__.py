"""phalanx: queue, gang-schedule, place and explain AI workloads on GPUs."""

__version__ = "0.1.0"
API_VERSION = "phalanx.dev/v1alpha1"

__all__ = ["API_VERSION", "__version__"]
