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


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", default=50051, show_default=True, type=int, help="0 = any free port")
@click.option("--data-dir", type=click.Path(path_type=Path), default=DEFAULT_DATA_DIR, show_default=True)
@click.option("--demo", "seed_demo", is_flag=True, help="seed the demo programme and print an admin token")
@click.option("--workers", default=64, show_default=True, type=int, help="RPC threads")
@click.option("--metrics-port", type=int, default=None, help="Prometheus endpoint port (off when absent)")
@click.option("--tls-cert", type=click.Path(path_type=Path, exists=True), default=None)
@click.option("--tls-key", type=click.Path(path_type=Path, exists=True), default=None)
@click.option("--otp-webhook", default=None, help="POST one-time codes to this URL (default: log file)")
@click.option("--grace", default=10.0, show_default=True, type=float, help="seconds in-flight calls get on SIGTERM")
@click.option("--log-level", default="info", show_default=True)
@click.option("--preallocate-mib", default=0, show_default=True, type=click.IntRange(min=0),
              help="zero-fill the data file this many MiB past its used part before serving "
                   "(commits that grow the file are several times slower)")
def serve(host: str, port: int, data_dir: Path, seed_demo: bool, workers: int, metrics_port: int | None,
          tls_cert: Path | None, tls_key: Path | None, otp_webhook: str | None, grace: float, log_level: str,
          preallocate_mib: int) -> None:
    """Run the gRPC server (pypoints.v1) on DATA_DIR until SIGTERM/SIGINT, then shut down
    gracefully: health NOT_SERVING, in-flight calls finish, the store closes."""
    import signal
    import threading

    from pypoints.errors import InvalidArgument
    from pypoints.server import logs
    from pypoints.server.app import App, ServerConfig
    from pypoints.server.auth import TokenStore

    logs.setup(log_level)
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if seed_demo:
        from pypoints import demo as d

        ledger, _rep = d.run(data_dir)
        ledger.close()
        token, rec = TokenStore(data_dir).create("admin", name="demo admin")
        click.echo(f"demo programme {d.PROGRAMME!r} seeded in {data_dir}; members {d.member_id(0)}…"
                   f"{d.member_id(d.MEMBERS - 1)}")
        click.echo(f"admin token (shown once; send as 'authorization: Bearer …'):\n{token}", err=False)
    config = ServerConfig(data_dir=data_dir, host=host, port=port, workers=workers, metrics_port=metrics_port,
                          tls_cert=tls_cert, tls_key=tls_key, grace_s=grace, otp_webhook=otp_webhook,
                          preallocate_bytes=preallocate_mib << 20)
    try:
        app = App(config).start()
    except InvalidArgument as e:  # a preallocation past the map size
        raise click.BadParameter(str(e), param_hint="--preallocate-mib") from e
    if not any(r.revoked_at is None for r in TokenStore(data_dir).list()):
        click.echo(f"no tokens yet: every call will be UNAUTHENTICATED; create one with\n"
                   f"  pypoints token create --data-dir {data_dir} --role admin", err=True)
    click.echo(f"pypoints serving on {host}:{app.port} (data {data_dir})"
               + (f", metrics on :{app.metrics_port}/metrics" if app.metrics_port else ""), err=True)

    def _stop(signum: int, _frame: object) -> None:
        threading.Thread(target=app.stop, name="pypoints-shutdown", daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    while not app._stopped.wait(0.5):
        pass


@main.group()
def token() -> None:
    """Bearer tokens for the gRPC server: each bound to a role and a scope, stored hashed."""


@token.command("create")
@click.option("--data-dir", type=click.Path(path_type=Path), default=DEFAULT_DATA_DIR, show_default=True)
@click.option("--role", required=True, type=click.Choice(["admin", "operator", "merchant", "shopkeeper", "upstream", "auditor"]))
@click.option("--scope", default="", help="org path (operator, shopkeeper) or merchant id (merchant)")
@click.option("--name", default="", help="who holds it")
def token_create(data_dir: Path, role: str, scope: str, name: str) -> None:
    """Create a token; the clear token is printed once (only its hash is stored)."""
    from pypoints.server.auth import TokenStore

    try:
        tok, rec = TokenStore(data_dir).create(role, scope, name)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    click.echo(f"token {rec.id} ({role}{' ' + rec.scope if rec.scope else ''}):")
    click.echo(tok)


@token.command("revoke")
@click.option("--data-dir", type=click.Path(path_type=Path), default=DEFAULT_DATA_DIR, show_default=True)
@click.argument("token_id")
def token_revoke(data_dir: Path, token_id: str) -> None:
    """Revoke a token by its id; a running server refuses it from the next call on."""
    from pypoints.server.auth import TokenStore

    if not TokenStore(data_dir).revoke(token_id):
        raise click.ClickException(f"no live token {token_id}")
    click.echo(f"token {token_id} revoked")


@token.command("list")
@click.option("--data-dir", type=click.Path(path_type=Path), default=DEFAULT_DATA_DIR, show_default=True)
def token_list(data_dir: Path) -> None:
    """List tokens (ids, roles, scopes; never the tokens themselves)."""
    from pypoints.server.auth import TokenStore

    t = Table(title=f"tokens in {data_dir}")
    for col in ["id", "role", "scope", "name", "status"]:
        t.add_column(col)
    for r in TokenStore(data_dir).list():
        t.add_row(r.id, r.role, r.scope, r.name, "revoked" if r.revoked_at else "live")
    console.print(t)


if __name__ == "__main__":
    main()
