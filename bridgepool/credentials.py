"""Who may call a worker: its pool's key, and where keys live.

A worker answers ``/healthz`` and ``/readyz`` to anyone. Every other endpoint
(calls, sessions, moves, stats, metrics) takes a caller only if it shows its
pool's key as ``Authorization: Bearer KEY``. Three kinds of process hold that
key: the pool's routers, the operator, and the pool's own workers (a worker
that hands a session over tells its peer to take it). A worker of another
pool holds another key, so it is refused like any stranger. Metrics also take
a *scrape token*, which opens ``GET /metrics`` and nothing else.

Keys come from one release key (the *master*), so the router and the operator
need no per-pool secret of their own: a pool's key is
``HMAC-SHA256(master, "bridgepool.io/pool-key/v1" NUL namespace NUL name)``,
hex. The operator writes each pool's key (never the master) into a Secret its
workers mount.

A key directory is laid out as a Kubernetes Secret volume, one file per key:

=================  =========================================================
file               what
=================  =========================================================
``key``            the key callers send (required)
``previous``       the key before a rotation: still taken, never sent
``scrape-token``   a worker's: opens ``GET /metrics`` only (optional)
=================  =========================================================

A rotation puts a new ``key`` and moves the old one to ``previous``. The
directory is re-read when it changes (at most once a second), so nothing
restarts. Until every holder has the new files some hold the old key only: a
caller refused with 401 sends the call once more with its previous key
(:meth:`Keys.to_send`), so calls go on throughout.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import logging
import secrets
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from bridgepool.config import ConfigError
from bridgepool.errors import BridgePoolError
from bridgepool.files import write_private
from bridgepool.names import PoolRef

log = logging.getLogger("bridgepool.credentials")

KEY_FILE = "key"
PREVIOUS_FILE = "previous"
SCRAPE_FILE = "scrape-token"
# Shortest key taken from a file: 16 bytes' worth of hex.
MIN_KEY_CHARS = 32
_POOL_KEY_LABEL = b"bridgepool.io/pool-key/v1"
BEARER = "Bearer "
RELOAD_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Keys:
    """The keys of one holder: the one it sends, and the one before a rotation."""

    current: str
    previous: str | None = None
    scrape: str | None = None  # a worker's: opens GET /metrics only

    def to_send(self) -> tuple[str, ...]:
        """The keys a caller tries, in order: a 401 to the first means the
        callee has not seen the rotation yet."""
        return (self.current,) if self.previous is None else (self.current, self.previous)

    def matching(self, presented: str) -> str | None:
        """The pool key ``presented`` is (current or previous), if either;
        compared in constant time."""
        for key in self.to_send():
            if hmac.compare_digest(presented.encode(), key.encode()):
                return key
        return None

    def opens_metrics(self, presented: str) -> bool:
        return self.scrape is not None and hmac.compare_digest(
            presented.encode(), self.scrape.encode()
        )


def new_key() -> str:
    """A fresh random key (256 bits, hex)."""
    return secrets.token_hex(32)


@lru_cache(maxsize=4096)
def derive_pool_key(master: str, namespace: str, name: str) -> str:
    """The key of the pool ``namespace/name`` under the release key ``master``."""
    message = b"\0".join((_POOL_KEY_LABEL, namespace.encode(), name.encode()))
    return hmac.new(master.encode(), message, hashlib.sha256).hexdigest()


def pool_keys(master: Keys, pool: PoolRef) -> Keys:
    """A pool's keys (current and previous) under the release keys ``master``."""
    previous = master.previous
    return Keys(
        current=derive_pool_key(master.current, *pool),
        previous=None if previous is None else derive_pool_key(previous, *pool),
    )


def bearer(key: str) -> str:
    """The ``Authorization`` header value that presents ``key``."""
    return BEARER + key


def presented_key(authorization: str | None) -> str | None:
    """The key in an ``Authorization: Bearer KEY`` header, if it has one."""
    if not authorization or not authorization.startswith(BEARER):
        return None
    return authorization[len(BEARER) :].strip() or None


def activation_proof(key: str, session_id: str, move_id: str) -> str:
    """A worker's proof, in its answer to an activation, that it holds the
    pool key the activation was sent with: a source hands a session only to a
    peer that can show it."""
    message = b"\0".join((b"activated", session_id.encode(), move_id.encode()))
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


# -- key directories -------------------------------------------------------------------


def _read_key(path: Path, *, required: bool) -> str | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        if required:
            raise ConfigError(f"{path}: no such key file") from None
        return None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    if not text and not required:
        return None
    if len(text) < MIN_KEY_CHARS or any(c.isspace() for c in text):
        raise ConfigError(
            f"{path}: a key is one word of at least {MIN_KEY_CHARS} characters "
            f"(`bridgepool-keys new DIR` writes one)"
        )
    return text


def read_keys(directory: Path) -> Keys:
    """The keys in ``directory`` now; raises :class:`ConfigError` naming the
    file that is missing or unusable."""
    if not directory.is_dir():
        raise ConfigError(f"{directory}: not a directory of keys")
    current = _read_key(directory / KEY_FILE, required=True)
    assert current is not None
    return Keys(
        current=current,
        previous=_read_key(directory / PREVIOUS_FILE, required=False),
        scrape=_read_key(directory / SCRAPE_FILE, required=False),
    )


