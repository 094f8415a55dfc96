//! Text an operator hands in: `StoreUrl::parse` (store URLs, from flags and
//! the environment), `Key::from_base64` and `Key::from_bytes` (secrets from
//! the environment or a file), and the names of formats, frameworks and key
//! namespaces. A password in a store URL's user info never shows in the
//! parsed URL's `Display` nor in an error. The fuzz crate builds keepsake
//! with the `redis` and `postgres` features, whose URLs have parameters to
//! take apart; `sqlite://PATH` keeps the path as it is, and leaving that
//! feature out spares compiling SQLite.
#![no_main]

use keepsake::{
    codec::{Format, interop::Framework},
    key::{Key, Namespace},
    store::StoreUrl,
};
use libfuzzer_sys::fuzz_target;

/// The password put into every URL; input that holds it is skipped.
const PASSWORD: &str = "Pw5ecret";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let shown = |text: &str| match StoreUrl::parse(text) {
        Ok(url) => {
            let _ = url.name();
            url.to_string()
        }
        Err(err) => err.to_string(),
    };
    let _ = shown(&text);
    if !text.contains(PASSWORD) {
        for scheme in ["redis", "rediss", "postgres", "postgresql", "mongodb"] {
            let url = format!("{scheme}://user:{PASSWORD}@{text}");
            let shown = shown(&url);
            assert!(!shown.contains(PASSWORD), "{url:?} shows as {shown:?}");
        }
    }
    let _ = Key::from_base64(&text);
    let _ = Key::from_bytes(data);
    let _ = text.parse::<Format>();
    let _ = text.parse::<Framework>();
    let _ = text.parse::<Namespace>();
});
