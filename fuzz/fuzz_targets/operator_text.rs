//! Text an operator hands in: `StoreUrl::parse` (store URLs, from flags and
//! the environment), `Key::from_base64` and `Key::from_bytes` (secrets from
//! the environment or a file), and the names of formats, frameworks and key
//! namespaces. A password in a store URL's user info, in a `password`
//! parameter or in `key=value` text never shows in the parsed URL's
//! `Display` or `Debug` nor in an error, even with `@`, `:`, `/`, `?` or
//! `#` in it, unencoded. The fuzz crate builds keepsake with the `redis`
//! and `postgres` features, whose URLs have parameters to take apart;
//! `sqlite://PATH` keeps the path as it is, and leaving that feature out
//! spares compiling SQLite.
#![no_main]

use keepsake::{
    codec::{Format, interop::Framework},
    key::{Key, Namespace},
    store::StoreUrl,
};
use libfuzzer_sys::fuzz_target;

/// The password put into every URL; input that holds it is skipped.
const PASSWORD: &str = "Pw5ecret";

/// The two halves of a second password, with characters that mean
/// something in a URL around and between them; input that holds either is
/// skipped.
const HALVES: [&str; 2] = ["Qx7", "zR4k"];

/// Characters a password may hold unencoded that mean something in a URL.
const SPECIALS: &[u8] = b"@:/?#";

/// A password made of [`HALVES`] and four of [`SPECIALS`], picked by `data`.
fn password_from(data: &[u8]) -> String {
    let special = |at: usize| {
        let byte = data.get(at).copied().unwrap_or_default();
        char::from(SPECIALS[usize::from(byte) % SPECIALS.len()])
    };
    let [head, tail] = HALVES;
    let (a, b, c, d) = (special(0), special(1), special(2), special(3));
    format!("{a}{head}{b}{c}{tail}{d}")
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let shown = |text: &str| match StoreUrl::parse(text) {
        Ok(url) => {
            let _ = url.name();
            format!("{url} {url:?}")
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
    if !HALVES.iter().any(|half| text.contains(half)) {
        let password = password_from(data);
        for scheme in ["redis", "postgres", "mongodb"] {
            for url in [
                format!("{scheme}://user:{password}@{text}"),
                format!("{scheme}://:{password}@{text}"),
                format!("{scheme}://{text}?password={password}"),
                format!("{scheme}://{text}&password={password}&x=1"),
                format!("host={text} password={password} dbname=app"),
            ] {
                let shown = shown(&url);
                for half in HALVES {
                    assert!(!shown.contains(half), "{url:?} shows as {shown:?}");
                }
            }
        }
    }
    let _ = Key::from_base64(&text);
    let _ = Key::from_bytes(data);
    let _ = text.parse::<Format>();
    let _ = text.parse::<Framework>();
    let _ = text.parse::<Namespace>();
});
