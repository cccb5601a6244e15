"""BridgePool's shared contract: the wire protocol, the error model and the pool's
Kubernetes names. The worker, the router and the operator import this package;
they never import each other."""

__version__ = "0.1.0"
