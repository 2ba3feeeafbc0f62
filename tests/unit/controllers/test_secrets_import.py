"""The server loads ``controllers.secrets`` at start but ``cryptography`` (some 7 MiB of its
memory) only once a Secret or its key file is used."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROBE = """
import sys
from pathlib import Path
import phalanx.api.server
from phalanx.controllers.secrets import load_or_create_keys
print("cryptography" in sys.modules)
keys = load_or_create_keys(Path(sys.argv[1]) / "secrets.key")
print(len(keys), "cryptography" in sys.modules)
"""


def test_the_server_imports_cryptography_only_when_a_key_is_used(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path)], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert out[0] == "False"
    assert out[1] == "1 True"
