//! pypoints core: a points ledger with a single writer and group commit over LMDB.
//! The pure core has no Python in it; `python` holds the pyo3 glue (feature `python`).
pub mod audit;
pub mod command;
pub mod engine;
pub mod error;
pub mod hot_map;
pub mod idem_filter;
pub mod journal;
pub mod ledger;
pub mod limits;
pub mod model;
pub mod msgpack;
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
    keep_lmdb_buffers();
}

/// LMDB (C) allocates its dirty pages with the C library's malloc, not ours: a group's state
/// log record alone is ~16 MiB of overflow pages. glibc served such blocks with fresh `mmap`s, or
/// trimmed its heap after the commit freed them, so every group faulted them in again, zeroed
/// (`sysmalloc` → `clear_page_erms`, ~3% of the writer at 1M members). Keep them in the heap.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_lmdb_buffers() {
    use std::os::raw::c_int;
    extern "C" {
        fn mallopt(param: c_int, value: c_int) -> c_int;
    }
    const M_TRIM_THRESHOLD: c_int = -1;
    const M_MMAP_THRESHOLD: c_int = -3;
    // SAFETY: mallopt only sets allocator parameters; glibc takes its own lock.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, limits::C_MALLOC_MMAP_THRESHOLD_BYTES);
        mallopt(M_TRIM_THRESHOLD, limits::C_MALLOC_TRIM_THRESHOLD_BYTES);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_lmdb_buffers() {}

/// The allocator's purge delay now in effect (ms), for tests.
pub fn allocator_purge_delay_ms() -> std::os::raw::c_long {
    // SAFETY: reads an option value.
    unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) }
}

/// Start loading the cache line at `p` (a hint: it never waits, and does nothing off x86-64).
#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch does not access memory architecturally; any address is allowed.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Start loading the cache lines of `items`, at most `lines_max` of them.
#[inline(always)]
pub(crate) fn prefetch_slice<T>(items: &[T], lines_max: usize) {
    let bytes = std::mem::size_of_val(items).min(lines_max * 64);
    let start = items.as_ptr() as *const u8;
    for offset in (0..bytes).step_by(64) {
        prefetch(start.wrapping_add(offset));
    }
}
