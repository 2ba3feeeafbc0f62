"""``Record``: the base of the SDK's small value types (artifact refs, files, futures).

It gives what ``@dataclass(frozen=True, slots=True)`` would: equality by type and fields,
a hash, a repr, immutability and pickling, all over the class's ``__slots__``. Not a
dataclass because every step's process imports the SDK (the user's module does), and
``dataclasses`` imports ``inspect`` (with ``ast``, ``dis`` and ``tokenize``), which cost that
process more than a trivial task's work. Standard library only; no I/O.
"""

from __future__ import annotations

from typing import Any


class Record:
    """An immutable record whose fields are its ``__slots__``, in order. A subclass declares
    ``__slots__`` and an ``__init__`` that sets each field once through ``_set``; its
    positional arguments are its fields in that order (pickling relies on it)."""

    __slots__: tuple[str, ...] = ()

    def _set(self, **fields: object) -> None:
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def _fields(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}: {type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}: {type(self).__name__} is immutable")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__qualname__}({fields})"

    def __reduce__(self) -> tuple[type[Record], tuple[Any, ...]]:
        return (type(self), self._fields())
