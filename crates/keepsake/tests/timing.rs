//! A dudect-style timing check of verification (ignored: it measures, so it
//! runs by hand; the result is in SECURITY.md):
//!
//! ```sh
//! cargo test -p keepsake --test timing -- --ignored --nocapture
//! ```
//!
//! For signed and sealed values, two classes of forged value are timed in a
//! random interleaving: one whose tag is right in every byte but the last
//! (the best an attacker probing byte by byte could have), one with a random
//! tag. If the comparison stopped at the first wrong byte, the first class
//! would take longer. Welch's t-test over the two samples (as dudect does,
//! on the raw data and on the data below several percentiles, to cut the
//! noise of interrupts) says whether the two distributions differ: |t| above
//! 10 is a leak; below 4.5, none is detected.
//!
//! As a control, the same harness times a plain early-exit `==` over the
//! same tags, which it should flag on a quiet machine.

use std::time::Instant;

use keepsake::{
    codec::{Claims, Codec, DecodeError, Format},
    key::{Key, KeyRing},
};

const NOW: u64 = 1_700_000_000;
const SAMPLES: usize = 200_000;
/// Percentiles at which the samples are cropped (dudect crops at many).
const CROPS: [f64; 5] = [1.0, 0.99, 0.9, 0.75, 0.5];

fn b64_decode(text: &str) -> Vec<u8> {
    base64_simd::URL_SAFE_NO_PAD
        .decode_to_vec(text)
        .expect("base64")
}

fn b64(bytes: &[u8]) -> String {
    base64_simd::URL_SAFE_NO_PAD.encode_to_string(bytes)
}

/// xorshift64*: cheap, deterministic, enough to interleave and to make
/// random tags.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Two forged values for `value`: the tag wrong only in its last byte, and a
/// random tag. Same length, both well-formed, so both reach the comparison.
fn forgeries(format: Format, value: &str, rng: &mut Rng) -> (String, Vec<String>) {
    match format {
        Format::Signed => {
            let (data, tag) = value.rsplit_once('.').expect("signed layout");
            let mut near = b64_decode(tag);
            let last = near.len() - 1;
            near[last] ^= 1;
            let randoms = (0..64)
                .map(|_| format!("{data}.{}", b64(&rng.bytes(32))))
                .collect();
            (format!("{data}.{}", b64(&near)), randoms)
        }
        Format::Sealed => {
            let raw = b64_decode(&value[3..]);
            let (body, _) = raw.split_at(raw.len() - 16);
            let mut near = raw.clone();
            let last = near.len() - 1;
            near[last] ^= 1;
            let randoms = (0..64)
                .map(|_| format!("e1.{}", b64(&[body, &rng.bytes(16)].concat())))
                .collect();
            (format!("e1.{}", b64(&near)), randoms)
        }
    }
}

/// Welch's t of two samples.
fn welch(a: &[f64], b: &[f64]) -> f64 {
    let stats = |x: &[f64]| {
        let n = x.len() as f64;
        let mean = x.iter().sum::<f64>() / n;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (n, mean, var)
    };
    let ((na, ma, va), (nb, mb, vb)) = (stats(a), stats(b));
    (ma - mb) / (va / na + vb / nb).sqrt()
}

/// The largest |t| over the crops, with the medians of both classes in ns.
fn analyse(near: &[f64], random: &[f64]) -> (f64, f64, f64) {
    let mut pooled: Vec<f64> = near.iter().chain(random).copied().collect();
    pooled.sort_by(f64::total_cmp);
    let median = |x: &[f64]| {
        let mut x = x.to_vec();
        x.sort_by(f64::total_cmp);
        x[x.len() / 2]
    };
    let worst = CROPS
        .iter()
        .map(|&p| {
            let cut = pooled[((pooled.len() - 1) as f64 * p) as usize];
            let a: Vec<f64> = near.iter().copied().filter(|&v| v <= cut).collect();
            let b: Vec<f64> = random.iter().copied().filter(|&v| v <= cut).collect();
            welch(&a, &b).abs()
        })
        .fold(0.0, f64::max);
    (worst, median(near), median(random))
}

/// Times `check` on the two classes, interleaved at random.
fn measure(
    near: &str,
    randoms: &[String],
    rng: &mut Rng,
    check: impl Fn(&str),
) -> (Vec<f64>, Vec<f64>) {
    let (mut a, mut b) = (Vec::with_capacity(SAMPLES), Vec::with_capacity(SAMPLES));
    // Warm up caches and branch predictors on both classes.
    for i in 0..10_000 {
        check(if i % 2 == 0 {
            near
        } else {
            &randoms[i % randoms.len()]
        });
    }
    while a.len() < SAMPLES || b.len() < SAMPLES {
        let pick_near = rng.next() & 1 == 0;
        let input = if pick_near {
            near
        } else {
            &randoms[(rng.next() % randoms.len() as u64) as usize]
        };
        let start = Instant::now();
        check(input);
        let ns = start.elapsed().as_nanos() as f64;
        if pick_near && a.len() < SAMPLES {
            a.push(ns);
        } else if !pick_near && b.len() < SAMPLES {
            b.push(ns);
        }
    }
    (a, b)
}

#[test]
#[ignore = "a measurement; run by hand (see the module docs)"]
fn verification_time_does_not_depend_on_the_tag() {
    let ring = KeyRing::new(Key::from_bytes(&[1; 32]).expect("key"));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut report = Vec::new();
    for format in [Format::Signed, Format::Sealed] {
        let codec = Codec::new(format, ring.clone());
        let value = codec
            .encode("session", &[7; 16], Claims::new(NOW).with_ttl(3_600))
            .expect("encode");
        let (near, randoms) = forgeries(format, &value, &mut rng);
        assert_eq!(
            codec.decode("session", &near, NOW),
            Err(DecodeError::BadSignature)
        );
        for random in &randoms {
            assert_eq!(
                codec.decode("session", random, NOW),
                Err(DecodeError::BadSignature)
            );
        }
        let (a, b) = measure(&near, &randoms, &mut rng, |v| {
            std::hint::black_box(codec.decode("session", std::hint::black_box(v), NOW)).ok();
        });
        let (t, ma, mb) = analyse(&a, &b);
        report.push(format!(
            "{format}: max |t| = {t:.2} over {SAMPLES} + {SAMPLES} samples \
             (median {ma:.0} ns near-miss tag, {mb:.0} ns random tag)"
        ));
        assert!(
            t < 10.0,
            "{format}: verification time depends on the tag (|t| = {t:.2})"
        );
    }

    // Control: an early-exit comparison of the same tags (the first 31 bytes
    // equal vs. random), which the harness should be able to see.
    let good = rng.bytes(4096);
    let mut near = good.clone();
    near[4095] ^= 1;
    let randoms: Vec<Vec<u8>> = (0..64).map(|_| rng.bytes(4096)).collect();
    let as_text = |bytes: &[u8]| b64(bytes);
    let (near_text, random_texts) = (
        as_text(&near),
        randoms.iter().map(|r| as_text(r)).collect::<Vec<_>>(),
    );
    let good_text = as_text(&good);
    let (a, b) = measure(&near_text, &random_texts, &mut rng, |v| {
        std::hint::black_box(std::hint::black_box(v) == good_text.as_str());
    });
    let (t, ma, mb) = analyse(&a, &b);
    report.push(format!(
        "control (early-exit == over 5,462 bytes): max |t| = {t:.2} \
         (median {ma:.0} ns near-miss, {mb:.0} ns random)"
    ));
    eprintln!("{}", report.join("\n"));
}
