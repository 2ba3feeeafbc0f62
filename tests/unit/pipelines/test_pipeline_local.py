"""The SDK run in-process: DAG building with type checks, fan-out, conditionals, caching
(hits, code edits, no-cache), failures, and artifacts of every encoding."""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from phalanx.pipelines import ArtifactStore, Directory, File, PipelineTypeError
from phalanx.pipelines.dag import RunPhase, StepState

FLOW = """
from phalanx.pipelines import pipeline, task, when

def helper(x: int) -> int:
    return x * HELPER_FACTOR

HELPER_FACTOR = 1

@task
def load(n: int) -> list[int]:
    return list(range(n))

@task
def total(xs: list[int]) -> int:
    return helper(sum(xs))

@task
def square(x: int, offset: int = 0) -> int:
    return x * x + offset

@task
def is_big(x: int) -> bool:
    return x > 10

@task
def report(x: int) -> str:
    return f"big: {x}"

@task
def side(k: str) -> str:
    return k.upper()

@pipeline
def flow(n: int = 4, tag: str = "a") -> object:
    s = total(load(n))
    squares = square.map([1, 2, 3], offset=s)
    with when(is_big(squares[2])):
        msg = report(squares[2])
    return {"msg": msg, "side": side(tag), "squares": squares}
"""


class Project:
    """A pipeline module in a directory of its own, importable and editable."""

    def __init__(self, root: Path, name: str) -> None:
        self.root, self.name = root, name
        sys.path.insert(0, str(root))

    def write(self, text: str) -> ModuleType:
        (self.root / f"{self.name}.py").write_text(textwrap.dedent(text))
        sys.modules.pop(self.name, None)
        importlib.invalidate_caches()
        return importlib.import_module(self.name)

    def close(self) -> None:
        sys.modules.pop(self.name, None)
        sys.path.remove(str(self.root))


@pytest.fixture
def project(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Project]:
    name = "flow_" + request.node.name.replace("[", "_").replace("]", "").replace("-", "_")
    p = Project(tmp_path / "src", name)
    p.root.mkdir()
    yield p
    p.close()


def test_a_run_fans_out_branches_and_returns_values(project: Project, tmp_path: Path) -> None:
    mod = project.write(FLOW)
    run = mod.flow.run(artifacts=str(tmp_path / "a"), n=5)
    assert run.phase is RunPhase.SUCCEEDED
    assert run.result() == {"msg": "big: 19", "side": "A", "squares": [11, 14, 19]}
    assert run.executed == list(run.steps)  # nothing cached yet
    small = mod.flow.run(artifacts=str(tmp_path / "a"), n=1)  # 9 is not big: report skipped
    assert small.state("report") is StepState.SKIPPED
    assert small.result()["msg"] is None


def test_a_second_run_is_all_cache_hits_naming_the_first(project: Project, tmp_path: Path) -> None:
    mod = project.write(FLOW)
    first = mod.flow.run(artifacts=str(tmp_path / "a"), run_name="first")
    second = mod.flow.run(artifacts=str(tmp_path / "a"), run_name="second")
    assert second.cached == list(second.steps)
    assert second.steps["square-2"]["cachedFrom"] == {"run": "first", "step": "square-2"}
    assert second.result() == first.result()
    for name, status in second.steps.items():
        assert status["cacheKey"] == first.steps[name]["cacheKey"]
    forced = mod.flow.run(artifacts=str(tmp_path / "a"), no_cache=True)
    assert forced.cached == []


def test_editing_a_helper_reruns_its_task_and_dependents_only(
    project: Project, tmp_path: Path
) -> None:
    mod = project.write(FLOW)
    mod.flow.run(artifacts=str(tmp_path / "a"))
    edited = project.write(FLOW.replace("HELPER_FACTOR = 1", "HELPER_FACTOR = 2"))
    run = edited.flow.run(artifacts=str(tmp_path / "a"))
    # total calls helper (project-local code): its key changed; load and side did not.
    assert sorted(run.cached) == ["load", "side"]
    assert sorted(run.executed) == ["is-big", "report", "square-0", "square-1", "square-2", "total"]


def test_cache_false_and_cache_version(project: Project, tmp_path: Path) -> None:
    mod = project.write(
        """
        from phalanx.pipelines import pipeline, task

        @task(cache=False)
        def fresh() -> int:
            return 1

        @task(cache_version="1")
        def versioned() -> int:
            return 2

        @pipeline
        def flow() -> object:
            return fresh(), versioned()
        """
    )
    mod.flow.run(artifacts=str(tmp_path / "a"))
    again = mod.flow.run(artifacts=str(tmp_path / "a"))
    assert again.executed == ["fresh"] and again.cached == ["versioned"]


