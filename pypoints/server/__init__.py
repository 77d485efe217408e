"""The pypoints gRPC server (issue #4): `pypoints serve`.

One module per concern: `app` (assembly, health, reflection, shutdown), `members`,
`programmes`, `ledger` (unary servicers), `batch` (streaming batches), `errors` (exception →
status + ErrorInfo), `auth` (tokens, roles, scopes), `otp` (one-time codes for holds),
`metrics` (Prometheus), `limits`."""

from pypoints.server.app import App, ServerConfig

__all__ = ["App", "ServerConfig"]
