//! Empty library; see benches/aead.rs.
