"""Where the time of a durable batch goes: the same credit (and redeem) batches with
durability "sync" and "no_sync_bulk_load" on one data set, for several batch sizes. The
difference between the two is the cost of the fsyncs; the rest is CPU (Python parse and
receipts, the writer's apply, LMDB page writes into the page cache).

    python -m bench.breakdown [--members 1000000] [--sizes 1,100,1000,10000,50000]

The data set is loaded with no_sync_bulk_load (layout identical to a durable load), then the
environment is closed and reopened in each mode (LMDB: one open environment per path).
Run it under `perf record -F 499 -g -p PID` to see the writer thread's hot spots.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time

from bench import harness, workloads as wl


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--members", type=int, default=wl.bench_members())
    ap.add_argument("--sizes", default="1,100,1000,10000,50000")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    from pypoints import Ledger

    d = tempfile.mkdtemp(prefix="pypoints-breakdown-", dir=harness.data_dir_parent())
    try:
        ledger = Ledger(d, durability="no_sync_bulk_load")
        info = wl.load(ledger.submit_tuples, args.members)
        ledger.close()
        print(f"loaded {args.members:,} members ({info['commands']:,} commands, no fsync) in {info['seconds']} s")
        st = wl.State(args.members)
        print(f"{'workload':<8} {'batch':>6} {'sync ops/s':>11} {'no-sync ops/s':>14} {'fsync share':>12}")
        for kind, build in (("credit", wl.credit_batch), ("redeem", wl.redeem_batch)):
            for n in [int(x) for x in args.sizes.split(",")]:
                rounds = args.rounds if n >= 1000 else max(args.rounds, 50)
                med = {}
                for mode in ("sync", "no_sync_bulk_load"):
                    ledger = Ledger(d, durability=mode)
                    ts = []
                    for _ in range(rounds):
                        b = build(st, n)
                        t = time.perf_counter()
                        res = ledger.submit_tuples(b)
                        ts.append(time.perf_counter() - t)
                        wl.check(res)
                    ledger.close()
                    ts.sort()
                    med[mode] = ts[len(ts) // 2]
                share = 1 - med["no_sync_bulk_load"] / med["sync"]
                print(f"{kind:<8} {n:>6,} {n / med['sync']:>11,.0f} {n / med['no_sync_bulk_load']:>14,.0f} {share:>11.0%}",
                      flush=True)
    finally:
        harness.remove(d)


if __name__ == "__main__":
    main()
