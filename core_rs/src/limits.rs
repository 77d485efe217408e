//! Every limit of the engine in one place (TigerBeetle style): checked at the boundary with a
//! clear `LimitExceeded`/`InvalidArgument` error, never discovered as an out-of-memory later.

/// Client-chosen command ids (idempotency keys), member ids, programme and type ids: bytes.
pub const ID_LENGTH_MAX: usize = 64;
/// Card numbers (MA-2, MA-10): digits only, ISO/IEC 7812 lengths up to 19 (bank cards), from 8
/// (store and IC cards); and the cards one member may hold (MA-14: several cards, one identity).
pub const CARD_NUMBER_LENGTH_MIN: usize = 8;
pub const CARD_NUMBER_LENGTH_MAX: usize = 19;
pub const CARDS_PER_MEMBER_MAX: usize = 8;
/// Free-text fields: channel, merchant, order reference, organisation parts, memo, reason.
pub const TEXT_LENGTH_MAX: usize = 128;
/// Commands in one call of the batch API.
pub const BATCH_SIZE_MAX: usize = 100_000;
/// A batch goes to the writer in chunks of this many commands, so preparing the next chunk
/// (parsing, fingerprints) overlaps applying this one (engine.rs `submit_async`).
pub const SUBMIT_CHUNK_COMMANDS: usize = 2_048;
/// The Python binding's first chunk of a batch: the writer waits for it, idle, while it is
/// parsed (~0.3 µs a command), so it is small.
pub const SUBMIT_FIRST_CHUNK_COMMANDS: usize = 256;
/// How long the writer holds a group open for the next chunk of a batch whose submitter said
/// one follows (`Engine::submit_async_part`): a chunk takes its submitter ~1 ms to prepare,
/// more when other Python threads hold the GIL; the full wait is only for a submitter that
/// failed between chunks.
pub const SUBMIT_FOLLOW_WAIT_MS: u64 = 50;
/// Commands the writer applies in one LMDB write transaction (one commit, one fsync).
/// Submissions (chunks) are never split, so one commit can hold up to this plus one chunk.
pub const GROUP_COMMIT_COMMANDS_MAX: usize = 100_000;
/// Submissions waiting for the writer; callers block (GIL released) when it is full.
pub const QUEUE_DEPTH_MAX: usize = 1_024;
/// Commands whose cached state the writer starts loading together, a step of each lookup per
/// chunk applied (`Ledger::warm`): enough to overlap their cache misses, few enough that what
/// they load (~10 lines each, three chunks ahead) stays in the second-level cache until they
/// are applied.
pub const WARM_AHEAD_COMMANDS: usize = 16;
/// How many accounts ahead `Ledger::log_dirty` and a merge step start loading an account's
/// item in the state log's key map and the account cache (and twice as far ahead, its slot).
pub const LOG_DIRTY_PREFETCH_AHEAD: usize = 8;
/// Cache lines of an account's lots a merge step loads ahead of encoding it (a lot is one line).
pub const MERGE_PREFETCH_LOT_LINES_MAX: usize = 8;
/// Emptied entry lists of each kind the writer keeps for its next entries (`model::ListPool`):
/// sixteen seal chunks' worth (`SEAL_CHUNK_ENTRIES`), where one command takes one or two.
pub const LIST_POOL_LISTS_MAX: usize = 4_096;
/// Longer lists are freed, not kept (an `expire` entry can hold thousands of postings).
pub const LIST_POOL_CAPACITY_MAX: usize = 16;
/// A command's copy of an account has room for at least this many lots (`Account::clone_with_room`).
pub const ACCOUNT_LOTS_CAPACITY_MIN: usize = 8;
/// Point types in one programme.
pub const POINT_TYPES_PER_PROGRAMME_MAX: usize = 16;
/// Live lots kept on one account; a credit past this is refused (merge or expire first).
pub const LOTS_PER_ACCOUNT_MAX: usize = 4_096;
/// Largest amount in a single command (points). Sums are checked with i64 overflow checks too.
pub const AMOUNT_MAX: i64 = 1_000_000_000_000;
/// Page size of list queries (lots, history).
pub const PAGE_SIZE_MAX: usize = 1_000;
pub const PAGE_SIZE_DEFAULT: usize = 100;
/// Accounts one `expire` command touches; the sweep repeats with a cursor past this.
pub const EXPIRE_ACCOUNTS_PER_COMMAND_MAX: usize = 10_000;
/// Times (UTC ms) the engine accepts: the Unix epoch to the end of year 9999, so every expiry
/// date is computable and no `at + ttl` can overflow.
pub const TIME_MS_MIN: i64 = 0;
pub const TIME_MS_MAX: i64 = 253_402_300_799_999;
/// One-time codes of holds (RK-5): wrong attempts allowed at most, sealed code size.
pub const OTP_ATTEMPTS_MAX: u32 = 10;
pub const OTP_SEALED_BYTES_MAX: usize = 64;
/// Hold time-to-live bounds.
pub const HOLD_TTL_MS_MIN: i64 = 1_000;
pub const HOLD_TTL_MS_MAX: i64 = 30 * 24 * 3_600_000;
/// Rolling validity bound (in its unit) and convert rate bound.
pub const VALIDITY_PERIODS_MAX: u32 = 1_200;
pub const RATE_TERM_MAX: i64 = 1_000_000;
/// Freed memory idle this long goes back to the OS (lib.rs `tune_allocator`); a busy writer
/// reuses it well before.
pub const ALLOCATOR_PURGE_DELAY_MS: std::os::raw::c_long = 10_000;
/// C malloc (LMDB's dirty pages, lib.rs `keep_lmdb_buffers`): blocks below this come from the
/// heap, not a fresh mmap (glibc's largest allowed value), and up to this much free heap is kept
/// rather than returned to the OS.
pub const C_MALLOC_MMAP_THRESHOLD_BYTES: std::os::raw::c_int = 32 << 20;
pub const C_MALLOC_TRIM_THRESHOLD_BYTES: std::os::raw::c_int = 512 << 20;
/// Accounts the writer keeps decoded between group commits before it starts over.
pub const ACCOUNT_CACHE_ENTRIES_MAX: usize = 2_000_000;
/// Group commits logged (`state_log`) before the writer checkpoints accounts into their
/// B-tree all at once; a reader looks an account up in at most this many log records (each
/// record's filter rules out most of them with one cache line: `store::StateLogBlob`). The
/// rolling merge paces itself to finish before this: with 128, a cycle starting at ~75
/// records (6M states, 1M members) had to load ~75k keys onto every group of 10k commands.
pub const STATE_LOG_GROUPS_MAX: usize = 256;
/// A member account is logged as its history head, and a reader rebuilds it by folding its
/// entries since its checkpoint. Once that chain passes this many entries, the account is
/// logged in full (head and state) until the next merge writes it back: a reader of a hot
/// account then decodes one state instead of walking thousands of entries.
pub const READ_CHAIN_ENTRIES_MAX: u32 = 32;
/// States in the log before a full checkpoint (bounds the log and the checkpoint's memory).
/// The rolling merge below normally keeps the log well under both bounds.
pub const STATE_LOG_ENTRIES_MAX: usize = 12_000_000;
/// A rolling merge starts when the log holds this many states (or group records): the states
/// logged so far are merged into their B-trees in key order, a slice at a time, then the merged
/// records are dropped. Large so that a B-tree page absorbs many updates per rewrite: at 1M
/// random members a cycle rewrites nearly every page of `accounts` whatever its size, so its
/// cost per command falls as cycles move apart (session 15, `writer_bench 1000000 50000 N`:
/// 1M states / 32 records → 3M / 40 cut flush and commit time 17%; → 6M / 96, with the
/// records' filters keeping reads cheap, another 11%).
pub const STATE_LOG_MERGE_AT_ENTRIES: usize = 6_000_000;
pub const STATE_LOG_MERGE_AT_GROUPS: usize = 96;
/// A slice: states merged with a group commit — STATE_LOG_MERGE_SLICE_PER_STATE per state the
/// group logged, or more when the log's bounds near (the pace, `Ledger::flush_group`) — so a
/// commit's share of the merge is in proportion to its own size: a one-command commit of a
/// unary server is not charged thousands of page writes (it was charged a whole
/// STATE_LOG_MERGE_SLICE_MIN slice until session 19: 4 threads of one-command batches ran
/// at 850/s instead of 5,700/s while a cycle was under way). A step has a fixed cost (a cursor
/// into every record), so small groups' shares are gathered until they make a step of
/// STATE_LOG_MERGE_SLICE_MIN keys. When no command waits, the writer merges a
/// STATE_LOG_MERGE_SLICE_MIN slice in a commit of its own, once nothing has come for
/// STATE_LOG_MERGE_IDLE_MS after a group: clients that send one command after another leave
/// the queue empty for a few µs between groups, and a command arriving in such a gap waited for
/// a whole idle step and its fsync (session 20: 4 threads of one-command batches ran at 558/s,
/// the merge ~650 keys a command).
pub const STATE_LOG_MERGE_SLICE_PER_STATE: usize = 2;
pub const STATE_LOG_MERGE_SLICE_MIN: usize = 4_096;
pub const STATE_LOG_MERGE_IDLE_MS: u64 = 1;
/// The writer keeps its buffer of a merge step's rows for the next step up to this size (a
/// slice at 1M members fills tens of MiB; a full checkpoint's, which can be far larger, is freed).
pub const MERGE_ROWS_BYTES_MAX: usize = 128 << 20;
/// A group that changed at most this many states folds them into the newest state log record
/// (while it holds at most this many) instead of appending a record of its own: a busy unary
/// server's small commits then share records, and leave the merge's slices small.
pub const STATE_LOG_FOLD_ENTRIES_MAX: usize = 256;
/// How many records ahead a reader looking for a key in the state log starts loading a
/// record's filter block (and twice as far ahead, its header): `store::in_log`.
pub const STATE_LOG_READ_PREFETCH_AHEAD: usize = 4;
/// Bits per key of a state log record's filter (`store::StateLogBlob`): ~1-2% of the records
/// that lack a key still get a binary search for it.
pub const STATE_LOG_FILTER_BITS_PER_KEY: usize = 12;
/// Bytes a logged account typically takes (its tagged key and a member account's 8-byte history
/// head): sizes a group's state log record up front, so it rarely reallocates.
pub const STATE_LOG_ACCOUNT_BYTES_TYPICAL: usize = 24;
/// Bytes an encoded idempotency record typically takes in a state log record (sizes it too).
pub const STATE_LOG_IDEM_RECORD_BYTES_TYPICAL: usize = 48;
/// Journal entries the writer hands the sealer thread at a time, and the chunks it may have
/// handed over and not received back (then it waits: backpressure, bounded memory).
pub const SEAL_CHUNK_ENTRIES: usize = 256;
pub const SEAL_CHUNKS_IN_FLIGHT_MAX: usize = 64;
/// Journal entries stored in one LMDB value (`journal.rs`): one B-tree put per chunk instead of
/// one per entry. A point read skips at most this many entry headers.
pub const JOURNAL_CHUNK_ENTRIES_MAX: usize = 64;
/// The writer's in-memory filter of recorded command ids (`idem_filter.rs`): bits per id
/// (~0.2% false positives, each of which costs a search of the state log) and the smallest
/// filter (2 MiB). It is sized for twice the ids in the store at open (10 M ids: 40 MiB) and
/// grows by a layer of twice the size when full.
pub const IDEM_FILTER_BITS_PER_ID: u64 = 16;
pub const IDEM_FILTER_BITS_MIN: u64 = 1 << 24;
/// Room kept zeroed past LMDB's last page in the data file (`store::FileRoom`): a commit that
/// grows the file pays for new blocks in its fsync. Written after a group that grew LMDB's
/// used part by FILE_ROOM_TRIGGER_BYTES or more (twice its growth), once the writer has been
/// idle FILE_ROOM_IDLE_MS, in steps of FILE_ROOM_STEP_BYTES written FILE_ROOM_PIECE_BYTES at a
/// time: a command that arrives meanwhile waits for one piece (~0.5 ms here; a whole step and
/// its fsync took ~10 ms), and commits of a few pages (a unary server's) earn no steps. Only files past
/// FILE_ROOM_FROM_BYTES get it (tests and demos stay small), and at most an eighth of the
/// used size, at most FILE_ROOM_MAX_BYTES, is kept.
pub const FILE_ROOM_FROM_BYTES: u64 = 256 << 20;
pub const FILE_ROOM_DIVISOR: u64 = 8;
pub const FILE_ROOM_MAX_BYTES: u64 = 1 << 30;
pub const FILE_ROOM_STEP_BYTES: usize = 4 << 20;
pub const FILE_ROOM_PIECE_BYTES: usize = 256 << 10;
pub const FILE_ROOM_IDLE_MS: u64 = 5;
pub const FILE_ROOM_TRIGGER_BYTES: u64 = 1 << 20;
/// `Store::preallocate` writes its zeros this much at a time, each chunk under the write lock.
pub const PREALLOCATE_CHUNK_BYTES: u64 = 64 << 20;
/// LMDB environment sizing.
pub const MAP_SIZE_BYTES_DEFAULT: usize = 64 << 30;
pub const MAX_DBS: u32 = 16;
pub const MAX_READERS: u32 = 512;

