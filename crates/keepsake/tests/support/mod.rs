//! Helpers for the fault tests: spare Redis and PostgreSQL servers started
//! and stopped by the test itself, a TCP proxy that makes them slow, and the
//! fault load with its checks.

// Each test binary that includes this module uses only part of it.
#[allow(dead_code)]
pub(crate) mod faults;
#[allow(dead_code)]
pub(crate) mod load;
#[allow(dead_code)]
pub(crate) mod proxy;
#[allow(dead_code)]
pub(crate) mod servers;
