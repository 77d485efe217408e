//! pypoints core: a points ledger with a single writer and group commit over LMDB.
//! The pure core has no Python in it; `python` holds the pyo3 glue (feature `python`).
pub mod audit;
pub mod command;
pub mod engine;
pub mod error;
pub mod idem_filter;
pub mod ledger;
pub mod limits;
pub mod model;
pub mod query;
pub mod rules;
pub mod sealer;
pub mod store;

#[cfg(feature = "python")]
mod python;

/// The writer allocates and frees many small records per command; glibc's malloc spent ~40% of
/// the writer's time consolidating free lists. mimalloc (as pydantic-core uses) does not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (its position in mimalloc v3's `mi_option_e`; the sys
/// crate names no constant for it). `tune_allocator` checks the value took.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// A group commit allocates and frees hundreds of MiB of small records. With mimalloc's default
/// 10 ms purge delay, the freed pages went back to the OS between groups and the next group
/// faulted them in again, zeroed by the kernel: ~10% of the writer's time. Purging only memory
/// idle for `limits::ALLOCATOR_PURGE_DELAY_MS` keeps a busy writer's pages. Idempotent.
pub fn tune_allocator() {
    // SAFETY: mi_option_set/get only read and write an option value; any thread may call them.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, limits::ALLOCATOR_PURGE_DELAY_MS);
        debug_assert_eq!(
            libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY),
            limits::ALLOCATOR_PURGE_DELAY_MS
        );
    }
}

/// The allocator's purge delay now in effect (ms), for tests.
pub fn allocator_purge_delay_ms() -> std::os::raw::c_long {
    // SAFETY: reads an option value.
    unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) }
}
