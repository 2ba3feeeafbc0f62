"""Type checks of task inputs and outputs: when the DAG is built (annotations against
annotations or literal values) and when values arrive (values against annotations).

Errors name the step and the field: ``step 'train' input 'lr': expected float, got str``.
"""

from __future__ import annotations

import types
import typing
from typing import Any


class _NoAnnotation:
    """The annotation of a parameter that has none: ``inspect.Parameter.empty``'s role,
    without importing inspect (see record.py for why a step's process avoids it)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_ANNOTATION"


#: What ``Task.hints.get(name, NO_ANNOTATION)`` and ``Task.returns`` give for a parameter or
#: a return without an annotation: anything is accepted there.
NO_ANNOTATION: Any = _NoAnnotation()
_EMPTY = NO_ANNOTATION
_SEQUENCES = (list, tuple)


class PipelineTypeError(TypeError):
    """A task was given an input of the wrong type, or returned one; names the step and the
    field."""

    def __init__(self, step: str, field: str, message: str) -> None:
        self.step = step
        self.field = field
        super().__init__(f"step {step!r} {field}: {message}")


def type_name(annotation: object) -> str:
    """A short, readable name of an annotation (``int``, ``list[str]``, ``int | None``)."""
    if annotation is _EMPTY or annotation is None:
        return "None" if annotation is None else "Any"
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__qualname__
    return str(annotation).replace("typing.", "")


def _is_any(annotation: object) -> bool:
    return annotation is _EMPTY or annotation is Any or annotation is object


def _is_union(annotation: object) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _origin(annotation: object) -> object:
    return typing.get_origin(annotation) or annotation


def accepts(expected: object, value: object) -> bool:
    """Whether ``value`` fits the annotation ``expected`` (element types of lists, tuples and
    dicts are checked one level deep; ints fit floats; lists fit tuples, as JSON has one)."""
    if _is_any(expected):
        return True
    if expected is None or expected is type(None):
        return value is None
    if _is_union(expected):
        return any(accepts(a, value) for a in typing.get_args(expected))
    origin = _origin(expected)
    if origin is typing.Literal:
        return value in typing.get_args(expected)
    if not isinstance(origin, type):
        return True  # TypeVars, Protocols with generics…: not checked
    if origin is float and isinstance(value, int) and not isinstance(value, bool):
        return True
    if origin in _SEQUENCES and isinstance(value, _SEQUENCES):
        pass
    elif not isinstance(value, origin):
        return False
    args = typing.get_args(expected)
    if not args:
        return True
    if origin in _SEQUENCES and isinstance(value, _SEQUENCES):
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return len(args) == len(value) and all(
                accepts(a, v) for a, v in zip(args, value, strict=True)
            )
        return all(accepts(args[0], v) for v in value)
    if origin is dict and isinstance(value, dict) and len(args) == 2:
        return all(accepts(args[0], k) and accepts(args[1], v) for k, v in value.items())
    return True


def compatible(produced: object, expected: object) -> bool:
    """Whether a value annotated ``produced`` can be passed where ``expected`` is declared."""
    if _is_any(produced) or _is_any(expected):
        return True
    if _is_union(produced):
        return all(compatible(p, expected) for p in typing.get_args(produced))
    if _is_union(expected):
        return any(compatible(produced, e) for e in typing.get_args(expected))
    if produced is None or produced is type(None):
        return expected is None or expected is type(None)
    p_origin, e_origin = _origin(produced), _origin(expected)
    if not isinstance(p_origin, type) or not isinstance(e_origin, type):
        return True
    if e_origin is float and p_origin is int:
        return True
    if not (issubclass(p_origin, e_origin) or (p_origin in _SEQUENCES and e_origin in _SEQUENCES)):
        return False
    p_args, e_args = typing.get_args(produced), typing.get_args(expected)
    if p_args and e_args and len(p_args) == len(e_args):
        return all(compatible(p, e) for p, e in zip(p_args, e_args, strict=True))
    return True


def coerce(expected: object, value: object) -> object:
    """``value`` as the annotation wants it where JSON lost the difference (list → tuple)."""
    if _origin(expected) is tuple and isinstance(value, list):
        return tuple(value)
    return value


def check_value(step: str, field: str, expected: object, value: object) -> object:
    """Return ``value`` (coerced) if it fits ``expected``; raise PipelineTypeError if not."""
    if not accepts(expected, value):
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise PipelineTypeError(
            step,
            field,
            f"expected {type_name(expected)}, got {type(value).__qualname__} ({shown})",
        )
    return coerce(expected, value)
