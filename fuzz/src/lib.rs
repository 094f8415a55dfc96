//! What the fuzz targets share: the fixed keys the seed corpora were made
//! with (`crates/keepsake/tests/hostile_input.rs::write_fuzz_seeds`), so the
//! fuzzer starts from values that verify and explores past the MAC.

#![forbid(unsafe_code)]

use std::sync::LazyLock;

use keepsake::{
    codec::interop::{InteropCodec, PyDict},
    key::{Key, KeyRing},
};

/// The master secret of the current key (32 bytes of 7).
pub const CURRENT: [u8; 32] = [7; 32];
/// The master secret of the fallback key (32 bytes of 9).
pub const FALLBACK: [u8; 32] = [9; 32];
/// The secret the interop seeds were made with.
pub const INTEROP_SECRET: &str = "fuzz-secret-key";
/// The time the seeds were made at; targets decode at this time.
pub const NOW: u64 = 1_700_000_000;

/// The key ring of the seeds: current key 7s, fallback 9s. Made once (the
/// subkeys cost an HKDF each), cloned cheaply.
pub fn ring() -> KeyRing {
    static RING: LazyLock<KeyRing> = LazyLock::new(|| {
        let current = Key::from_bytes(&CURRENT).expect("32 bytes is a valid secret");
        let fallback = Key::from_bytes(&FALLBACK).expect("32 bytes is a valid secret");
        KeyRing::new(current).with_fallback(fallback)
    });
    RING.clone()
}

/// Splits the input: the first byte steers the target, the rest (as UTF-8,
/// lossily) is the text under test.
pub fn split(data: &[u8]) -> (u8, String) {
    match data.split_first() {
        Some((&selector, rest)) => (selector, String::from_utf8_lossy(rest).into_owned()),
        None => (0, String::new()),
    }
}

/// A session signed by `codec`, read as a record, written from that record
/// and read again gives the same record data (Flask's typed values keep
/// their marks), and the same persistence. A session a record cannot hold
/// exactly is refused, never changed.
pub fn check_record_round_trip(codec: &InteropCodec, session: &PyDict) {
    let Ok(cookie) = codec.encode(session, NOW) else {
        return;
    };
    let Ok((record, _)) = codec.decode_record(&cookie, NOW) else {
        return;
    };
    let again = codec
        .encode_record(&record, NOW)
        .expect("a record read from a cookie can be written back");
    let (read, _) = codec
        .decode_record(&again, NOW)
        .expect("a cookie written from a record reads back");
    assert_eq!(read.data, record.data);
    assert_eq!(read.persistent, record.persistent);
}
