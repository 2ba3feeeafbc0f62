"""``phalanx apply`` warns at once, on stderr, about a job that can never run as things stand
(the job is still accepted)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from typer.testing import Result

Invoke = Callable[..., Result]


def test_a_job_that_never_fits_is_accepted_with_a_warning(
    cli: Invoke, setup_file: Path, job_file: Callable[..., Path]
) -> None:
    assert cli("apply", "-f", str(setup_file)).exit_code == 0
    result = cli("apply", "-f", str(job_file("huge", "pass", gpus="1000")))  # 2-GPU nodes
    assert result.exit_code == 0, result.output
    assert result.stdout == "job.phalanx.dev/huge created\n"
    [warning] = result.stderr.splitlines()
    assert warning.startswith("Warning: job.phalanx.dev/huge: needs 1000 nvidia.com/gpu")
    assert warning.endswith("(NeverFits)")


def test_a_job_that_fits_gets_no_warning(
    cli: Invoke, setup_file: Path, job_file: Callable[..., Path]
) -> None:
    assert cli("apply", "-f", str(setup_file)).exit_code == 0
    result = cli("apply", "-f", str(job_file("small", "pass", gpus="1")))
    assert (result.exit_code, result.stderr) == (0, "")
