//! A store `Record` and session data from JSON, as the SQLite, Redis and
//! PostgreSQL stores read them back, and a client-side session's record
//! from its cookie payload (compact layout or JSON).
#![no_main]

use keepsake::store::{Data, Record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = serde_json::from_slice::<Record>(data) {
        let _ = record.deadline();
        let _ = record.is_expired_at(keepsake_fuzz::NOW);
        let _ = record.refreshed_idle_deadline(keepsake_fuzz::NOW);
        let again: Record =
            serde_json::from_slice(&serde_json::to_vec(&record).expect("serializes"))
                .expect("round trip");
        // Exact, floats included (serde_json's `float_roundtrip`).
        assert_eq!(again, record);
    }
    let _ = serde_json::from_slice::<Data>(data);
    if let Ok(record) = Record::from_cookie_payload(data) {
        let again = Record::from_cookie_payload(&record.to_cookie_payload()).expect("round trip");
        assert_eq!(again, record);
    }
});
