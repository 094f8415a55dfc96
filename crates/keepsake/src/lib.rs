//! keepsake: web sessions and cookies for Rust.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod codec;
pub mod cookies;
pub mod key;
