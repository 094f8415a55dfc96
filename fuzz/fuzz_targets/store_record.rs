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
        // Everything but the data is exact. (Floats in the data may move by
        // one ULP: serde_json parses without `float_roundtrip`; see
        // SECURITY.md, fuzzing findings.)
        assert_eq!(
            (
                again.id,
                again.created_at,
                again.idle_timeout,
                again.idle_deadline
            ),
            (
                record.id,
                record.created_at,
                record.idle_timeout,
                record.idle_deadline
            )
        );
        assert_eq!(
            (
                again.absolute_deadline,
                again.persistent,
                again.version,
                &again.user
            ),
            (
                record.absolute_deadline,
                record.persistent,
                record.version,
                &record.user
            )
        );
        assert_eq!(
            again.data.keys().collect::<Vec<_>>(),
            record.data.keys().collect::<Vec<_>>()
        );
    }
    let _ = serde_json::from_slice::<Data>(data);
    if let Ok(record) = Record::from_cookie_payload(data) {
        let again = Record::from_cookie_payload(&record.to_cookie_payload()).expect("round trip");
        assert_eq!(
            (again.id, again.version, &again.user),
            (record.id, record.version, &record.user)
        );
        assert_eq!(
            again.data.keys().collect::<Vec<_>>(),
            record.data.keys().collect::<Vec<_>>()
        );
    }
});
