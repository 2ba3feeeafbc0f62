"""A step's process starts light, and cache keys did not change for it.

The SDK that every step's process imports (the user's module does, for ``@task``) no longer
imports inspect, dataclasses or hashlib (OpenSSL); these tests check that a real step process
imports none of them, and that content hashes, encodings, code hashes and cache keys are
exactly those of the tree before the change (the expected values below were computed by it,
from the same module text), so no cache entry made before is missed after.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import pickle
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phalanx.pipelines.artifacts import ArtifactRef, ArtifactStore, Directory, File, encode
from phalanx.pipelines.execution import input_refs, step_key
from phalanx.pipelines.hashing import sha256
from phalanx.pipelines.keys import KeyInputs, cache_key, content_hash
from phalanx.pipelines.sdk import TaskFuture, unmapped
from project_modules import importable_module

#: A project module; its code hashes below depend on this exact text and module name.
GOLDFLOWS = """\
from phalanx.pipelines import pipeline, task

FACTOR = 3


def helper(x: int) -> int:
    return x * FACTOR


@task
def scale(x: int, extra: list[int] | None = None) -> int:
    return helper(x) + sum(extra or [])


@task(cache_version="v2")
def total(a: int, b: int) -> dict[str, int]:
    return {"sum": a + b}


@pipeline
def flow(n: int = 2) -> object:
    return total(scale(n), scale(n + 1, extra=[1, 2]))
