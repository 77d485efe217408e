//! Members by bound phone / ID-number hash (MA-2, MA-14): written with the member, shared
//! phones list every member, and a store from before the index gets it built at open.
mod common;

use common::*;
use pypoints_core::command::Command;
use pypoints_core::query::find_members;

fn open_with(m: &str, phone: &str, id_hash: Option<&str>) -> Command {
    match open_member(m, "tel") {
        Command::OpenMember { member, programme, org, tier, kind, .. } => Command::OpenMember {
            member, programme, phone: phone.into(), id_hash: id_hash.map(Into::into), org, tier, kind,
        },
        _ => unreachable!(),
    }
}

fn ids(fx: &Fx, kind: &str, value: &str) -> Vec<String> {
    find_members(fx.store(), kind, value).unwrap().into_iter().map(|m| m.id).collect()
}

#[test]
fn find_by_phone_and_id_hash_and_backfill() {
    let fx = Fx::standard();
    let at = t0();
    fx.ok(at, open_with("erin", "139", Some("abc")));
    fx.ok(at, open_with("finn", "139", None));
    fx.ok(at, freeze("finn")); // an update keeps the member findable
    assert_eq!(ids(&fx, "phone", "139"), ["erin", "finn"]);
    assert_eq!(ids(&fx, "id_hash", "abc"), ["erin"]);
    assert_eq!(ids(&fx, "phone", "+8613800000000"), ["alice", "bob", "carol", "dave"]);
    assert!(ids(&fx, "phone", "13").is_empty(), "a prefix of a phone is not a match");
    assert!(find_members(fx.store(), "card", "1").is_err());
    // a store written before the index: empty it, reopen, it is rebuilt
    {
        let mut w = fx.store().write_txn().unwrap();
        fx.store().member_index.clear(&mut w).unwrap();
        w.commit().unwrap();
    }
    assert!(ids(&fx, "phone", "139").is_empty());
    let fx = fx.reopen();
    assert_eq!(ids(&fx, "phone", "139"), ["erin", "finn"]);
    assert_eq!(ids(&fx, "id_hash", "abc"), ["erin"]);
}
