from phalanx.model.objects import PodSet
from phalanx.model.resources import Resources
from phalanx.simulation.trace import TraceJob

GI = 1 << 30


def job(
    name: str,
    gpu_milli: int,
    *,
    submit_s: float = 0.0,
    runtime_s: float = 10.0,
    cpu_milli: int = 1000,
    memory: int = GI,
    queue: str = "q",
    priority: int = 0,
    replicas: int = 1,
) -> TraceJob:
    return TraceJob(
        name,
        submit_s,
        runtime_s,
        queue,
        (PodSet("pod", replicas, Resources(cpu_milli, memory, gpu_milli)),),
        priority=priority,
    )
