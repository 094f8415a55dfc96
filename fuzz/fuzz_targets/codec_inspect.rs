//! `codec::inspect` and `Format::detect`: what a value shows without a key.
#![no_main]

use keepsake::codec::{self, Format};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let detected = Format::detect(&text);
    if let Ok(seen) = codec::inspect(&text) {
        assert_eq!(Some(seen.format()), detected);
        match seen.format() {
            Format::Signed => assert!(seen.claims().is_some() && seen.payload().is_some()),
            Format::Sealed => assert!(seen.sealed_len() >= 40),
        }
    }
});
