//! Writer throughput without Python: `cargo run --release --example writer_bench -- MEMBERS BATCH ROUNDS [nosync]`.
//! Loads MEMBERS members with 3-5 lots each (as bench/workloads.py), then times ROUNDS batches of BATCH credits and
//! redeems to uniformly random members (each durable unless `nosync`). Command ids count up
//! ("c000000000001", …, as upstream files number them), or with WRITER_BENCH_RANDOM_IDS=1 are
//! random (as UUIDs are), which scatters the idempotency records over their B-tree.
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
    // WRITER_BENCH_MAP_GIB: a smaller map for valgrind, which cannot reserve 64 GiB.
    let map_gib: usize = std::env::var("WRITER_BENCH_MAP_GIB").ok().and_then(|s| s.parse().ok()).unwrap_or(64);
    let e = Engine::open(dir.path(), map_gib << 30, durability).unwrap();
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
    // Like bench/workloads.py: a big recent lot and 2-4 small older ones per member, so a
    // redeem of 150-250 draws FEFO across 2-3 lots.
    let day = 86_400_000i64;
    let t = Instant::now();
    let mut lot_cmds = vec![];
    for i in 0..members {
        let mut add = |id: String, at: i64, amount: i64| lot_cmds.push(Envelope { id, at, cmd: Command::Credit { member: format!("m{i}"), point_type: "a".into(), amount, effective_at: None, memo: String::new() } });
        add(format!("l{i:09}"), at - 10 * day, 100_000);
        for (k, age) in [150, 120, 90, 60].iter().take(2 + i % 3).enumerate() {
            add(format!("s{k}{i:09}"), at - age * day, 100);
        }
        if lot_cmds.len() >= 50_000 || i + 1 == members {
            lot_cmds.sort_by_key(|e| e.at);
            e.submit(std::mem::take(&mut lot_cmds)).unwrap();
        }
    }
    println!("lots for {members} members: {:.2}s", t.elapsed().as_secs_f64());
    // A bulk load ends with a checkpoint (as bench/harness.py's): the rounds below then pay
    // for their own merges only.
    let t = Instant::now();
    e.checkpoint().unwrap();
    println!("checkpoint after the load: {:.2}s", t.elapsed().as_secs_f64());
    // WRITER_BENCH_ROOM_GIB: zeros appended past the data file's end now, so the rounds below
    // never grow the file (back to back, the writer is never idle long enough to keep room
    // ahead itself): isolates the writer's own work from the cost of new file pages.
    if let Some(gib) = std::env::var("WRITER_BENCH_ROOM_GIB").ok().and_then(|s| s.parse::<u64>().ok()) {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(dir.path().join("data.mdb")).unwrap();
        let len = f.metadata().unwrap().len();
        let zeros = vec![0u8; 4 << 20];
        for i in 0..(gib << 8) {
            f.write_all_at(&zeros, len + i * (4 << 20)).unwrap();
        }
        f.sync_all().unwrap();
        println!("room {gib} GiB past {len}");
    }
    let mut rng = 0x9E3779B97F4A7C15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let random_ids = std::env::var("WRITER_BENCH_RANDOM_IDS").is_ok_and(|v| v == "1");
    // splitmix64: a bijection, so random-looking ids stay unique
    let id = |prefix: char, k: u64| {
        if !random_ids {
            return format!("{prefix}{k:012}");
        }
        let mut z = k.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        format!("{prefix}{:016x}", z ^ (z >> 31))
    };
    let mut k = 0u64;
    let mut last = e.stats.snapshot();
    let mut wrote = written_bytes();
    let mut faulted = minor_faults();
    let (mut total_s, ckpt0) = (0.0, checkpoints(&e));
    for round in 0..rounds {
        let cmds: Vec<Envelope> = (0..batch)
            .map(|_| {
                k += 1;
                env(id('c', k), Command::Credit { member: format!("m{}", next() % members as u64), point_type: "a".into(), amount: 10 + (k as i64 % 491), effective_at: None, memo: String::new() })
            })
            .collect();
        let t = Instant::now();
        let r = e.submit(cmds).unwrap();
        let dt = t.elapsed().as_secs_f64();
        total_s += dt;
        assert!(r.iter().all(|r| r.is_ok()));
        println!("round {round}: credit {:>9.0}/s {:?} {} B written/cmd {:.2} page faults/cmd", batch as f64 / dt, stats_delta(&e, &mut last), written_delta(&mut wrote) / batch as u64, faults_delta(&mut faulted) as f64 / batch as f64);
    }
    // Sustained: every round's time, checkpoints included (a median would hide them).
    println!("credit sustained {:.0}/s over {rounds} rounds ({} checkpoints)", (rounds * batch) as f64 / total_s, checkpoints(&e) - ckpt0);
    let (mut total_s, ckpt0) = (0.0, checkpoints(&e));
    for round in 0..rounds {
        let cmds: Vec<Envelope> = (0..batch)
            .map(|_| {
                k += 1;
                env(id('r', k), Command::Redeem { member: format!("m{}", next() % members as u64), point_type: None, amount: 150 + (k as i64 % 101), order: Order::default() })
            })
            .collect();
        let t = Instant::now();
        let r = e.submit(cmds).unwrap();
        let dt = t.elapsed().as_secs_f64();
        total_s += dt;
        println!("round {round}: redeem {:>9.0}/s ({} ok) {:?} {} B written/cmd {:.2} page faults/cmd", batch as f64 / dt, r.iter().filter(|r| r.is_ok()).count(), stats_delta(&e, &mut last), written_delta(&mut wrote) / batch as u64, faults_delta(&mut faulted) as f64 / batch as f64);
    }
    println!("redeem sustained {:.0}/s over {rounds} rounds ({} checkpoints)", (rounds * batch) as f64 / total_s, checkpoints(&e) - ckpt0);
}

fn checkpoints(e: &Engine) -> u64 {
    e.stats.snapshot().iter().find(|(k, _)| *k == "checkpoints").map_or(0, |(_, v)| *v)
}

/// Writer time per phase (ms), keys merged since the last call, and the state log's records.
fn stats_delta(e: &Engine, last: &mut [(&'static str, u64); 11]) -> Vec<(&'static str, u64)> {
    let now = e.stats.snapshot();
    // phase times in ms, keys the round's merge steps wrote back, and the log's records after it
    let d = now
        .iter()
        .zip(last.iter())
        .filter_map(|((k, a), (_, b))| match *k {
            k if k.ends_with("_ns") => Some((k, (a - b) / 1_000_000)),
            "merged_keys" => Some((*k, a - b)),
            "log_records" => Some((*k, *a)),
            _ => None,
        })
        .collect();
    *last = now;
    d
}

/// Bytes this process has passed to write(2) so far (`wchar` in /proc/self/io): what the
/// commits copied into the page cache.
fn written_bytes() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    io.lines().find_map(|l| l.strip_prefix("wchar: ")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

fn written_delta(last: &mut u64) -> u64 {
    let now = written_bytes();
    let d = now - *last;
    *last = now;
    d
}

/// Minor page faults of this process so far (field 10 of /proc/self/stat): each is a page of
/// memory touched for the first time since it was mapped, which this VM makes expensive.
fn minor_faults() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // fields after the command name, which is in parentheses and may hold spaces
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    rest.split_whitespace().nth(7).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn faults_delta(last: &mut u64) -> u64 {
    let now = minor_faults();
    let d = now - *last;
    *last = now;
    d
}
