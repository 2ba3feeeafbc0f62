"""The ``phalanx`` command line (Typer): server lifecycle and kubectl-like commands.

Layering: cli may import client, api, controllers and below, but imports the server side
(api, controllers, uvicorn) only inside ``phalanx up`` to keep start-up fast.
"""
