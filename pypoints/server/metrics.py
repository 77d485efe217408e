"""Prometheus metrics (prometheus-client): requests by method and outcome, latency histograms,
in-flight calls, batch ops, and the core writer's counters (group commits, commands, time per
phase, checkpoints) read from `Ledger.writer_stats()` at scrape time. Each server has its own
registry, so tests can run several servers in one process."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class WriterCollector(Collector):
    def __init__(self, stats: Callable[[], dict[str, int]], queue_depth: Callable[[], int] | None = None) -> None:
        self.stats, self.queue_depth = stats, queue_depth

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        try:
            s = self.stats()
        except Exception:  # noqa: BLE001 - closed ledger: nothing to report
            return
        yield CounterMetricFamily("pypoints_writer_group_commits", "Group commits (LMDB write transactions)", value=s["groups"])
        yield CounterMetricFamily("pypoints_writer_commands", "Commands applied by the writer", value=s["commands"])
        yield CounterMetricFamily("pypoints_writer_checkpoints", "Account-log checkpoints", value=s["checkpoints"])
        yield CounterMetricFamily("pypoints_writer_merged_keys", "Keys the state log's merges wrote back to their B-trees",
                                  value=s["merged_keys"])
        yield GaugeMetricFamily("pypoints_writer_state_log_records", "State log records (group commits not yet merged)",
                                value=s["log_records"])
        yield GaugeMetricFamily("pypoints_writer_state_log_states", "States in the state log", value=s["log_states"])
        for phase in ("apply", "flush", "commit"):
            yield CounterMetricFamily(f"pypoints_writer_{phase}_seconds", f"Writer time in {phase}",
                                      value=s[f"{phase}_ns"] / 1e9)
        if self.queue_depth is not None:
            yield GaugeMetricFamily("pypoints_writer_queue_depth", "Submissions waiting for the core writer",
                                    value=self.queue_depth())
        groups = s["groups"] or 1
        yield GaugeMetricFamily("pypoints_writer_commit_batch_size_mean",
                                "Mean commands per group commit since start", value=s["commands"] / groups)


class Metrics:
    def __init__(self, writer_stats: Callable[[], dict[str, int]] | None = None,
                 queue_depth: Callable[[], int] | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("pypoints_grpc_requests", "RPCs by method and outcome reason",
                                ["method", "reason"], registry=r)
        self.latency = Histogram("pypoints_grpc_latency_seconds", "RPC latency by method", ["method"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge("pypoints_grpc_in_flight", "RPCs being served (the server's queue depth in "
                               "front of the core writer)", registry=r)
        self.batch_ops = Counter("pypoints_batch_commands", "Commands received through SubmitBatches", registry=r)
        if writer_stats is not None:
            r.register(WriterCollector(writer_stats, queue_depth))
        self.http = None

    def observe(self, method: str, reason: str, seconds: float) -> None:
        self.requests.labels(method, reason).inc()
        self.latency.labels(method).observe(seconds)

    def serve_http(self, host: str, port: int) -> int:
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self.http = server
        return int(server.server_port)

    def close(self) -> None:
        if self.http is not None:
            self.http.shutdown()
            self.http.server_close()
            self.http = None
