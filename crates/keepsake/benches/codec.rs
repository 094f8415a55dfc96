//! keepsake's signed and sealed formats next to the bare primitives they use,
//! in one run: HMAC-SHA256 and AES-256-GCM-SIV.
//!
//! Each keepsake figure goes from already-serialized payload bytes to the
//! cookie value (sign, seal) or from the cookie value back to payload bytes
//! (verify, open), including base64, the claims header and the binding to the
//! cookie name and namespace. The bare figures are the primitive alone on the
//! same payload with its key already set up: the floor keepsake can approach.
//!
//! Run: `cargo bench -p keepsake --bench codec`, then
//! `python3 bench/codec-ratios.py` for the ratios; see BENCHMARKS.md. Two
//! more modes of the same binary (`target/release/deps/codec-*`), outside
//! criterion: `KEEPSAKE_CODEC_INTERLEAVED=ROUNDS` (alternating batches, for a
//! shared machine) and `KEEPSAKE_CODEC_PROFILE=OP:SIZE:N` (for callgrind and
//! perf).

use std::{hint::black_box, time::Instant};

use aes_gcm_siv::{Aes256GcmSiv, KeyInit, Nonce, Tag, aead::AeadInOut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
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

/// Everything the operations below need for one payload size.
struct Fixture {
    data: Vec<u8>,
    signed: Codec,
    sealed: Codec,
    hmac: Hmac<Sha256>,
    aead: Aes256GcmSiv,
    signed_value: String,
    sealed_value: String,
    tag: hmac::digest::Output<Sha256>,
    nonce: Nonce,
    ciphertext: Vec<u8>,
    aead_tag: Tag,
}

/// keepsake's operations, each with its bare primitive.
const PAIRS: [(&str, &str); 4] = [
    ("sign", "hmac"),
    ("verify", "hmac_verify"),
    ("seal", "seal_bare"),
    ("open", "open_bare"),
];

impl Fixture {
    fn new(size: usize) -> Self {
        let data = payload(size);
        let key = [7; 32];
        let signed = Codec::signed(KeyRing::new(Key::from_bytes(&key).unwrap()));
        let sealed = Codec::sealed(KeyRing::new(Key::from_bytes(&key).unwrap()));
        let hmac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).unwrap();
        let aead = Aes256GcmSiv::new_from_slice(&key).unwrap();
        let signed_value = signed.encode(NAME, &data, Claims::new(NOW)).unwrap();
        let sealed_value = sealed.encode(NAME, &data, Claims::new(NOW)).unwrap();
        let tag = hmac.clone().chain_update(&data).finalize().into_bytes();
        let nonce = Nonce::from([3; 12]);
        let mut ciphertext = data.clone();
        let aead_tag = aead
            .encrypt_inout_detached(&nonce, b"", ciphertext.as_mut_slice().into())
            .unwrap();
        Self {
            data,
            signed,
            sealed,
            hmac,
            aead,
            signed_value,
            sealed_value,
            tag,
            nonce,
            ciphertext,
            aead_tag,
        }
    }

    /// Runs `op` once, the same work as its criterion benchmark.
    fn run(&self, op: &str) {
        match op {
            "sign" => drop(black_box(
                self.signed
                    .encode(NAME, black_box(&self.data), Claims::new(NOW))
                    .unwrap(),
            )),
            "verify" => drop(black_box(
                self.signed
                    .decode(NAME, black_box(&self.signed_value), NOW)
                    .unwrap(),
            )),
            "seal" => drop(black_box(
                self.sealed
                    .encode(NAME, black_box(&self.data), Claims::new(NOW))
                    .unwrap(),
            )),
            "open" => drop(black_box(
                self.sealed
                    .decode(NAME, black_box(&self.sealed_value), NOW)
                    .unwrap(),
            )),
            "hmac" => drop(black_box(
                self.hmac
                    .clone()
                    .chain_update(black_box(&self.data))
                    .finalize()
                    .into_bytes(),
            )),
            "hmac_verify" => self
                .hmac
                .clone()
                .chain_update(black_box(&self.data))
                .verify_slice(&self.tag)
                .unwrap(),
            "seal_bare" => {
                let mut buf = black_box(&self.data).clone();
                let mut nonce = [0u8; 12];
                rand::fill(&mut nonce);
                let tag = self
                    .aead
                    .encrypt_inout_detached(&Nonce::from(nonce), b"", buf.as_mut_slice().into())
                    .unwrap();
                drop(black_box((buf, tag)));
            }
            "open_bare" => {
                let mut buf = black_box(&self.ciphertext).clone();
                self.aead
                    .decrypt_inout_detached(
                        &self.nonce,
                        b"",
                        buf.as_mut_slice().into(),
                        &self.aead_tag,
                    )
                    .unwrap();
                drop(black_box(buf));
            }
            other => panic!("unknown operation {other:?}"),
        }
    }
}

/// `KEEPSAKE_CODEC_PROFILE=OP:SIZE:N` runs one operation N times and exits,
/// without criterion: for `valgrind --tool=callgrind`, whose instruction
/// counts do not move with the machine's load. OP is one of sign, verify,
/// seal, open, hmac, hmac_verify, seal_bare, open_bare. Run it for two values
/// of N and divide the difference in instructions by the difference in N.
fn profile(spec: &str) {
    let mut parts = spec.split(':');
    let (Some(op), Some(size), Some(n)) = (parts.next(), parts.next(), parts.next()) else {
        panic!("KEEPSAKE_CODEC_PROFILE is OP:SIZE:N, not {spec:?}");
    };
    let fixture = Fixture::new(size.parse().expect("SIZE"));
    for _ in 0..n.parse::<usize>().expect("N") {
        fixture.run(op);
    }
}

/// `KEEPSAKE_CODEC_INTERLEAVED=ROUNDS` times each operation and its bare
/// primitive in alternating batches, ROUNDS times, and prints the fastest
/// batch of each and their ratio. On a shared machine the fastest batch is
/// the one least disturbed, and alternating exposes both to the same load.
fn interleaved(rounds: &str) {
    let rounds: usize = rounds.parse().expect("ROUNDS");
    println!("| operation | payload | keepsake | bare primitive | ratio |");
    println!("|---|---|---|---|---|");
    for (ours, bare) in PAIRS {
        for size in SIZES {
            let fixture = Fixture::new(size);
            let batch = (200_000 / (size + 100)).max(10);
            let mut best = [f64::MAX; 2];
            for _ in 0..rounds {
                for (slot, op) in [ours, bare].into_iter().enumerate() {
                    let start = Instant::now();
                    for _ in 0..batch {
                        fixture.run(op);
                    }
                    let ns = start.elapsed().as_nanos() as f64 / batch as f64;
                    best[slot] = best[slot].min(ns);
                }
            }
            println!(
                "| {ours} | {size} B | {:.0} ns | {:.0} ns ({bare}) | {:.2}x |",
                best[0],
                best[1],
                best[0] / best[1]
            );
        }
    }
}

criterion_group!(benches, signed, sealed);

fn main() {
    if let Ok(spec) = std::env::var("KEEPSAKE_CODEC_PROFILE") {
        return profile(&spec);
    }
    if let Ok(rounds) = std::env::var("KEEPSAKE_CODEC_INTERLEAVED") {
        return interleaved(&rounds);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