"""

#: Computed by the tree before the light step path (commit 46f6791), from the same inputs.
CONTENT_HASH = "sha256:12ba3b120d30cf709e5645c7b93ad702be7c0809b5f507435a974904ee5ff01a"
CACHE_KEY = "sha256:16bd104b7658bee662f143e1e8e0f68ea60e3d86010eabe7c2bcb0c111d711ce"
VALUES: list[object] = [None, True, 3, 2.5, "é", [1, (2, 3)], {"b": 1, "a": [None]}]
ENCODED = [
    "sha256:d69cc6a58232eff0c7d46e39032ad3be18d0d6de84fb2545e3197fc14dd78863",
    "sha256:af0bcb8119b56ec1651e307f1039a16bb05eac3451b09ec6f2166bd50458db73",
    "sha256:3f2bc338c7ee6911efdf030f88ee24da8c211caef64bedaa5dd302ee630de1c5",
    "sha256:2c0c42bd81e099f3bb145997d853fd3d7894b911954b3ef285dea3467a929eb3",
    "sha256:6091b0b9bb685213b91816532c34c746f69d7bcc40e0215eaae84ad26fc7516d",
    "sha256:c0a82bb6e7d4f6b0acc85551203208ab5d5be2a0df9e98f7e72a0296d0e22c2b",
    "sha256:2c63d01d84bc93983d5fcd2e5a595373a295c4dc7a50920f73de91e2f0a27795",
]
#: step → (code hash, cache key with image "img" and the inputs given in test_code_hashes…)
STEPS = {
    "scale": (
        "sha256:a4fd879777f8baffd86191b7ac86fb63c0dace951650f38e29b0c5738e244ff4",
        "sha256:f71570a8f60e81c39d9cafd6f09a911a9189e662df0f50d9b9c375a372abc7d8",
    ),
    "scale-2": (
        "sha256:a4fd879777f8baffd86191b7ac86fb63c0dace951650f38e29b0c5738e244ff4",
        "sha256:386566e6dae03305ef1dc36ae333ac1a716c8ee1d5c0d8ae0b3e941865e26ae7",
    ),
    "total": (
        "sha256:88976ca24ad6582f37e8ce30334474dac33fdb43e62dcf4667c6b27c18a0e373",
        "sha256:7c318b62249f05e0c40412a329951469c9e58584ab250bf5995d481ee30726b0",
    ),
}
#: Modules a step's process must not import: each costs it more than a trivial task's work.
HEAVY = ("inspect", "dataclasses", "hashlib", "_hashlib", "ast", "dis", "pathlib", "textwrap")


@pytest.fixture
def goldflows(tmp_path: Path) -> Iterator[Path]:
    with importable_module(tmp_path, "goldflows", GOLDFLOWS) as folder:
        yield folder


def test_content_hashes_cache_keys_and_encodings_are_unchanged() -> None:
    assert content_hash(b"hello", "x") == CONTENT_HASH
    inputs = KeyInputs("m:t", "sha256:abc", {"b": "h2", "a": "h1"}, "v1", "img", 2)
    assert cache_key(inputs) == CACHE_KEY
    assert [encode(v).hash for v in VALUES] == ENCODED


def test_code_hashes_and_step_keys_are_unchanged(goldflows: Path) -> None:
    flows = importlib.import_module("goldflows")
    built = flows.flow.build(n=2)
    outputs = {
        s.name: ArtifactRef(encode(i).hash, "json", 1, "int", str(i))
        for i, s in enumerate(built.spec.steps)
    }
    got = {
        s.name: (s.code_hash, step_key(s, input_refs(s, outputs), "img")) for s in built.spec.steps
    }
    assert got == STEPS


@given(st.binary(max_size=4096), st.text(max_size=20))
def test_the_light_sha256_is_hashlibs(data: bytes, kind: str) -> None:
    digest = sha256()
    digest.update(data)
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
    expected = hashlib.sha256(kind.encode() + b"\0" + data).hexdigest()
    assert content_hash(data, kind) == f"sha256:{expected}"


def test_a_step_process_imports_nothing_heavy_and_writes_its_result(goldflows: Path) -> None:
    flows = importlib.import_module("goldflows")
    step = next(s for s in flows.flow.build(n=2).spec.steps if s.name == "scale")
    store = ArtifactStore(str(goldflows / "artifacts"))
    refs = input_refs(step, {})
    spec = {
        "run": "r",
        "step": step.name,
        "task": step.task,
        "codeHash": step.code_hash,
        "artifacts": store.url,
        "inputs": {k: r.to_json() for k, r in refs.items()},
    }
    # The step's own entry point, then a look at what it imported (exit_now would skip it).
    probe = textwrap.dedent(
        f"""
        import sys
        from phalanx.pipelines import step
        status = step.main()
        print(sorted(m for m in {HEAVY!r} if m in sys.modules))
        sys.exit(status)
        """
    )
    env = {
        **os.environ,
        "PHALANX_PIPELINE_STEP": json.dumps(spec),
        "PYTHONPATH": os.pathsep.join([str(goldflows), *sys.path]),
    }
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"a step imported {done.stdout.strip()}"
    result = store.read_record(store.result_path("r", step.name))
    assert result is not None
    assert store.get(ArtifactRef.from_json(result["output"])) == 6  # scale(2) = 2 * FACTOR


@pytest.mark.parametrize(
    "value",
    [
        File("a/b"),
        Directory("d"),
        ArtifactRef("sha256:1", "json", 1, "int", "1"),
        ArtifactRef("sha256:2", "npy", 9),
        unmapped([1, 2]),
    ],
    ids=["file", "directory", "inline-ref", "blob-ref", "unmapped"],
)
def test_records_compare_hash_pickle_and_refuse_writes_like_frozen_dataclasses(
    value: object,
) -> None:
    again = pickle.loads(pickle.dumps(value))
    assert again == value and type(again) is type(value)
    if not isinstance(value, unmapped):  # its list value is unhashable, as before
        assert hash(again) == hash(value)
    assert repr(value).startswith(type(value).__qualname__ + "(")
    with pytest.raises(AttributeError, match="immutable"):
        value.path = "elsewhere"  # type: ignore[attr-defined]


def test_records_of_different_types_or_fields_differ() -> None:
    assert File("x") != Directory("x")
    assert File("x") != File("y")
    assert File("x") != ("x",)
    assert ArtifactRef("h", "json", 1) == ArtifactRef("h", "json", 1, "", None)
    assert ArtifactRef("h", "json", 1) != ArtifactRef("h", "json", 1, "int")
    assert repr(ArtifactRef("h", "json", 1)) == (
        "ArtifactRef(hash='h', format='json', size=1, type='', inline=None)"
    )
    assert TaskFuture("s", None) == TaskFuture("s", None)  # type: ignore[arg-type]
