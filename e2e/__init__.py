"""The end-to-end suite and its helpers (``support``: clusters, processes and
HTTP; ``components``: BridgePools, the operator and Helm releases;
``prometheus`` and ``monitoring``: a real Prometheus over the components).
The cluster benchmarks import the helpers from here too."""
