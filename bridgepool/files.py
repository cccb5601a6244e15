"""Files written for one reader at a time to trust: whole, and its owner's."""

from __future__ import annotations

from pathlib import Path


def write_private(path: Path, text: str) -> None:
    """Replace ``path``'s content at once (a reader sees the old file or the
    new one, never half of it), readable by its owner only from the start."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    tmp.touch(mode=0o600)
    tmp.write_text(text)
    tmp.replace(path)
