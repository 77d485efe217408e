"""Server assembly: one `Ledger`, the servicers, health and reflection, auth, metrics, limits,
and graceful shutdown (health NOT_SERVING → refuse new calls → let in-flight calls finish →
close the store)."""

from __future__ import annotations

import logging
import os
import threading
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from pypoints.ledger import Clock, Ledger, system_clock
from pypoints.server import limits
from pypoints.server.auth import Auth, TokenStore
from pypoints.server.batch import BatchServicer
from pypoints.server.errors import ApiError
from pypoints.server.ledger import LedgerServicer
from pypoints.server.members import MemberServicer
from pypoints.server.metrics import Metrics
from pypoints.server.otp import LogFileSender, Otp, Sender, WebhookSender, load_key
from pypoints.server.programmes import ProgrammeServicer
from pypoints.server.rules import RuleServicer
from pypoints.v1 import (batch_pb2, batch_pb2_grpc, ledger_pb2, ledger_pb2_grpc, members_pb2,
                         members_pb2_grpc, programmes_pb2, programmes_pb2_grpc, rules_pb2, rules_pb2_grpc)

log = logging.getLogger("pypoints.server")

SERVICES = {
    "pypoints.v1.MemberService": (members_pb2, members_pb2_grpc.add_MemberServiceServicer_to_server, MemberServicer),
    "pypoints.v1.ProgrammeService": (programmes_pb2, programmes_pb2_grpc.add_ProgrammeServiceServicer_to_server, ProgrammeServicer),
    "pypoints.v1.LedgerService": (ledger_pb2, ledger_pb2_grpc.add_LedgerServiceServicer_to_server, LedgerServicer),
    "pypoints.v1.BatchService": (batch_pb2, batch_pb2_grpc.add_BatchServiceServicer_to_server, BatchServicer),
    "pypoints.v1.RuleService": (rules_pb2, rules_pb2_grpc.add_RuleServiceServicer_to_server, RuleServicer),
}


@dataclass
class ServerConfig:
    data_dir: Path = Path("var/pypoints")
    host: str = "127.0.0.1"
    port: int = 50051
    workers: int = limits.WORKER_THREADS_DEFAULT
    metrics_port: int | None = None
    """Prometheus endpoint port (0 = any free port; None = no endpoint)."""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    grace_s: float = limits.SHUTDOWN_GRACE_S
    otp_webhook: str | None = None
    """POST one-time codes here; None = append them to DATA_DIR/otp-outbox.log."""
    preallocate_bytes: int = 0
    """Zero-fill the data file this far past its used part before serving (`Ledger.preallocate`):
    commits that grow the file cost several times those that overwrite it (bench/README,
    session 24). 0 = no; the writer then keeps some room ahead when idle."""


class App:
    """A running pypoints gRPC server. `App(config).start()`; `.port` is the bound port."""

    def __init__(self, config: ServerConfig, *, clock: Clock = system_clock, ledger: Ledger | None = None,
                 otp_sender: Sender | None = None, deliver_otp: bool = True) -> None:
        self.config = config
        self.ledger = ledger if ledger is not None else Ledger(config.data_dir, clock=clock)
        try:
            self._assemble(config, otp_sender, deliver_otp)
        except BaseException:
            self.ledger.close()  # a server that cannot start leaves the store closed
            raise

    def _assemble(self, config: ServerConfig, otp_sender: Sender | None, deliver_otp: bool) -> None:
        self.auth = Auth(TokenStore(config.data_dir))
        self.metrics = Metrics(self.ledger.writer_stats, self.ledger.engine.queue_depth)
        if otp_sender is None:
            otp_sender = (WebhookSender(config.otp_webhook) if config.otp_webhook
                          else LogFileSender(Path(config.data_dir) / "otp-outbox.log"))
        self.otp = Otp(self, load_key(Path(config.data_dir)), otp_sender)
        self._deliver_otp = deliver_otp
        self.health = health.HealthServicer()
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="pypoints-rpc"),
            maximum_concurrent_rpcs=limits.CONCURRENT_RPCS_MAX,
            options=[("grpc.max_receive_message_length", limits.MESSAGE_BYTES_MAX),
                     ("grpc.max_send_message_length", limits.MESSAGE_BYTES_MAX),
                     ("grpc.so_reuseport", 0)])
        for name, (_pb, add, cls) in SERVICES.items():
            add(cls(self), self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        names = [_pb.DESCRIPTOR.services_by_name[n.rsplit(".", 1)[1]].full_name for n, (_pb, _a, _c) in SERVICES.items()]
        reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], self.server)
        address = f"{config.host}:{config.port}"
        if config.tls_cert and config.tls_key:
            creds = grpc.ssl_server_credentials([(Path(config.tls_key).read_bytes(), Path(config.tls_cert).read_bytes())])
            self.port = self.server.add_secure_port(address, creds)
        else:
            self.port = self.server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"cannot bind {address}")
        self.metrics_port: int | None = None

    # ----- lifecycle -----

    def start(self) -> App:
        if self.config.preallocate_bytes:
            # before serving: the writer would wait on each 64 MiB chunk (`Ledger.preallocate`)
            try:
                wrote = self.ledger.preallocate(self.config.preallocate_bytes)
            except BaseException:
                self.ledger.close()  # a server that cannot start leaves the store closed
                raise
            log.info("preallocated", extra={"event": "preallocated", "bytes": wrote})
        self.server.start()
        if self._deliver_otp:
            self.otp.start()
        if self.config.metrics_port is not None:
            self.metrics_port = self.metrics.serve_http(self.config.host, self.config.metrics_port)
        for name in ["", *SERVICES]:
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("serving", extra={"event": "serving", "address": f"{self.config.host}:{self.port}",
                                   "data_dir": os.fspath(self.config.data_dir), "metrics_port": self.metrics_port,
                                   "tls": bool(self.config.tls_cert)})
        return self

    def gate(self, context: grpc.ServicerContext) -> None:
        """Refuse calls once shutdown began, and calls whose deadline has (almost) passed."""
        if self._stopping.is_set():
            raise ApiError(grpc.StatusCode.UNAVAILABLE, "SHUTTING_DOWN", "the server is shutting down")
        left = context.time_remaining()
        if left is not None and left < limits.DEADLINE_MARGIN_S:
            raise ApiError(grpc.StatusCode.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED", "deadline exceeded before the call started")

    def stop(self, grace: float | None = None) -> None:
        """Graceful shutdown: health NOT_SERVING, no new calls, in-flight calls finish (up to
        `grace` seconds), then the store closes. Idempotent."""
        if self._stopping.is_set():
            self._stopped.wait()
            return
        self._stopping.set()
        self.health.enter_graceful_shutdown()
        log.info("stopping", extra={"event": "stopping", "grace_s": grace if grace is not None else self.config.grace_s})
        self.server.stop(grace if grace is not None else self.config.grace_s).wait()
        self.metrics.close()
        self.otp.stop()
        self.ledger.close()
        log.info("stopped", extra={"event": "stopped"})
        self._stopped.set()

    def wait(self) -> None:
        self._stopped.wait()
