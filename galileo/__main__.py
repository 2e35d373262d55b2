"""``python -m galileo`` is the ``galileo`` command."""

from galileo.cli import main

main()
