"""The source a task's code hash covers (read without tokenizing: a step's process computes
it on every start), and the rules of a run's ``artifactsSecret``."""

from __future__ import annotations

import importlib
import inspect
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import FunctionType, ModuleType

import pytest

from phalanx.kinds.pipeline import parse_pipeline, parse_pipeline_run, spec_manifest
from phalanx.model.specs import SpecError
from phalanx.pipelines.codehash import _source, code_hash
from project_modules import importable_module

MODULE = """
import functools

def deco(fn):
    @functools.wraps(fn)
    def inner(*a, **k):
        return fn(*a, **k)
    return inner

@deco
def decorated(x):
    return x + 1

def ends_with_nested(x):
    y = x * 2

    def helper(z):
        return (z +
                y)

def ends_with_a_long_expression(x):
    return {
        "a": x,
        "b": [1,
              2],
    }

class Holder:
    @staticmethod
    def method(x):
        return x  # a comment on the last line
"""


@pytest.fixture
def module(tmp_path: Path) -> Iterator[ModuleType]:
    with importable_module(tmp_path, "codehash_sample", MODULE):
        yield importlib.import_module("codehash_sample")


@pytest.mark.parametrize(
    "name", ["deco", "decorated", "ends_with_nested", "ends_with_a_long_expression", "method"]
)
def test_a_functions_source_is_what_inspect_reads(module: ModuleType, name: str) -> None:
    fn = module.Holder.method if name == "method" else getattr(module, name)
    fn = inspect.unwrap(fn)
    assert isinstance(fn, FunctionType)
    assert _source(fn) == textwrap.dedent(inspect.getsource(fn))


def test_editing_the_last_line_of_a_nested_function_changes_the_hash(tmp_path: Path) -> None:
    path = tmp_path / "codehash_edit.py"
    sys.path.insert(0, str(tmp_path))
    hashes = []
    try:
        for last in ("y)", "y + 1)"):
            path.write_text(MODULE.replace("                y)", f"                {last}"))
            sys.modules.pop("codehash_edit", None)
            importlib.invalidate_caches()
            hashes.append(code_hash(importlib.import_module("codehash_edit").ends_with_nested))
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("codehash_edit", None)
    assert hashes[0] != hashes[1]


def _run(**spec: object) -> dict[str, object]:
    steps = [{"name": "a", "task": "m:f"}]
    return {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "PipelineRun",
        "metadata": {"name": "r"},
        "spec": {"steps": steps, **spec},
    }


def test_an_artifacts_secret_round_trips_with_an_s3_store() -> None:
    parsed = parse_pipeline_run(_run(artifacts="s3://bucket/p", artifactsSecret="s3-creds"))
    assert parsed.artifacts_secret == "s3-creds"
    assert spec_manifest(parsed)["artifactsSecret"] == "s3-creds"
    pipeline = dict(_run(artifacts="s3://b/p", artifactsSecret="s3-creds"), kind="Pipeline")
    assert parse_pipeline(pipeline).artifacts_secret == "s3-creds"


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        ({"artifacts": "/data/store", "artifactsSecret": "s3-creds"}, "spec.artifacts", "s3://"),
        ({"artifactsSecret": "s3-creds"}, "spec.artifacts", "s3://"),
        ({"artifacts": "s3://b/p", "artifactsSecret": "Not A Name"}, "spec.artifactsSecret", ""),
    ],
    ids=["local-store", "no-store", "bad-name"],
)
def test_an_artifacts_secret_is_refused_naming_the_field(
    spec: dict[str, object], field: str, words: str
) -> None:
    with pytest.raises(SpecError) as raised:
        parse_pipeline_run(_run(**spec))
    assert field in str(raised.value) and words in str(raised.value)
