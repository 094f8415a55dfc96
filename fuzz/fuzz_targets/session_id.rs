//! `Id::from_str` (and `Id` through serde): a parsed id prints back as the
//! same text.
#![no_main]

use keepsake::store::Id;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(id) = text.parse::<Id>() {
        assert_eq!(id.to_string(), text);
    }
    let _ = serde_json::from_slice::<Id>(data);
});
