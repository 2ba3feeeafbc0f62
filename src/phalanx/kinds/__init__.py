"""Kinds of objects, one module each, and the registry they register in.

Importing this package registers every built-in kind. Imports only phalanx.model.
"""

from phalanx.kinds import flavor, job, node, pipeline, queue, secret, service
from phalanx.kinds.registry import Kind, Parsed, UnknownKindError, kinds, lookup, parse, register

FLAVOR, JOB, NODE, QUEUE = flavor.FLAVOR, job.JOB, node.NODE, queue.QUEUE
SECRET = secret.SECRET
SERVICE = service.SERVICE
PIPELINE, PIPELINE_RUN = pipeline.PIPELINE, pipeline.PIPELINE_RUN

__all__ = [
    "FLAVOR",
    "JOB",
    "NODE",
    "PIPELINE",
    "PIPELINE_RUN",
    "QUEUE",
    "SECRET",
    "SERVICE",
    "Kind",
    "Parsed",
    "UnknownKindError",
    "kinds",
    "lookup",
    "parse",
    "register",
]
