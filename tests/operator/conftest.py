"""Operator test fixtures: a release key directory, as the chart mounts one."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridgepool.credentials import KeyDir, Keys, PoolKeys, new_key, write_keys


@pytest.fixture
def key_dir(tmp_path: Path) -> Path:
    """A release key directory with a key and a scrape token."""
    directory = tmp_path / "release-keys"
    write_keys(directory, Keys(new_key(), scrape=new_key()))
    return directory


@pytest.fixture
def release_keys(key_dir: Path) -> PoolKeys:
    """Every pool's keys, as the operator reads them (re-read at once on a change)."""
    return PoolKeys(KeyDir(key_dir, reload_seconds=0))
