"""The ``phalanx`` command line (Typer): server lifecycle and kubectl-like commands.

Layering: cli may import client, api, controllers and below, but imports the server side
(api, controllers, uvicorn) only inside ``phalanx up`` to keep start-up fast.
"""

import sys

# httpx imports its own command line (``httpx._main``) whenever click is installed, and with it
# rich and Pygments: some 3 MiB of memory and 0.1 s of start-up in every command, the server
# (``phalanx up``) included, for code none of them runs. Marking the module absent makes httpx
# take the fallback it has for an install without its ``cli`` extra; the ``httpx`` command, a
# process of its own, is unchanged.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
