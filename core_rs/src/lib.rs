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
pub mod store;

#[cfg(feature = "python")]
mod python;

/// The writer allocates and frees many small records per command; glibc's malloc spent ~40% of
/// the writer's time consolidating free lists. mimalloc (as pydantic-core uses) does not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
