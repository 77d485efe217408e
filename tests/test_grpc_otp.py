"""OTP holds (RD-6, RD-7, RK-5): the code goes to the member's bound phone through the LMDB
outbox and a pluggable sender; capture needs the right code; wrong codes are counted and the
last allowed one voids the hold; TTL expiry; codes stored hashed; log-file and webhook senders."""

from __future__ import annotations

import http.server
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import msgpack
import pytest

from conftest import FakeClock
from grpc_support import Client, expect_error, seed
from pypoints.server import App, ServerConfig
from pypoints.server.auth import TokenStore
from pypoints.server.otp import ATTEMPTS_DEFAULT, LogFileSender, WebhookSender
from pypoints.v1 import common_pb2 as C
from pypoints.v1 import ledger_pb2 as L
from pypoints.v1 import members_pb2 as M

S = grpc.StatusCode
CODE = re.compile(r"one-time code is (\d{6})")


class Phone:
    """A sender that keeps what it was asked to send."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def send(self, phone: str, text: str, message: dict[str, Any]) -> None:
        self.sent.append((phone, text))

    def code(self) -> str:
        m = CODE.search(self.sent[-1][1])
        assert m
        return m.group(1)


@pytest.fixture
def otp_server(tmp_path: Path, clock: FakeClock) -> Iterator[tuple[App, Client, Phone]]:
    data = tmp_path / "data"
    token, _ = TokenStore(data).create("admin")
    phone = Phone()
    app = App(ServerConfig(data_dir=data, port=0, workers=8), clock=clock, otp_sender=phone, deliver_otp=False).start()
    c = Client(grpc.insecure_channel(f"127.0.0.1:{app.port}"), token)
    seed(c)
    c.call(c.ledger, "Credit", L.CreditRequest(request_id="c1", member_id="m1", point_type="general", amount=1_000))
    try:
        yield app, c, phone
    finally:
        app.stop(grace=1)


def hold(c: Client, rid: str, amount: int = 300, ttl_ms: int = 300_000) -> L.CommandResponse:
    return c.call(c.ledger, "Hold", L.HoldRequest(request_id=rid, member_id="m1", amount=amount, ttl_ms=ttl_ms,
                                                  require_otp=True, order=C.Order(channel="shopkeeper")))


def capture(c: Client, rid: str, hold_id: str, otp: str) -> L.CommandResponse:
    return c.call(c.ledger, "Capture", L.CaptureRequest(request_id=rid, hold_id=hold_id, otp=otp))


def test_otp_success_code_goes_to_bound_phone_via_outbox(otp_server: tuple[App, Client, Phone]) -> None:
    app, c, phone = otp_server
    assert hold(c, "h1").receipt.kind == "hold"
    assert len(app.ledger.engine.outbox_peek(10)) == 1  # written with the hold, before delivery
    assert app.otp.deliver_once() == 1
    assert app.ledger.engine.outbox_peek(10) == []  # delivered → deleted
    assert phone.sent[0][0] == "13800000000"
    st = c.call(c.ledger, "GetHold", L.GetHoldRequest(hold_id="h1"))
    assert st.requires_otp and st.otp_attempts_left == ATTEMPTS_DEFAULT
    expect_error(c.call, c.ledger, "Capture", L.CaptureRequest(request_id="cap0", hold_id="h1"),
                 code=S.INVALID_ARGUMENT, reason="OTP_REQUIRED", field="otp")
    r = capture(c, "cap1", "h1", phone.code())
    assert r.receipt.kind == "capture" and r.receipt.amount == 300
    assert capture(c, "cap1", "h1", phone.code()).receipt.replayed
    b = c.call(c.ledger, "GetBalances", L.GetBalancesRequest(member_id="m1", point_type="general")).balances[0]
    assert (b.total, b.held) == (700, 0)
    assert app.ledger.audit().ok


def test_wrong_code_then_right_code(otp_server: tuple[App, Client, Phone]) -> None:
    app, c, phone = otp_server
    hold(c, "h1")
    app.otp.deliver_once()
    wrong = "000000" if phone.code() != "000000" else "111111"
    err = expect_error(capture, c, "bad1", "h1", wrong, code=S.FAILED_PRECONDITION, reason="OTP_MISMATCH", field="otp")
    assert f"{ATTEMPTS_DEFAULT - 1} attempt" in err.details()  # type: ignore[attr-defined]
    # the same request id replays the same refusal, without spending another attempt
    expect_error(capture, c, "bad1", "h1", wrong, code=S.FAILED_PRECONDITION, reason="OTP_MISMATCH")
    assert c.call(c.ledger, "GetHold", L.GetHoldRequest(hold_id="h1")).otp_attempts_left == ATTEMPTS_DEFAULT - 1
    assert capture(c, "ok", "h1", phone.code()).receipt.amount == 300
    expect_error(c.call, c.ledger, "Reverse", L.ReverseRequest(request_id="rv", target_id="bad1"),
                 code=S.FAILED_PRECONDITION, reason="NOT_REVERSIBLE")
    assert app.ledger.audit().ok


def test_attempts_exhausted_voids_the_hold(otp_server: tuple[App, Client, Phone]) -> None:
    app, c, phone = otp_server
    hold(c, "h1")
    app.otp.deliver_once()
    wrong = "000000" if phone.code() != "000000" else "111111"
    for i in range(ATTEMPTS_DEFAULT - 1):
        expect_error(capture, c, f"bad{i}", "h1", wrong, code=S.FAILED_PRECONDITION, reason="OTP_MISMATCH")
    expect_error(capture, c, "bad.last", "h1", wrong, code=S.FAILED_PRECONDITION, reason="OTP_ATTEMPTS_EXHAUSTED")
    st = c.call(c.ledger, "GetHold", L.GetHoldRequest(hold_id="h1"))
    assert st.state == "voided" and st.otp_attempts_left == 0
    expect_error(capture, c, "late", "h1", phone.code(), code=S.FAILED_PRECONDITION, reason="HOLD_NOT_OPEN")
    b = c.call(c.ledger, "GetBalances", L.GetBalancesRequest(member_id="m1", point_type="general")).balances[0]
    assert (b.total, b.available, b.held) == (1_000, 1_000, 0)
    assert app.ledger.audit().ok


def test_ttl_expiry_refuses_even_the_right_code(otp_server: tuple[App, Client, Phone], clock: FakeClock) -> None:
    app, c, phone = otp_server
    hold(c, "h1", ttl_ms=60_000)
    app.otp.deliver_once()
    clock.advance(60_000)
    expect_error(capture, c, "cap", "h1", phone.code(), code=S.FAILED_PRECONDITION, reason="HOLD_EXPIRED")


def test_undelivered_code_of_a_lapsed_hold_is_dropped(otp_server: tuple[App, Client, Phone], clock: FakeClock) -> None:
    app, c, phone = otp_server
    hold(c, "h1", ttl_ms=60_000)
    clock.advance(60_000)
    assert app.otp.deliver_once() == 1 and phone.sent == []
    assert app.ledger.engine.outbox_peek(10) == []


def test_codes_are_stored_hashed(otp_server: tuple[App, Client, Phone]) -> None:
    app, c, phone = otp_server
    hold(c, "h1")
    app.otp.deliver_once()
    code = phone.code()
    rec = msgpack.unpackb(app.ledger.engine.hold("h1"), raw=False)
    assert rec["otp"]["hash"] == app.otp.code_hash("h1", code) and code not in json.dumps(rec["otp"])
    entry = app.ledger.entries_of("h1")[0].command
    assert code.encode() not in msgpack.packb(entry)  # journal: hash and sealed copy only
    assert app.otp.unseal("h1", entry["otp"]["sealed"]) == code


def test_member_without_phone_cannot_get_a_code(otp_server: tuple[App, Client, Phone]) -> None:
    app, c, phone = otp_server
    c.call(c.members, "CreateMember", M.CreateMemberRequest(request_id="open.np", member_id="np", programme="p"))
    expect_error(c.call, c.ledger, "Hold", L.HoldRequest(request_id="h.np", member_id="np", amount=1, ttl_ms=60_000,
                                                         require_otp=True),
                 code=S.FAILED_PRECONDITION, reason="NO_BOUND_PHONE")


def test_log_file_sender_is_the_default_and_the_thread_delivers(tmp_path: Path, clock: FakeClock) -> None:
    data = tmp_path / "data"
    token, _ = TokenStore(data).create("admin")
    app = App(ServerConfig(data_dir=data, port=0, workers=4), clock=clock).start()
    try:
        assert isinstance(app.otp.sender, LogFileSender)
        c = Client(grpc.insecure_channel(f"127.0.0.1:{app.port}"), token)
        seed(c)
        c.call(c.ledger, "Credit", L.CreditRequest(request_id="c1", member_id="m1", point_type="general", amount=10))
        hold(c, "h1", amount=5)
        log = data / "otp-outbox.log"
        for _ in range(100):
            if log.exists() and log.read_text():
                break
            threading.Event().wait(0.05)
        line = json.loads(log.read_text().splitlines()[0])
        assert line["phone"] == "13800000000" and line["hold"] == "h1"
        code = CODE.search(line["text"]).group(1)  # type: ignore[union-attr]
        assert capture(c, "cap", "h1", code).receipt.amount == 5
    finally:
        app.stop(grace=1)


def test_webhook_sender_posts_json(tmp_path: Path, clock: FakeClock) -> None:
    """--otp-webhook: the server's outbox sender POSTs each code as JSON."""
    got: list[dict[str, Any]] = []

    class H(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            got.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a: Any) -> None:
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    data = tmp_path / "data"
    token, _ = TokenStore(data).create("admin")
    app = App(ServerConfig(data_dir=data, port=0, workers=4, otp_webhook=f"http://127.0.0.1:{srv.server_port}/otp"),
              clock=clock, deliver_otp=False).start()
    try:
        assert isinstance(app.otp.sender, WebhookSender)
        c = Client(grpc.insecure_channel(f"127.0.0.1:{app.port}"), token)
        seed(c)
        c.call(c.ledger, "Credit", L.CreditRequest(request_id="c1", member_id="m1", point_type="general", amount=10))
        hold(c, "h1", amount=5)
        assert app.otp.deliver_once() == 1
    finally:
        app.stop(grace=1)
        srv.shutdown()
    assert [(g["phone"], g["hold"], g["member"]) for g in got] == [("13800000000", "h1", "m1")]
    assert CODE.search(got[0]["text"])


def test_failed_delivery_keeps_the_code_in_the_outbox(otp_server: tuple[App, Client, Phone]) -> None:
    """At-least-once: a sender that fails leaves the notification for the next round."""
    app, c, phone = otp_server

    class Down:
        def send(self, phone: str, text: str, message: dict[str, Any]) -> None:
            raise OSError("gateway down")

    hold(c, "h1")
    app.otp.sender = Down()
    assert app.otp.deliver_once() == 0
    assert len(app.ledger.engine.outbox_peek(10)) == 1
    app.otp.sender = phone
    assert app.otp.deliver_once() == 1 and phone.sent
