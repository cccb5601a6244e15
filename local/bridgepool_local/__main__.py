"""``python -m bridgepool_local``: the same as the ``bridgepool`` command."""

from bridgepool_local.cli import main

main()
