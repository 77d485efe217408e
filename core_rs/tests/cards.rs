//! Cards bound to members (MA-2 lookup at a till, MA-10 bank card as identifier, MA-14 several
//! cards for one identity): one member per card, bounded cards per member, unbinding frees the
//! number, every refusal changes nothing, and the audit checks cards against members.
mod common;

use common::*;
use pypoints_core::audit::audit;
use pypoints_core::error::LedgerError;
use pypoints_core::limits::*;
use pypoints_core::model::{Card, Member};
use pypoints_core::query::{find_members, member};
use pypoints_core::store::{decode, encode, get};

fn by_card(fx: &Fx, card: &str) -> Vec<String> {
    find_members(fx.store(), "card", card).unwrap().into_iter().map(|m| m.id).collect()
}

#[test]
fn a_bound_card_finds_its_member_and_an_unbound_one_finds_nobody() {
    let fx = Fx::standard();
    let at = t0();
    assert!(by_card(&fx, "6222020200112233445").is_empty());
    fx.ok(at, bind_card("alice", "6222020200112233445")); // MA-10: a 19-digit bank card
    fx.ok(at, bind_card("alice", "88001234")); // MA-14: a second card, a store card
    fx.ok(at, bind_card("bob", "88001235"));
    assert_eq!(by_card(&fx, "6222020200112233445"), ["alice"]);
    assert_eq!(by_card(&fx, "88001234"), ["alice"]);
    assert_eq!(by_card(&fx, "88001235"), ["bob"]);
    assert_eq!(member(fx.store(), "alice").unwrap().cards, ["6222020200112233445", "88001234"]);
    // the record names its member and the entry that bound it
    let txn = fx.store().read_txn().unwrap();
    let c: Card = get(&fx.store().cards, &txn, b"88001235").unwrap().unwrap();
    assert_eq!((c.member.as_str(), c.bound_at), ("bob", at));
    drop(txn);
    // MA-2: a lost card is unbound; the number no longer finds anyone and may be bound again
    fx.ok(at, unbind_card("alice", "88001234"));
    assert!(by_card(&fx, "88001234").is_empty());
    assert_eq!(member(fx.store(), "alice").unwrap().cards, ["6222020200112233445"]);
    fx.ok(at, bind_card("carol", "88001234"));
    assert_eq!(by_card(&fx, "88001234"), ["carol"]);
    // a frozen member keeps its cards, is still found, and may get a new one (RK-4 stops spending)
    fx.ok(at, freeze("bob"));
    assert_eq!(by_card(&fx, "88001235"), ["bob"]);
    fx.ok(at, bind_card("bob", "88001236"));
    fx.assert_audit_clean();
    // all of it survives a reopen
    let fx = fx.reopen();
    assert_eq!(by_card(&fx, "88001236"), ["bob"]);
    assert_eq!(member(fx.store(), "bob").unwrap().cards, ["88001235", "88001236"]);
    fx.assert_audit_clean();
}

#[test]
fn a_card_identifies_one_member_and_refusals_change_nothing() {
    let fx = Fx::standard();
    let at = t0();
    fx.ok(at, bind_card("alice", "88001234"));
    let e = fx.refused(at, bind_card("bob", "88001234"));
    assert!(matches!(&e, LedgerError::CardAlreadyBound(m) if m.contains("another member")), "{e:?}");
    assert_eq!(e.code(), "CARD_ALREADY_BOUND");
    let e = fx.refused(at, bind_card("alice", "88001234"));
    assert!(matches!(&e, LedgerError::CardAlreadyBound(m) if m.contains("this member")), "{e:?}");
    // unbinding needs the card's own member
    let e = fx.refused(at, unbind_card("bob", "88001234"));
    assert!(matches!(e, LedgerError::UnknownCard(_)), "{e:?}");
    assert_eq!(e.code(), "UNKNOWN_CARD");
    let e = fx.refused(at, unbind_card("alice", "88009999"));
    assert!(matches!(e, LedgerError::UnknownCard(_)), "{e:?}");
    assert!(matches!(fx.refused(at, bind_card("nobody", "88001299")), LedgerError::UnknownMember(_)));
    assert!(matches!(fx.refused(at, unbind_card("nobody", "88001234")), LedgerError::UnknownMember(_)));
    // bad numbers: empty, letters, spaces, too short, too long
    for bad in ["", "8800123a", "8800 1234", "-88001234", "1234567"] {
        assert!(matches!(fx.refused(at, bind_card("bob", bad)), LedgerError::InvalidArgument(_)), "{bad:?}");
        assert!(matches!(find_members(fx.store(), "card", bad), Err(LedgerError::InvalidArgument(_))), "{bad:?}");
    }
    let long = "1".repeat(CARD_NUMBER_LENGTH_MAX + 1);
    assert!(matches!(fx.refused(at, bind_card("bob", &long)), LedgerError::LimitExceeded(_)));
    assert!(matches!(fx.refused(at, unbind_card("alice", &long)), LedgerError::LimitExceeded(_)));
    let reason = "r".repeat(TEXT_LENGTH_MAX + 1);
    let cmd = pypoints_core::command::Command::UnbindCard { member: "alice".into(), card: "88001234".into(), reason };
    assert!(matches!(fx.refused(at, cmd), LedgerError::LimitExceeded(_)));
    // the shortest and the longest numbers are fine
    fx.ok(at, bind_card("bob", &"2".repeat(CARD_NUMBER_LENGTH_MIN)));
    fx.ok(at, bind_card("bob", &"3".repeat(CARD_NUMBER_LENGTH_MAX)));
    fx.assert_audit_clean();
}

