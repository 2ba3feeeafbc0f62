"""The hash of a task's code: its own source and the project-local code it calls.

Module-level constants (numbers, strings, tuples) that the code reads are part of it too.
Project-local means defined in a file outside the interpreter's standard library and
installed packages (site-packages), i.e. the user's own project. Functions and classes it
names, and the whole source of project-local modules it names, are followed recursively, so
editing a helper a task calls invalidates the task's cache, while upgrading an installed
library does not (pin it through the image or ``cache_version`` instead).

Reads source files (linecache; inspect for classes and modules): an effect, so it lives
apart from the pure keys. A step's process checks its task's hash on every start, so this
module imports neither pathlib nor textwrap (whose regular expressions alone cost that
process more than its work) nor, until a class or module is hashed, inspect: paths go
through os.path, and ``dedent`` is textwrap's, line by line.
"""

from __future__ import annotations

import functools
import linecache
import os
import sys
import types
from collections.abc import Callable

from phalanx.pipelines.hashing import content_hash

_CACHE: dict[object, str] = {}
#: The project-local source files each hashed function's hash read (for ``pin_bytecode``).
_FILES: dict[object, frozenset[str]] = {}
#: Files ``pin_bytecode`` compiled, with the (mtime_ns, size) they had then.
_PINNED: dict[str, tuple[int, int]] = {}
_CONSTANTS = (bool, int, float, complex, str, bytes, tuple, frozenset, type(None))


@functools.cache
def _system_roots() -> tuple[str, ...]:
    """The standard library's directory and the interpreter's prefixes (installed packages
    are recognised by their site-packages or dist-packages directory)."""
    roots = {os.path.dirname(os.__file__), sys.prefix, sys.base_prefix, sys.exec_prefix}
    return tuple(os.path.realpath(p) for p in roots)


@functools.cache
def _is_project_file(path: str) -> bool:
    """Whether the module file ``path`` is the user's (not phalanx's, the standard library's
    or an installed package's)."""
    resolved = os.path.realpath(path)
    if "site-packages" in resolved or "dist-packages" in resolved:
        return False
    if resolved.startswith(os.path.dirname(os.path.dirname(os.path.realpath(__file__)))):
        return False  # phalanx itself
    return not any(resolved.startswith(root + "/") for root in _system_roots() if root != "/")


def _module_file(obj: object) -> str | None:
    """The file of ``obj``'s module (``obj`` itself if a module), if it has one."""
    module = (
        obj
        if isinstance(obj, types.ModuleType)
        else sys.modules.get(getattr(obj, "__module__", ""), None)
    )
    path = getattr(module, "__file__", None)
    return str(path) if path else None


def is_project_local(obj: object) -> bool:
    """Whether ``obj`` (a function, class or module) comes from the user's project."""
    path = _module_file(obj)
    return path is not None and _is_project_file(path)


def _project_file(obj: object) -> str | None:
    """The Python source file of ``obj``'s module if it is the user's, else None."""
    path = _module_file(obj)
    return path if path is not None and path.endswith(".py") and _is_project_file(path) else None


def _last_line(code: types.CodeType) -> int:
    """The last source line any instruction of ``code`` spans (a nested def's or lambda's
    instructions span the whole of it)."""
    ends = (end for _, end, _, _ in code.co_positions() if end is not None)
    return max(ends, default=code.co_firstlineno)


def _function_source(fn: types.FunctionType) -> str | None:
    """The source lines of ``fn``, from its first decorator to the last line its code spans
    (None if the file cannot be read). Cheaper than inspect.getsource, which tokenizes the
    function to find its end (a regex compile alone costs a step's process ~15 ms)."""
    code = fn.__code__
    linecache.checkcache(code.co_filename)  # the file may have been edited since it was read
    lines = linecache.getlines(code.co_filename, fn.__globals__)
    if not lines:
        return None
    return "".join(lines[code.co_firstlineno - 1 : _last_line(code)])


