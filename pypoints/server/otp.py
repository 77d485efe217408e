"""One-time codes for holds (RD-6 mall, RD-7 shopkeeper checkout, RK-5 "every deduction needs
an OTP").

`Hold(require_otp=true)`: the server makes a 6-digit code and hands the core only its keyed
hash (HMAC-SHA256 with the server's key, bound to the hold id) and a sealed copy (the code XOR
an HMAC keystream of the hold id). The core stores the hash on the hold and, in the same write
transaction, a notification with the sealed code for the member's bound phone in the `outbox`
named database. The `OutboxSender` thread unseals each notification, delivers it through a
pluggable sender (a JSON-lines log file by default, an HTTP webhook when configured) and then
deletes it from the outbox (at-least-once delivery).

`Capture` of such a hold must present the code: the core compares hashes; a wrong code is
recorded (one attempt fewer, OTP_MISMATCH); the last allowed wrong code voids the hold
(OTP_ATTEMPTS_EXHAUSTED); a hold past its TTL cannot be captured (HOLD_EXPIRED). The key lives
in DATA_DIR/otp.key (0600); clear codes exist only in memory and in what the sender delivers."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import grpc
import msgpack

from pypoints import commands as c
from pypoints.server.errors import ApiError, invalid

if TYPE_CHECKING:
    from pypoints.server.app import App

log = logging.getLogger("pypoints.server.otp")
CODE_DIGITS = 6
ATTEMPTS_DEFAULT = 3
KEY_FILE = "otp.key"


class Sender(Protocol):
    def send(self, phone: str, text: str, message: dict[str, Any]) -> None: ...


class LogFileSender:
    """Appends one JSON line per notification to a file (the default; for development and for
    a gateway that tails the file)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def send(self, phone: str, text: str, message: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"ts": time.time(), "phone": phone, "hold": message["hold"], "text": text})
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)


class WebhookSender:
    """POSTs `{"phone", "text", "hold", "member"}` as JSON; any non-2xx is a failed delivery."""

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.url, self.timeout_s = url, timeout_s

    def send(self, phone: str, text: str, message: dict[str, Any]) -> None:
        body = json.dumps({"phone": phone, "text": text, "hold": message["hold"], "member": message["member"]}).encode()
        req = urllib.request.Request(self.url, data=body, headers={"content-type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
            if not 200 <= resp.status < 300:
                raise OSError(f"webhook answered {resp.status}")


def load_key(data_dir: Path) -> bytes:
    path = Path(data_dir) / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_bytes(32))
        finally:
            os.close(fd)
    return path.read_bytes()


class Otp:
    def __init__(self, app: App, key: bytes, sender: Sender, *, attempts: int = ATTEMPTS_DEFAULT) -> None:
        self.app, self.key, self.sender, self.attempts = app, key, sender, attempts
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.delivered = 0

    # ----- codes -----

    def code_hash(self, hold: str, code: str) -> str:
        return hmac.new(self.key, f"otp|{hold}|{code}".encode(), hashlib.sha256).hexdigest()

    def _pad(self, hold: str, n: int) -> bytes:
        return hmac.new(self.key, f"seal|{hold}".encode(), hashlib.sha256).digest()[:n]

    def seal(self, hold: str, code: str) -> bytes:
        return bytes(a ^ b for a, b in zip(code.encode(), self._pad(hold, len(code))))

    def unseal(self, hold: str, sealed: bytes) -> str:
        return bytes(a ^ b for a, b in zip(sealed, self._pad(hold, len(sealed)))).decode()

    # ----- commands -----

    def hold(self, req: Any) -> Any:
        ledger = self.app.ledger
        member = ledger.member(req.member_id)
        if not member.phone:
            raise ApiError(grpc.StatusCode.FAILED_PRECONDITION, "NO_BOUND_PHONE",
                           f"member {req.member_id!r} has no bound phone for a one-time code (MA-5)", "member_id")
        code = "".join(secrets.choice("0123456789") for _ in range(CODE_DIGITS))
        o = req.order
        cmd = c.Hold(req.request_id, req.member_id, req.amount, req.ttl_ms,
                     req.point_type if req.HasField("point_type") else None, o.channel, o.merchant, o.order_ref, o.org)
        t = (*cmd.as_tuple(ledger.clock()), (self.code_hash(req.request_id, code), self.attempts,
                                             self.seal(req.request_id, code)))
        r = ledger.engine.execute(t)
        self._wake.set()
        return r

    def _hold_record(self, hold: str) -> dict[str, Any]:
        return msgpack.unpackb(self.app.ledger.engine.hold(hold), raw=False)

    def capture(self, req: Any) -> Any:
        ledger = self.app.ledger
        amount = req.amount if req.HasField("amount") else None
        otp = self._hold_record(req.hold_id).get("otp")
        if otp is None:
            return ledger.capture(req.request_id, req.hold_id, amount)
        if not req.otp:
            raise invalid("otp", f"hold {req.hold_id!r} requires the one-time code sent to the member's phone",
                          "OTP_REQUIRED")
        t = (*c.Capture(req.request_id, req.hold_id, amount).as_tuple(ledger.clock()),
             self.code_hash(req.hold_id, req.otp.strip()))
        r = ledger.engine.execute(t)
        if r.cursor == "otp_exhausted":
            raise ApiError(grpc.StatusCode.FAILED_PRECONDITION, "OTP_ATTEMPTS_EXHAUSTED",
                           f"wrong one-time code; no attempts left, hold {req.hold_id!r} is voided", "otp")
        if r.cursor and r.cursor.startswith("otp_rejected:"):
            left = r.cursor.split(":", 1)[1]
            raise ApiError(grpc.StatusCode.FAILED_PRECONDITION, "OTP_MISMATCH",
                           f"wrong one-time code; {left} attempt(s) left", "otp")
        return r

    def describe(self, state: Any) -> None:
        otp = self._hold_record(state.hold_id).get("otp")
        if otp is not None:
            state.requires_otp = True
            state.otp_attempts_left = otp["left"]

    # ----- delivery -----

    def deliver_once(self, limit: int = 100) -> int:
        """Deliver what waits in the outbox; delete each delivered message. Returns how many."""
        engine = self.app.ledger.engine
        done: list[bytes] = []
        try:
            now = self.app.ledger.clock()
            for key, raw in engine.outbox_peek(limit):
                m = msgpack.unpackb(raw, raw=False)
                if m["expires_at"] <= now:  # the hold lapsed before delivery: drop, do not send
                    done.append(key)
                    continue
                code = self.unseal(m["hold"], m["sealed"])
                text = f"pypoints: your one-time code is {code} (hold {m['hold']})"
                try:
                    self.sender.send(m["phone"], text, m)
                except Exception:  # noqa: BLE001 - keep it in the outbox, retry later
                    log.warning("otp delivery failed; will retry", extra={"event": "otp_delivery_failed", "hold": m["hold"]})
                    break
                done.append(key)
        finally:
            if done:
                engine.outbox_delete(done)
                self.delivered += len(done)
        return len(done)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="pypoints-outbox", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                while self.deliver_once() and not self._stop.is_set():
                    pass
            except Exception:  # noqa: BLE001
                log.exception("outbox sender")
                time.sleep(1.0)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
