"""Kinds of objects, one module each, and the registry they register in.

Importing this package registers every built-in kind. Imports only phalanx.model.
"""

from phalanx.kinds import flavor, job, node, queue
from phalanx.kinds.registry import Kind, Parsed, UnknownKindError, kinds, lookup, parse, register

FLAVOR, JOB, NODE, QUEUE = flavor.FLAVOR, job.JOB, node.NODE, queue.QUEUE

__all__ = [
    "FLAVOR",
    "JOB",
    "NODE",
    "QUEUE",
    "Kind",
    "Parsed",
    "UnknownKindError",
    "kinds",
    "lookup",
    "parse",
    "register",
]
