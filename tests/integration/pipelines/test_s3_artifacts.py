"""Artifacts in S3: a real S3-compatible server (SeaweedFS's ``weed server -s3``, built by
scripts/s3server/s3server from the Go module proxy) started here on free ports, and the
artifact store, the cache and an in-process pipeline run against it through s3fs.

Skipped when the server has not been built or s3fs is missing, unless PHALANX_REQUIRE_S3=1
(CI), where that fails instead.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from conftest import S3_BUCKET, s3_server
from phalanx.pipelines import ArtifactStore

BUCKET = S3_BUCKET


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with s3_server(tmp_path_factory.mktemp("weed")) as endpoint:
        yield endpoint


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Credentials and endpoint in the environment, as a user would give them to botocore."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "phalanx")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "phalanx")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return s3_endpoint


def test_values_blobs_and_records_round_trip_through_s3(s3_env: str, tmp_path: Path) -> None:
    store = ArtifactStore(f"s3://{BUCKET}/store-a")
    assert not store.is_local
    array = np.arange(20_000, dtype=np.int64)
    ref = store.put(array)
    np.testing.assert_array_equal(store.get(ref), array)
    again = ArtifactStore(f"s3://{BUCKET}/store-a")  # a new client reads what was written
    np.testing.assert_array_equal(again.get(ref), array)
    big = store.put({"rows": list(range(5000))})
    assert big.inline is None and again.get(big) == {"rows": list(range(5000))}
    (tmp_path / "model.bin").write_bytes(b"\x00\x01weights")
    from phalanx.pipelines import File

    file_ref = store.put(File(str(tmp_path / "model.bin")))
    got = again.get(file_ref)
    assert Path(got.path).read_bytes() == b"\x00\x01weights"  # type: ignore[attr-defined]
    store.record_cache("sha256:" + "ab" * 32, ref, "run-1", "step-a")
    entry = again.cache_entry("sha256:" + "ab" * 32)
    assert entry is not None and entry["run"] == "run-1"
    assert again.cache_entry("sha256:" + "cd" * 32) is None


def test_a_pipeline_run_caches_in_s3(s3_env: str, tmp_path: Path) -> None:
    (tmp_path / "s3flow.py").write_text(
        textwrap.dedent(
            """
            import numpy as np
            from phalanx.pipelines import pipeline, task

            @task
            def make(n: int) -> np.ndarray:
                return np.ones((n, n))

            @task
            def total(a: np.ndarray) -> float:
                return float(a.sum())

            @pipeline
            def flow(n: int = 50) -> object:
                return total(make(n))
            """
        )
    )
    sys.path.insert(0, str(tmp_path))
    try:
        mod = importlib.import_module("s3flow")
        url = f"s3://{BUCKET}/runs"
        first = mod.flow.run(artifacts=url, n=60)
        assert first.phase.value == "Succeeded" and first.result() == 3600.0
        second = mod.flow.run(artifacts=url, n=60)
        assert second.cached == ["make", "total"]
        assert second.result() == 3600.0
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("s3flow", None)
