"""Observation over HTTP: each worker's ``/v1/stats``, joined with its pod."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

import aiohttp

from bridgepool.protocol import WorkerStats
from bridgepool.worker_http import WorkerHttp

from .observe import ObservedWorker, observe_pod, stats_url


async def fetch_stats(http: WorkerHttp, pod: Mapping[str, Any]) -> WorkerStats | None:
    url = stats_url(pod)
    if url is None:
        return None
    try:
        async with http.get(url) as resp:
            if resp.status != 200:
                return None
            return WorkerStats.model_validate(await resp.json())
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None


async def observe(http: WorkerHttp, pods: Iterable[Mapping[str, Any]]) -> list[ObservedWorker]:
    pods = list(pods)
    stats = await asyncio.gather(*(fetch_stats(http, p) for p in pods))
    return [observe_pod(p, s) for p, s in zip(pods, stats, strict=True)]
