"""Shared fixtures: an injected clock (no wall time in tests) and ledgers in pytest temp dirs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import pypoints as pp

# 2023-11-14T22:13:20Z: a fixed "now" for every ledger a test opens.
T0 = 1_700_000_000_000
REPO = Path(__file__).resolve().parent.parent


class FakeClock:
    """A settable clock in UTC milliseconds (the Ledger's `clock=`)."""

    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> int:
        self.now += ms
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def open_ledger(clock: FakeClock) -> Iterator[Callable[..., pp.Ledger]]:
    """Factory `open_ledger(path, **kwargs)`: every ledger it opens is closed at teardown."""
    opened: list[pp.Ledger] = []

    def _open(path: str | os.PathLike[str], **kwargs: object) -> pp.Ledger:
        kwargs.setdefault("clock", clock)
        ledger = pp.Ledger(path, **kwargs)  # type: ignore[arg-type]
        opened.append(ledger)
        return ledger

    yield _open
    for ledger in opened:
        ledger.close()


@pytest.fixture
def ledger(tmp_path: Path, open_ledger: Callable[..., pp.Ledger]) -> pp.Ledger:
    """An empty ledger in `tmp_path / "data"`."""
    return open_ledger(tmp_path / "data")


def setup_programme(ledger: pp.Ledger, programme: str = "p", point_types: tuple[str, ...] = ("general",),
                    members: tuple[str, ...] = ()) -> None:
    """Define a programme with never-expiring, 1-point-step point types and open members."""
    ledger.define_programme(programme)
    for i, t in enumerate(point_types):
        ledger.define_point_type(programme, pp.PointTypeSpec(t, priority=i))
    for m in members:
        ledger.open_member(m, programme)


def journal_all(ledger: pp.Ledger, from_seq: int = 1) -> list[pp.Entry]:
    """Every journal entry from `from_seq` on (the query pages at most 1,000 at a time)."""
    out: list[pp.Entry] = []
    while page := ledger.journal(from_seq, page_size=1_000):
        out += page
        from_seq = page[-1].seq + 1
    return out


def run_python(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `python -c code args…` in a fresh interpreter (cwd = repo root); capture text output."""
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, stdin=subprocess.DEVNULL)
