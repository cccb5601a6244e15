"""The BridgePool bridge worker and the SDK for writing its commands."""

from bridgepool_worker.sdk import (
    CommandContext,
    MoveRefused,
    command,
    state_exporter,
    state_importer,
)

__all__ = ["CommandContext", "MoveRefused", "command", "state_exporter", "state_importer"]