def dedent(text: str) -> str:
    """``textwrap.dedent(text)``, the same text for every input (a test compares them):
    lines of only spaces and tabs emptied, then the longest run of leading spaces and tabs
    common to every other line removed from each line that starts with it."""
    lines = ["" if line and not line.strip(" \t") else line for line in text.split("\n")]
    margin: str | None = None
    for line in lines:
        body = line.lstrip(" \t")
        if not body:
            continue
        indent = line[: len(line) - len(body)]
        if margin is None or margin.startswith(indent):
            margin = indent
        elif not indent.startswith(margin):
            common = 0
            while margin[common] == indent[common]:
                common += 1
            margin = margin[:common]
    if margin:
        lines = [line[len(margin) :] if line.startswith(margin) else line for line in lines]
    return "\n".join(lines)


def _source(obj: object) -> str:
    if isinstance(obj, types.FunctionType):
        text = _function_source(obj)
        if text is not None:
            return dedent(text)
    import inspect  # only for what is not a plain function: a step's process never needs it

    try:
        return dedent(inspect.getsource(obj))  # type: ignore[arg-type]
    except (OSError, TypeError):
        code = getattr(obj, "__code__", None)
        return repr(code.co_code) if code is not None else repr(obj)


def _names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def code_hash(fn: Callable[..., object]) -> str:
    """``sha256:…`` over the sources of ``fn`` and the project-local code it reaches."""
    cached = _CACHE.get(fn)
    if cached is not None:
        return cached
    parts: dict[str, str] = {}
    files: set[str] = set()
    pending: list[object] = [fn]
    while pending:
        obj = pending.pop()
        obj = getattr(obj, "__wrapped__", obj)
        label = f"{getattr(obj, '__module__', '')}:{getattr(obj, '__qualname__', repr(obj))}"
        if isinstance(obj, types.ModuleType):
            label = f"module:{obj.__name__}"
        if label in parts:
            continue
        parts[label] = _source(obj)
        path = _project_file(obj)
        if path is not None:
            files.add(path)
        if isinstance(obj, types.ModuleType):
            continue  # its whole source is in; what it names is covered by it
        code = getattr(obj, "__code__", None)
        scope = getattr(obj, "__globals__", None)
        if code is None or scope is None:
            continue
        for name in sorted(_names(code)):
            target = scope.get(name)
            if isinstance(target, _CONSTANTS) and is_project_local(obj):
                # A module-level constant the code reads is part of it (FACTOR = 2).
                parts[f"{getattr(obj, '__module__', '')}:{name}="] = repr(target)
                continue
            target = getattr(target, "__wrapped__", target)
            if isinstance(target, types.FunctionType | type | types.ModuleType) and (
                is_project_local(target)
            ):
                pending.append(target)
    text = "\n".join(f"== {label}\n{parts[label]}" for label in sorted(parts))
    digest = content_hash(text.encode(), "code")
    _CACHE[fn] = digest
    _FILES[fn] = frozenset(files)
    return digest


def pin_bytecode(fn: Callable[..., object]) -> None:
    """Rewrite the bytecode cache of every project-local file ``fn``'s code hash read as
    checked against the source's hash (PEP 552), so a process that imports it later (a
    step's pod) runs the code that was hashed. A default cache is checked only against the
    source's modification time in whole seconds and its size: a file edited within the
    second it was last compiled, with its size unchanged (``x + 10`` → ``x + 20``), would
    otherwise run its old code under its new hash. Best effort: an unwritable cache is left
    as it is (Python then compiles the source itself)."""
    import py_compile  # only where pipelines are built, never in a step's process

    code_hash(fn)
    for path in _FILES.get(fn, ()):
        try:
            stat = os.stat(path)
        except OSError:
            continue
        if _PINNED.get(path) == (stat.st_mtime_ns, stat.st_size):
            continue
        try:
            py_compile.compile(
                path, invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH, doraise=True
            )
        except (OSError, py_compile.PyCompileError):
            continue
        _PINNED[path] = (stat.st_mtime_ns, stat.st_size)
