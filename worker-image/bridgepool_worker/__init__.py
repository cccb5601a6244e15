"""The bridge worker: one process per pod, executing commands over HTTP."""
