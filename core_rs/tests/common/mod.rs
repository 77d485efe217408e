//! Helpers for the ledger integration tests: a data directory with an engine, command builders,
//! a standard programme set-up, and state snapshots to prove that a refused command changed
//! nothing.
#![allow(dead_code)]

use std::cell::Cell;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use tempfile::TempDir;

use pypoints_core::audit::audit;
use pypoints_core::command::{Command, Envelope, Order, Receipt};
use pypoints_core::engine::{Engine, Outcome};
use pypoints_core::error::LedgerError;
use pypoints_core::model::*;
use pypoints_core::query::{self, BalanceView};
use pypoints_core::store::*;

pub const MAP_SIZE: usize = 1 << 30;
pub const SECOND: i64 = 1_000;
pub const MINUTE: i64 = 60 * SECOND;
pub const HOUR: i64 = 60 * MINUTE;
pub const DAY: i64 = 24 * HOUR;

/// UTC midnight of a calendar date, in milliseconds.
pub fn ms(y: i32, m: u32, d: u32) -> Ms {
    Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap().timestamp_millis()
}

/// T14's earn date: 2024-05-10.
pub fn t0() -> Ms {
    ms(2024, 5, 10)
}

// ----- model builders -----

pub fn rate(points: i64, minor: i64, min_points: i64, step_points: i64, max_points: Option<i64>) -> CashRate {
    CashRate { points, minor, min_points, step_points, max_points }
}

/// 1 point = 1.00 CNY, no order rules.
pub fn plain_rate() -> CashRate {
    rate(1, 100, 1, 1, None)
}

pub fn years(n: u32) -> Validity {
    Validity::Rolling { count: n, unit: PeriodUnit::Years }
}

pub fn pt(id: &str, priority: i32, validity: Validity, transferable: bool, cash: CashRate, convert_to: Vec<ConvertRate>) -> PointType {
    PointType { id: id.into(), priority, validity, transferable, cash, convert_to }
}

// ----- command builders -----

pub fn define_programme(p: &str) -> Command {
    Command::DefineProgramme { programme: p.into(), name: format!("programme {p}") }
}

pub fn define_type(p: &str, t: PointType) -> Command {
    Command::DefinePointType { programme: p.into(), point_type: t }
}

pub fn open_member(m: &str, p: &str) -> Command {
    Command::OpenMember {
        member: m.into(),
        programme: p.into(),
        phone: "+8613800000000".into(),
        id_hash: None,
        org: vec!["Shandong".into(), "Qingdao".into()],
        tier: "ordinary".into(),
        kind: "individual".into(),
    }
}

pub fn credit(m: &str, t: &str, n: i64) -> Command {
    Command::Credit { member: m.into(), point_type: t.into(), amount: n, effective_at: None, memo: String::new() }
}

pub fn credit_effective(m: &str, t: &str, n: i64, effective_at: Ms) -> Command {
    Command::Credit { member: m.into(), point_type: t.into(), amount: n, effective_at: Some(effective_at), memo: String::new() }
}

pub fn order() -> Order {
    Order { channel: "pos".into(), merchant: "m-001".into(), order_ref: "o-1".into(), org: "103".into() }
}

pub fn redeem(m: &str, t: Option<&str>, n: i64) -> Command {
    Command::Redeem { member: m.into(), point_type: t.map(Into::into), amount: n, order: order() }
}

pub fn hold(m: &str, t: Option<&str>, n: i64, ttl_ms: i64) -> Command {
    Command::Hold { member: m.into(), point_type: t.map(Into::into), amount: n, ttl_ms, order: order(), otp: None }
}

pub fn capture(h: &str, n: Option<i64>) -> Command {
    Command::Capture { hold: h.into(), amount: n, otp: None }
}

pub fn void(h: &str) -> Command {
    Command::Void { hold: h.into() }
}

pub fn transfer(from: &str, to: &str, t: &str, n: i64) -> Command {
    Command::Transfer { from: from.into(), to: to.into(), point_type: t.into(), amount: n }
}

pub fn convert(m: &str, from: &str, to: &str, n: i64) -> Command {
    Command::Convert { member: m.into(), from_type: from.into(), to_type: to.into(), amount: n }
}

pub fn reverse(target: &str, amount: Option<i64>, ratio: Option<(i64, i64)>) -> Command {
    Command::Reverse { target: target.into(), amount, ratio, reason: "refund".into() }
}

pub fn expire(as_of: Ms) -> Command {
    Command::Expire { as_of, after: None }
}

pub fn freeze(m: &str) -> Command {
    Command::Freeze { member: m.into(), reason: "abuse".into() }
}

pub fn bind_card(m: &str, card: &str) -> Command {
    Command::BindCard { member: m.into(), card: card.into() }
}

pub fn unbind_card(m: &str, card: &str) -> Command {
    Command::UnbindCard { member: m.into(), card: card.into(), reason: "lost".into() }
}

