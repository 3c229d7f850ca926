"""Prometheus metrics, one registry per app (no process globals, so tests stay independent).

Label values are bounded: routes are the fixed route names, policies come from
policies.yaml, decisions/directions/backends are small enums.

Under `rsafe serve --workers N` every worker is a process of its own: the supervisor sets
PROMETHEUS_MULTIPROC_DIR (a fresh folder per run) before they start, so prometheus_client
keeps every counter and histogram in files there, and whichever worker answers /metrics
reports the sums over all workers (a `MultiProcessCollector`). The policy store's numbers,
read at scrape time in one process, become gauges each worker keeps up to date
(`sync_store`), merged with `livemax` (a version any live worker serves is 1).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from gateway.pipeline import Decision

HOLDBACK_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10)
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def multiprocess_dir() -> str | None:
    """The folder prometheus_client's multiprocess mode writes to, when it is on."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.multiprocess = multiprocess_dir() is not None
        self._store: Any = None
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("rsafe_requests", "HTTP requests by route and status", ["route", "status"], registry=r)
        self.decisions = Counter(
            "rsafe_decisions", "Moderation decisions by policy, direction and action",
            ["policy", "direction", "action"], registry=r,
        )
        self.checks = Counter("rsafe_checks", "Moderation checks by direction and overall action", ["direction", "action"], registry=r)
        self.guard_latency = Histogram(
            "rsafe_guard_latency_seconds", "Guard check latency", ["backend", "direction"],
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.failure_mode = Counter(
            "rsafe_failure_mode_activations", "Guard failures resolved by a policy's failure mode",
            ["mode"], registry=r,
        )
        self.upstream_latency = Histogram(
            "rsafe_upstream_latency_seconds", "Upstream call latency (to headers for streams)", ["route"],
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.upstream_errors = Counter("rsafe_upstream_errors", "Upstream errors by kind", ["kind"], registry=r)
        self.stream_windows = Counter("rsafe_stream_windows_checked", "Stream windows checked", registry=r)
        self.guard_cache = Counter(
            "rsafe_guard_cache_lookups", "Model-guard verdicts served from the verdict cache (hit) or computed (miss)",
            ["backend", "result"], registry=r,
        )
        self.stream_holdback = Histogram(
            "rsafe_stream_holdback_seconds", "How long streamed text was held back before the guard released it",
            buckets=HOLDBACK_BUCKETS, registry=r,
        )
        # Pass as `holdback=` to ChatStream/ResponsesStream: each released text's wait is observed.
        self.holdback = _Observer(self.stream_holdback)

    def bind_store(self, store: Any) -> None:
        """Expose the policy store's reload counts (ok and rejected), load time and version,
        read at scrape time. With several workers (each its own store),
        gauges and a counter kept in step by `sync_store`, which the store calls after every
        reload attempt (before a request can see the new policies) and a scrape calls too."""
        if not self.multiprocess:
            self.registry.register(_PolicyStoreCollector(store))
            return
        r = self.registry
        self._store = store
        self.policy_reloads = Counter("rsafe_policy_reloads", "Policy file reloads (ok, or rejected as invalid)",
                                      ["result"], registry=r)
        self._synced = {"ok": 0, "rejected": 0}
        for result in self._synced:  # both series exist from the start, as with one process
            self.policy_reloads.labels(result)
        self._version: str | None = None
        self._loaded_at = Gauge("rsafe_policies_loaded_timestamp_seconds", "When the policies in force were loaded "
                                "(Unix time; the latest of any worker)", registry=r, multiprocess_mode="livemax")
        self._failing = Gauge("rsafe_policies_reload_failing", "1 while the last edit of the policies file was "
                              "rejected (the last good one serves)", registry=r, multiprocess_mode="livemax")
        self._info = Gauge("rsafe_policies_info", "The policies in force (1 per version some worker serves)",
                           ["version"], registry=r, multiprocess_mode="livemax")
        self.sync_store()
        store.on_state(self.sync_store)

    def sync_store(self) -> None:
        """Multiprocess mode: copy this worker's policy-store state into the shared metrics."""
        store = self._store
        if store is None:
            return
        for result in ("ok", "rejected"):
            n = store.reloads.get(result, 0)
            if n > self._synced[result]:
                self.policy_reloads.labels(result).inc(n - self._synced[result])
                self._synced[result] = n
        self._loaded_at.set(store.loaded_at)
        self._failing.set(1 if store.last_error else 0)
        version = store.current.version
        if version != self._version:
            if self._version is not None:
                self._info.labels(self._version).set(0)
            self._info.labels(version).set(1)
            self._version = version

    def observe(self, decision: Decision) -> None:
        direction = decision.direction.value
        self.checks.labels(direction, decision.action).inc()
        if decision.backend:
            self.guard_latency.labels(decision.backend, direction).observe(decision.latency_ms / 1000)
            if not decision.error:
                self.guard_cache.labels(decision.backend, "hit" if decision.cached else "miss").inc()
        for outcome in decision.outcomes:
            self.decisions.labels(outcome.policy_id, direction, outcome.action).inc()
            if outcome.reason == "guard_error":
                self.failure_mode.labels("open" if outcome.action == "fail_open" else "closed").inc()

    def render(self) -> bytes:
        if not self.multiprocess:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        self.sync_store()
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)
        return generate_latest(merged)


class _Observer:
    """A list-like sink (`append`) that observes a histogram: what `Window(holdback=...)` takes."""

    def __init__(self, histogram: Histogram) -> None:
        self._histogram = histogram

    def append(self, seconds: float) -> None:
        self._histogram.observe(seconds)


class _PolicyStoreCollector(Collector):
    def __init__(self, store: Any) -> None:
        self.store = store

    def collect(self) -> Iterator[Any]:
        store = self.store
        reloads = CounterMetricFamily("rsafe_policy_reloads", "Policy file reloads (ok, or rejected as invalid)",
                                      labels=["result"])
        for result in ("ok", "rejected"):
            reloads.add_metric([result], store.reloads.get(result, 0))
        yield reloads
        yield GaugeMetricFamily("rsafe_policies_loaded_timestamp_seconds",
                                "When the policies in force were loaded (Unix time)", value=store.loaded_at)
        yield GaugeMetricFamily("rsafe_policies_reload_failing",
                                "1 while the last edit of the policies file was rejected (the last good one serves)",
                                value=1 if store.last_error else 0)
        info = GaugeMetricFamily("rsafe_policies_info", "The policies in force (always 1)", labels=["version"])
        info.add_metric([store.current.version], 1)
        yield info
