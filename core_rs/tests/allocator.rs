//! Opening an engine tunes the allocator: freed pages stay mapped for
//! `ALLOCATOR_PURGE_DELAY_MS`, so a busy writer does not fault them in (and the kernel zero them)
//! on every group commit.
mod common;

use common::*;
use pypoints_core::limits::ALLOCATOR_PURGE_DELAY_MS;

#[test]
fn opening_an_engine_sets_the_allocators_purge_delay() {
    let _fx = Fx::standard();
    assert_eq!(
        pypoints_core::allocator_purge_delay_ms(),
        ALLOCATOR_PURGE_DELAY_MS
    );
}
