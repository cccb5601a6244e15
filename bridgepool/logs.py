"""One log shape for every component: a JSON object per line on stderr.

Every line has ``time`` (UTC, RFC 3339 with milliseconds), ``level``,
``component`` (worker, router, operator), ``logger`` and ``message``; fields
passed with ``extra=`` follow under their own names, the same names in every
component where they mean the same thing (``pool``, ``worker``,
``namespace``, ``session_id``, ``reason``). A traceback goes under
``exception``.

The operator logs through kopf too. kopf passes the object a line is about as
``k8s_ref``; a BridgePool's becomes ``namespace`` and ``pool``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from typing import Any

# Attributes every LogRecord has: not the caller's fields.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
POOL_KIND = "BridgePool"


def _from_kopf(ref: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of the object kopf says a line is about."""
    fields: dict[str, Any] = {}
    if ref.get("namespace"):
        fields["namespace"] = ref["namespace"]
    if ref.get("kind") == POOL_KIND:
        fields["pool"] = ref.get("name")
    elif ref.get("name"):
        fields["object"] = f"{ref.get('kind', '?')}/{ref['name']}"
    return fields


class JsonFormatter(logging.Formatter):
    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line: dict[str, Any] = {
            "time": f"{seconds}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "component": self.component,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key in _STANDARD:
                continue
            if key == "k8s_ref" and isinstance(value, Mapping):
                line.update(_from_kopf(value))
            elif not key.startswith("k8s_"):  # kopf's own bookkeeping
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(component: str, level: str = "info") -> None:
    """Send every logger's records to stderr as JSON lines of ``component``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(component))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log (a line per request: every call, probe and scrape)
    # would drown the components' own lines.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
