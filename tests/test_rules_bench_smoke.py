"""Smoke test of the rules benchmark (bench/test_rules_bench.py): the rule set defines, earn and
credit batches run once untimed on 1,000 members, and the ledger still audits clean."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import harness, rules_harness  # noqa: E402
from tests.test_bench_smoke import OneShot  # noqa: E402


def test_rules_bench_workloads_run() -> None:
    harness.RESULTS.clear()
    with harness.pypoints_store(1_000) as store:
        ledger = store.extra["ledger"]
        rules_harness.define_rules(ledger)
        assert len(ledger.rules("bench")) == rules_harness.RULE_COUNT
        for kind in ("credit", "earn"):
            rules_harness.batch(OneShot(), store, kind, 400)
        earned = [r for r in harness.RESULTS if r["workload"].startswith("earn")]
        assert earned and earned[0]["kinds"].get("earn") == 400, earned
        report = ledger.audit()
        assert report.ok, report.problems
        assert ledger.campaign_status("bench", "spring").granted > 0
