//! The writer keeps zeroed room at the end of the data file (`Store::extend_file_step`), so a
//! commit overwrites blocks that exist instead of growing the file. The zeros must land past
//! every page LMDB uses, and pages LMDB writes there later must read back after a reopen.
mod common;

use common::*;
use pypoints_core::store::FileRoom;

fn data_file(fx: &Fx) -> Vec<u8> {
    std::fs::read(fx.path().join("data.mdb")).unwrap()
}

/// Bytes of the data file LMDB uses (its pages up to the last committed one), counted
/// independently of `Store::used_bytes`.
fn used_bytes(fx: &Fx) -> usize {
    let r = fx.store().read_txn().unwrap();
    let page = fx.store().meta.stat(&r).unwrap().page_size as usize;
    let used = (fx.store().env.info().last_page_number + 1) * page;
    assert_eq!(fx.store().used_bytes(), used as u64);
    used
}

#[test]
fn room_is_zeros_past_the_last_used_page_and_later_commits_use_it() {
    let fx = Fx::standard();
    let at = ms(2024, 2, 1);
    for i in 0..300 {
        fx.ok(at, credit(["alice", "bob", "carol"][i % 3], "merchant", 10 + i as i64));
    }
    // every submit has returned, so the writer is between transactions (and leaves a file
    // this small alone with the default room), as `extend_file_step` requires
    let (before, used) = (data_file(&fx), used_bytes(&fx));
    assert_eq!(fx.store().extend_file_step(FileRoom { from_bytes: used as u64 + 1, ..FileRoom::default() }, || false).unwrap(), 0, "a file below `from_bytes` is left alone");
    assert_eq!(data_file(&fx).len(), before.len());

    let room = FileRoom { from_bytes: 0, headroom_divisor: 1, headroom_max_bytes: 1 << 20, step_bytes: 256 << 10, piece_bytes: 64 << 10 };
    // a step told to stop writes one piece and returns
    assert_eq!(fx.store().extend_file_step(room, || true).unwrap(), 64 << 10);
    assert_eq!(data_file(&fx).len(), before.len().max(used) + (64 << 10), "one piece past the end");
    let mut steps = 0;
    while fx.store().extend_file_step(room, || false).unwrap() > 0 {
        steps += 1;
        assert!(steps <= 5, "room grows to its target and stops");
    }
    let after = data_file(&fx);
    let want = used.min(1 << 20);
    assert!(steps >= 1 && after.len() >= used + want, "{steps} steps, {} bytes for {used} used", after.len());
    assert_eq!(after[..used], before[..used], "no used page changed");
    assert!(after[before.len().max(used)..].iter().all(|b| *b == 0), "the room is zeros");
    assert_eq!(fx.store().extend_file_step(room, || false).unwrap(), 0, "enough room: nothing written");

    // later commits write into the room; after a reopen everything reads back and audits clean
    for i in 0..300 {
        fx.ok(at, credit(["alice", "bob", "carol"][i % 3], "merchant", 1));
    }
    assert!(used_bytes(&fx) > used, "the commits after took pages past the old end");
    let totals: Vec<i64> = ["alice", "bob", "carol"].iter().map(|m| fx.total(m, "merchant")).collect();
    let fx = fx.reopen();
    assert_eq!(["alice", "bob", "carol"].iter().map(|m| fx.total(m, "merchant")).collect::<Vec<_>>(), totals);
    assert_eq!(totals.iter().sum::<i64>(), (0..300).map(|i| 10 + i).sum::<i64>() + 300);
    fx.assert_audit_clean();
}
