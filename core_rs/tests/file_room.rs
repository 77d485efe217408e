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

/// One `extend_file_step` under the write lock, as the writer takes it.
fn step(fx: &Fx, room: FileRoom, stop: impl Fn() -> bool) -> u64 {
    let txn = fx.store().write_txn().unwrap();
    fx.store().extend_file_step(&txn, room, stop).unwrap()
}

#[test]
fn room_is_zeros_past_the_last_used_page_and_later_commits_use_it() {
    let fx = Fx::standard();
    let at = ms(2024, 2, 1);
    for i in 0..300 {
        fx.ok(at, credit(["alice", "bob", "carol"][i % 3], "merchant", 10 + i as i64));
    }
    // (the writer leaves a file this small alone with the default room)
    let (before, used) = (data_file(&fx), used_bytes(&fx));
    assert_eq!(step(&fx, FileRoom { from_bytes: used as u64 + 1, ..FileRoom::default() }, || false), 0, "a file below `from_bytes` is left alone");
    assert_eq!(data_file(&fx).len(), before.len());

    let room = FileRoom { from_bytes: 0, headroom_divisor: 1, headroom_max_bytes: 1 << 20, step_bytes: 256 << 10, piece_bytes: 64 << 10 };
    // a step told to stop writes one piece and returns
    assert_eq!(step(&fx, room, || true), 64 << 10);
    assert_eq!(data_file(&fx).len(), before.len().max(used) + (64 << 10), "one piece past the end");
    let mut steps = 0;
    while step(&fx, room, || false) > 0 {
        steps += 1;
        assert!(steps <= 5, "room grows to its target and stops");
    }
    let after = data_file(&fx);
    let want = used.min(1 << 20);
    assert!(steps >= 1 && after.len() >= used + want, "{steps} steps, {} bytes for {used} used", after.len());
    assert_eq!(after[..used], before[..used], "no used page changed");
    assert!(after[before.len().max(used)..].iter().all(|b| *b == 0), "the room is zeros");
    assert_eq!(step(&fx, room, || false), 0, "enough room: nothing written");

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

#[test]
fn preallocate_zero_fills_past_the_used_pages_and_commits_write_into_it() {
    let fx = Fx::standard();
    let at = ms(2024, 2, 1);
    for i in 0..100 {
        fx.ok(at, credit(["alice", "bob"][i % 2], "merchant", 10 + i as i64));
    }
    let (before, used) = (data_file(&fx), used_bytes(&fx));
    let want = 3 * pypoints_core::limits::PREALLOCATE_CHUNK_BYTES as usize / 2; // two chunks
    let wrote = fx.engine.preallocate(want as u64).unwrap();
    let after = data_file(&fx);
    assert_eq!(after.len(), used + want, "the file ends `bytes` past the used pages");
    assert_eq!(wrote as usize, used + want - before.len().max(used));
    assert_eq!(after[..used], before[..used], "no used page changed");
    assert!(after[before.len().max(used)..].iter().all(|b| *b == 0), "the room is zeros");
    assert_eq!(fx.engine.preallocate(want as u64).unwrap(), 0, "long enough already: nothing written");
    // asking past the map is refused, and writes nothing
    let err = fx.engine.preallocate(u64::MAX / 2).unwrap_err();
    assert_eq!(err.code(), "INVALID_ARGUMENT", "{err}");
    assert_eq!(data_file(&fx).len(), after.len());
    // commits write into the room; after a reopen everything reads back and audits clean
    for i in 0..100 {
        fx.ok(at, credit(["alice", "bob"][i % 2], "merchant", 1));
    }
    assert!(used_bytes(&fx) > used);
    assert_eq!(data_file(&fx).len(), after.len(), "the commits wrote inside the room");
    let totals: Vec<i64> = ["alice", "bob"].iter().map(|m| fx.total(m, "merchant")).collect();
    let fx = fx.reopen();
    assert_eq!(["alice", "bob"].iter().map(|m| fx.total(m, "merchant")).collect::<Vec<_>>(), totals);
    fx.assert_audit_clean();
}
