"""BatchService.SubmitBatches: a stream of command batches in, one result per batch out.

Each message's batch (msgpack array of command arrays, the core's tuple form) is unpacked
straight into tuples (`use_list=False`, no per-item Python) and handed to the core in ONE
`Ledger.submit_tuples` call, which shares one durable group commit; the result message is sent
only after that commit, so every acknowledged batch is on disk."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import grpc
import msgpack

from pypoints import _core
from pypoints.server import limits
from pypoints.server.base import Servicer, log
from pypoints.server.errors import ApiError, invalid, status_of
from pypoints.v1 import batch_pb2 as pb
from pypoints.v1 import batch_pb2_grpc

_Receipt = _core.Receipt


def encode_results(results: list[Any]) -> tuple[bytes, int, int, int]:
    """(msgpack results, applied, replayed, refused)."""
    out = [(0, r.seq, r.replayed, r.amount, r.credited) if type(r) is _Receipt else (1, r.reason, r.message)
           for r in results]
    refused = sum(1 for x in out if x[0])
    replayed = sum(1 for x in out if not x[0] and x[2])
    return msgpack.packb(out), len(out) - refused - replayed, replayed, refused


def check_times(cmds: tuple[Any, ...], now: int) -> None:
    """Every command time within [now - BATCH_AT_PAST_MS_MAX, now + BATCH_AT_FUTURE_MS_MAX]
    (malformed items are left to the core, which refuses them one by one)."""
    ats = [x[2] for x in cmds if isinstance(x, tuple) and len(x) > 2 and type(x[2]) is int]
    if ats and (min(ats) < now - limits.BATCH_AT_PAST_MS_MAX or max(ats) > now + limits.BATCH_AT_FUTURE_MS_MAX):
        raise invalid("commands", "a command's time (field 2, UTC ms) is more than "
                      f"{limits.BATCH_AT_PAST_MS_MAX // 3_600_000} h before or "
                      f"{limits.BATCH_AT_FUTURE_MS_MAX // 60_000} min after the server's clock")


class BatchServicer(Servicer, batch_pb2_grpc.BatchServiceServicer):
    def SubmitBatches(self, requests: Iterator[pb.CommandBatch], context: grpc.ServicerContext) -> Iterator[pb.BatchResult]:
        app = self.app
        app.metrics.in_flight.inc()
        reason = "OK"
        start = time.perf_counter()
        try:
            app.gate(context)
            principal = app.auth.authenticate(context)
            app.auth.authorize(principal, "batch.submit", None, app)
            for msg in requests:
                app.gate(context)
                t0 = time.perf_counter()
                try:
                    cmds = msgpack.unpackb(msg.commands, use_list=False, raw=False)
                except Exception as exc:  # noqa: BLE001
                    raise invalid("commands", f"batch {msg.batch_id!r}: not a msgpack array of commands ({exc})") from None
                if not isinstance(cmds, tuple):
                    raise invalid("commands", f"batch {msg.batch_id!r}: commands must be a msgpack array")
                if len(cmds) > limits.BATCH_COMMANDS_MAX:
                    raise invalid("commands", f"batch {msg.batch_id!r} holds {len(cmds)} commands, at most "
                                  f"{limits.BATCH_COMMANDS_MAX}", "LIMIT_EXCEEDED")
                app.auth.authorize_batch(principal, cmds)
                if principal.role != "admin":
                    check_times(cmds, app.ledger.clock())
                results = app.ledger.submit_tuples(list(cmds))  # C-level copy: the core takes a list
                packed, applied, replayed, refused = encode_results(results)
                app.metrics.batch_ops.inc(len(cmds))
                app.metrics.observe("batch.message", "OK", time.perf_counter() - t0)
                yield pb.BatchResult(batch_id=msg.batch_id, applied=applied, replayed=replayed, refused=refused,
                                     results=packed)
        except Exception as exc:  # noqa: BLE001
            if isinstance(exc, grpc.RpcError):
                raise
            st, reason = status_of(exc, {}, "commands")
            if reason == "INTERNAL":
                log.exception("internal error in batch.submit")
            context.abort_with_status(st)
        finally:
            app.metrics.in_flight.dec()
            app.metrics.observe("batch.submit", reason, time.perf_counter() - start)


__all__ = ["BatchServicer", "ApiError", "encode_results"]
