"""pypoints benchmarks: durable (fsync per group commit) batches over a loaded data set of
PYPOINTS_BENCH_MEMBERS members (default 1,000,000), uniformly random members, unique ids."""

import pytest

from bench import harness


@pytest.mark.parametrize("n", harness.BATCH_SIZES)
def test_pypoints_credit_batch(benchmark, pypoints_store, n):
    harness.batch(benchmark, pypoints_store, "credit", n)


@pytest.mark.parametrize("n", harness.BATCH_SIZES)
def test_pypoints_redeem_fefo_batch(benchmark, pypoints_store, n):
    harness.batch(benchmark, pypoints_store, "redeem", n)


@pytest.mark.parametrize("n", harness.BATCH_SIZES)
def test_pypoints_mixed_batch(benchmark, pypoints_store, n):
    harness.batch(benchmark, pypoints_store, "mixed", n)


def test_pypoints_sustained_credit(benchmark, pypoints_store):
    # SQLite has no background work to amortise (its mean is its median): pypoints only.
    harness.sustained(benchmark, pypoints_store, 50_000)


def test_pypoints_single_credit_latency(benchmark, pypoints_store):
    harness.single(benchmark, pypoints_store)


@pytest.mark.parametrize("threads,n,batches", harness.THREADED)
def test_pypoints_threaded_credit(benchmark, pypoints_store, threads, n, batches):
    harness.threaded(benchmark, pypoints_store, threads, n, batches)


def test_pypoints_balance_reads(benchmark, pypoints_store):
    # Reads never wait for the writer; SQLite's would be a primary-key lookup: pypoints only.
    harness.reads(benchmark, pypoints_store, 10_000)


def test_pypoints_steady_state_mixed(benchmark, pypoints_store):
    # Last: the merge cycles it runs through would land in the rows after it. pypoints only
    # (SQLite has no background work; 2M commands there would take ~5 min).
    harness.steady(benchmark, pypoints_store, 10_000)
