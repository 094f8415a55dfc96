//! The in-memory store (to be written).

/// Placeholder.
#[derive(Debug, Default)]
pub struct MemoryStore;
/// Placeholder.
#[derive(Debug, Default)]
pub struct MemoryStoreBuilder;
