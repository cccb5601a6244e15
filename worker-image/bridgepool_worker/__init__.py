"""The BridgePool bridge worker and the SDK for writing its commands."""

from bridgepool_worker.sdk import CommandContext, command

__all__ = ["CommandContext", "command"]
