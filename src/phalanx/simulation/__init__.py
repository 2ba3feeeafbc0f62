"""The simulator: trace loaders, the virtual-time drivers (arrival-only and full), metrics and
reports. Arrival-only decisions come from the production scheduler through
``SchedulingSession``; full mode runs the production control plane (controllers and store) over
the ``sim`` backend. See docs/simulation.md. Must not import api, client or cli.
"""

from phalanx.simulation.api import SimulationReport, SimulationRequest, simulate

__all__ = ["SimulationReport", "SimulationRequest", "simulate"]
