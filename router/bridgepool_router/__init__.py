"""The BridgePool router: session-sticky dispatch to a pool's workers."""
