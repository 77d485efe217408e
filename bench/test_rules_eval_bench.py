"""Rule evaluation throughput (issue #3): events evaluated per second on one core against 10, 100
and 1,000 active rules. Evaluation is pure Rust (a compiled rule set, no LMDB, no Python per
event), so this runs core_rs's `rules_bench` example (release build, untimed) and records its
table in the benchmark's extra_info. Target: 1,000,000 rule evaluations per second per core with
100 active rules. The same numbers come from `cargo run --release --example rules_bench`."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# "   100      mixed        1222641           12226405         3.27"
ROW = re.compile(r"^\s*(\d+)\s+(same kind|mixed)\s+(\d+)\s+(\d+)\s+([\d.]+)\s*$")
EVENTS_PER_RUN = 200_000


def parse(table: str) -> list[dict[str, object]]:
    rows = []
    for line in table.splitlines():
        m = ROW.match(line)
        if m:
            rows.append({"rules": int(m[1]), "set": m[2], "events_per_s": int(m[3]),
                         "rule_checks_per_s": int(m[4]), "awards_per_event": float(m[5])})
    return rows


def test_rule_evaluation_throughput(benchmark) -> None:  # type: ignore[no-untyped-def]
    if shutil.which("cargo") is None:
        pytest.skip("cargo builds the Rust benchmark")
    subprocess.run(["cargo", "build", "-q", "--release", "--example", "rules_bench"], cwd=ROOT, check=True)

    def run() -> str:
        return subprocess.run(["cargo", "run", "-q", "--release", "--example", "rules_bench", "--", str(EVENTS_PER_RUN)],
                              cwd=ROOT, check=True, capture_output=True, text=True).stdout

    benchmark.group = "rule evaluation (Rust, one core)"
    rows = parse(benchmark.pedantic(run, rounds=1, iterations=1))
    assert {(r["rules"], r["set"]) for r in rows} == {(n, s) for n in (10, 100, 1_000) for s in ("same kind", "mixed")}
    benchmark.extra_info["rows"] = rows
    for r in rows:
        print(f"{r['rules']:>6} rules {r['set']:>9}: {r['events_per_s']:>10,} events/s "
              f"{r['rule_checks_per_s']:>12,} rule checks/s {r['awards_per_event']:>6} awards/event")
