"""The local supervisor: ``bridgepool run pool.yaml`` runs a BridgePool on one machine."""
