"""The simulator: trace loaders, the virtual-time drivers (arrival-only and full), metrics and
reports. Decisions come from the production scheduler through ``SchedulingSession``; pods run
on the ``sim`` backend. See docs/simulation.md. Must not import controllers, store or api.
"""

from phalanx.simulation.api import SimulationReport, SimulationRequest, simulate

__all__ = ["SimulationReport", "SimulationRequest", "simulate"]
