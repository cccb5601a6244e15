"""The BridgePool operator: reconciles BridgePool resources into worker pods."""
