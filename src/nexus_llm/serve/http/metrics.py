"""Observability: Prometheus metrics (``nexus_*``) and one CloudWatch EMF log line per request.

Prometheus series live in a registry per app, so several servers (tests) can share a process. The
engine's own counters are read at scrape time by a collector, never copied on the hot path.

The EMF line is what ECS's ``awslogs`` driver turns into CloudWatch metrics without an API call per
request (the guide's server made a blocking ``put_metric_data`` call per request instead): namespace
``NexusLLM/API``, metrics ``ResponseTime`` (seconds), ``TokensGenerated`` and ``ErrorCount``, dimension
``Service`` from ``NEXUS_SERVICE_NAME`` (the deploy stage's alarms read exactly these).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from nexus_llm.serve.engine.base import EngineStats

EMF_NAMESPACE = "NexusLLM/API"
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160)
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

emf_log = logging.getLogger("nexus_llm.serve.emf")


@dataclass
class RequestRecord:
    """What one request did, filled in as it runs and reported once when its response ends."""

    endpoint: str
    start: float = field(default_factory=time.perf_counter)
    status: int = 200
    error_type: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_s: float | None = None
    finish_reason: str | None = None
    request_id: str | None = None


class EngineCollector(Collector):
    """Reads the engine's counters at scrape time."""

    def __init__(self, stats: Callable[[], EngineStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterator:
        s = self._stats()
        yield GaugeMetricFamily(
            "nexus_engine_ready", "1 when the model is loaded and the engine alive", s.ready
        )
        yield GaugeMetricFamily("nexus_engine_batch_size", "sequences in the running batch", s.running)
        yield GaugeMetricFamily(
            "nexus_engine_waiting", "requests waiting inside the engine for a batch row", s.waiting
        )
        yield CounterMetricFamily("nexus_engine_steps", "engine steps (forward passes) run", s.steps)
        yield CounterMetricFamily("nexus_engine_prompt_tokens", "prompt tokens prefilled", s.prompt_tokens)
        yield CounterMetricFamily(
            "nexus_engine_cached_prompt_tokens",
            "prompt tokens taken from the prefix cache instead of computed",
            s.cached_prompt_tokens,
        )
        yield CounterMetricFamily("nexus_engine_generated_tokens", "tokens generated", s.generated_tokens)
        finished = CounterMetricFamily(
            "nexus_engine_requests_finished", "requests the engine finished, by reason", labels=["reason"]
        )
        for reason in ("stop", "length", "cancelled", "error"):
            finished.add_metric([reason], s.finished.get(reason, 0))
        yield finished


class ServeMetrics:
    """The server's Prometheus series and the EMF writer."""

    def __init__(
        self, stats: Callable[[], EngineStats], queue_depth: Callable[[], int], emf: bool = True
    ) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.latency = Histogram(
            "nexus_request_duration_seconds", "request latency, to the last byte", ["endpoint"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.ttft = Histogram(
            "nexus_time_to_first_token_seconds", "time to the first generated text", ["endpoint"],
            buckets=TTFT_BUCKETS, registry=r,
        )  # fmt: skip
        self.requests = Counter("nexus_requests", "requests answered", ["endpoint", "status"], registry=r)
        self.errors = Counter("nexus_errors", "error responses, by type", ["type"], registry=r)
        self.prompt_tokens = Counter("nexus_prompt_tokens", "prompt tokens of served requests", registry=r)
        self.generated_tokens = Counter("nexus_generated_tokens", "tokens generated for clients", registry=r)
        self.in_flight = Gauge("nexus_requests_in_flight", "requests being handled", registry=r)
        queue = Gauge("nexus_queue_depth", "requests waiting for an engine slot", registry=r)
        queue.set_function(lambda: float(queue_depth()))
        r.register(EngineCollector(stats))
        self.emf = emf
        self.service = os.environ.get("NEXUS_SERVICE_NAME", "nexus")

    def observe(self, rec: RequestRecord, emf: bool = True) -> None:
        """Record a finished request in Prometheus and (when ``emf``) as one EMF line."""
        seconds = time.perf_counter() - rec.start
        self.latency.labels(rec.endpoint).observe(seconds)
        self.requests.labels(rec.endpoint, str(rec.status)).inc()
        if rec.error_type:
            self.errors.labels(rec.error_type).inc()
        if rec.ttft_s is not None:
            self.ttft.labels(rec.endpoint).observe(rec.ttft_s)
        self.prompt_tokens.inc(rec.prompt_tokens)
        self.generated_tokens.inc(rec.completion_tokens)
        if self.emf and emf:
            emit_emf(emf_line(rec, seconds, self.service))


def emf_line(rec: RequestRecord, seconds: float, service: str) -> dict:
    """One CloudWatch Embedded Metric Format record for a request."""
    line = {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": EMF_NAMESPACE,
                    "Dimensions": [["Service"]],
                    "Metrics": [
                        {"Name": "ResponseTime", "Unit": "Seconds"},
                        {"Name": "TokensGenerated", "Unit": "Count"},
                        {"Name": "ErrorCount", "Unit": "Count"},
                    ],
                }
            ],
        },
        "Service": service,
        "ResponseTime": round(seconds, 6),
        "TokensGenerated": rec.completion_tokens,
        # what an operator acts on: server faults and overload, not a client's malformed request
        "ErrorCount": 1 if rec.status >= 500 or rec.status == 429 else 0,
        "Endpoint": rec.endpoint,
        "StatusCode": rec.status,
        "PromptTokens": rec.prompt_tokens,
    }
    if rec.ttft_s is not None:
        line["TimeToFirstToken"] = round(rec.ttft_s, 6)
    if rec.error_type:
        line["ErrorType"] = rec.error_type
    if rec.finish_reason:
        line["FinishReason"] = rec.finish_reason
    if rec.request_id:
        line["RequestId"] = rec.request_id
    return line


def emit_emf(line: dict) -> None:
    """Log an EMF record as one JSON line (``configure_emf_stdout`` sends them to stdout)."""
    emf_log.info(json.dumps(line, separators=(",", ":")))


def configure_emf_stdout() -> None:
    """Send EMF lines, bare, to stdout, where the ECS log driver reads them (idempotent)."""
    if any(getattr(h, "_nexus_emf", False) for h in emf_log.handlers):
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler._nexus_emf = True  # type: ignore[attr-defined]
    emf_log.addHandler(handler)
    emf_log.setLevel(logging.INFO)
    emf_log.propagate = False
