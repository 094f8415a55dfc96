//! keepsake's signed and sealed formats next to the bare primitives they use,
//! in one run: HMAC-SHA256 and AES-256-GCM-SIV.
//!
//! Each keepsake figure goes from already-serialized payload bytes to the
//! cookie value (sign, seal) or from the cookie value back to payload bytes
//! (verify, open), including base64, the claims header and the binding to the
//! cookie name and namespace. The bare figures are the primitive alone on the
//! same payload with its key already set up: the floor keepsake can approach.
//!
//! Run: `cargo bench -p keepsake --bench codec`; see BENCHMARKS.md.

use std::hint::black_box;

use aes_gcm_siv::{Aes256GcmSiv, KeyInit, Nonce, Tag, aead::AeadInOut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hmac::{Hmac, Mac};
use keepsake::{
    codec::{Claims, Codec},
    key::{Key, KeyRing},
};
use sha2::Sha256;

/// 3000 bytes is about the largest payload whose value still fits a cookie.
const SIZES: [usize; 3] = [64, 512, 3000];
const NOW: u64 = 1_700_000_000;
const NAME: &str = "session";

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

fn signed(c: &mut Criterion) {
    let codec = Codec::signed(KeyRing::new(Key::generate()));
    let hmac = <Hmac<Sha256> as KeyInit>::new_from_slice(&[7; 32]).unwrap();
    let mut group = c.benchmark_group("signed");
    for size in SIZES {
        let data = payload(size);
        let value = codec.encode(NAME, &data, Claims::new(NOW)).unwrap();
        let tag = hmac.clone().chain_update(&data).finalize().into_bytes();
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(
            BenchmarkId::new("hmac_sha256_bare", size),
            &data,
            |b, data| {
                b.iter(|| {
                    hmac.clone()
                        .chain_update(black_box(data))
                        .finalize()
                        .into_bytes()
                })
            },
        );
        group.bench_with_input(BenchmarkId::new("sign", size), &data, |b, data| {
            b.iter(|| {
                codec
                    .encode(NAME, black_box(data), Claims::new(NOW))
                    .unwrap()
            })
        });
        group.bench_with_input(
            BenchmarkId::new("hmac_sha256_verify_bare", size),
            &data,
            |b, data| {
                b.iter(|| {
                    hmac.clone()
                        .chain_update(black_box(data))
                        .verify_slice(&tag)
                        .unwrap()
                })
            },
        );
        group.bench_with_input(BenchmarkId::new("verify", size), &value, |b, value| {
            b.iter(|| codec.decode(NAME, black_box(value), NOW).unwrap())
        });
    }
    group.finish();
}

fn sealed(c: &mut Criterion) {
    let codec = Codec::sealed(KeyRing::new(Key::generate()));
    let aead = Aes256GcmSiv::new_from_slice(&[7; 32]).unwrap();
    let mut group = c.benchmark_group("sealed");
    for size in SIZES {
        let data = payload(size);
        let value = codec.encode(NAME, &data, Claims::new(NOW)).unwrap();
        let nonce = Nonce::from([3; 12]);
        let mut ciphertext = data.clone();
        let tag: Tag = aead
            .encrypt_inout_detached(&nonce, b"", ciphertext.as_mut_slice().into())
            .unwrap();
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(
            BenchmarkId::new("aes256gcmsiv_seal_bare", size),
            &data,
            |b, data| {
                b.iter(|| {
                    let mut buf = black_box(data).clone();
                    let mut nonce = [0u8; 12];
                    rand::fill(&mut nonce);
                    let tag = aead
                        .encrypt_inout_detached(&Nonce::from(nonce), b"", buf.as_mut_slice().into())
                        .unwrap();
                    (buf, tag)
                })
            },
        );
        group.bench_with_input(BenchmarkId::new("seal", size), &data, |b, data| {
            b.iter(|| {
                codec
                    .encode(NAME, black_box(data), Claims::new(NOW))
                    .unwrap()
            })
        });
        group.bench_with_input(
            BenchmarkId::new("aes256gcmsiv_open_bare", size),
            &ciphertext,
            |b, ct| {
                b.iter(|| {
                    let mut buf = black_box(ct).clone();
                    aead.decrypt_inout_detached(&nonce, b"", buf.as_mut_slice().into(), &tag)
                        .unwrap();
                    buf
                })
            },
        );
        group.bench_with_input(BenchmarkId::new("open", size), &value, |b, value| {
            b.iter(|| codec.decode(NAME, black_box(value), NOW).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, signed, sealed);
criterion_main!(benches);