// ----- the rules engine (issue #3) -----
/// Rules (latest versions, disabled included) in one programme.
pub const RULES_PER_PROGRAMME_MAX: usize = 4_096;
/// Condition nodes in one rule's tree, and how deep it may nest.
pub const CONDITIONS_PER_RULE_MAX: usize = 64;
pub const CONDITION_DEPTH_MAX: usize = 8;
/// Values in one condition's list (channels, merchants, tiers, …) and event kinds per rule.
pub const RULE_LIST_VALUES_MAX: usize = 256;
/// Caps on one rule or on a programme (one per window).
pub const CAPS_PER_RULE_MAX: usize = 4;
/// Campaigns in one programme.
pub const CAMPAIGNS_PER_PROGRAMME_MAX: usize = 1_024;
/// Free attributes on one event.
pub const EVENT_ATTRS_MAX: usize = 16;
/// Largest event amount (minor units: 10 trillion CNY) and term (days: 100 years).
pub const EVENT_AMOUNT_MINOR_MAX: i64 = 1_000_000_000_000_000;
pub const EVENT_TERM_DAYS_MAX: u32 = 36_600;
/// Tier levels and the longest qualification window (months).
pub const TIER_LEVELS_MAX: usize = 16;
pub const TIER_WINDOW_MONTHS_MAX: u32 = 120;
/// Members one `evaluate_tiers` command looks at; the sweep continues with a cursor.
pub const TIER_EVALUATIONS_PER_COMMAND_MAX: usize = 10_000;
/// Groups one member belongs to (MA-8).
pub const MEMBER_GROUPS_MAX: usize = 16;
/// Member rule states the writer keeps decoded between group commits before it starts over.
pub const RULE_STATE_CACHE_ENTRIES_MAX: usize = 2_000_000;
/// Default programme time zone for calendar days, weekdays and cap windows: UTC+8 (minutes).
pub const TZ_OFFSET_MIN_DEFAULT: i32 = 480;
