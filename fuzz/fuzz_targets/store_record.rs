//! A store `Record` and session data from JSON, as the SQLite, Redis and
//! PostgreSQL stores and client-side sessions read them back.
#![no_main]

use keepsake::store::{Data, Record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = serde_json::from_slice::<Record>(data) {
        let _ = record.deadline();
        let _ = record.is_expired_at(keepsake_fuzz::NOW);
        let _ = record.refreshed_idle_deadline(keepsake_fuzz::NOW);
        let again: Record = serde_json::from_slice(&serde_json::to_vec(&record).expect("serializes"))
            .expect("round trip");
        assert_eq!(again, record);
    }
    let _ = serde_json::from_slice::<Data>(data);
});
