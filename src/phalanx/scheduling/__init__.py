"""The pure scheduling core: an immutable Snapshot in, Decisions out.

Nothing here reads a clock, does I/O, uses randomness or keeps global state: time arrives as
``Snapshot.now``. Must not import controllers, backends, store, api, client or cli.
"""

from phalanx.model.reasons import Reason, ReasonCode
from phalanx.scheduling.cycle import schedule
from phalanx.scheduling.feasibility import Feasibility, admission_warning
from phalanx.scheduling.incremental import IncrementalScheduler
from phalanx.scheduling.snapshot import (
    Admission,
    AdmittedWorkload,
    Decisions,
    PendingReason,
    PendingWorkload,
    Preemption,
    Reservation,
    SchedulerConfig,
    Snapshot,
)

__all__ = [
    "Admission",
    "AdmittedWorkload",
    "Decisions",
    "Feasibility",
    "IncrementalScheduler",
    "PendingReason",
    "PendingWorkload",
    "Preemption",
    "Reason",
    "ReasonCode",
    "Reservation",
    "SchedulerConfig",
    "Snapshot",
    "admission_warning",
    "schedule",
]
