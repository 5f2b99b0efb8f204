"""``python -m mmbench.cli ...``: the ``mmbench`` command."""

from mmbench.cli import main

main()
