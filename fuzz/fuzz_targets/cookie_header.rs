//! `CookieJar::parse` and `CookieJar::from_headers` on any header text.
#![no_main]

use keepsake::cookies::CookieJar;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let jar = CookieJar::parse(&text);
    for (name, value) in jar.iter() {
        assert_eq!(jar.get_all(name).count() >= 1, true);
        let _ = value.len();
    }
    let _ = jar.get("session");
    let ring = keepsake_fuzz::ring();
    let _ = jar.signed(&ring).get::<serde_json::Value>("session");
    let _ = jar.private(&ring).get::<serde_json::Value>("session");

    // Raw header bytes (not only UTF-8), as many headers as NUL splits give.
    let mut headers = http::HeaderMap::new();
    for part in data.split(|&b| b == 0) {
        if let Ok(value) = http::HeaderValue::from_bytes(part) {
            headers.append(http::header::COOKIE, value);
        }
    }
    let jar = CookieJar::from_headers(&headers);
    let _ = jar.iter().count();
});
