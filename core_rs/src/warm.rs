//! Prefetching for the writer (`Ledger::warm`): the loads the next commands' lookups in the
//! in-memory caches will need, started early enough to have arrived when the commands run.
//! At a million members each lookup is a chain of cache misses (a `HotMap` slot, then its
//! item, then what the item points to: a member's record and its programme id, an account's
//! lots), and each link can only start when the one before it has arrived. So the commands go
//! through in chunks of WARM_AHEAD_COMMANDS, a pipeline of WARM_STAGES: before a chunk is
//! applied, the chunk three ahead has its keys hashed and its slots loading, the one two ahead
//! its items, the next one its records and lots, and the chunk itself its members' programme
//! ids. Each link then has a chunk's apply (tens of microseconds) to arrive, where loading a
//! whole chain for a chunk just before it ran (as this did before) waited on every link.
//! Nothing here changes the ledger: a wrong guess (a hash tag shared by two keys, a point type
//! the member's programme lacks) only costs a useless load.
use super::*;

/// Stages of the pipeline: hash and slots, items, records and lots, programme ids.
const WARM_STAGES: usize = 4;
/// Accounts loaded ahead per command: a redeem or hold from any point type does not know its
/// accounts before its member's programme is read, and is given every programme's types, up to this.
const WARM_ACCOUNTS_PER_COMMAND_MAX: usize = 4;
/// Cache lines of an account's lots loaded ahead (a lot is 72 bytes; most accounts hold 2-6).
const WARM_LOT_LINES_MAX: usize = 8;

/// The hashes of the member and account keys of the chunks in the pipeline, by chunk.
#[derive(Default)]
pub(super) struct WarmRing {
    chunks: [WarmChunk; WARM_STAGES],
    /// the number of the chunk about to be applied (its place in `chunks` is this mod WARM_STAGES)
    next: usize,
}

#[derive(Default)]
struct WarmChunk {
    members: Vec<Hashed>,
    accounts: Vec<Hashed>,
}

impl Ledger {
    /// Called before each chunk of WARM_AHEAD_COMMANDS of a submission is applied, with the
    /// submission's commands not yet applied; `first` for its first chunk, which fills the
    /// pipeline (its own chunk's chain is loaded link by link, waiting on each). Changes nothing.
    pub fn warm(&mut self, rest: &[Envelope], first: bool) {
        if first {
            self.warm_ring.next = 0;
            for j in 0..WARM_STAGES - 1 {
                self.warm_slots(j, rest);
            }
            for j in 0..WARM_STAGES - 2 {
                self.warm_items(j);
            }
            self.warm_records(0);
        }
        self.warm_programmes(0);
        self.warm_records(1);
        self.warm_items(2);
        self.warm_slots(3, rest);
        self.warm_ring.next += 1;
    }

    fn warm_chunk(&self, ahead: usize) -> &WarmChunk {
        &self.warm_ring.chunks[(self.warm_ring.next + ahead) % WARM_STAGES]
    }

    /// Stage 1, for the chunk `ahead` chunks ahead: its ids' filter blocks; its keys hashed,
    /// their slots loading.
    fn warm_slots(&mut self, ahead: usize, rest: &[Envelope]) {
        let from = (ahead * WARM_AHEAD_COMMANDS).min(rest.len());
        let envs = &rest[from..(from + WARM_AHEAD_COMMANDS).min(rest.len())];
        // the point types of every programme, for the commands that name none (most stores
        // hold one programme)
        let any_type: Vec<&str> = self.programmes.values().flat_map(|p| &p.types).map(|t| t.id.as_str()).take(WARM_ACCOUNTS_PER_COMMAND_MAX).collect();
        let chunk = &mut self.warm_ring.chunks[(self.warm_ring.next + ahead) % WARM_STAGES];
        chunk.members.clear();
        chunk.accounts.clear();
        let (members, accounts) = (self.members.borrow(), self.accounts.borrow());
        for e in envs {
            self.idem.prefetch(e.id.as_bytes());
            let (member, point_type) = match &e.cmd {
                Command::Credit { member, point_type, .. } => (member, Some(point_type)),
                Command::Redeem { member, point_type, .. } | Command::Hold { member, point_type, .. } => (member, point_type.as_ref()),
                _ => continue,
            };
            chunk.members.push(members.prefetch_slot(member));
            match point_type {
                Some(t) => chunk.accounts.push(accounts.prefetch_slot(&member_account(member, t))),
                None => {
                    for t in &any_type {
                        chunk.accounts.push(accounts.prefetch_slot(&member_account(member, t)));
                    }
                }
            }
        }
    }

    /// Stage 2: the items the slots point to.
    fn warm_items(&self, ahead: usize) {
        let chunk = self.warm_chunk(ahead);
        let (members, accounts) = (self.members.borrow(), self.accounts.borrow());
        chunk.members.iter().for_each(|h| members.prefetch_item(*h));
        chunk.accounts.iter().for_each(|h| accounts.prefetch_item(*h));
    }

    /// Stage 3: what the items point to, a member's record and an account's lots.
    fn warm_records(&self, ahead: usize) {
        let chunk = self.warm_chunk(ahead);
        let (members, accounts) = (self.members.borrow(), self.accounts.borrow());
        for h in &chunk.members {
            if let Some(m) = members.peek_hashed(*h) {
                crate::prefetch(Rc::as_ptr(m));
            }
        }
        for h in &chunk.accounts {
            if let Some(a) = accounts.peek_hashed(*h) {
                crate::prefetch_slice(&a.lots, WARM_LOT_LINES_MAX);
            }
        }
    }

    /// Stage 4: the member's programme id (read by every command).
    fn warm_programmes(&self, ahead: usize) {
        let chunk = self.warm_chunk(ahead);
        let members = self.members.borrow();
        for h in &chunk.members {
            if let Some(m) = members.peek_hashed(*h) {
                crate::prefetch(m.programme.as_ptr());
            }
        }
    }
}
