"""Rules engine benchmarks (issue #3): durable earn batches (100 active rules) against plain
credit batches on the same loaded data set, uniformly random members, paired round by round
(`rules_harness.paired`). Target: earn within 30 % of credit throughput. Pure rule evaluation
(events/s at 10/100/1,000 rules) is measured in Rust: bench/test_rules_eval_bench.py."""

from collections.abc import Iterator

import pytest

from bench import harness, rules_harness
from bench.harness import Store


@pytest.fixture(scope="module")
def rules_store(pypoints_store: Store) -> Iterator[Store]:
    rules_harness.define_rules(pypoints_store.extra["ledger"])
    rules_harness.purchase_history(pypoints_store.extra["ledger"], pypoints_store.state.members)
    yield pypoints_store


@pytest.mark.parametrize("n", harness.BATCH_SIZES)
def test_pypoints_earn_vs_credit_paired(benchmark, rules_store, n):
    rules_harness.paired(benchmark, rules_store, n)
