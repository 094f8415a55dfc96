//! Helpers for the fault tests: spare Redis and PostgreSQL servers started
//! and stopped by the test itself.

pub(crate) mod servers;
