"""The per-call families the router keeps as plain numbers scrape exactly as
prometheus_client's own metrics would, given the same observations."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bridgepool.names import PoolRef
from bridgepool_router.metrics import DURATION, OVERHEAD, REQUESTS, RouterMetrics

# On a bound, just either side of one, far above all, zero.
DURATIONS = [0.001, 0.00099, 0.0011, 0.0005, 0.0, 0.3, 2.5, 61.0, 0.001]
ADDED = [0.00005, 0.00004, 0.1, 0.2, 0.0001, 0.0, 0.00025, 0.0003, 0.00005]
OUTCOMES = ["success", "success", "timeout", "success", "rejected", "success", "success",
            "timeout", "success"]  # fmt: skip


Sample = tuple[str, tuple[tuple[str, str], ...], float]  # name, labels, value


def _samples(registry: CollectorRegistry, names: set[str]) -> set[Sample]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if family.name in names and not s.name.endswith("_created")
    }


def test_per_call_counts_scrape_as_prometheus_client_metrics() -> None:
    ours = RouterMetrics()
    stats = ours.for_pool(PoolRef("team-a", "demo"))
    reference = CollectorRegistry()
    pool = ["namespace", "pool"]
    requests = Counter(f"{REQUESTS.name}_total", "", [*pool, "outcome"], registry=reference)
    duration = Histogram(DURATION.name, "", pool, registry=reference,
                         buckets=stats.duration.bounds)  # fmt: skip
    added = Histogram(OVERHEAD.name, "", pool, registry=reference,
                      buckets=stats.overhead.bounds)  # fmt: skip
    for outcome, seconds, added_seconds in zip(OUTCOMES, DURATIONS, ADDED, strict=True):
        stats.call_done(outcome, seconds, added_seconds)
        requests.labels("team-a", "demo", outcome).inc()
        duration.labels("team-a", "demo").observe(seconds)
        added.labels("team-a", "demo").observe(added_seconds)

    names = {REQUESTS.name, DURATION.name, OVERHEAD.name}
    expected = _samples(reference, names)
    assert len(expected) > 20
    assert _samples(ours.registry, names) == expected


def test_a_forgotten_pool_scrapes_no_per_call_series() -> None:
    metrics = RouterMetrics()
    # The same name in another namespace is another pool, and stays.
    for pool in (PoolRef("a", "stays"), PoolRef("a", "goes"), PoolRef("b", "goes")):
        stats = metrics.for_pool(pool)
        stats.call_done("success", 0.01, 0.0001)
        stats.session_lookup("new")
    metrics.forget_pool(PoolRef("a", "goes"))
    text = generate_latest(metrics.registry).decode()
    assert 'namespace="a",pool="stays"' in text
    assert 'namespace="a",pool="goes"' not in text
    assert 'namespace="b",pool="goes"' in text
