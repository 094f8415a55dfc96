//! Flask, Starlette and Django cookie decoding (`codec::interop`): verify,
//! decompress, JSON and Flask tags, the mapping to a keepsake `Record`
//! (`decode_record`), plus `interop::inspect`; and for text that is a
//! session, the way through a record and back: signed, read as a record,
//! written from the record and read again, it is the same record data.
#![no_main]

use keepsake::codec::interop::{self, Framework, InteropCodec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (selector, value) = keepsake_fuzz::split(data);
    let framework = Framework::ALL[usize::from(selector) % 3];
    let codec = InteropCodec::new(framework, keepsake_fuzz::INTEROP_SECRET);
    if let Ok(decoded) = codec.decode(&value, keepsake_fuzz::NOW) {
        let _ = decoded.session().len();
    }
    let _ = codec.decode_record(&value, keepsake_fuzz::NOW);
    let _ = interop::inspect(&value);
    if let Ok(session) = codec.deserialize(&value) {
        keepsake_fuzz::check_record_round_trip(&codec, &session);
    }
});