pub fn unfreeze(m: &str) -> Command {
    Command::Unfreeze { member: m.into(), reason: "cleared".into() }
}

pub fn envelope(id: &str, at: Ms, cmd: Command) -> Envelope {
    Envelope { id: id.into(), at, cmd }
}

// ----- the fixture -----

/// A temporary data directory with an open engine. Commands get ids `c1`, `c2`, … unless given.
pub struct Fx {
    pub dir: TempDir,
    pub engine: Arc<Engine>,
    next: Cell<u64>,
}

/// Everything in every named database, to prove that a refused command wrote nothing.
pub type Snapshot = Vec<(&'static str, Vec<(Vec<u8>, Vec<u8>)>)>;

impl Fx {
    pub fn new() -> Fx {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path(), MAP_SIZE, Durability::Sync).unwrap();
        Fx { dir, engine, next: Cell::new(0) }
    }

    /// The standard set-up (see `setup_standard`).
    pub fn standard() -> Fx {
        let fx = Fx::new();
        setup_standard(&fx);
        fx
    }

    /// An empty store whose writer uses this state log merge policy.
    pub fn new_with(policy: pypoints_core::ledger::MergePolicy) -> Fx {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open_with(dir.path(), MAP_SIZE, Durability::Sync, policy).unwrap();
        Fx { dir, engine, next: Cell::new(0) }
    }

    /// The standard set-up on a writer with this state log merge policy.
    pub fn standard_with(policy: pypoints_core::ledger::MergePolicy) -> Fx {
        let fx = Fx::new_with(policy);
        setup_standard(&fx);
        fx
    }

    /// A writer that logs every group commit in a record of its own (no folding), for tests
    /// that look at what one group logged.
    pub fn record_per_group() -> pypoints_core::ledger::MergePolicy {
        pypoints_core::ledger::MergePolicy { fold_entries_max: 0, ..Default::default() }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    pub fn store(&self) -> &Store {
        &self.engine.store
    }

    pub fn fresh_id(&self) -> String {
        self.next.set(self.next.get() + 1);
        format!("c{}", self.next.get())
    }

    /// Close the engine (dropping the last handle closes the LMDB environment) and open it again.
    pub fn reopen(self) -> Fx {
        let Fx { dir, engine, next } = self;
        assert_eq!(Arc::strong_count(&engine), 1, "someone still holds the engine");
        drop(engine);
        let engine = Engine::open(dir.path(), MAP_SIZE, Durability::Sync).unwrap();
        Fx { dir, engine, next }
    }

    /// Close the engine and hand back the directory (for opening the store directly).
    /// A writer on a directory `close` returned. Fresh ids continue far past any the closed
    /// fixture used.
    pub fn open(dir: TempDir) -> Fx {
        let engine = Engine::open(dir.path(), MAP_SIZE, Durability::Sync).unwrap();
        Fx { dir, engine, next: Cell::new(1_000_000) }
    }

    pub fn close(self) -> TempDir {
        let Fx { dir, engine, .. } = self;
        assert_eq!(Arc::strong_count(&engine), 1, "someone still holds the engine");
        drop(engine);
        dir
    }

    pub fn run_id(&self, id: &str, at: Ms, cmd: Command) -> Outcome {
        self.engine.submit_one(envelope(id, at, cmd))
    }

    pub fn run(&self, at: Ms, cmd: Command) -> (String, Outcome) {
        let id = self.fresh_id();
        let r = self.run_id(&id, at, cmd);
        (id, r)
    }

    /// Apply a command that must succeed; returns its id and receipt.
    pub fn ok(&self, at: Ms, cmd: Command) -> (String, Receipt) {
        let desc = format!("{cmd:?}");
        let (id, r) = self.run(at, cmd);
        match r {
            Ok(rc) => {
                assert!(!rc.replayed, "{desc}: fresh id was replayed");
                (id, rc)
            }
            Err(e) => panic!("{desc} was refused: {e:?}"),
        }
    }

    pub fn ok_id(&self, id: &str, at: Ms, cmd: Command) -> Receipt {
        let desc = format!("{cmd:?}");
        self.run_id(id, at, cmd).unwrap_or_else(|e| panic!("{desc} was refused: {e:?}"))
    }

    /// Apply a command that must be refused, check that it changed nothing, return the error.
    pub fn refused_id(&self, id: &str, at: Ms, cmd: Command) -> LedgerError {
        let desc = format!("{cmd:?}");
        let before = self.snapshot();
        let journal = self.journal_len();
        let err = match self.run_id(id, at, cmd) {
            Ok(rc) => panic!("{desc} should have been refused, got {rc:?}"),
            Err(e) => e,
        };
        assert_eq!(self.journal_len(), journal, "{desc}: the journal grew");
        assert!(self.snapshot() == before, "{desc}: a refused command changed the store");
        err
    }

    pub fn refused(&self, at: Ms, cmd: Command) -> LedgerError {
        let id = self.fresh_id();
        self.refused_id(&id, at, cmd)
    }

    pub fn bal(&self, m: &str, t: &str, now: Ms) -> BalanceView {
        query::balances(self.store(), m, Some(t), now).unwrap().pop().unwrap()
    }

    /// Σ lots of a member account (pending and unswept lots included).
    pub fn total(&self, m: &str, t: &str) -> i64 {
        self.bal(m, t, 0).total
    }

    pub fn lots(&self, m: &str, t: &str) -> Vec<Lot> {
        let (page, next) = query::lots(self.store(), m, Some(t), 1_000, "").unwrap();
        assert!(next.is_empty());
        page.into_iter().map(|(_, l)| l).collect()
    }

    pub fn lot(&self, m: &str, t: &str, id: u64) -> Option<Lot> {
        self.lots(m, t).into_iter().find(|l| l.i == id)
    }

    pub fn account(&self, key: &str) -> Option<Account> {
        let txn = self.store().read_txn().unwrap();
        get_account(self.store(), &txn, key.as_bytes()).unwrap()
    }

    /// Balance of a system account (0 when it was never touched).
    pub fn sys(&self, programme: &str, kind: SystemAccount, t: &str) -> i64 {
        self.account(&system_account(programme, kind, t)).map_or(0, |a| a.b)
    }

    pub fn journal_len(&self) -> u64 {
        let txn = self.store().read_txn().unwrap();
        pypoints_core::journal::len(self.store(), &txn).unwrap()
    }

    pub fn snapshot(&self) -> Snapshot {
        snapshot(self.store())
    }

    pub fn assert_audit_clean(&self) {
        let r = audit(self.store()).unwrap();
        assert!(r.problems.is_empty(), "audit problems: {:#?}", r.problems);
        assert_eq!(r.entries, self.journal_len());
    }
}

pub fn snapshot(store: &Store) -> Snapshot {
    let txn = store.read_txn().unwrap();
    let dbs = [
        ("meta", &store.meta),
        ("programmes", &store.programmes),
        ("members", &store.members),
        ("journal", &store.journal),
        ("holds", &store.holds),
        ("open_holds", &store.open_holds),
        ("reversals", &store.reversals),
        ("cards", &store.cards),
    ];
    dbs.into_iter()
        .map(|(name, db)| {
            let rows = db.iter(&txn).unwrap().map(|kv| {
                let (k, v) = kv.unwrap();
                (k.to_vec(), v.to_vec())
            });
            (name, rows.collect())
        })
        // Accounts as readers see them (checkpoint merged with the log): a checkpoint moves
        // states between the two without changing any.
        .chain(std::iter::once(("accounts", all_accounts(store, &txn).unwrap().into_iter().map(|(k, v)| (k.to_vec(), encode(&v))).collect())))
        .chain(std::iter::once(("idempotency", all_logged(store, &txn, LogTag::Idem).unwrap().into_iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect())))
        .collect()
}

/// The standard programmes (all times UTC):
/// - `tel` (a telecom points mall, scenario 6/12):
///   - `merchant`: priority 0 (RD-12 spends it first), 3 years rolling (T14), transferable,
///     converts to `internal` at 1:2 (XF-2);
///   - `internal`: priority 1, never expires;
///   - `promo`: priority 2, cleared at year end (EX-5);
///   - `employee`: priority 3, 3 years rolling, not transferable (PT-7, XF-9).
/// - `bank` (bank e-commerce, scenario 7): `bankpts`, 500 points = 1.00 CNY, at least 5,
///   multiples of 5, at most 500,000 per order (RD-20, T6-T8). It lives in its own programme
///   because redeeming without a point type checks the order rules of every type of the programme.
///
/// Members alice, bob and carol in `tel`; dave in `bank`.
pub fn setup_standard(fx: &Fx) {
    let at = ms(2024, 1, 1);
    fx.ok(at, define_programme("tel"));
    // Defined out of priority order on purpose: the programme keeps them sorted by priority.
    fx.ok(at, define_type("tel", pt("internal", 1, Validity::None, true, plain_rate(), vec![])));
    fx.ok(at, define_type("tel", pt("employee", 3, years(3), false, plain_rate(), vec![])));
    fx.ok(
        at,
        define_type(
            "tel",
            pt("merchant", 0, years(3), true, plain_rate(), vec![ConvertRate { to: "internal".into(), num: 1, den: 2 }]),
        ),
    );
    fx.ok(at, define_type("tel", pt("promo", 2, Validity::FixedDate { month: 12, day: 31 }, true, plain_rate(), vec![])));
    fx.ok(at, define_programme("bank"));
    fx.ok(at, define_type("bank", pt("bankpts", 0, Validity::None, true, rate(500, 100, 5, 5, Some(500_000)), vec![])));
    for m in ["alice", "bob", "carol"] {
        fx.ok(at, open_member(m, "tel"));
    }
    fx.ok(at, open_member("dave", "bank"));
}
