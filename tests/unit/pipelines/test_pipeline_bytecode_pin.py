"""A step's process runs the code whose hash the pipeline was built with, even when the file
was edited within the second it was last compiled and kept its size: the bytecode cache,
which Python checks by whole-second modification time and size, would otherwise hand the
step its old code under the new hash. (The building process's own import in that second is not covered:
it builds the graph, and the hash is read from the file.)"""

from __future__ import annotations

import importlib
import os
import py_compile
import subprocess
import sys
from pathlib import Path

from project_modules import importable_module

FLOW = """\
from phalanx.pipelines import pipeline, task


@task
def bump(x: int) -> int:
    return x + 10


@pipeline
def flow(x: int = 1) -> int:
    return bump(x)
"""


def _run_bump(folder: Path) -> str:
    """What ``bump(1)`` gives in a fresh process that imports the module from ``folder``."""
    code = "import pinflow; print(pinflow.bump.fn(1))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), *sys.path])}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_building_a_pipeline_pins_the_bytecode_of_the_code_it_hashed(tmp_path: Path) -> None:
    with importable_module(tmp_path, "pinflow", FLOW) as folder:
        source = folder / "pinflow.py"
        py_compile.compile(str(source), doraise=True)  # a default cache, as any import writes
        assert _run_bump(folder) == "11"
        before = source.stat()
        source.write_text(FLOW.replace("x + 10", "x + 20"))  # same size, same second:
        os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert _run_bump(folder) == "11"  # the stale cache still runs the old code
        importlib.invalidate_caches()
        flows = importlib.import_module("pinflow")  # the building process: the hash is
        flows.flow.build(x=1)  # of the file's text, whatever code this import ran
        assert _run_bump(folder) == "21"
