//! The signed format, version 1: `s1.` base64(header ‖ payload) `.` base64(tag).
//!
//! Because the header is 12 bytes (a multiple of 3), base64(header ‖ payload)
//! is base64(header) followed by base64(payload): the first 16 characters are
//! the header, the rest the payload, and each part decodes on its own.
//!
//! Speed (BENCHMARKS.md): the MAC is the floor, so the rest is kept small. A
//! small value goes through one stack buffer behind the MAC prefix (one MAC
//! update, one base64 call each way), and decoding writes a large payload
//! straight into the `Vec` it returns, with no copy or shift afterwards.

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use super::{
    Claims, DecodeError, HEADER_LEN, PayloadOut, b64_append, b64_decode_exact, b64_decode_into,
    b64_decode_slice, b64_len, name_prefix,
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

/// Names up to this length are bound from a stack buffer.
const INLINE_NAME: usize = 64;
/// Payloads up to this length go through the stack buffer with the MAC
/// prefix: one MAC update, one base64 call.
const INLINE_PAYLOAD: usize = 256;
/// The longest MAC prefix written to the stack: marker, name length, name,
/// namespace.
const PREFIX_MAX: usize = MARKER.len() + 2 + INLINE_NAME + 1;

/// Writes the MAC prefix (marker, length-prefixed name, namespace) to the
/// start of `buf` and returns its length. `name` is at most [`INLINE_NAME`].
fn write_prefix(buf: &mut [u8], namespace: Namespace, name: &[u8]) -> usize {
    let mut at = 0;
    for part in [MARKER, &name_prefix(name.len()), name, &[namespace.tag()]] {
        buf[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    at
}

/// The MAC fed with everything the value is bound to but the payload: the
/// marker, the length-prefixed name, the namespace and the header.
fn mac_prefix(
    subkeys: &Subkeys,
    namespace: Namespace,
    name: &str,
    header: &[u8; HEADER_LEN],
) -> Hmac<Sha256> {
    let mut mac = subkeys.signer(namespace).clone();
    // Few, larger updates cost measurably less than many small ones at
    // cookie sizes (BENCHMARKS.md); the bytes fed in are the same either way.
    let name = name.as_bytes();
    if name.len() <= INLINE_NAME {
        let mut prefix = [0u8; PREFIX_MAX + HEADER_LEN];
        let at = write_prefix(&mut prefix, namespace, name);
        prefix[at..at + HEADER_LEN].copy_from_slice(header);
        mac.update(&prefix[..at + HEADER_LEN]);
    } else {
        mac.update(MARKER);
        mac.update(&name_prefix(name.len()));
        mac.update(name);
        mac.update(&[namespace.tag()]);
        mac.update(header);
    }
    mac
}

/// The MAC over everything the value is bound to: the marker, the
/// length-prefixed name, the namespace, the header and the payload.
fn mac(
    subkeys: &Subkeys,
    namespace: Namespace,
    name: &str,
    header: &[u8; HEADER_LEN],
    payload: &[u8],
) -> Hmac<Sha256> {
    let mut mac = mac_prefix(subkeys, namespace, name, header);
    mac.update(payload);
    mac
}

/// Length of the value for a payload of `payload_len` bytes.
pub(super) const fn encoded_len(payload_len: usize) -> usize {
    b64_len(payload_len).saturating_add(3 + HEADER_B64_LEN + 1 + TAG_B64_LEN)
}

pub(super) fn encode(
    ring: &KeyRing,
    namespace: Namespace,
    name: &str,
    header: &[u8; HEADER_LEN],
    payload: &[u8],
) -> String {
    let subkeys = ring.current_subkeys();
    let mut out = String::with_capacity(encoded_len(payload.len()));
    out.push_str("s1.");
    let mac = if name.len() <= INLINE_NAME && payload.len() <= INLINE_PAYLOAD {
        // prefix ‖ header ‖ payload in one buffer: the MAC reads all of it,
        // base64 the part from the header on.
        let mut buf = [0u8; PREFIX_MAX + HEADER_LEN + INLINE_PAYLOAD];
        let at = write_prefix(&mut buf, namespace, name.as_bytes());
        buf[at..at + HEADER_LEN].copy_from_slice(header);
        let end = at + HEADER_LEN + payload.len();
        buf[at + HEADER_LEN..end].copy_from_slice(payload);
        let mut mac = subkeys.signer(namespace).clone();
        mac.update(&buf[..end]);
        b64_append(&buf[at..end], &mut out);
        mac
    } else {
        // The header is 12 bytes, so its base64 ends on a group boundary and
        // the payload's base64 can follow it directly.
        b64_append(header, &mut out);
        b64_append(payload, &mut out);
        mac(subkeys, namespace, name, header, payload)
    };
    out.push('.');
    b64_append(&mac.finalize().into_bytes(), &mut out);
    out
}

/// Decodes the part after `s1.`; returns the payload, the claims and the
/// position in the ring of the key that verified it. (Claims rather than the
/// header: a 12-byte array returned in a tuple is written and read back in
/// differently sized pieces, which stalls store forwarding.)
pub(super) fn decode<P: PayloadOut>(
    ring: &KeyRing,
    namespace: Namespace,
    name: &str,
    body: &str,
) -> Result<(P, Claims, usize), DecodeError> {
    let (data, tag_b64) = split_tag(body)?;
    // Decoded in place: an array returned inside a `Result` is copied
    // through unaligned stack slots, which measurably stalls the stores.
    let mut tag = [0u8; TAG_LEN];
    let mut keys = ring.all_subkeys();
    let current = keys.next().ok_or(DecodeError::BadSignature)?;

    if name.len() <= INLINE_NAME && data.len() <= b64_len(HEADER_LEN + INLINE_PAYLOAD) {
        // Small: decode header ‖ payload in one call behind the MAC prefix
        // on the stack, MAC it in one update, make the payload from there.
        let mut buf = [0u8; PREFIX_MAX + HEADER_LEN + INLINE_PAYLOAD];
        let at = write_prefix(&mut buf, namespace, name.as_bytes());
        let len = b64_decode_slice(data, &mut buf[at..])?;
        if len < HEADER_LEN {
            return Err(DecodeError::Malformed);
        }
        // The tag is decoded only now, between writing the buffer and
        // hashing it, which gives the buffer's many small stores time to
        // drain before SHA-256 reads them back in 16-byte loads.
        if b64_decode_slice(tag_b64, &mut tag)? != TAG_LEN {
            return Err(DecodeError::Malformed);
        }
        let end = at + len;
        let header: [u8; HEADER_LEN] = buf[at..at + HEADER_LEN]
            .try_into()
            .map_err(|_| DecodeError::Malformed)?;
        let payload = &buf[at + HEADER_LEN..end];
        let mut first = current.signer(namespace).clone();
        first.update(&buf[..end]);
        let position = key_position(first, keys, namespace, name, &header, payload, &tag)?;
        return Ok((
            P::from_slice(payload)?,
            Claims::from_header(&header),
            position,
        ));
    }

    // Large: decode the payload straight into a Vec, which becomes the
    // payload (a `Vec` for `decode`, moved, not copied).
    if b64_decode_slice(tag_b64, &mut tag)? != TAG_LEN {
        return Err(DecodeError::Malformed);
    }
    let (header, payload_b64) = data.split_at(HEADER_B64_LEN);
    let header: [u8; HEADER_LEN] = b64_decode_exact(header)?;
    let mut payload = Vec::new();
    b64_decode_into(payload_b64, &mut payload)?;
    let first = mac(current, namespace, name, &header, &payload);
    let position = key_position(first, keys, namespace, name, &header, &payload, &tag)?;
    Ok((
        P::from_vec(payload)?,
        Claims::from_header(&header),
        position,
    ))
}

/// The position in the ring of the key that made `tag`: 0 if `first` (the
/// current key's MAC, fed with everything) matches, else the first fallback
/// whose MAC over the same input does.
fn key_position<'a>(
    first: Hmac<Sha256>,
    mut fallbacks: impl Iterator<Item = &'a Subkeys>,
    namespace: Namespace,
    name: &str,
    header: &[u8; HEADER_LEN],
    payload: &[u8],
    tag: &[u8; TAG_LEN],
) -> Result<usize, DecodeError> {
    // `verify_slice` compares in constant time.
    if first.verify_slice(tag).is_ok() {
        return Ok(0);
    }
    fallbacks
        .position(|subkeys| {
            mac(subkeys, namespace, name, header, payload)
                .verify_slice(tag)
                .is_ok()
        })
        .map(|index| index + 1)
        .ok_or(DecodeError::BadSignature)
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
    let (header, payload_b64) = data.split_at(HEADER_B64_LEN);
    let header = b64_decode_exact(header)?;
    let mut payload = Vec::new();
    b64_decode_into(payload_b64, &mut payload)?;
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

    /// The stack-buffer and general paths, on both sides of each threshold,
    /// give the MAC over the same bytes, and decode back.
    #[test]
    fn every_path_signs_the_same_bytes() {
        let ring = KeyRing::new(Key::from_bytes(&[5; 32]).unwrap());
        let subkeys = ring.current_subkeys();
        let header = [9u8; HEADER_LEN];
        for name_len in [1, INLINE_NAME, INLINE_NAME + 1] {
            let name = "n".repeat(name_len);
            for len in [
                0,
                1,
                INLINE_PAYLOAD - 1,
                INLINE_PAYLOAD,
                INLINE_PAYLOAD + 1,
                super::super::TURBO_MIN - 1,
                super::super::TURBO_MIN,
                super::super::TURBO_MIN + 1,
                3000,
            ] {
                let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
                let value = encode(&ring, Namespace::Local, &name, &header, &payload);
                assert_eq!(value.len(), encoded_len(len));
                let tag = mac(subkeys, Namespace::Local, &name, &header, &payload)
                    .finalize()
                    .into_bytes();
                let mut expected = String::from("s1.");
                super::super::b64_append(&header, &mut expected);
                super::super::b64_append(&payload, &mut expected);
                expected.push('.');
                super::super::b64_append(&tag, &mut expected);
                assert_eq!(value, expected, "name {name_len}, payload {len}");
                let (decoded, claims, position) =
                    decode(&ring, Namespace::Local, &name, &value[3..]).unwrap();
                assert_eq!(
                    (decoded, claims, position),
                    (payload, Claims::from_header(&header), 0)
                );
            }
        }
    }
}