#[test]
fn a_member_holds_at_most_the_card_limit() {
    let fx = Fx::standard();
    let at = t0();
    for i in 0..CARDS_PER_MEMBER_MAX {
        fx.ok(at, bind_card("alice", &format!("7700000{i}")));
    }
    let e = fx.refused(at, bind_card("alice", "77000099"));
    assert!(matches!(e, LedgerError::LimitExceeded(_)), "{e:?}");
    // unbinding one makes room again
    fx.ok(at, unbind_card("alice", "77000000"));
    fx.ok(at, bind_card("alice", "77000099"));
    assert_eq!(member(fx.store(), "alice").unwrap().cards.len(), CARDS_PER_MEMBER_MAX);
    fx.assert_audit_clean();
}

#[test]
fn binding_is_idempotent_by_command_id() {
    let fx = Fx::standard();
    let at = t0();
    let first = fx.ok_id("bind-1", at, bind_card("alice", "88001234"));
    let again = fx.ok_id("bind-1", at + 5_000, bind_card("alice", "88001234"));
    assert!(again.replayed && again.seq == first.seq);
    assert!(matches!(fx.refused_id("bind-1", at, bind_card("bob", "88001234")), LedgerError::IdempotencyConflict(_)));
    assert_eq!(member(fx.store(), "alice").unwrap().cards, ["88001234"]);
    fx.assert_audit_clean();
}

#[test]
fn two_binds_of_one_card_in_one_group_commit_let_only_the_first_win() {
    let fx = Fx::standard();
    let at = t0();
    let envs = vec![envelope("g1", at, bind_card("alice", "88001234")), envelope("g2", at, bind_card("bob", "88001234")), envelope("g3", at, unbind_card("alice", "88001234")), envelope("g4", at, bind_card("bob", "88001234"))];
    let out = fx.engine.submit(envs).unwrap();
    assert!(out[0].is_ok() && out[2].is_ok() && out[3].is_ok(), "{out:?}");
    assert!(matches!(out[1], Err(LedgerError::CardAlreadyBound(_))), "{out:?}");
    assert_eq!(by_card(&fx, "88001234"), ["bob"]);
    assert!(member(fx.store(), "alice").unwrap().cards.is_empty());
    fx.assert_audit_clean();
}

#[test]
fn the_audit_reports_a_card_and_a_member_that_disagree() {
    let fx = Fx::standard();
    let at = t0();
    fx.ok(at, bind_card("alice", "88001234"));
    fx.ok(at, bind_card("bob", "88001235"));
    {
        let store = fx.store();
        let mut w = store.write_txn().unwrap();
        // the card record moved to carol behind the ledger's back; bob's record vanished
        let mut c: Card = get(&store.cards, &w, b"88001234").unwrap().unwrap();
        c.member = "carol".into();
        store.cards.put(&mut w, b"88001234", &encode(&c)).unwrap();
        store.cards.delete(&mut w, b"88001235").unwrap();
        // and dave lists a card nobody bound
        let mut d: Member = decode(store.members.get(&w, b"dave").unwrap().unwrap()).unwrap();
        d.cards.push("99001234".into());
        store.members.put(&mut w, b"dave", &encode(&d)).unwrap();
        w.commit().unwrap();
    }
    let problems = audit(fx.store()).unwrap().problems;
    assert!(problems.iter().any(|p| p.contains("88001234") && p.contains("carol") && p.contains("alice")), "{problems:#?}");
    assert!(problems.iter().any(|p| p.contains("88001235") && p.contains("no card record")), "{problems:#?}");
    assert!(problems.iter().any(|p| p.contains("99001234") && p.contains("dave")), "{problems:#?}");
}
