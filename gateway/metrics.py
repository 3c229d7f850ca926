"""Prometheus metrics, one registry per app (no process globals, so tests stay independent).

Label values are bounded: routes are the fixed route names, policies come from
policies.yaml, decisions/directions/backends are small enums.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from gateway.pipeline import Decision

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
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
        self.policy_reloads = Counter("rsafe_policy_reloads", "Policy file reloads", ["result"], registry=r)

    def observe(self, decision: Decision) -> None:
        direction = decision.direction.value
        self.checks.labels(direction, decision.action).inc()
        if decision.backend:
            self.guard_latency.labels(decision.backend, direction).observe(decision.latency_ms / 1000)
        for outcome in decision.outcomes:
            self.decisions.labels(outcome.policy_id, direction, outcome.action).inc()
            if outcome.reason == "guard_error":
                self.failure_mode.labels("open" if outcome.action == "fail_open" else "closed").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
