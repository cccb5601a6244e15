"""Keys (bridgepool.credentials): one pool's key never opens another's, a key
directory is re-read when it changes and keeps its keys through a bad change,
and ``bridgepool-keys`` makes, rotates and derives key directories."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest

from bridgepool.config import ConfigError
from bridgepool.credentials import (
    KeyDir,
    Keys,
    PoolKeys,
    activation_proof,
    keys_from_secret,
    new_key,
    pool_keys,
    presented_key,
    read_keys,
    write_keys,
)
from bridgepool.names import PoolRef

KEYS_BIN = Path(sys.executable).parent / "bridgepool-keys"
A, B = PoolRef("team-a", "example"), PoolRef("team-b", "example")


def test_a_pool_key_is_the_pools_alone_and_the_same_wherever_derived() -> None:
    release = Keys(new_key())
    a, b = pool_keys(release, A), pool_keys(release, B)
    assert a == pool_keys(Keys(release.current), A)  # the router's and the operator's agree
    assert a.current != b.current
    assert a.matching(b.current) is None and a.matching(a.current) == a.current
    assert pool_keys(Keys(new_key()), A).current != a.current  # another release


def test_after_a_rotation_both_keys_are_taken_and_the_current_is_sent_first() -> None:
    old, new = new_key(), new_key()
    keys = pool_keys(Keys(new, previous=old), A)
    assert keys.to_send() == (keys.current, keys.previous)
    assert keys.previous == pool_keys(Keys(old), A).current
    assert keys.matching(pool_keys(Keys(old), A).current) == keys.previous


def test_the_scrape_token_is_not_a_pool_key() -> None:
    keys = Keys(new_key(), scrape=new_key())
    assert keys.scrape is not None
    assert keys.opens_metrics(keys.scrape) and keys.matching(keys.scrape) is None
    assert not Keys(new_key()).opens_metrics(keys.scrape)


@pytest.mark.parametrize(
    ("header", "key"),
    [("Bearer abc", "abc"), ("Bearer  abc ", "abc"), ("Basic abc", None), ("Bearer ", None),
     ("", None), (None, None)],
)  # fmt: skip
def test_the_key_of_an_authorization_header(header: str | None, key: str | None) -> None:
    assert presented_key(header) == key


def test_an_activation_proof_binds_the_key_the_session_and_the_move() -> None:
    key = new_key()
    proof = activation_proof(key, "s", "m1")
    assert proof == activation_proof(key, "s", "m1")
    assert proof not in {
        activation_proof(new_key(), "s", "m1"),
        activation_proof(key, "t", "m1"),
        activation_proof(key, "s", "m2"),
    }


def test_a_key_directory_is_reread_when_it_changes_and_keeps_its_keys_through_a_bad_change(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    now = [0.0]
    first = Keys(new_key())
    write_keys(tmp_path, first)
    keys = KeyDir(tmp_path, clock=lambda: now[0])
    rotated = Keys(new_key(), previous=first.current)
    write_keys(tmp_path, rotated)
    assert keys.keys() == first  # re-read at most once a second
    now[0] = 1.0
    assert keys.keys() == rotated
    (tmp_path / "key").write_text("short\n")
    now[0] = 2.0
    assert keys.keys() == rotated
    assert "keys unreadable, keeping the last ones" in caplog.text


def test_pool_keys_follow_the_release_directory(tmp_path: Path) -> None:
    now = [0.0]
    write_keys(tmp_path, Keys(new_key()))
    pools = PoolKeys(KeyDir(tmp_path, clock=lambda: now[0]))
    before = pools.of(A)
    assert pools.of(A) is before  # derived once per release key
    rotated = Keys(new_key(), previous=read_keys(tmp_path).current)
    write_keys(tmp_path, rotated)
    now[0] = 5.0
    assert pools.of(A) == pool_keys(rotated, A)
    assert pools.of(A).previous == before.current


@pytest.mark.parametrize(
    ("files", "problem"),
    [({}, "no such key file"), ({"key": "short"}, "at least 32"),
     ({"key": "two words" * 8}, "one word")],
)  # fmt: skip
def test_an_unusable_key_directory_is_named(
    tmp_path: Path, files: dict[str, str], problem: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=problem) as refused:
        read_keys(tmp_path)
    assert str(tmp_path) in str(refused.value)


def test_keys_from_a_secrets_data() -> None:
    keys = Keys(new_key(), previous=new_key(), scrape=new_key())

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    data = {"key": b64(keys.current), "previous": b64(f"{keys.previous}\n")}
    data["scrape-token"] = b64(str(keys.scrape))
    assert keys_from_secret(data) == keys
    assert keys_from_secret({"key": b64(keys.current)}) == Keys(keys.current)
    with pytest.raises(ConfigError, match="no 'key'"):
        keys_from_secret({"previous": b64(keys.current)})


def keys_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KEYS_BIN), *map(str, args)], capture_output=True, text=True, timeout=30
    )


def test_bridgepool_keys_makes_rotates_and_derives(tmp_path: Path) -> None:
    release, pool = tmp_path / "release", tmp_path / "pool"
    assert keys_cli("new", release, "--scrape-token").returncode == 0
    made = read_keys(release)
    assert made.previous is None and made.scrape is not None
    assert oct((release / "key").stat().st_mode)[-3:] == "600"
    refused = keys_cli("new", release)
    assert refused.returncode == 2 and "exists" in refused.stderr
    assert read_keys(release) == made  # nothing overwritten

    assert keys_cli("pool", release, "team-a/example", pool).returncode == 0
    assert read_keys(pool) == Keys(pool_keys(made, A).current, scrape=made.scrape)

    assert keys_cli("rotate", release).returncode == 0
    rotated = read_keys(release)
    assert rotated.previous == made.current and rotated.current != made.current

    bad = keys_cli("pool", release, "Team_A/example", pool)
    assert bad.returncode == 2 and "namespace" in bad.stderr
