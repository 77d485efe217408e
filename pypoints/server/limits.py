"""Limits of the gRPC surface, next to the core's (core_rs/src/limits.rs via `pypoints._core`).
Every one is explicit and checked at the boundary with a clear error."""

from __future__ import annotations

from pypoints import _core

#: Largest request or response message (bytes); grpc rejects bigger ones with RESOURCE_EXHAUSTED.
MESSAGE_BYTES_MAX = 16 * 1024 * 1024
#: Commands in one message of BatchService.SubmitBatches (= the core's batch limit).
BATCH_COMMANDS_MAX = _core.BATCH_SIZE_MAX
#: Command times (`at`, UTC ms) a non-admin token may put in a streamed batch, relative to the
#: server's clock: a nightly upstream file may carry yesterday's business time, nothing older
#: than a week and nothing in the future beyond clock skew (admins may backfill any time).
BATCH_AT_PAST_MS_MAX = 7 * 24 * 3_600_000
BATCH_AT_FUTURE_MS_MAX = 5 * 60_000
#: Page sizes of list methods: 0 means the default.
PAGE_SIZE_DEFAULT = _core.PAGE_SIZE_DEFAULT
PAGE_SIZE_MAX = _core.PAGE_SIZE_MAX
#: Threads serving RPCs (each blocks, GIL released, while the core's writer commits its call;
#: concurrent calls share group commits) and concurrent RPCs accepted before RESOURCE_EXHAUSTED.
WORKER_THREADS_DEFAULT = 64
CONCURRENT_RPCS_MAX = 1_024
#: A call whose deadline leaves less than this (seconds) is refused with DEADLINE_EXCEEDED
#: before it reaches the ledger, so an expired call never changes anything.
DEADLINE_MARGIN_S = 0.001
#: Seconds in-flight calls get to finish on SIGTERM before the server cancels them.
SHUTDOWN_GRACE_S = 10.0
