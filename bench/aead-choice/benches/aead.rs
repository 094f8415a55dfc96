//! AEAD candidates for keepsake cookie sealing: seal (random nonce, encrypt,
//! tag) and open (decrypt, verify) at 64 B, 512 B and 3072 B with 16 B of
//! associated data. Keys are scheduled outside the timed loop, except in the
//! `hkdf-sha256+aes256gcm` variant, whose point is to measure a per-message key.
//!
//! Open loops copy the stored ciphertext into the working buffer before each
//! in-place decrypt (identical for every implementation); the `baseline`
//! group measures that copy and the random-nonce generation on their own.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use aes_gcm::aead::{AeadInOut, KeyInit, Nonce};
use aes_gcm::{Aes256Gcm, aead};
use aes_gcm_siv::Aes256GcmSiv;
use chacha20poly1305::XChaCha20Poly1305;
use hkdf::Hkdf;
use sha2::Sha256;

const SIZES: [usize; 3] = [64, 512, 3072];
const AAD: [u8; 16] = *b"keepsake-cookie1";
const HKDF_INFO: &[u8] = b"keepsake per-message aes-256-gcm v1";

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::fill(&mut b);
    b
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + 7) as u8).collect()
}

/// Any RustCrypto aead 0.6 cipher (AES-GCM-SIV, AES-GCM, XChaCha20-Poly1305).
fn rustcrypto<A: AeadInOut + KeyInit>(c: &mut Criterion, name: &str) {
    let key = random::<32>();
    let cipher = A::new_from_slice(&key).expect("32-byte key");

    for &len in &SIZES {
        let pt = payload(len);

        let mut g = c.benchmark_group(format!("seal/{len}"));
        g.throughput(Throughput::Bytes(len as u64));
        let mut buf = pt.clone();
        let mut nonce = Nonce::<A>::default();
        g.bench_function(name, |b| {
            b.iter(|| {
                rand::fill(nonce.as_mut_slice());
                let tag = cipher
                    .encrypt_inout_detached(&nonce, black_box(&AAD), buf.as_mut_slice().into())
                    .expect("seal");
                black_box((&nonce, tag, &buf));
            })
        });
        g.finish();

        // Produce one genuine message to open.
        let mut ct = pt.clone();
        rand::fill(nonce.as_mut_slice());
        let tag = cipher
            .encrypt_inout_detached(&nonce, &AAD, ct.as_mut_slice().into())
            .expect("seal");
        let mut check = ct.clone();
        cipher
            .decrypt_inout_detached(&nonce, &AAD, check.as_mut_slice().into(), &tag)
            .expect("roundtrip");
        assert_eq!(check, pt, "{name} roundtrip");

        let mut g = c.benchmark_group(format!("open/{len}"));
        g.throughput(Throughput::Bytes(len as u64));
        let mut buf = vec![0u8; len];
        g.bench_function(name, |b| {
            b.iter(|| {
                buf.copy_from_slice(black_box(&ct));
                cipher
                    .decrypt_inout_detached(
                        &nonce,
                        black_box(&AAD),
                        buf.as_mut_slice().into(),
                        &tag,
                    )
                    .expect("open");
                black_box(&buf);
            })
        });
        g.finish();
    }
}

/// ring and aws-lc-rs share the same `LessSafeKey` API shape.
macro_rules! ring_like {
    ($c:expr, $name:expr, $aead:path, $alg:expr) => {{
        use $aead as a;
        let key = random::<32>();
        let key = a::LessSafeKey::new(a::UnboundKey::new(&$alg, &key).expect("key"));

        for &len in &SIZES {
            let pt = payload(len);

            let mut g = $c.benchmark_group(format!("seal/{len}"));
            g.throughput(Throughput::Bytes(len as u64));
            let mut buf = pt.clone();
            g.bench_function($name, |b| {
                b.iter(|| {
                    let nonce = random::<12>();
                    let tag = key
                        .seal_in_place_separate_tag(
                            a::Nonce::assume_unique_for_key(nonce),
                            a::Aad::from(black_box(&AAD)),
                            &mut buf,
                        )
                        .expect("seal");
                    black_box((nonce, tag.as_ref(), &buf));
                })
            });
            g.finish();

            // One genuine message (ciphertext || tag) to open.
            let nonce = random::<12>();
            let mut ct = pt.clone();
            let tag = key
                .seal_in_place_separate_tag(
                    a::Nonce::assume_unique_for_key(nonce),
                    a::Aad::from(&AAD),
                    &mut ct,
                )
                .expect("seal");
            ct.extend_from_slice(tag.as_ref());
            let mut check = ct.clone();
            let out = key
                .open_in_place(
                    a::Nonce::assume_unique_for_key(nonce),
                    a::Aad::from(&AAD),
                    &mut check,
                )
                .expect("roundtrip");
            assert_eq!(out, &pt[..], "{} roundtrip", $name);

            let mut g = $c.benchmark_group(format!("open/{len}"));
            g.throughput(Throughput::Bytes(len as u64));
            let mut buf = vec![0u8; ct.len()];
            g.bench_function($name, |b| {
                b.iter(|| {
                    buf.copy_from_slice(black_box(&ct));
                    let out = key
                        .open_in_place(
                            a::Nonce::assume_unique_for_key(nonce),
                            a::Aad::from(black_box(&AAD)),
                            &mut buf,
                        )
                        .expect("open");
                    black_box(out);
                })
            });
            g.finish();
        }
    }};
}

