//! `Codec::decode`, signed and sealed, both namespaces, with a fallback key.
#![no_main]

use keepsake::{
    codec::{Codec, DecodeError, Format},
    key::Namespace,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (selector, value) = keepsake_fuzz::split(data);
    let format = if selector & 1 == 0 {
        Format::Signed
    } else {
        Format::Sealed
    };
    let namespace = if selector & 2 == 0 {
        Namespace::Local
    } else {
        Namespace::Shared
    };
    let name = if selector & 4 == 0 {
        "session"
    } else {
        "theme"
    };
    let codec = Codec::new(format, keepsake_fuzz::ring()).with_namespace(namespace);
    match codec.decode(name, &value, keepsake_fuzz::NOW) {
        Ok(opened) => {
            // Only a value the keys made verifies: it must encode back to a
            // value that verifies to the same payload.
            let again = codec
                .encode(name, opened.payload(), opened.claims())
                .expect("a verified payload re-encodes");
            let reopened = codec
                .decode(name, &again, keepsake_fuzz::NOW)
                .expect("re-encoded verifies");
            assert_eq!(reopened.payload(), opened.payload());
        }
        Err(DecodeError::TooLarge { size, .. }) => assert!(size > keepsake::codec::MAX_COOKIE_SIZE),
        Err(_) => {}
    }
});
