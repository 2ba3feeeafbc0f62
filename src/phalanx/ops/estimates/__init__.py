"""Start-time estimates: when each pending job will probably start, and on what it waits.

Like Slurm's ``squeue --start``, but gang-, quota- and preemption-aware: the pure scheduler
(``phalanx.scheduling.schedule``) is run forward in virtual time on a snapshot of now
(``forward``). Running jobs end at their expected times; at each moment something ends, the
scheduler runs again on what is left; an admitted job starts holding its placement until its
own expected end; a preempted one goes back to the queue. A job not started within
``horizon_s`` (or that waits for something only a change can fix: a missing queue, a gang
that never fits) has no estimate.

The modules, each with its own role:

- ``runtimes``: ``RuntimeModel``, expected runtimes from finished jobs (and a running job's
  remaining time given how long it has run). Pure.
- ``forward``: ``Estimate`` and ``forward``, one forward run. Pure.
- ``sampling``: ``sampled`` makes several forward runs (``forward_runs``, options in
  ``RunOptions``) with runtimes drawn at random from history (seeded, each run from a
  generator of its own) and gives each job the start at a rank of the runs' (``ranked``).
  Pure.
- ``what_if``: ``WhatIf``, a change to try on the snapshot first. Pure.
- ``plane``: ``estimate_plane`` reads the control plane for them, applies the corrections of
  ``phalanx.ops.calibration`` and the expected submissions of ``phalanx.ops.arrivals`` when
  asked, tells each estimate the load of the higher-priority work submitted lately (at 1 or
  more that work arrives faster than the cluster serves it, and the estimate holds only if it
  stops coming), and keeps its answer per plane while nothing it read has changed
  (``estimate_cache``).

Every public name is importable from here.
"""

from __future__ import annotations

from phalanx.ops.estimates.forward import (
    DEFAULT_HORIZON_S,
    DEFAULT_LOAD_WINDOW_S,
    OVERLOADED,
    Estimate,
    forward,
    scaled,
)
from phalanx.ops.estimates.plane import (
    CACHE_MAX_AGE_S,
    DEFAULT_ARRIVAL_WINDOW_S,
    DEFAULT_CALIBRATE,
    DEFAULT_PRIORITY_WINDOW_S,
    calibrated,
    estimate_cache,
    estimate_log,
    estimate_plane,
    plane_inputs,
    runtime_history,
    with_loads,
)
from phalanx.ops.estimates.runtimes import DEFAULT_SIZE_MIN_GROUP, Finished, RuntimeModel
from phalanx.ops.estimates.sampling import (
    DEFAULT_RANK_Q,
    DEFAULT_SAMPLES,
    DEFAULT_WHOLE_GPU_RANK_Q,
    RunOptions,
    forward_runs,
    ranked,
    sampled,
    whole_gpu_ranks,
)
from phalanx.ops.estimates.what_if import WhatIf

__all__ = [
    "CACHE_MAX_AGE_S",
    "DEFAULT_ARRIVAL_WINDOW_S",
    "DEFAULT_CALIBRATE",
    "DEFAULT_HORIZON_S",
    "DEFAULT_LOAD_WINDOW_S",
    "DEFAULT_PRIORITY_WINDOW_S",
    "DEFAULT_RANK_Q",
    "DEFAULT_SAMPLES",
    "DEFAULT_SIZE_MIN_GROUP",
    "DEFAULT_WHOLE_GPU_RANK_Q",
    "OVERLOADED",
    "Estimate",
    "Finished",
    "RunOptions",
    "RuntimeModel",
    "WhatIf",
    "calibrated",
    "estimate_cache",
    "estimate_log",
    "estimate_plane",
    "forward",
    "forward_runs",
    "plane_inputs",
    "ranked",
    "runtime_history",
    "sampled",
    "scaled",
    "whole_gpu_ranks",
    "with_loads",
]
