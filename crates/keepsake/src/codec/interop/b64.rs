//! Base64 as the Python libraries read and write it.

use base64_simd::{STANDARD, URL_SAFE_NO_PAD};

/// Which alphabet a lenient decode accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alphabet {
    /// `+/` (`base64.b64decode`).
    Standard,
    /// `-_`, and `+/` too (`base64.urlsafe_b64decode` maps one onto the
    /// other, so it reads both).
    UrlSafe,
}

/// URL-safe base64 without padding (itsdangerous' and Django's
/// `base64_encode`).
pub(crate) fn encode_url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode_to_string(bytes)
}

/// Standard padded base64 (`base64.b64encode`).
pub(crate) fn encode_standard(bytes: &[u8]) -> String {
    STANDARD.encode_to_string(bytes)
}

/// Decodes as Python does after adding the missing padding: trailing `=` are
/// optional, bits left over in the last character are ignored. Characters
/// outside the alphabet are refused (Python skips some of them; no
/// framework writes them).
pub(crate) fn decode_lenient(text: &str, alphabet: Alphabet) -> Option<Vec<u8>> {
    let body = text.trim_end_matches('=');
    if text.len() - body.len() > 2 || body.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0u32;
    for c in body.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'-' if alphabet == Alphabet::UrlSafe => 62,
            b'_' if alphabet == Alphabet::UrlSafe => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Decodes standard base64 that must be padded correctly, as
/// `base64.b64decode` insists (Starlette's payload).
pub(crate) fn decode_standard_padded(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(4) {
        return None;
    }
    decode_lenient(text, Alphabet::Standard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient() {
        assert_eq!(
            decode_lenient("eyJhIjoxfQ", Alphabet::UrlSafe).unwrap(),
            br#"{"a":1}"#
        );
        assert_eq!(
            decode_lenient("eyJhIjoxfQ==", Alphabet::UrlSafe).unwrap(),
            br#"{"a":1}"#
        );
        assert_eq!(
            decode_lenient("_-8", Alphabet::UrlSafe).unwrap(),
            [0xff, 0xef]
        );
        assert_eq!(
            decode_lenient("/+8", Alphabet::UrlSafe).unwrap(),
            [0xff, 0xef]
        );
        assert!(decode_lenient("_-8", Alphabet::Standard).is_none());
        assert!(decode_lenient("a", Alphabet::UrlSafe).is_none());
        assert!(decode_lenient("ab===", Alphabet::UrlSafe).is_none());
        assert!(decode_lenient("a.b", Alphabet::UrlSafe).is_none());
        assert_eq!(decode_lenient("", Alphabet::UrlSafe).unwrap(), b"");
        assert!(decode_standard_padded("eyJhIjoxfQ").is_none());
        assert_eq!(
            decode_standard_padded("eyJhIjoxfQ==").unwrap(),
            br#"{"a":1}"#
        );
        assert_eq!(encode_standard(b"v"), "dg==");
        assert_eq!(encode_url(&[0xff, 0xef]), "_-8");
    }
}
