"""Prometheus metrics on a registry owned by each Metrics object (no global state).

Per-job metrics (outcome, queue and end-to-end latency, GPU seconds, credits, failure reason)
are observed once, at the job's terminal transition, by the process that made it: the API for
callbacks and cancels (so they appear on its /metrics), the dispatcher and reconciler for the
rarer failures they decide (served with --metrics-port). Gauges of the queue (in flight,
queued) and the success ratio are read from the database at scrape time, so they are global
whichever process is scraped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from api_stub.db import Row

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
GPU_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 40, 80, 160, 320)
CREDIT_BUCKETS = (0, 1, 2, 3, 5, 8, 13, 21, 50, 100)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.jobs_created = Counter(
            "simplypng_jobs_created",
            "Jobs accepted by POST /api/jobs[/batch].",
            ["type"],
            registry=r,
        )
        self.jobs_finished = Counter(
            "simplypng_jobs_finished",
            "Jobs that reached a terminal status.",
            ["type", "status"],
            registry=r,
        )
        self.failures = Counter(
            "simplypng_job_failures", "Failed jobs by error code.", ["error_code"], registry=r
        )
        self.queue_latency = Histogram(
            "simplypng_job_queue_latency_seconds",
            "Time from QUEUED to RUNNING.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.e2e_latency = Histogram(
            "simplypng_job_e2e_latency_seconds",
            "Time from QUEUED to a terminal status.",
            ["status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.gpu_seconds = Histogram(
            "simplypng_job_gpu_seconds",
            "GPU seconds per finished job.",
            buckets=GPU_BUCKETS,
            registry=r,
        )
        self.credits = Histogram(
            "simplypng_job_credits",
            "Credits captured per succeeded job.",
            buckets=CREDIT_BUCKETS,
            registry=r,
        )
        self.dispatch_errors = Counter(
            "simplypng_dispatch_errors",
            "Failed /run attempts by reason.",
            ["reason"],
            registry=r,
        )
        self.callbacks = Counter(
            "simplypng_callbacks",
            "Webhook deliveries by outcome.",
            ["outcome"],
            registry=r,
        )

    def add_db_gauges(
        self, counts: Callable[[], dict[str, int]], success_ratio: Callable[[], float | None]
    ) -> None:
        self.registry.register(_DbGauges(counts, success_ratio))

    def observe_finished(self, row: Row, settled: int | None) -> None:
        status = row["status"]
        self.jobs_finished.labels(row["type"], status).inc()
        if row.get("running_at") is not None:
            self.queue_latency.observe(max(0.0, row["running_at"] - row["created_at"]))
        if row.get("finished_at") is not None:
            self.e2e_latency.labels(status).observe(
                max(0.0, row["finished_at"] - row["created_at"])
            )
        if row.get("gpu_seconds") is not None:
            self.gpu_seconds.observe(float(row["gpu_seconds"]))
        if status == "SUCCEEDED" and settled is not None:
            self.credits.observe(settled)
        if status != "SUCCEEDED":
            self.failures.labels(row.get("error_code") or "UNKNOWN").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _DbGauges(Collector):
    def __init__(
        self, counts: Callable[[], dict[str, int]], success_ratio: Callable[[], float | None]
    ):
        self._counts = counts
        self._ratio = success_ratio

    def describe(self) -> Iterator[Any]:
        return iter(())  # the values need the database: never read at registration

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            counts = self._counts()
            ratio = self._ratio()
        except Exception:
            log.exception("metrics: database gauges unavailable")
            return
        inflight = counts.get("DISPATCHING", 0) + counts.get("RUNNING", 0)
        yield GaugeMetricFamily(
            "simplypng_jobs_inflight", "Jobs dispatched or running (all dispatchers).", inflight
        )
        yield GaugeMetricFamily(
            "simplypng_jobs_queued", "Jobs waiting in QUEUED.", counts.get("QUEUED", 0)
        )
        if ratio is not None:
            yield GaugeMetricFamily(
                "simplypng_job_success_ratio",
                "SUCCEEDED / (SUCCEEDED + FAILED) over METRICS_WINDOW_S.",
                ratio,
            )
