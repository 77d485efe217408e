"""Earn workloads for the rules engine (issue #3): a programme rule set of N active rules (a mix
of rate, fixed, multiplier and capped rules over channel, merchant, category, amount, weekday
and time-of-day conditions, one campaign with a budget) and earn batches of purchases by
uniformly random members. Every event meets the "base" rule and, through its merchant, ~1 of
the other 99 (lots per earn ≈ 1.2-1.5). Members have one earlier purchase (`purchase_history`).
Used by bench/test_rules_bench.py and the smoke test in tests/."""

from __future__ import annotations

import random
import time
from typing import Any

from bench import harness, workloads as wl
from pypoints import rules as r

RULE_COUNT = 100


def rule_set(n: int = RULE_COUNT) -> list[r.Rule]:
    p, t = wl.PROGRAMME, wl.POINT_TYPE
    out = [r.Rule(p, "base", r.Rate(1, 100), t, kinds=("purchase",), priority=100)]
    for i in range(1, n):
        k = i % 8
        when: r.Cond = [
            r.Channel("app"),
            r.Merchant(f"shop-{i % 40:04d}"),
            r.All(r.Category(f"{5000 + i % 30}"), r.Amount(min=10_000)),
            r.Weekdays(6, 7),
            r.TimeOfDay(22 * 60, 23 * 60),
            r.Any_(r.Channel("web"), r.Attr("card", ("platinum",))),
            r.Amount(min=5_000_000),
            r.All(r.Channel("pos"), r.Merchant(f"shop-{i % 40:04d}")),
        ][k]
        action: r.Action = r.Multiplier(2) if k == 7 and i < 16 else (r.Fixed(5) if k % 2 else r.Rate(1, 1_000))
        caps = (r.Cap("day", 500),) if i % 3 == 0 else ()
        # Rules are per merchant (80 merchants): an event meets ~1-2 of them besides "base".
        when = r.All(r.Merchant(f"shop-{i % 80:04d}"), when)
        out.append(r.Rule(p, f"r{i:04d}", action, t, kinds=("purchase",), when=when, priority=i % 7,
                          caps=caps, campaign="spring" if i % 10 == 1 else None))
    return out


def define_rules(ledger: Any, n: int = RULE_COUNT) -> None:
    at = wl.T0
    ledger.define_campaign(r.Campaign(wl.PROGRAMME, "spring", at, at + 365 * wl.DAY_MS, budget=10**11,
                                      budget_type=wl.POINT_TYPE), at=at)
    for rule in rule_set(n):
        ledger.define_rule(rule, at=at)


def purchase_history(ledger: Any, members: int) -> None:
    """One earlier purchase per member (the day before the benchmark), as a loaded programme's
    members have. A member's first purchase is a one-time change of its rule state (ER-15's
    "has purchased" flag); without this, most timed earns would be first purchases."""
    at, rng = wl.T0 - wl.DAY_MS, random.Random(3)
    for s in range(0, members, wl.LOAD_BATCH):
        wl.check(ledger.submit_tuples([
            ("earn", f"history.{m}", at, "purchase", wl.member_id(m), 100 + rng.randrange(200_000), 0, "pos",
             f"shop-{rng.randrange(80):04d}", f"{5000 + rng.randrange(40)}", [], [])
            for m in range(s, min(s + wl.LOAD_BATCH, members))]))


def earn_batch(st: wl.State, n: int) -> wl.Batch:
    at, rr = st.at(), st.rng.randrange
    channels = ("pos", "app", "web")
    return [("earn", cid, at, "purchase", wl.member_id(rr(st.members)), 100 + rr(200_000), 0,
             channels[rr(3)], f"shop-{rr(80):04d}", f"{5000 + rr(40)}", [], [])
            for cid in st.ids("e.", n)]


def paired(benchmark: Any, store: harness.Store, n: int) -> None:
    """Issue #3's ratio, measured fairly: every round runs one credit batch (timed here, in the
    round's setup) and then one earn batch (timed by pytest-benchmark) on the same data set.
    Run one after the other, the two kinds met the machine in different moods (this VM's speed
    drifts by ±30% within minutes) and different state-log merge debt; paired, both see the
    same. Records an `earn batch` row and a `credit batch … (paired)` row."""
    st = store.state
    credit_s: list[float] = []
    credit = wl.Tally()

    def make() -> wl.Batch:
        work = wl.credit_batch(st, n)
        t = time.perf_counter()
        results = store.submit(work)
        credit_s.append(time.perf_counter() - t)
        credit.add(results)
        return earn_batch(st, n)

    harness.run_rounds(benchmark, store, workload=f"earn batch {n:,} ({RULE_COUNT} rules)", make=make,
                       run=store.submit, commands=n, n_rounds=harness.rounds(harness.PAIRED_ROUNDS))
    timing = harness.record_times(store, f"credit batch {n:,} (paired)", n, credit_s, credit)
    benchmark.extra_info.update({f"credit_{k}": v for k, v in timing.items()}, credit_round_s=credit_s)
