//! Philox4x32-10: Random123's known answers and bit-exactness of every backend against Rust.

mod common;

use common::*;
use libtest_mimic::Failed;
use quantnoise::philox::philox4x32_10;

fn main() {
    run(
        &[
            ("known_answers", known_answers),
            ("random_counters_match_rust", random_counters),
        ],
        false,
    )
}

/// Random123's published known-answer vectors (tests/kat_vectors).
const KAT: [([u32; 4], [u32; 2], [u32; 4]); 3] = [
    (
        [0, 0, 0, 0],
        [0, 0],
        [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8],
    ),
    (
        [u32::MAX; 4],
        [u32::MAX; 2],
        [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd],
    ),
    (
        [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
        [0xa4093822, 0x299f31d0],
        [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
    ),
];

fn known_answers(t: &Target) -> Result<(), Failed> {
    let counters: Vec<_> = KAT.iter().map(|k| k.0).collect();
    let keys: Vec<_> = KAT.iter().map(|k| k.1).collect();
    let got = t.ctx.philox(&counters, &keys)?;
    for (g, k) in got.iter().zip(&KAT) {
        ensure(*g == k.2, || {
            format!(
                "philox({:08x?}, {:08x?}) = {g:08x?}, want {:08x?}",
                k.0, k.1, k.2
            )
        })?;
    }
    Ok(())
}

/// 100k random counters and keys (more than one 65535-workgroup row): every bit equal.
fn random_counters(t: &Target) -> Result<(), Failed> {
    let mut rng = Rng(0x5EED);
    let n = 100_003;
    let counters: Vec<[u32; 4]> = (0..n)
        .map(|_| [0; 4].map(|_: u32| rng.next_u64() as u32))
        .collect();
    let keys: Vec<[u32; 2]> = (0..n)
        .map(|_| [0; 2].map(|_: u32| rng.next_u64() as u32))
        .collect();
    let got = t.ctx.philox(&counters, &keys)?;
    let bad = (0..n)
        .filter(|&i| got[i] != philox4x32_10(counters[i], keys[i]))
        .count();
    ensure(got.len() == n && bad == 0, || {
        format!("{bad} of {n} outputs differ from the Rust Philox")
    })
}
