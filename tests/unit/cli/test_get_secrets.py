"""``phalanx get secrets`` and ``describe secret``: keys and sizes, never a value."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

from typer.testing import Result

Invoke = Callable[..., Result]

VALUE = "s3cr3t-hunter2"

SECRET_YAML = f"""
apiVersion: phalanx.dev/v1alpha1
kind: Secret
metadata: {{name: db, labels: {{team: a}}}}
spec:
  stringData: {{password: {VALUE}}}
  data: {{user: {base64.b64encode(b"admin").decode()}}}
"""


def test_get_and_describe_show_keys_and_sizes_but_no_value(cli: Invoke, tmp_path: Path) -> None:
    path = tmp_path / "secret.yaml"
    path.write_text(SECRET_YAML, encoding="utf-8")
    assert cli("apply", "-f", str(path)).exit_code == 0
    encoded = base64.b64encode(VALUE.encode()).decode()

    listed = cli("get", "secrets")
    assert listed.exit_code == 0, listed.output
    header, row = listed.stdout.splitlines()[:2]
    assert header.split() == ["NAME", "TYPE", "KEYS", "AGE"]
    assert row.split()[:3] == ["db", "Opaque", "2"]

    described = cli("describe", "secret", "db")
    assert described.exit_code == 0, described.output
    assert "team=a" in described.stdout
    assert f"password:  <hidden> ({len(VALUE)} bytes)" in described.stdout
    assert "user:  <hidden> (5 bytes)" in described.stdout

    for output in ("json", "yaml"):
        shown = cli("get", "secret", "db", "-o", output)
        assert shown.exit_code == 0 and "<hidden>" in shown.stdout
    for result in (listed, described, *(cli("get", "secrets", "-o", o) for o in ("json", "yaml"))):
        assert VALUE not in result.output and encoded not in result.output

    missing = cli("describe", "secret", "nope")
    assert missing.exit_code == 1 and "nope" in missing.output
