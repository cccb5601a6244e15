"""``python -m bridgepool_router``: the same as the ``bridgepool-router`` command."""

from bridgepool_router.cli import main

main()
