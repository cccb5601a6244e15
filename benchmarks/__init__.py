"""Benchmarks, each printing its numbers beside a baseline measured in the same run.

The cluster benchmarks drive the e2e suite's helpers (e2e/components.py,
e2e/support.py), which import each other as top-level modules: their
directory goes on the import path here, once for every benchmark.
"""

import sys
from pathlib import Path

E2E_DIR = Path(__file__).resolve().parent.parent / "e2e"
if str(E2E_DIR) not in sys.path:
    sys.path.insert(0, str(E2E_DIR))