def test_a_failed_step_fails_its_dependents_and_not_the_rest(
    project: Project, tmp_path: Path
) -> None:
    marker = tmp_path / "broken"
    marker.touch()
    mod = project.write(
        """
        from pathlib import Path
        from phalanx.pipelines import pipeline, task

        @task(retries=1)
        def flaky(marker: str) -> int:
            if Path(marker).exists():
                raise RuntimeError("the marker is there")
            return 1

        @task
        def after(x: int) -> int:
            return x + 1

        @task
        def other() -> int:
            return 5

        @pipeline
        def flow(marker: str) -> object:
            return after(flaky(marker)), other()
        """
    )
    run = mod.flow.run(artifacts=str(tmp_path / "a"), marker=str(marker))
    assert run.phase is RunPhase.FAILED
    assert {n: s["state"] for n, s in run.steps.items()} == {
        "flaky": "Failed",
        "after": "UpstreamFailed",
        "other": "Succeeded",
    }
    assert run.steps["flaky"]["attempts"] == 2
    assert "RuntimeError: the marker is there" in run.steps["flaky"]["message"]
    marker.unlink()
    again = mod.flow.run(artifacts=str(tmp_path / "a"), marker=str(marker))
    assert again.phase is RunPhase.SUCCEEDED
    assert again.executed == ["flaky", "after"] and again.cached == ["other"]


TYPED = """
from phalanx.pipelines import pipeline, task

@task
def make() -> str:
    return "x"

@task
def needs_int(count: int) -> int:
    return count

@task
def lies() -> int:
    return "not an int"

@task
def wants_list(xs: list[int]) -> int:
    return len(xs)
"""


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "needs_int(make())",
            "step 'needs-int' input 'count': expected int, but step 'make' returns str",
        ),
        ("needs_int('3')", "step 'needs-int' input 'count': expected int, got str ('3')"),
        ("needs_int(count=1, extra=2)", "step 'needs-int' inputs: got an unexpected keyword"),
        ("wants_list([1, 'a'])", "step 'wants-list' input 'xs': expected list[int], got list"),
        ("needs_int.map([1, 2], count=[3])", "mapped arguments have different lengths [1, 2]"),
    ],
    ids=["future", "literal", "unknown-arg", "element", "map-lengths"],
)
def test_type_errors_at_build_name_the_step_and_field(
    project: Project, body: str, message: str
) -> None:
    mod = project.write(TYPED + f"\n@pipeline\ndef flow() -> object:\n    return {body}\n")
    with pytest.raises(PipelineTypeError) as caught:
        mod.flow.build()
    assert message in str(caught.value)


def test_type_errors_when_values_arrive(project: Project, tmp_path: Path) -> None:
    mod = project.write(
        TYPED + "\n@pipeline\ndef flow() -> object:\n    return needs_int(lies())\n"
    )
    run = mod.flow.run(artifacts=str(tmp_path / "a"))
    assert run.steps["lies"]["state"] == "Failed"
    assert (
        "step 'lies' output: expected int, got str ('not an int')" in run.steps["lies"]["message"]
    )
    assert run.steps["needs-int"]["state"] == "UpstreamFailed"


def test_pipeline_parameters_are_checked(project: Project) -> None:
    mod = project.write(FLOW)
    with pytest.raises(PipelineTypeError, match="parameter 'n': expected int, got str"):
        mod.flow.build(n="4")
    with pytest.raises(PipelineTypeError, match="unexpected keyword argument 'm'"):
        mod.flow.build(m=1)


def test_compile_gives_a_manifest_the_pipeline_kind_accepts(project: Project) -> None:
    from phalanx import kinds

    mod = project.write(FLOW)
    manifest = mod.flow.compile(n=3)
    parsed = kinds.parse(manifest)
    assert parsed.kind is kinds.PIPELINE
    assert [s.name for s in parsed.obj.steps][:3] == ["load", "total", "square-0"]
    assert parsed.obj.step("report").when_step == "is-big"
    assert parsed.obj.params == {"n": 3, "tag": "a"}


def test_artifacts_of_every_encoding_round_trip_and_hash_by_content(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "store"))
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    ref = store.put(array)
    assert ref.format == "npy" and ref.inline is None
    np.testing.assert_array_equal(store.get(ref), array)
    assert store.put(array.copy()).hash == ref.hash
    (tmp_path / "f.txt").write_text("hello")
    file_ref = store.put(File(str(tmp_path / "f.txt")))
    assert Path(store.get(file_ref).path).read_text() == "hello"  # type: ignore[attr-defined]
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("a")
    (tree / "sub" / "b.txt").write_text("b")
    dir_ref = store.put(Directory(str(tree)))
    back = Path(store.get(dir_ref).path)  # type: ignore[attr-defined]
    assert (back / "sub" / "b.txt").read_text() == "b"
    small = store.put({"k": [1, 2]})
    assert small.inline == '{"k":[1,2]}'  # inline: no blob written, no round trip
    assert not list((tmp_path / "store" / "objects").rglob(small.hash.split(":")[1]))
    big = store.put(list(range(10_000)))
    assert big.inline is None and store.get(big) == list(range(10_000))
    odd = store.put({1, 2, 3})  # nothing else fits a set: pickle
    assert odd.format == "pickle" and store.get(odd) == {1, 2, 3}
