"""The Kubernetes backend (see backend.py). Must not import phalanx.backends.local."""

from phalanx.backends.kubernetes.backend import KubernetesBackend, KubernetesError

__all__ = ["KubernetesBackend", "KubernetesError"]
