//! The sealed format, version 1: `e1.` base64(nonce ‖ ciphertext ‖ tag),
//! with AES-256-GCM-SIV (RFC 8452). The plaintext is header ‖ payload.
//!
//! Speed (BENCHMARKS.md): the associated data is built on the stack, a small
//! value is sealed in a stack buffer so that the returned string is the only
//! allocation, and opening decrypts in place in the `Vec` that becomes the
//! payload.

use aes_gcm_siv::{
    Nonce, Tag,
    aead::{AeadInOut as _, array::typenum::Unsigned as _},
};

use super::{
    Claims, DecodeError, EncodeError, HEADER_LEN, PayloadOut, b64_append, b64_decode_into, b64_len,
    name_prefix,
};
use crate::key::{KeyRing, Namespace};

/// Format and version marker, also the start of the associated data.
const MARKER: &[u8] = b"e1";
const NONCE_LEN: usize =
    <aes_gcm_siv::Aes256GcmSiv as aes_gcm_siv::aead::AeadCore>::NonceSize::USIZE;
const TAG_LEN: usize = <aes_gcm_siv::Aes256GcmSiv as aes_gcm_siv::aead::AeadCore>::TagSize::USIZE;
const _: () = assert!(NONCE_LEN == 12 && TAG_LEN == 16);
/// The shortest sealed body: nonce, header and tag around an empty payload.
pub(super) const MIN_LEN: usize = NONCE_LEN + HEADER_LEN + TAG_LEN;

/// Names up to this length make their associated data on the stack.
const INLINE_NAME: usize = 64;
/// Plaintexts up to this length are sealed in a stack buffer.
const INLINE_PLAINTEXT: usize = 512;

/// The associated data: marker, length-prefixed name, namespace. Built on
/// the stack for names up to [`INLINE_NAME`] bytes.
enum AssociatedData {
    Inline([u8; MARKER.len() + 2 + INLINE_NAME + 1], usize),
    Heap(Vec<u8>),
}

impl AssociatedData {
    fn new(namespace: Namespace, name: &str) -> Self {
        let name = name.as_bytes();
        let parts = [MARKER, &name_prefix(name.len()), name, &[namespace.tag()]];
        if name.len() <= INLINE_NAME {
            let mut buf = [0u8; MARKER.len() + 2 + INLINE_NAME + 1];
            let mut at = 0;
            for part in parts {
                buf[at..at + part.len()].copy_from_slice(part);
                at += part.len();
            }
            Self::Inline(buf, at)
        } else {
            Self::Heap(parts.concat())
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline(buf, len) => &buf[..*len],
            Self::Heap(vec) => vec,
        }
    }
}

/// Length of the value for a payload of `payload_len` bytes.
pub(super) const fn encoded_len(payload_len: usize) -> usize {
    b64_len(MIN_LEN.saturating_add(payload_len)).saturating_add(3)
}

pub(super) fn encode(
    ring: &KeyRing,
    namespace: Namespace,
    name: &str,
    header: &[u8; HEADER_LEN],
    payload: &[u8],
) -> Result<String, EncodeError> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::fill(&mut nonce);
    encode_with_nonce(ring, namespace, name, header, payload, nonce)
}

/// [`encode`] with a given nonce: for known-answer tests only; real values
/// always use a fresh random nonce.
pub(super) fn encode_with_nonce(
    ring: &KeyRing,
    namespace: Namespace,
    name: &str,
    header: &[u8; HEADER_LEN],
    payload: &[u8],
    nonce: [u8; NONCE_LEN],
) -> Result<String, EncodeError> {
    // nonce ‖ header ‖ payload ‖ tag, sealed in place: on the stack when
    // small, so the only allocation is the returned string.
    let len = MIN_LEN + payload.len();
    let mut stack = [0u8; MIN_LEN + INLINE_PLAINTEXT];
    let mut heap = Vec::new();
    let buf = if payload.len() <= INLINE_PLAINTEXT {
        let buf = &mut stack[..len];
        buf[NONCE_LEN..NONCE_LEN + HEADER_LEN].copy_from_slice(header);
        buf[NONCE_LEN + HEADER_LEN..len - TAG_LEN].copy_from_slice(payload);
        buf
    } else {
        // Written in order rather than zeroed first: no pass over 3 KB
        // that is overwritten at once.
        heap.reserve_exact(len);
        heap.extend_from_slice(&nonce);
        heap.extend_from_slice(header);
        heap.extend_from_slice(payload);
        heap.extend_from_slice(&[0; TAG_LEN]);
        &mut heap[..]
    };
    let (nonce_buf, rest) = buf.split_at_mut(NONCE_LEN);
    nonce_buf.copy_from_slice(&nonce);
    let (plaintext, tag_buf) = rest.split_at_mut(HEADER_LEN + payload.len());
    let tag = ring
        .current_subkeys()
        .sealer(namespace)
        .encrypt_inout_detached(
            &Nonce::from(nonce),
            AssociatedData::new(namespace, name).as_bytes(),
            plaintext.into(),
        )
        .map_err(|_| EncodeError::Cipher)?;
    tag_buf.copy_from_slice(&tag);

    let mut out = String::with_capacity(encoded_len(payload.len()));
    out.push_str("e1.");
    b64_append(buf, &mut out);
    Ok(out)
}

/// Decodes the part after `e1.`; returns the payload, the claims and the
/// position in the ring of the key that opened it.
pub(super) fn decode<P: PayloadOut>(
    ring: &KeyRing,
    namespace: Namespace,
    name: &str,
    body: &str,
) -> Result<(P, Claims, usize), DecodeError> {
    // Sized by the decoder; one allocation, which becomes the payload.
    let mut buf = Vec::new();
    b64_decode_into(body, &mut buf)?;
    if buf.len() < MIN_LEN {
        return Err(DecodeError::Malformed);
    }
    let (nonce, rest) = buf.split_at_mut(NONCE_LEN);
    let nonce = Nonce::try_from(&*nonce).map_err(|_| DecodeError::Malformed)?;
    let (ciphertext, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
    let tag = Tag::try_from(&*tag).map_err(|_| DecodeError::Malformed)?;
    let aad = AssociatedData::new(namespace, name);

    // On failure the cipher restores the ciphertext, so the next key sees it
    // unchanged.
    let position = ring
        .all_subkeys()
        .position(|subkeys| {
            subkeys
                .sealer(namespace)
                .decrypt_inout_detached(&nonce, aad.as_bytes(), (&mut *ciphertext).into(), &tag)
                .is_ok()
        })
        .ok_or(DecodeError::BadSignature)?;

    let header: [u8; HEADER_LEN] = ciphertext[..HEADER_LEN]
        .try_into()
        .map_err(|_| DecodeError::Malformed)?;
    buf.truncate(buf.len() - TAG_LEN);
    buf.drain(..NONCE_LEN + HEADER_LEN);
    Ok((P::from_vec(buf)?, Claims::from_header(&header), position))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The associated data is the same bytes whether it is built on the
    /// stack or on the heap.
    #[test]
    fn associated_data_does_not_depend_on_name_length_path() {
        for len in [0, 1, INLINE_NAME - 1, INLINE_NAME, INLINE_NAME + 1, 300] {
            let name = "n".repeat(len);
            let mut expected = MARKER.to_vec();
            expected.extend_from_slice(&name_prefix(len));
            expected.extend_from_slice(name.as_bytes());
            expected.push(Namespace::Shared.tag());
            assert_eq!(
                AssociatedData::new(Namespace::Shared, &name).as_bytes(),
                expected,
                "{len}"
            );
        }
    }
}
