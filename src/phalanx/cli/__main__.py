"""``python -m phalanx.cli``: the same as the ``phalanx`` script (used by ``up --daemon``)."""

from phalanx.cli.main import main

main()
