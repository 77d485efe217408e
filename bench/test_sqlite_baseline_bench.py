"""SQLite WAL (synchronous=FULL) baseline: the same workloads as test_ledger_bench.py, applied
by Python over SQLite (bench/sqlite_baseline.py), one transaction per batch."""

import pytest

from bench import harness


@pytest.mark.parametrize("n", harness.BATCH_SIZES)
def test_sqlite_credit_batch(benchmark, sqlite_store, n):
    harness.batch(benchmark, sqlite_store, "credit", n)


@pytest.mark.parametrize("n", harness.BATCH_SIZES)
def test_sqlite_redeem_fefo_batch(benchmark, sqlite_store, n):
    harness.batch(benchmark, sqlite_store, "redeem", n)


@pytest.mark.parametrize("n", harness.BATCH_SIZES)
def test_sqlite_mixed_batch(benchmark, sqlite_store, n):
    harness.batch(benchmark, sqlite_store, "mixed", n)


def test_sqlite_single_credit_latency(benchmark, sqlite_store):
    harness.single(benchmark, sqlite_store)


@pytest.mark.parametrize("threads,n,batches", harness.THREADED)
def test_sqlite_threaded_credit(benchmark, sqlite_store, threads, n, batches):
    harness.threaded(benchmark, sqlite_store, threads, n, batches)