def keys_from_secret(data: Mapping[str, str] | None) -> Keys:
    """The keys in a Secret's ``data`` (base64, as the API returns it), laid
    out as a key directory; raises :class:`ConfigError` without a ``key``."""
    data = data or {}

    def decoded(name: str) -> str | None:
        value = data.get(name)
        return base64.b64decode(value).decode().strip() or None if value else None

    current = decoded(KEY_FILE)
    if current is None:
        raise ConfigError(f"the Secret holds no {KEY_FILE!r}")
    return Keys(current, decoded(PREVIOUS_FILE), decoded(SCRAPE_FILE))


class KeyDir:
    """A key directory, re-read when its files change (a Secret volume is
    updated in place). A change that cannot be read keeps the keys it had and
    logs why, once per change."""

    def __init__(
        self,
        directory: Path,
        *,
        reload_seconds: float = RELOAD_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = directory
        self.reload_seconds = reload_seconds
        self.clock = clock
        self._keys = read_keys(directory)  # a bad directory at start: ConfigError
        self._checked = clock()
        self._bad: str | None = None

    def keys(self) -> Keys:
        now = self.clock()
        if now - self._checked >= self.reload_seconds:
            self._checked = now
            self._reload()
        return self._keys

    def _reload(self) -> None:
        try:
            keys = read_keys(self.directory)
        except ConfigError as exc:
            if str(exc) != self._bad:
                self._bad = str(exc)
                log.error("keys unreadable, keeping the last ones", extra={"error": str(exc)})
            return
        self._bad = None
        if keys != self._keys:
            rotated = keys.current != self._keys.current
            self._keys = keys
            log.info("keys reloaded", extra={"directory": str(self.directory), "rotated": rotated})


class PoolKeys:
    """Any pool's keys, from a release key directory: the router's and the
    operator's view."""

    def __init__(self, master: KeyDir) -> None:
        self.master = master
        # pool -> (the release keys it was derived from, its keys): a call path
        # asks for every call, and the release keys change only at a rotation.
        self._derived: dict[PoolRef, tuple[Keys, Keys]] = {}

    def of(self, pool: PoolRef) -> Keys:
        master = self.master.keys()
        derived = self._derived.get(pool)
        if derived is None or derived[0] is not master:
            derived = self._derived[pool] = (master, pool_keys(master, pool))
        return derived[1]

    def forget(self, pool: PoolRef) -> None:
        self._derived.pop(pool, None)


def write_keys(directory: Path, keys: Keys) -> None:
    """Write ``keys`` as a key directory (files readable by their owner only).
    ``key`` goes last: a reader in between sees the old key with the new
    ``previous`` (the old key again, at a rotation), never a new key alone."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, value in (
        (PREVIOUS_FILE, keys.previous),
        (SCRAPE_FILE, keys.scrape),
        (KEY_FILE, keys.current),
    ):
        path = directory / name
        if value is None:
            path.unlink(missing_ok=True)
            continue
        write_private(path, value + "\n")


def pool_key_dir(master: Keys, pool: PoolRef, directory: Path) -> Keys:
    """Write the key directory a worker of ``pool`` mounts: the pool's keys,
    and the release's scrape token."""
    keys = replace(pool_keys(master, pool), scrape=master.scrape)
    write_keys(directory, keys)
    return keys


# -- bridgepool-keys ---------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    """``bridgepool-keys``: make, rotate and derive key directories off a cluster
    (on a cluster the chart and the operator keep them in Secrets)."""
    parser = argparse.ArgumentParser(
        prog="bridgepool-keys",
        description="Key directories for BridgePool workers, routers and supervisors.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    new = commands.add_parser("new", help="write a new release key directory")
    new.add_argument("directory", type=Path)
    new.add_argument(
        "--scrape-token", action="store_true", help="also a token that opens workers' /metrics"
    )
    rotate = commands.add_parser(
        "rotate", help="a new key; the current one becomes the previous (still taken)"
    )
    rotate.add_argument("directory", type=Path)
    pool = commands.add_parser("pool", help="write the key directory of one pool's workers")
    pool.add_argument("release", type=Path, help="the release key directory")
    pool.add_argument("pool", metavar="[NAMESPACE/]POOL", help="the pool (namespace: default)")
    pool.add_argument("directory", type=Path, help="where the workers' keys go")
    args = parser.parse_args(argv)
    try:
        if args.command == "new":
            if (args.directory / KEY_FILE).exists():
                raise ConfigError(f"{args.directory / KEY_FILE}: exists (rotate it instead)")
            write_keys(
                args.directory, Keys(new_key(), scrape=new_key() if args.scrape_token else None)
            )
        elif args.command == "rotate":
            old = read_keys(args.directory)
            write_keys(args.directory, replace(old, current=new_key(), previous=old.current))
        else:
            pool_key_dir(read_keys(args.release), PoolRef.parse(args.pool), args.directory)
    except (ConfigError, BridgePoolError) as exc:
        print(f"bridgepool-keys: {exc}", file=sys.stderr)
        sys.exit(2)
