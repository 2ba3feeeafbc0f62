"""Starting the test cluster: one failed start is retried in a fresh directory and reported;
two fail loudly with both reports. A kube-apiserver that is SIGKILLed before it writes a line
(what a start looks like when it dies at once) stands in for the failure: a wrapper in a copy of
the binaries' directory, found through PHALANX_CACHE_DIR."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from cluster import SCRIPT, ClusterUnavailableError, bin_dir, start_cluster

pytestmark = pytest.mark.k8s

# Dies by SIGKILL the first FAILS times it is started, then runs the real kube-apiserver.
WRAPPER = """#!/bin/sh
count_file={count}
n=$(cat "$count_file" 2>/dev/null || echo 0)
echo $((n + 1)) > "$count_file"
if [ "$n" -lt {fails} ]; then kill -9 $$; fi
exec {real} "$@"
"""


def _flaky_binaries(tmp_path: Path, fails: int, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Points the script at a copy of the binaries whose kube-apiserver dies FAILS times."""
    real = bin_dir()
    if not (real / "kube-apiserver").exists():
        message = "test cluster binaries are not built; run scripts/testcluster/testcluster build"
        if os.environ.get("PHALANX_REQUIRE_K8S") == "1":
            pytest.fail(message)
        pytest.skip(message)
    cache = tmp_path / "cache"
    monkeypatch.setenv("PHALANX_CACHE_DIR", str(cache))
    fake = bin_dir()
    fake.mkdir(parents=True)
    for name in ("etcd", "kwok", "kubectl"):
        (fake / name).symlink_to(real / name)
    count = tmp_path / "starts"
    wrapper = fake / "kube-apiserver"
    wrapper.write_text(WRAPPER.format(count=count, fails=fails, real=real / "kube-apiserver"))
    wrapper.chmod(0o755)
    return count


def _dir_maker(tmp_path: Path, made: list[Path]) -> Callable[[], Path]:
    """A new directory name per start, each recorded in MADE."""

    def make() -> Path:
        made.append(tmp_path / f"cluster{len(made)}")
        return made[-1]

    return make


def test_a_start_that_dies_once_is_reported_and_retried_in_a_fresh_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    starts = _flaky_binaries(tmp_path, 1, monkeypatch)
    made: list[Path] = []
    reports: list[str] = []
    cluster = start_cluster(_dir_maker(tmp_path, made), 1, reports.append)
    try:
        assert starts.read_text().strip() == "2"
        assert len(made) == 2
        assert len(reports) == 1
        assert "killed by signal 9 (SIGKILL)" in reports[0]
        assert "kube-apiserver.log is empty" in reports[0]
        assert str(made[0]) in reports[0]
        # The failed start kept its logs and left no process; the second one serves.
        assert (made[0] / "logs" / "kube-apiserver.log").exists()
        assert _processes_in(made[0]) == []
        assert "kwok-gpu-0000" in cluster.kubectl("get", "nodes", "-o", "name")
    finally:
        cluster.down()
    assert _processes_in(made[1]) == []


def test_a_second_failed_start_fails_loudly_with_both_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _flaky_binaries(tmp_path, 2, monkeypatch)
    made: list[Path] = []
    reports: list[str] = []
    with pytest.raises(ClusterUnavailableError) as failed:
        start_cluster(_dir_maker(tmp_path, made), 1, reports.append)
    message = str(failed.value)
    assert "failed to start twice" in message
    assert message.count("killed by signal 9 (SIGKILL)") == 2
    for directory in made:
        assert str(directory) in message
        assert _processes_in(directory) == []
    assert len(reports) == 1


def _processes_in(directory: Path) -> list[str]:
    """Command lines of live processes that name DIRECTORY (the script tags its children so)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(directory) in cmdline and str(SCRIPT) not in cmdline:
            found.append(cmdline)
    return found
