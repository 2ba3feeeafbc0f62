"""The ``sim`` backend: virtual nodes and virtual pods in virtual time (see ``backend.py``)."""

from phalanx.backends.sim.backend import SimBackend, SimWorkload, VirtualClock

__all__ = ["SimBackend", "SimWorkload", "VirtualClock"]
