"""A pool's YAML, read for one machine: the same BridgePool that
``kubectl apply`` takes, checked by the same models with the same messages,
and turned into what starts a worker process.

On a cluster a worker is the template's first container: its image's
entrypoint (``bridgepool-worker``) with the container's ``args`` and
``env``, and the pool's ``BRIDGEPOOL_WORKER_*`` settings. Here it is the
same worker from this Python environment (or ``--worker-command``), with the
same args, env and settings, and the handler files the pool's
``bridgepool.io/local-handlers`` annotation (or ``--handlers``) names. What
has no meaning on one machine (a volume, a node selector, resources, probes,
sidecars) is named in a warning, never dropped in silence.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bridgepool import labels
from bridgepool.errors import validation_problems
from bridgepool.names import DEFAULT_NAMESPACE, PoolRef, namespace_problem, pool_name_problem
from bridgepool.spec import BridgePoolSpec
from bridgepool.worker_settings import worker_settings

# The revision is this long, as on a cluster.
REVISION_LENGTH = 10
# Container fields that mean the same here (name, image: the worker program
# is this environment's; ports: each local worker gets its own).
CONTAINER_FIELDS_KEPT = frozenset({"name", "image", "imagePullPolicy", "args", "env", "ports"})


class PoolFileError(ValueError):
    """The pool's YAML cannot run: ``problem`` names it (as the pool's status
    says it), the message adds the file it is in."""

    def __init__(self, where: object, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.problem = problem


@dataclass(frozen=True)
class PoolFile:
    """A BridgePool read from YAML."""

    ref: PoolRef
    spec: BridgePoolSpec
    annotations: Mapping[str, str]
    source: Path


def parse_pool(text: str, source: Path) -> PoolFile:
    """A BridgePool from YAML text; raises :class:`PoolFileError` naming what is wrong."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise PoolFileError(source, f"not valid YAML: {err}") from None
    if not isinstance(doc, Mapping):
        raise PoolFileError(source, f"expected a BridgePool object, got {type(doc).__name__}")
    if doc.get("kind") != labels.KIND or doc.get("apiVersion") != labels.API_VERSION:
        raise PoolFileError(
            source,
            f"expected apiVersion {labels.API_VERSION} and kind {labels.KIND}, "
            f"got {doc.get('apiVersion')!r} and {doc.get('kind')!r}",
        )
    meta = doc.get("metadata") or {}
    name = str(meta.get("name") or "")
    namespace = str(meta.get("namespace") or DEFAULT_NAMESPACE)
    if problem := pool_name_problem(name) if name else "metadata.name is required":
        raise PoolFileError(source, f"metadata.name: {problem}")
    if problem := namespace_problem(namespace):
        raise PoolFileError(source, f"metadata.namespace: {problem}")
    try:
        spec = BridgePoolSpec.model_validate(doc.get("spec") or {})
    except ValidationError as err:
        raise PoolFileError(source, validation_problems(err, root="spec")) from None
    annotations = {str(k): str(v) for k, v in (meta.get("annotations") or {}).items()}
    return PoolFile(PoolRef(namespace, name), spec, annotations, source)


def read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as err:
        raise PoolFileError(path, f"cannot read: {err.strerror or err}") from None


def load_pool(path: Path) -> PoolFile:
    """The pool in ``path``."""
    return parse_pool(read_text(path), path)


def unsupported_fields(spec: BridgePoolSpec) -> list[str]:
    """The template's fields that mean nothing on one machine, by their path."""
    pod = spec.template.spec.model_dump(by_alias=True, exclude_none=True)
    found = [f"spec.template.spec.{k}" for k in sorted(pod) if k != "containers"]
    first, *sidecars = pod["containers"]
    found += [
        f"spec.template.spec.containers[0].{k}"
        for k in sorted(first)
        if k not in CONTAINER_FIELDS_KEPT
    ]
    found += [f"spec.template.spec.containers[{i + 1}] (a sidecar)" for i in range(len(sidecars))]
    found += [
        f"spec.template.spec.containers[0].env[{i}] ({e.get('name')}: valueFrom)"
        for i, e in enumerate(first.get("env") or [])
        if "value" not in e
    ]
    return found


@dataclass(frozen=True)
class WorkerRecipe:
    """What starts one revision's worker processes, and that revision's name."""

    argv: tuple[str, ...]
    env: Mapping[str, str]  # added to the supervisor's environment
    revision: str


def handler_paths(pool: PoolFile, override: Sequence[str]) -> tuple[Path, ...]:
    """The handler files: ``override`` (from the command line, relative to the
    working directory) or the pool's annotation (relative to its YAML file)."""
    if override:
        return tuple(Path(p).resolve() for p in override)
    listed = pool.annotations.get(labels.ANNOTATION_LOCAL_HANDLERS, "")
    base = pool.source.resolve().parent
    return tuple((base / p.strip()).resolve() for p in listed.split(",") if p.strip())


def worker_recipe(
    pool: PoolFile,
    keys_dir: Path,
    *,
    handlers: Sequence[Path] = (),
    command: str | None = None,
) -> WorkerRecipe:
    """How to start a worker of ``pool``: the command (this environment's
    worker, or ``command``), the template's args, the handler files, the
    template's env and the pool's worker settings. The revision hashes all of
    it with the handler files' contents, so a changed handler file rolls the
    pool out as a new image would on a cluster. Raises :class:`PoolFileError`
    when a handler file cannot be read."""
    container = pool.spec.template.spec.containers[0].model_dump(by_alias=True, exclude_none=True)
    base = shlex.split(command) if command else [sys.executable, "-m", "bridgepool_worker"]
    argv = [*base, *(str(a) for a in container.get("args") or [])]
    if handlers:
        argv += ["--handlers", *(str(h) for h in handlers)]
    env = {str(e["name"]): str(e["value"]) for e in container.get("env") or [] if "value" in e}
    env.update(worker_settings(pool.spec, str(keys_dir)))
    contents = {}
    for path in handlers:
        try:
            contents[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as err:
            raise PoolFileError(
                pool.source, f"handler file {path}: {err.strerror or err}"
            ) from None
    material = {
        "argv": argv,
        "env": env,
        "handlers": contents,
        "metadata": pool.spec.template.metadata.model_dump(by_alias=True, exclude_none=True),
    }
    digest = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()
    return WorkerRecipe(tuple(argv), env, digest[:REVISION_LENGTH])


def spec_summary(spec: BridgePoolSpec) -> dict[str, Any]:
    """The sizes a start-up log line gives."""
    return {"min_replicas": spec.min_replicas, "max_replicas": spec.max_replicas}
