"""Bearer tokens bound to a role and a scope (RL-1..11), checked on every call.

Clients send `authorization: Bearer <token>` metadata. Tokens are created, listed and revoked
by `pypoints token …` and stored **hashed** (sha256; the clear token is shown once) in
`DATA_DIR/tokens.json` — a file next to the LMDB store, not in it, written atomically; the
server rereads it when it changes, so a revocation takes effect on the next call.

Roles and what they may do (anything else: PERMISSION_DENIED, nothing changes):

| role | scope | may |
|---|---|---|
| admin | – | everything |
| auditor | – | read-only calls |
| upstream | – | credit and rule-based earn (unary or batches of only those) |
| operator | org path prefix, e.g. `Shandong/Qingdao` | member and ledger calls for members in that subtree (MA-13, RL-3, RL-11) |
| merchant | merchant id | redeem/hold/capture/void/refund of its own orders; balances (RL-5) |
| shopkeeper | outlet org path | proxy redemption (channel `proxy`) for the outlet's members, and their balances (RL-1, RD-8) |
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from pypoints.errors import NotFound
from pypoints.server.errors import ApiError

if TYPE_CHECKING:
    from pypoints.server.app import App

ROLES = ("admin", "operator", "merchant", "shopkeeper", "upstream", "auditor")
SCOPED = {"operator", "merchant", "shopkeeper"}
TOKEN_FILE = "tokens.json"
PROXY_CHANNEL = "proxy"

READ = {"members.get", "members.find", "ledger.balances", "ledger.get_hold", "ledger.lots", "ledger.history",
        "programmes.list_point_types", "rules.list", "rules.campaign_status", "rules.dry_run"}
ALLOWED: dict[str, set[str]] = {
    "auditor": READ,
    "upstream": {"ledger.credit", "rules.earn", "batch.submit"},
    "operator": {"members.create", "members.get", "members.find", "members.freeze", "members.unfreeze",
                 "members.bind_card", "members.unbind_card",
                 "ledger.credit", "ledger.redeem", "ledger.hold", "ledger.capture", "ledger.void",
                 "ledger.transfer", "ledger.convert", "ledger.reverse", "ledger.balances", "ledger.get_hold",
                 "ledger.lots", "ledger.history", "programmes.list_point_types", "rules.earn", "rules.dry_run"},
    "merchant": {"ledger.redeem", "ledger.hold", "ledger.capture", "ledger.void", "ledger.reverse",
                 "ledger.balances", "ledger.get_hold"},
    # MA-2: at the till a member is found by card or phone (results filtered to the outlet's subtree)
    "shopkeeper": {"ledger.redeem", "ledger.balances", "members.get", "members.find"},
}
UPSTREAM_BATCH_OPS = {"credit", "earn"}


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    token_id: str
    role: str
    scope: str
    name: str = ""


@dataclass
class TokenRecord:
    id: str
    hash: str
    role: str
    scope: str
    name: str
    created_at: int
    revoked_at: int | None = None


class TokenStore:
    """The hashed token file of a data directory."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.path = Path(data_dir) / TOKEN_FILE
        self._lock = threading.Lock()
        self._mtime: int | None = -1
        self._by_hash: dict[str, TokenRecord] = {}

    def _read(self) -> list[TokenRecord]:
        if not self.path.exists():
            return []
        return [TokenRecord(**r) for r in json.loads(self.path.read_text())["tokens"]]

    def _write(self, records: list[TokenRecord]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"v": 1, "tokens": [asdict(r) for r in records]}, indent=1))
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)

    def create(self, role: str, scope: str = "", name: str = "") -> tuple[str, TokenRecord]:
        """A new token: (clear token, shown once; its stored record)."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        if role in SCOPED and not scope:
            raise ValueError(f"role {role} needs a scope")
        tid = secrets.token_hex(4)
        token = f"pp_{tid}_{secrets.token_urlsafe(24)}"
        rec = TokenRecord(tid, hash_token(token), role, scope.strip("/"), name, time.time_ns() // 1_000_000)
        with self._lock:
            self._write([*self._read(), rec])
        return token, rec

    def revoke(self, token_id: str) -> bool:
        with self._lock:
            records = self._read()
            hit = False
            for r in records:
                if r.id == token_id and r.revoked_at is None:
                    r.revoked_at, hit = time.time_ns() // 1_000_000, True
            self._write(records)
        return hit

    def list(self) -> list[TokenRecord]:
        return self._read()

    def lookup(self, token: str) -> TokenRecord | None:
        """The live record of a clear token (rereads the file when it changed)."""
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = None
        if mtime != self._mtime:
            with self._lock:
                self._by_hash = {r.hash: r for r in self._read() if r.revoked_at is None}
                self._mtime = mtime
        return self._by_hash.get(hash_token(token))


def denied(message: str) -> ApiError:
    return ApiError(grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED", message)


def in_org(org: tuple[str, ...], scope: str) -> bool:
    want = tuple(scope.split("/")) if scope else ()
    return len(org) >= len(want) and tuple(org[: len(want)]) == want


class Auth:
    def __init__(self, tokens: TokenStore) -> None:
        self.tokens = tokens

    def authenticate(self, context: grpc.ServicerContext) -> Principal:
        for key, value in context.invocation_metadata():
            if key == "authorization":
                scheme, _, token = str(value).partition(" ")
                if scheme.lower() != "bearer" or not token:
                    break
                rec = self.tokens.lookup(token.strip())
                if rec is None:
                    raise ApiError(grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED", "unknown or revoked token")
                return Principal(rec.id, rec.role, rec.scope, rec.name)
        raise ApiError(grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED",
                       "send metadata 'authorization: Bearer <token>'")

    # ----- authorisation -----

    def authorize(self, who: Principal, action: str, req: Any, app: App) -> None:
        if who.role == "admin":
            return
        if action not in ALLOWED.get(who.role, ()):
            raise denied(f"role {who.role} may not call {action}")
        if who.role == "operator":
            self._operator(who, action, req, app)
        elif who.role == "merchant":
            self._merchant(who, action, req, app)
        elif who.role == "shopkeeper":
            self._shopkeeper(who, action, req, app)

    def authorize_batch(self, who: Principal, cmds: tuple[Any, ...]) -> None:
        if who.role == "admin":
            return
        if who.role == "upstream":
            ops = {c[0] if isinstance(c, tuple) and c else None for c in cmds}
            if not ops <= UPSTREAM_BATCH_OPS:
                raise denied(f"role upstream may only submit {sorted(UPSTREAM_BATCH_OPS)} commands")
            return
        raise denied(f"role {who.role} may not submit batches")

    @staticmethod
    def _member_org(app: App, member: str) -> tuple[str, ...] | None:
        try:
            return app.ledger.member(member).org
        except NotFound:
            return None  # the call itself reports the unknown member

    def _members_of(self, action: str, req: Any, app: App) -> list[str]:
        """The members a scoped call touches."""
        if action in ("rules.earn", "rules.dry_run"):
            return [req.event.member_id]
        if action in ("members.create", "members.find"):
            return []  # create: the request's org is checked; find: results are filtered
        if action == "ledger.transfer":
            return [req.from_member_id, req.to_member_id]
        if action in ("ledger.capture", "ledger.void", "ledger.get_hold"):
            try:
                return [app.ledger.hold_state(req.hold_id).member]
            except NotFound:
                return []
        if action == "ledger.reverse":
            cmd = self._command_of(app, req.target_id)
            if cmd.get("op") == "capture":
                cmd = self._command_of(app, cmd.get("hold", ""))
            # credit/redeem/hold/convert name a member; a transfer names both sides
            return [m for m in (cmd.get("member"), cmd.get("from"), cmd.get("to")) if isinstance(m, str)]
        member = getattr(req, "member_id", None)
        return [member] if member else []

    @staticmethod
    def _command_of(app: App, id: str) -> dict[str, Any]:
        try:
            entries = app.ledger.entries_of(id)
        except NotFound:
            return {}
        return entries[0].command if entries else {}

    def _check_members(self, who: Principal, members: list[str], app: App) -> None:
        for m in members:
            org = self._member_org(app, m)
            if org is not None and not in_org(org, who.scope):
                raise denied(f"member {m!r} is outside {who.role} scope {who.scope!r}")

    def _operator(self, who: Principal, action: str, req: Any, app: App) -> None:
        if action == "members.create" and not in_org(tuple(req.org), who.scope):
            raise denied(f"org {'/'.join(req.org)!r} is outside operator scope {who.scope!r}")
        self._check_members(who, self._members_of(action, req, app), app)

    def _merchant(self, who: Principal, action: str, req: Any, app: App) -> None:
        if action in ("ledger.redeem", "ledger.hold"):
            if req.order.merchant != who.scope:
                raise denied(f"merchant {who.scope!r} may only redeem for its own orders (order.merchant)")
            return
        if action == "ledger.balances":
            return
        # capture / void / get_hold / reverse: the original order must be this merchant's
        target = req.target_id if action == "ledger.reverse" else req.hold_id
        cmd = self._command_of(app, target)
        if cmd.get("op") == "capture":
            cmd = self._command_of(app, cmd.get("hold", ""))
        if not cmd:
            return  # unknown target: the call reports it, nothing changes
        if (cmd.get("order") or {}).get("merchant") != who.scope:
            raise denied(f"{target!r} is not an order of merchant {who.scope!r}")

    def _shopkeeper(self, who: Principal, action: str, req: Any, app: App) -> None:
        if action == "ledger.redeem" and req.order.channel != PROXY_CHANNEL:
            raise denied(f"a shopkeeper may only do proxy redemption (order.channel = {PROXY_CHANNEL!r}) (RL-1)")
        self._check_members(who, self._members_of(action, req, app), app)
