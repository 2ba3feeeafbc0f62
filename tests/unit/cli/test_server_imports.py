"""What a ``phalanx`` process loads: httpx without its own command line (``httpx._main``), so
neither rich nor Pygments (some 3 MiB of a server's memory, 0.1 s of every command's start)."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
import phalanx.cli.main
import phalanx.api.server
import httpx
print(sorted({"rich", "pygments"} & {name.split(".")[0] for name in sys.modules}))
print(sys.modules.get("httpx._main") is None, callable(httpx.main))
"""


def test_the_command_line_and_the_server_load_httpx_without_its_command_line() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == ["[]", "True True"]
