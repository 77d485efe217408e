"""Per-thread CPU of a running process, read from /proc (Linux): which thread limits throughput.

    python -m bench.thread_cpu PID [--seconds 15]

Prints each thread's share of one core over the window, busiest first. During `writer_bench`'s
calm rounds at 1M members it printed pypoints-writer 90%, pypoints-sealer 16%, the submitting
thread 10% (bench/README "Session 13"): the writer alone is the bottleneck.
"""

from __future__ import annotations

import argparse
import os
import time

ThreadKey = tuple[int, str]  # (native thread id, thread name)


def sample(pid: int) -> dict[ThreadKey, int]:
    """CPU time (user + system, in clock ticks) of each live thread of `pid`."""
    out: dict[ThreadKey, int] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:  # the thread ended meanwhile
            continue
        # the name is in parentheses and may hold spaces; utime and stime are fields 14 and 15
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        out[(int(tid), name)] = int(fields[11]) + int(fields[12])
    return out


def shares(pid: int, seconds: float) -> list[tuple[str, int, float]]:
    """(name, tid, share of one core) of each thread that ran in the next `seconds`, busiest first."""
    tick_s = 1 / os.sysconf("SC_CLK_TCK")
    before = sample(pid)
    time.sleep(seconds)
    after = sample(pid)
    rows = [(name, tid, (t - before.get((tid, name), 0)) * tick_s / seconds) for (tid, name), t in after.items()]
    return sorted((r for r in rows if r[2] > 0), key=lambda r: -r[2])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pid", type=int)
    p.add_argument("--seconds", type=float, default=15.0)
    a = p.parse_args()
    for name, tid, share in shares(a.pid, a.seconds):
        print(f"{name:20s} {tid:>8d} {share * 100:6.1f}%")


if __name__ == "__main__":
    main()
