"""``python -m aptray``: the same as the ``aptray`` console script."""

from aptray.cli import main

main()
