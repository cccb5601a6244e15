"""Benchmarks, each printing its numbers beside a baseline measured in the same run.

The cluster benchmarks drive the e2e suite's helpers (the ``e2e`` package);
run them from the repository root, ``python -m benchmarks.NAME``.
"""
