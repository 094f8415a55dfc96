//! The signed format, version 1: `s1.` base64(header ‖ payload) `.` base64(tag).
//!
//! Because the header is 12 bytes (a multiple of 3), base64(header ‖ payload)
//! is base64(header) followed by base64(payload): the first 16 characters are
//! the header, the rest the payload, and each part decodes on its own.

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use super::{
    DecodeError, HEADER_LEN, b64_append, b64_decode_exact, b64_decode_into, b64_len, name_prefix,
};
use crate::key::{KeyRing, Namespace, Subkeys};

/// Format and version marker, also the first input to the MAC.
const MARKER: &[u8] = b"s1";
/// Length of an HMAC-SHA256 tag.
const TAG_LEN: usize = 32;
/// Base64 length of the header (12 bytes, no padding needed).
const HEADER_B64_LEN: usize = b64_len(HEADER_LEN);
/// Base64 length of the tag.
const TAG_B64_LEN: usize = b64_len(TAG_LEN);

/// The MAC over everything the value is bound to.
fn mac(
    subkeys: &Subkeys,
    namespace: Namespace,
    name: &str,
    header: &[u8; HEADER_LEN],
    payload: &[u8],
) -> Hmac<Sha256> {
    let mut mac = subkeys.signer(namespace).clone();
    mac.update(MARKER);
    mac.update(&name_prefix(name));
    mac.update(name.as_bytes());
    mac.update(&[namespace.tag()]);
    mac.update(header);
    mac.update(payload);
    mac
}

pub(super) fn encode(
    ring: &KeyRing,
    namespace: Namespace,
    name: &str,
    header: &[u8; HEADER_LEN],
    payload: &[u8],
) -> String {
    let tag = mac(ring.current_subkeys(), namespace, name, header, payload).finalize();
    let mut out =
        String::with_capacity(3 + HEADER_B64_LEN + b64_len(payload.len()) + 1 + TAG_B64_LEN);
    out.push_str("s1.");
    b64_append(header, &mut out);
    b64_append(payload, &mut out);
    out.push('.');
    b64_append(&tag.into_bytes(), &mut out);
    out
}

/// Decodes the part after `s1.`; returns the payload, the header and the
/// position in the ring of the key that verified it.
pub(super) fn decode(
    ring: &KeyRing,
    namespace: Namespace,
    name: &str,
    body: &str,
) -> Result<(Vec<u8>, [u8; HEADER_LEN], usize), DecodeError> {
    let (data, tag_text) = body.split_once('.').ok_or(DecodeError::Malformed)?;

    let tag: [u8; TAG_LEN] = b64_decode_exact(tag_text.as_bytes())?;
    let (header, payload) = split(data)?;

    // `verify_slice` compares in constant time.
    ring.all_subkeys()
        .position(|subkeys| {
            mac(subkeys, namespace, name, &header, &payload)
                .verify_slice(&tag)
                .is_ok()
        })
        .map(|position| (payload, header, position))
        .ok_or(DecodeError::BadSignature)
}

/// Decodes the middle part of a signed value, `base64(header ‖ payload)`,
/// without verifying anything.
pub(super) fn split(data: &str) -> Result<([u8; HEADER_LEN], Vec<u8>), DecodeError> {
    let data = data.as_bytes();
    if data.len() < HEADER_B64_LEN {
        return Err(DecodeError::Malformed);
    }
    let (header_b64, payload_b64) = data.split_at(HEADER_B64_LEN);
    let header = b64_decode_exact(header_b64)?;
    let mut payload = Vec::with_capacity(payload_b64.len() / 4 * 3 + 3);
    b64_decode_into(payload_b64, &mut payload)?;
    Ok((header, payload))
}
