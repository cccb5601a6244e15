"""``python -m bridgepool_worker``: the same as the ``bridgepool-worker`` command."""

from bridgepool_worker.cli import main

main()
