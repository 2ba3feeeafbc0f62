"""Resource quantities in Kubernetes notation and the small vector the scheduler adds up.

Pure: imports nothing but the standard library's ``dataclasses``/``math``/``re``/``decimal``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

CPU = "cpu"
MEMORY = "memory"
GPU = "nvidia.com/gpu"
RESOURCE_NAMES: tuple[str, ...] = (CPU, MEMORY, GPU)

GPU_MILLI_PER_DEVICE = 1000
#: Stand-in for "no limit" in quota arithmetic; large enough never to be reached.
UNLIMITED = 1 << 62
#: The largest amount of each resource a quantity may name (a pod request or a quota): far
#: above any real cluster, far below ``UNLIMITED``, so that sums over many pods and queues
#: stay exact and a quota can never be mistaken for "unlimited".
MAX_CPU_MILLI = 10**9  # a million cores
MAX_MEMORY_BYTES = 1 << 60  # 1 EiB
MAX_GPU_MILLI = 10**9  # a million GPUs
MAX_AMOUNT: dict[str, int] = {CPU: MAX_CPU_MILLI, MEMORY: MAX_MEMORY_BYTES, GPU: MAX_GPU_MILLI}

_SUFFIXES: dict[str, Decimal] = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}
_QUANTITY = re.compile(r"^\s*([+]?[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]{0,2})\s*$")


class QuantityError(ValueError):
    """A quantity that is not valid Kubernetes notation, or not valid for its resource."""


def parse_quantity(value: str | int | float) -> Decimal:
    """Return the decimal value of a Kubernetes quantity such as ``500m``, ``16Gi`` or ``2``.

    Raises QuantityError naming the value and the accepted notation.
    """
    if isinstance(value, bool):
        raise QuantityError(f"{value!r} is not a quantity; use a number such as 2, 500m or 16Gi")
    if isinstance(value, float) and not math.isfinite(value):
        raise QuantityError(f"{value!r} is not a finite number; use a number such as 2 or 500m")
    if isinstance(value, int | float):
        if value < 0:
            raise QuantityError(f"{value!r} is negative; quantities must be >= 0")
        number = Decimal(str(value))
        if number.adjusted() > _MAX_DIGITS:
            raise QuantityError(f"{value!r} is far too large; {_MAXIMA}")
        return number
    if len(value) > 64:
        raise QuantityError(f"{value[:64]!r}... is not a quantity: at most 64 characters")
    match = _QUANTITY.match(value)
    if match is None or match.group(2) not in _SUFFIXES:
        raise QuantityError(
            f"{value!r} is not a quantity; use a number with an optional suffix "
            "(m, k, M, G, T, Ki, Mi, Gi, Ti), e.g. 500m, 4, 16Gi"
        )
    try:
        number = Decimal(match.group(1))
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only numbers
        raise QuantityError(f"{value!r} is not a number") from exc
    if number.adjusted() > _MAX_DIGITS:  # 1e400 would overflow arithmetic further on
        raise QuantityError(f"{value!r} is far too large; {_MAXIMA}")
    return number * _SUFFIXES[match.group(2)]


#: Decimal exponents beyond this are rejected before any arithmetic (every maximum is below
#: 10**19 and the largest suffix is 2**60).
_MAX_DIGITS = 40
_MAXIMA = "the most accepted is 1000000 cpu, 1Ei memory and 1000000 nvidia.com/gpu"


def _bounded(resource: str, value: str | int | float, amount: Decimal, unit: int) -> int:
    """``amount`` in ``unit``s, rounded up, if at most the resource's maximum; else raise
    QuantityError naming the maximum."""
    scaled = _ceil(amount * unit)
    maximum = MAX_AMOUNT[resource]
    if scaled > maximum:
        raise QuantityError(
            f"{value!r} is above the largest {resource} amount accepted, "
            f"{format_amount(resource, maximum)}"
        )
    return scaled


def cpu_milli(value: str | int | float) -> int:
    """Return CPU in millicores (``"500m"`` → 500, ``2`` → 2000); fractions of a milli round up."""
    return _bounded(CPU, value, parse_quantity(value), 1000)


def memory_bytes(value: str | int | float) -> int:
    """Return memory in bytes (``"16Gi"`` → 17179869184)."""
    return _bounded(MEMORY, value, parse_quantity(value), 1)


def gpu_milli(value: str | int | float) -> int:
    """Return a GPU request in thousandths of one device.

    Valid requests are a whole number of devices (``1``, ``8``) or a fraction of one device
    strictly between 0 and 1 (``0.5``, ``"250m"``). Raises QuantityError otherwise.
    """
    amount = parse_quantity(value)
    milli = amount * GPU_MILLI_PER_DEVICE
    if milli != milli.to_integral_value():
        raise QuantityError(f"{value!r} is finer than 1/1000 of a GPU; use at most 3 decimals")
    as_int = _bounded(GPU, value, amount, GPU_MILLI_PER_DEVICE)
    if as_int > GPU_MILLI_PER_DEVICE and as_int % GPU_MILLI_PER_DEVICE:
        raise QuantityError(
            f"{value!r} mixes whole and fractional GPUs; request a whole number of GPUs "
            "(e.g. 2) or a fraction of one GPU below 1 (e.g. 0.5)"
        )
    return as_int


def gpu_quota_milli(value: str | int | float) -> int:
    """Return a GPU quota in thousandths of a device; unlike a pod request it may be 2.5."""
    return _bounded(GPU, value, parse_quantity(value), GPU_MILLI_PER_DEVICE)


def _ceil(value: Decimal) -> int:
    return int(value.to_integral_value(rounding="ROUND_CEILING"))


def format_cpu(milli: int) -> str:
    """Render millicores the way kubectl does: ``2`` for 2000, ``500m`` for 500."""
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def format_memory(num_bytes: int) -> str:
    """Render bytes with the largest binary suffix that divides them exactly (``16Gi``)."""
    for suffix in ("Ti", "Gi", "Mi", "Ki"):
        unit = int(_SUFFIXES[suffix])
        if num_bytes >= unit and num_bytes % unit == 0:
            return f"{num_bytes // unit}{suffix}"
    return str(num_bytes)


def format_gpu(milli: int) -> str:
    """Render a GPU amount: ``8`` for 8000 milli, ``0.5`` for 500."""
    if milli % GPU_MILLI_PER_DEVICE == 0:
        return str(milli // GPU_MILLI_PER_DEVICE)
    return str(Decimal(milli) / GPU_MILLI_PER_DEVICE)  # exact: 100000.5, not 100000


@dataclass(frozen=True, slots=True)
class Resources:
    """An amount of CPU (millicores), memory (bytes) and GPU (thousandths of a device)."""

    cpu_milli: int = 0
    memory_bytes: int = 0
    gpu_milli: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(
            self.cpu_milli + other.cpu_milli,
            self.memory_bytes + other.memory_bytes,
            self.gpu_milli + other.gpu_milli,
        )

    def __sub__(self, other: Resources) -> Resources:
        return Resources(
            self.cpu_milli - other.cpu_milli,
            self.memory_bytes - other.memory_bytes,
            self.gpu_milli - other.gpu_milli,
        )

    def scaled(self, factor: int) -> Resources:
        """Return this amount times ``factor`` (e.g. per-pod request × replicas)."""
        return Resources(
            self.cpu_milli * factor, self.memory_bytes * factor, self.gpu_milli * factor
        )

    def fits_in(self, other: Resources) -> bool:
        """Return whether every component is at most the same component of ``other``."""
        return (
            self.cpu_milli <= other.cpu_milli
            and self.memory_bytes <= other.memory_bytes
            and self.gpu_milli <= other.gpu_milli
        )

    def get(self, name: str) -> int:
        """Return the component for a resource name (``cpu``, ``memory``, ``nvidia.com/gpu``)."""
        if name == CPU:
            return self.cpu_milli
        if name == MEMORY:
            return self.memory_bytes
        if name == GPU:
            return self.gpu_milli
        raise KeyError(name)

    @property
    def is_fractional_gpu(self) -> bool:
        """Whether the GPU request is a share of one device rather than whole devices."""
        return 0 < self.gpu_milli < GPU_MILLI_PER_DEVICE

    @property
    def whole_gpus(self) -> int:
        """Number of whole devices requested (0 for a fractional or CPU-only request)."""
        return self.gpu_milli // GPU_MILLI_PER_DEVICE

    def to_quantities(self) -> dict[str, str]:
        """Return the amount in Kubernetes notation, omitting zero components."""
        out: dict[str, str] = {}
        if self.cpu_milli:
            out[CPU] = format_cpu(self.cpu_milli)
        if self.memory_bytes:
            out[MEMORY] = format_memory(self.memory_bytes)
        if self.gpu_milli:
            out[GPU] = format_gpu(self.gpu_milli)
        return out

    def format_component(self, name: str) -> str:
        """Render one component for messages (``16Gi``, ``500m``, ``0.5``)."""
        value = self.get(name)
        if name == CPU:
            return format_cpu(value)
        if name == MEMORY:
            return format_memory(value)
        return format_gpu(value)


ZERO = Resources()


def format_amount(name: str, value: int) -> str:
    """Render an amount of one named resource for messages."""
    if value >= UNLIMITED:
        return "unlimited"
    if name == CPU:
        return format_cpu(value)
    if name == MEMORY:
        return format_memory(value)
    return format_gpu(value)
