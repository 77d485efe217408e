"""The `pypoints` command line."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

DEFAULT_DATA_DIR = Path("var/pypoints")
console = Console()


def _existing_store(data_dir: Path) -> None:
    if not (data_dir / "data.mdb").is_file():
        raise click.UsageError(f"{data_dir} is not a pypoints data directory (no data.mdb)")


@click.group()
def main() -> None:
    """pypoints: a high-throughput loyalty-points ledger."""


@main.command()
@click.argument("data_dir", type=click.Path(path_type=Path))
def audit(data_dir: Path) -> None:
    """Verify a data directory: balances = Σ postings, lots = balances, Σ = 0 per point type,
    open holds = holds accounts, and the journal's hash chain. Exit 1 listing what is wrong."""
    from pypoints.ledger import Ledger

    _existing_store(data_dir)
    with Ledger(data_dir) as ledger:
        report = ledger.audit()
    if report.ok:
        console.print(f"audit OK: {report.entries} journal entries, {report.accounts} accounts, "
                      "books balance, hash chain intact")
        return
    console.print(f"[bold red]audit FAILED[/]: {len(report.problems)} problem(s) in "
                  f"{report.entries} entries, {report.accounts} accounts")
    for p in report.problems:
        console.print(f"  - {p}", markup=False)
    sys.exit(1)


@main.command()
@click.argument("data_dir", type=click.Path(path_type=Path))
@click.argument("dest_dir", type=click.Path(path_type=Path))
def backup(data_dir: Path, dest_dir: Path) -> None:
    """Hot, consistent copy of a live data directory into DEST_DIR."""
    from pypoints.ledger import Ledger

    _existing_store(data_dir)
    with Ledger(data_dir) as ledger:
        ledger.backup(dest_dir)
    console.print(f"backup written to {dest_dir / 'data.mdb'}")


@main.command()
@click.option("--data-dir", type=click.Path(path_type=Path), default=DEFAULT_DATA_DIR, show_default=True)
def demo(data_dir: Path) -> None:
    """Create the demo programme and run a day of earning, redeeming, holds, reversals, gifts,
    conversions, freezes and expiry through the engine; print balances and the audit."""
    from pypoints import demo as d

    with console.status("running the demo day…"):
        ledger, rep = d.run(data_dir)
    with ledger:
        t = Table(title=f"demo day {d.DAY.date()} in {data_dir}")
        t.add_column("command")
        t.add_column("applied", justify="right")
        t.add_column("replayed", justify="right")
        for op in sorted(set(rep.applied) | set(rep.replayed)):
            t.add_row(op, str(rep.applied[op]), str(rep.replayed[op]))
        console.print(t)
        if rep.refused:
            r = Table(title="refused (typed errors, nothing changed)")
            r.add_column("command: reason")
            r.add_column("count", justify="right")
            for k, n in sorted(rep.refused.items()):
                r.add_row(k, str(n))
            console.print(r)
        b = Table(title="balances (points)")
        for col in ["member", "point type", "total", "available", "pending", "held"]:
            b.add_column(col, justify="left" if col in ("member", "point type") else "right")
        for i in (0, 1, 3, 100, 101, 999):
            for bal in ledger.balances(d.member_id(i)):
                b.add_row(d.member_id(i), bal.point_type, str(bal.total), str(bal.available),
                          str(bal.pending), str(bal.held))
        console.print(b)
        report = ledger.audit()
    if report.ok:
        console.print(f"audit OK: {report.entries} journal entries, {report.accounts} accounts, "
                      "books balance, hash chain intact")
    else:
        console.print(f"[bold red]audit FAILED[/]: {report.problems}")
        sys.exit(1)


if __name__ == "__main__":
    main()
