//! The two signers: itsdangerous' `TimestampSigner` (Flask, Starlette) and
//! `django.core.signing.TimestampSigner` (Django).

use hmac::{Hmac, KeyInit, Mac as _};
use sha1::{Digest as _, Sha1};
use sha2::Sha256;

use super::{InteropDecodeError, b64};

/// How the signing key is derived from the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Derivation {
    /// itsdangerous `key_derivation="hmac"`: HMAC-SHA1(secret, salt) (Flask).
    Hmac,
    /// itsdangerous `key_derivation="django-concat"`:
    /// SHA1(salt + "signer" + secret) (Starlette).
    DjangoConcatSha1,
    /// Django's `salted_hmac` key: SHA256(salt + "signer" + secret).
    DjangoSha256,
}

/// The key the signature is made with.
pub(crate) fn derive(derivation: Derivation, salt: &str, secret: &[u8]) -> Vec<u8> {
    match derivation {
        Derivation::Hmac => {
            let mut mac = hmac_sha1(secret);
            mac.update(salt.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        Derivation::DjangoConcatSha1 => {
            let mut hash = Sha1::new();
            hash.update(salt.as_bytes());
            hash.update(b"signer");
            hash.update(secret);
            hash.finalize().to_vec()
        }
        Derivation::DjangoSha256 => {
            let mut hash = Sha256::new();
            hash.update(salt.as_bytes());
            hash.update(b"signer");
            hash.update(secret);
            hash.finalize().to_vec()
        }
    }
}

// HMAC takes keys of any length, so `new_from_slice` cannot fail; the
// fallback only avoids a panic path.
fn hmac_sha1(key: &[u8]) -> Hmac<Sha1> {
    Hmac::new_from_slice(key).unwrap_or_else(|_| Hmac::new(&Default::default()))
}

fn hmac_sha256(key: &[u8]) -> Hmac<Sha256> {
    Hmac::new_from_slice(key).unwrap_or_else(|_| Hmac::new(&Default::default()))
}

// ----- itsdangerous -----------------------------------------------------------

/// `payload.timestamp.signature`, signed with HMAC-SHA1 under `key`.
pub(crate) fn its_sign(key: &[u8], payload: &str, now: u64) -> String {
    let bytes = now.to_be_bytes();
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    let mut value = format!("{payload}.{}", b64::encode_url(&bytes[start..]));
    let mut mac = hmac_sha1(key);
    mac.update(value.as_bytes());
    let signature = b64::encode_url(&mac.finalize().into_bytes());
    value.push('.');
    value.push_str(&signature);
    value
}

/// Verifies like `TimestampSigner.unsign`: the signature over everything
/// before the last `.` under each key in turn, then the timestamp. Returns
/// the position of the key that verified, the payload and the timestamp
/// (saturated at `u64::MAX`).
pub(crate) fn its_verify<'a>(
    keys: &[&[u8]],
    value: &'a str,
) -> Result<(usize, &'a str, u64), InteropDecodeError> {
    let (signed, signature) = value
        .rsplit_once('.')
        .ok_or(InteropDecodeError::Malformed)?;
    let signature = b64::decode_lenient(signature, b64::Alphabet::UrlSafe);
    let position = signature
        .and_then(|sig| {
            keys.iter().position(|key| {
                let mut mac = hmac_sha1(key);
                mac.update(signed.as_bytes());
                mac.verify_slice(&sig).is_ok()
            })
        })
        .ok_or(InteropDecodeError::BadSignature)?;
    let (payload, timestamp) = signed
        .rsplit_once('.')
        .ok_or(InteropDecodeError::Malformed)?;
    let bytes = b64::decode_lenient(timestamp, b64::Alphabet::UrlSafe)
        .ok_or(InteropDecodeError::Malformed)?;
    let significant = &bytes[bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len())..];
    let issued_at = if significant.len() > 8 {
        u64::MAX
    } else {
        significant
            .iter()
            .fold(0u64, |n, &b| (n << 8) | u64::from(b))
    };
    Ok((position, payload, issued_at))
}

// ----- Django -----------------------------------------------------------------

const B62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `django.core.signing.b62_encode`.
pub(crate) fn b62_encode(mut n: u64) -> String {
    if n == 0 {
        return "0".to_owned();
    }
    let mut out = Vec::new();
    while n > 0 {
        out.push(B62[(n % 62) as usize]);
        n /= 62;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// `django.core.signing.b62_decode` (a leading `-` is allowed), saturating.
pub(crate) fn b62_decode(text: &str) -> Option<i128> {
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None if text.is_empty() => return None,
        None => (1, text),
    };
    let mut n: i128 = 0;
    for c in digits.bytes() {
        let digit = B62.iter().position(|&d| d == c)?;
        n = n.saturating_mul(62).saturating_add(digit as i128);
    }
    Some(sign * n)
}

fn django_signature(key: &[u8], value: &str) -> String {
    let mut mac = hmac_sha256(key);
    mac.update(value.as_bytes());
    b64::encode_url(&mac.finalize().into_bytes())
}

/// `payload:timestamp:signature`, signed with HMAC-SHA256 under `key`.
pub(crate) fn django_sign(key: &[u8], payload: &str, now: u64) -> String {
    let value = format!("{payload}:{}", b62_encode(now));
    let signature = django_signature(key, &value);
    format!("{value}:{signature}")
}

/// Verifies like Django's `TimestampSigner.unsign`: the signature text is
/// compared exactly (in constant time) with each key's. Returns the key's
/// position, the payload and the timestamp.
pub(crate) fn django_verify<'a>(
    keys: &[&[u8]],
    value: &'a str,
) -> Result<(usize, &'a str, i128), InteropDecodeError> {
    let (signed, signature) = value
        .rsplit_once(':')
        .ok_or(InteropDecodeError::Malformed)?;
    let position = keys
        .iter()
        .position(|key| {
            let expected = django_signature(key, signed);
            subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), signature.as_bytes()).into()
        })
        .ok_or(InteropDecodeError::BadSignature)?;
    let (payload, timestamp) = signed
        .rsplit_once(':')
        .ok_or(InteropDecodeError::Malformed)?;
    let issued_at = b62_decode(timestamp).ok_or(InteropDecodeError::Malformed)?;
    Ok((position, payload, issued_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base62() {
        assert_eq!(b62_encode(1_700_000_000), "1r31eq");
        assert_eq!(b62_decode("1r31eq"), Some(1_700_000_000));
        assert_eq!(b62_encode(0), "0");
        assert_eq!(b62_decode("-A"), Some(-10));
        assert_eq!(b62_decode(""), None);
        assert_eq!(b62_decode("a.b"), None);
        assert!(b62_decode(&"z".repeat(100)).is_some());
    }
}
