"""A throw-away Python module in a folder of its own, importable by name while a test runs.

Tests of pipelines need a real module: tasks are found again by ``module:function``, their code
is hashed from the file, and step processes import the module from the folder. ``tests/`` is on
``sys.path`` (the root ``conftest.py`` puts it there), so any test imports this with
``from project_modules import importable_module``.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def importable_module(folder: Path, name: str, source: str) -> Iterator[Path]:
    """Write ``source`` (dedented) to ``folder/<name>.py`` and put ``folder`` first on
    ``sys.path``; yields ``folder``. On exit the folder leaves ``sys.path`` and the module
    leaves ``sys.modules``, so a later test that writes a module of the same name imports its
    own text."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(textwrap.dedent(source))
    sys.path.insert(0, str(folder))
    importlib.invalidate_caches()
    try:
        yield folder
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop(name, None)
