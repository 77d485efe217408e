"""Cards bound to members through the Python API (MA-2: a till finds the member by card; MA-10: a
bank card number as identifier; MA-14: several cards, one identity). Bad input is in
test_bad_input.py; the gRPC surface in test_grpc_cards.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest

import pypoints as pp
from conftest import setup_programme, run_python
from pypoints import _core
from pypoints.errors import CardAlreadyBound, IdempotencyConflict, LimitExceeded, UnknownCard

BANK_CARD = "6222020200112233445"  # 19 digits (ISO/IEC 7812 maximum)
STORE_CARD = "88001234"  # 8 digits (the shortest accepted)


@pytest.fixture
def ledger(tmp_path: Path, open_ledger: Callable[..., pp.Ledger]) -> pp.Ledger:
    led = open_ledger(tmp_path / "data")
    setup_programme(led, "shop", ("pts",), ("alice", "bob"))
    return led


def test_a_card_finds_its_member_until_it_is_unbound(ledger: pp.Ledger) -> None:
    assert ledger.find_members(card=BANK_CARD) == []
    r = ledger.bind_card("bind.1", "alice", BANK_CARD)
    assert r.kind == "bind_card" and not r.replayed
    ledger.bind_card("bind.2", "alice", STORE_CARD)
    [alice] = ledger.find_members(card=BANK_CARD)
    assert alice.id == "alice" and alice.cards == (BANK_CARD, STORE_CARD)
    assert [m.id for m in ledger.find_members(card=STORE_CARD)] == ["alice"]
    # lost: unbind, and the number may go to someone else
    ledger.unbind_card("unbind.1", "alice", STORE_CARD, "lost")
    assert ledger.find_members(card=STORE_CARD) == []
    ledger.bind_card("bind.3", "bob", STORE_CARD)
    assert [m.id for m in ledger.find_members(card=STORE_CARD)] == ["bob"]
    assert ledger.member("alice").cards == (BANK_CARD,)
    # the journal records both commands, and the audit checks cards against members
    assert [e.kind for e in ledger.entries_of("unbind.1")] == ["unbind_card"]
    assert ledger.entries_of("unbind.1")[0].command == {"op": "unbind_card", "member": "alice",
                                                        "card": STORE_CARD, "reason": "lost"}
    assert ledger.audit().ok


def test_binding_replays_by_id_and_refuses_the_same_id_with_other_content(ledger: pp.Ledger) -> None:
    first = ledger.bind_card("bind.1", "alice", BANK_CARD)
    again = ledger.bind_card("bind.1", "alice", BANK_CARD)
    assert again.replayed and again.seq == first.seq
    with pytest.raises(IdempotencyConflict):
        ledger.bind_card("bind.1", "bob", BANK_CARD)
    with pytest.raises(CardAlreadyBound, match="another member"):
        ledger.bind_card("bind.2", "bob", BANK_CARD)
    assert ledger.member("bob").cards == ()


def test_a_member_holds_at_most_the_card_limit(ledger: pp.Ledger) -> None:
    cards = [f"7700000{i}" for i in range(_core.CARDS_PER_MEMBER_MAX)]
    results = ledger.submit([pp.BindCard(f"b.{c}", "alice", c) for c in cards]
                            + [pp.BindCard("b.extra", "alice", "77000099")])
    assert all(isinstance(r, pp.Receipt) for r in results[:-1])
    assert isinstance(results[-1], LimitExceeded)
    assert ledger.member("alice").cards == tuple(cards)
    with pytest.raises(UnknownCard):
        ledger.unbind_card("u.1", "alice", "77000099")


def test_cards_are_stored_where_another_process_can_read_them(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with pp.Ledger(data, clock=lambda: 1_700_000_000_000) as led:
        setup_programme(led, "shop", ("pts",), ("alice",))
        led.bind_card("bind.1", "alice", BANK_CARD)
    code = r"""
import json, sys, lmdb, msgpack
env = lmdb.open(sys.argv[1], max_dbs=16, readonly=True, lock=False)
with env.begin() as t:
    card = msgpack.unpackb(t.get(sys.argv[2].encode(), db=env.open_db(b"cards", txn=t, create=False)))
    member = msgpack.unpackb(t.get(b"alice", db=env.open_db(b"members", txn=t, create=False)))
print(json.dumps({"card": card, "cards": member["cards"]}))
"""
    res = run_python(code, str(data), BANK_CARD)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["cards"] == [BANK_CARD]
    c = out["card"]
    assert (c["v"], c["card"], c["member"], c["bound_at"]) == (1, BANK_CARD, "alice", 1_700_000_000_000)
    assert c["seq"] >= 1


def test_cards_survive_a_reopen(tmp_path: Path, open_ledger: Callable[..., pp.Ledger]) -> None:
    led = open_ledger(tmp_path / "data")
    setup_programme(led, "shop", ("pts",), ("alice",))
    led.bind_card("bind.1", "alice", BANK_CARD)
    led.close()
    led = open_ledger(tmp_path / "data")
    assert [m.id for m in led.find_members(card=BANK_CARD)] == ["alice"]
    with pytest.raises(CardAlreadyBound):
        led.bind_card("bind.2", "alice", BANK_CARD)
    assert led.audit().ok