/// Per-message key: HKDF-SHA256(salt = fresh random 32 B, ikm = master key)
/// -> AES-256-GCM key, then seal. The key is unique per message, so the
/// nonce is a fixed zero; the random salt is the per-message randomness.
fn hkdf_derived(c: &mut Criterion, name: &str) {
    let master = random::<32>();
    let derive = |salt: &[u8; 32]| {
        let mut okm = [0u8; 32];
        Hkdf::<Sha256>::new(Some(salt), &master)
            .expand(HKDF_INFO, &mut okm)
            .expect("32 B okm");
        Aes256Gcm::new_from_slice(&okm).expect("32-byte key")
    };
    let zero_nonce = aead::Nonce::<Aes256Gcm>::default();

    for &len in &SIZES {
        let pt = payload(len);

        let mut g = c.benchmark_group(format!("seal/{len}"));
        g.throughput(Throughput::Bytes(len as u64));
        let mut buf = pt.clone();
        g.bench_function(name, |b| {
            b.iter(|| {
                let salt = random::<32>();
                let cipher = derive(&salt);
                let tag = cipher
                    .encrypt_inout_detached(&zero_nonce, black_box(&AAD), buf.as_mut_slice().into())
                    .expect("seal");
                black_box((salt, tag, &buf));
            })
        });
        g.finish();

        let salt = random::<32>();
        let mut ct = pt.clone();
        let tag = derive(&salt)
            .encrypt_inout_detached(&zero_nonce, &AAD, ct.as_mut_slice().into())
            .expect("seal");
        let mut check = ct.clone();
        derive(&salt)
            .decrypt_inout_detached(&zero_nonce, &AAD, check.as_mut_slice().into(), &tag)
            .expect("roundtrip");
        assert_eq!(check, pt, "{name} roundtrip");

        let mut g = c.benchmark_group(format!("open/{len}"));
        g.throughput(Throughput::Bytes(len as u64));
        let mut buf = vec![0u8; len];
        g.bench_function(name, |b| {
            b.iter(|| {
                let cipher = derive(black_box(&salt));
                buf.copy_from_slice(black_box(&ct));
                cipher
                    .decrypt_inout_detached(
                        &zero_nonce,
                        black_box(&AAD),
                        buf.as_mut_slice().into(),
                        &tag,
                    )
                    .expect("open");
                black_box(&buf);
            })
        });
        g.finish();
    }
}

/// Cross-implementation known-answer check: same key/nonce/aad/pt must give
/// identical ciphertext+tag across RustCrypto, ring and aws-lc-rs.
fn cross_check() {
    let key = random::<32>();
    let nonce = random::<12>();
    let pt = payload(100);

    let rc = |cipher: &dyn Fn(&mut [u8]) -> Vec<u8>| {
        let mut b = pt.clone();
        let tag = cipher(&mut b);
        b.extend_from_slice(&tag);
        b
    };
    let rc_gcm = rc(&|b| {
        Aes256Gcm::new_from_slice(&key)
            .unwrap()
            .encrypt_inout_detached(&nonce.into(), &AAD, b.into())
            .unwrap()
            .to_vec()
    });
    let rc_siv = rc(&|b| {
        Aes256GcmSiv::new_from_slice(&key)
            .unwrap()
            .encrypt_inout_detached(&nonce.into(), &AAD, b.into())
            .unwrap()
            .to_vec()
    });
    macro_rules! seal {
        ($aead:path, $alg:expr) => {{
            use $aead as a;
            let k = a::LessSafeKey::new(a::UnboundKey::new(&$alg, &key).unwrap());
            let mut b = pt.clone();
            k.seal_in_place_append_tag(
                a::Nonce::assume_unique_for_key(nonce),
                a::Aad::from(&AAD),
                &mut b,
            )
            .unwrap();
            b
        }};
    }
    assert_eq!(
        rc_gcm,
        seal!(ring::aead, ring::aead::AES_256_GCM),
        "ring GCM"
    );
    assert_eq!(
        rc_gcm,
        seal!(aws_lc_rs::aead, aws_lc_rs::aead::AES_256_GCM),
        "aws-lc GCM"
    );
    assert_eq!(
        rc_siv,
        seal!(aws_lc_rs::aead, aws_lc_rs::aead::AES_256_GCM_SIV),
        "aws-lc GCM-SIV"
    );
    assert_ne!(rc_gcm, rc_siv);
}

fn baseline(c: &mut Criterion) {
    let mut g = c.benchmark_group("baseline");
    g.bench_function("rand::fill 12B", |b| b.iter(|| black_box(random::<12>())));
    g.bench_function("rand::fill 24B", |b| b.iter(|| black_box(random::<24>())));
    g.bench_function("rand::fill 32B", |b| b.iter(|| black_box(random::<32>())));
    for &len in &SIZES {
        let src = payload(len + 16);
        let mut dst = vec![0u8; len + 16];
        g.bench_function(format!("memcpy {}B", len + 16), |b| {
            b.iter(|| {
                dst.copy_from_slice(black_box(&src));
                black_box(&dst);
            })
        });
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    cross_check();
    baseline(c);
    rustcrypto::<Aes256GcmSiv>(c, "aes256gcmsiv-rustcrypto");
    rustcrypto::<Aes256Gcm>(c, "aes256gcm-rustcrypto");
    rustcrypto::<XChaCha20Poly1305>(c, "xchacha20poly1305-rustcrypto");
    ring_like!(c, "aes256gcm-ring", ring::aead, ring::aead::AES_256_GCM);
    ring_like!(
        c,
        "aes256gcm-awslc",
        aws_lc_rs::aead,
        aws_lc_rs::aead::AES_256_GCM
    );
    ring_like!(
        c,
        "aes256gcmsiv-awslc",
        aws_lc_rs::aead,
        aws_lc_rs::aead::AES_256_GCM_SIV
    );
    hkdf_derived(c, "hkdf-sha256+aes256gcm-rustcrypto");
}

criterion_group!(aead_choice, benches);
criterion_main!(aead_choice);
