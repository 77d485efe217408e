//! Writer throughput without Python: `cargo run --release --example writer_bench -- MEMBERS BATCH ROUNDS [nosync]`.
//! Loads MEMBERS members with one lot each, then times ROUNDS batches of BATCH credits and
//! redeems to uniformly random members (each durable unless `nosync`).
use std::time::Instant;

use pypoints_core::command::{Command, Envelope, Order};
use pypoints_core::engine::Engine;
use pypoints_core::model::*;
use pypoints_core::store::Durability;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let members: usize = args.get(1).map_or(1_000_000, |s| s.parse().unwrap());
    let batch: usize = args.get(2).map_or(50_000, |s| s.parse().unwrap());
    let rounds: usize = args.get(3).map_or(4, |s| s.parse().unwrap());
    let durability = if args.get(4).is_some_and(|s| s == "nosync") { Durability::NoSyncBulkLoad } else { Durability::Sync };
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let e = Engine::open(dir.path(), 64 << 30, durability).unwrap();
    let at = 1_790_000_000_000i64;
    let env = |id: String, cmd: Command| Envelope { id, at, cmd };
    e.submit(vec![env("p".into(), Command::DefineProgramme { programme: "p".into(), name: "".into() })]).unwrap();
    let pt = PointType {
        id: "a".into(),
        priority: 0,
        validity: Validity::Rolling { count: 1, unit: PeriodUnit::Years },
        transferable: true,
        cash: CashRate { points: 1, minor: 1, min_points: 1, step_points: 1, max_points: None },
        convert_to: vec![],
    };
    e.submit(vec![env("t".into(), Command::DefinePointType { programme: "p".into(), point_type: pt })]).unwrap();
    let t = Instant::now();
    for s in (0..members).step_by(50_000) {
        let cmds = (s..(s + 50_000).min(members))
            .map(|i| env(format!("om{i:09}"), Command::OpenMember { member: format!("m{i}"), programme: "p".into(), phone: "".into(), id_hash: None, org: vec![], tier: "o".into(), kind: "i".into() }))
            .collect();
        e.submit(cmds).unwrap();
    }
    println!("open {members} members: {:.2}s", t.elapsed().as_secs_f64());
    let mut rng = 0x9E3779B97F4A7C15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut k = 0u64;
    for round in 0..rounds {
        let cmds: Vec<Envelope> = (0..batch)
            .map(|_| {
                k += 1;
                env(format!("c{k:012}"), Command::Credit { member: format!("m{}", next() % members as u64), point_type: "a".into(), amount: 10, effective_at: None, memo: String::new() })
            })
            .collect();
        let t = Instant::now();
        let r = e.submit(cmds).unwrap();
        let dt = t.elapsed().as_secs_f64();
        assert!(r.iter().all(|r| r.is_ok()));
        println!("round {round}: credit {:>9.0}/s", batch as f64 / dt);
    }
    for round in 0..rounds {
        let cmds: Vec<Envelope> = (0..batch)
            .map(|_| {
                k += 1;
                env(format!("r{k:012}"), Command::Redeem { member: format!("m{}", next() % members as u64), point_type: None, amount: 1, order: Order::default() })
            })
            .collect();
        let t = Instant::now();
        let r = e.submit(cmds).unwrap();
        let dt = t.elapsed().as_secs_f64();
        println!("round {round}: redeem {:>9.0}/s ({} ok)", batch as f64 / dt, r.iter().filter(|r| r.is_ok()).count());
    }
}
