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

/// Names up to this length are bound in one MAC update from the stack.
const INLINE_NAME: usize = 64;
/// Payloads up to this length are base64-encoded with their header in one
/// call, from a stack buffer.
const INLINE_PAYLOAD: usize = 256;

/// The MAC over everything the value is bound to: the marker, the
/// length-prefixed name, the namespace, the header and the payload.
fn mac(
    subkeys: &Subkeys,
    namespace: Namespace,
    name: &str,
    header: &[u8; HEADER_LEN],
    payload: &[u8],
) -> Hmac<Sha256> {
    let mut mac = subkeys.signer(namespace).clone();
    // Few, larger updates cost measurably less than many small ones at
    // cookie sizes (BENCHMARKS.md); the bytes fed in are the same either way.
    let mut prefix = [0u8; MARKER.len() + 2 + INLINE_NAME + 1 + HEADER_LEN];
    let name = name.as_bytes();
    if name.len() <= INLINE_NAME {
        let mut at = 0;
        for part in [
            MARKER,
            &name_prefix(name.len()),
            name,
            &[namespace.tag()],
            header,
        ] {
            prefix[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        mac.update(&prefix[..at]);
    } else {
        mac.update(MARKER);
        mac.update(&name_prefix(name.len()));
        mac.update(name);
        mac.update(&[namespace.tag()]);
        mac.update(header);
    }
    mac.update(payload);
    mac
}

/// Length of the value for a payload of `payload_len` bytes.
pub(super) const fn encoded_len(payload_len: usize) -> usize {
    3 + HEADER_B64_LEN + b64_len(payload_len) + 1 + TAG_B64_LEN
}

pub(super) fn encode(
    ring: &KeyRing,
    namespace: Namespace,
    name: &str,
    header: &[u8; HEADER_LEN],
    payload: &[u8],
) -> String {
    let tag = mac(ring.current_subkeys(), namespace, name, header, payload).finalize();
    let mut out = String::with_capacity(encoded_len(payload.len()));
    out.push_str("s1.");
    if payload.len() <= INLINE_PAYLOAD {
        let mut data = [0u8; HEADER_LEN + INLINE_PAYLOAD];
        data[..HEADER_LEN].copy_from_slice(header);
        data[HEADER_LEN..HEADER_LEN + payload.len()].copy_from_slice(payload);
        b64_append(&data[..HEADER_LEN + payload.len()], &mut out);
    } else {
        // The header is 12 bytes, so its base64 ends on a group boundary and
        // the payload's base64 can follow it directly.
        b64_append(header, &mut out);
        b64_append(payload, &mut out);
    }
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
    let (data, tag) = split_tag(body)?;
    let tag: [u8; TAG_LEN] = b64_decode_exact(tag)?;
    let mut bytes = Vec::with_capacity(data.len() / 4 * 3 + 3);
    b64_decode_into(data, &mut bytes)?;
    if bytes.len() < HEADER_LEN {
        return Err(DecodeError::Malformed);
    }
    let (header, payload) = bytes.split_at(HEADER_LEN);
    let header: [u8; HEADER_LEN] = header.try_into().map_err(|_| DecodeError::Malformed)?;

    // `verify_slice` compares in constant time.
    let position = ring
        .all_subkeys()
        .position(|subkeys| {
            mac(subkeys, namespace, name, &header, payload)
                .verify_slice(&tag)
                .is_ok()
        })
        .ok_or(DecodeError::BadSignature)?;
    bytes.drain(..HEADER_LEN);
    Ok((bytes, header, position))
}

/// Splits a signed body into `base64(header ‖ payload)` and the base64 tag,
/// which has a fixed length at the end: no scan through the payload.
fn split_tag(body: &str) -> Result<(&[u8], &[u8]), DecodeError> {
    let body = body.as_bytes();
    let data_len = body
        .len()
        .checked_sub(TAG_B64_LEN + 1)
        .filter(|&len| len >= HEADER_B64_LEN)
        .ok_or(DecodeError::Malformed)?;
    let (data, dot_tag) = body.split_at(data_len);
    match dot_tag.split_first() {
        Some((b'.', tag)) => Ok((data, tag)),
        _ => Err(DecodeError::Malformed),
    }
}

/// Decodes a signed body into its header and payload, without verifying
/// anything (for [`inspect`](super::inspect)).
pub(super) fn split(body: &str) -> Result<([u8; HEADER_LEN], Vec<u8>), DecodeError> {
    let (data, tag) = split_tag(body)?;
    b64_decode_exact::<TAG_LEN>(tag)?;
    let mut bytes = Vec::new();
    b64_decode_into(data, &mut bytes)?;
    if bytes.len() < HEADER_LEN {
        return Err(DecodeError::Malformed);
    }
    let payload = bytes.split_off(HEADER_LEN);
    let header = bytes.try_into().map_err(|_| DecodeError::Malformed)?;
    Ok((header, payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::Key;

    /// The MAC input is the same bytes whether the name goes through the
    /// stack buffer or not.
    #[test]
    fn mac_input_does_not_depend_on_name_length_path() {
        let ring = KeyRing::new(Key::from_bytes(&[4; 32]).unwrap());
        let subkeys = ring.current_subkeys();
        let header = [7u8; HEADER_LEN];
        for len in [0, 1, INLINE_NAME - 1, INLINE_NAME, INLINE_NAME + 1, 300] {
            let name = "n".repeat(len);
            let mut expected = subkeys.signer(Namespace::Shared).clone();
            let mut input = MARKER.to_vec();
            input.extend_from_slice(&name_prefix(len));
            input.extend_from_slice(name.as_bytes());
            input.push(Namespace::Shared.tag());
            input.extend_from_slice(&header);
            input.extend_from_slice(b"payload");
            expected.update(&input);
            let got = mac(subkeys, Namespace::Shared, &name, &header, b"payload");
            assert_eq!(
                got.finalize().into_bytes(),
                expected.finalize().into_bytes(),
                "{len}"
            );
        }
    }
}
