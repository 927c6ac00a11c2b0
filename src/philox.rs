//! Philox4x32-10 (Salmon et al., SC'11), identical to `shaders/philox.wgsl`.
//!
//! The noise mask of a block is a pure function of `(seed, step, stage, block)`:
//! counter = `(block / 4, stage, step_lo, step_hi)`, key = `(seed_lo, seed_hi)`, and the
//! block takes lane `block % 4` of the output. A block is selected when the top 24 bits of its
//! lane are below `round(p · 2^24)`, so p = 0 selects nothing and p = 1 everything.

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

#[inline]
fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = a as u64 * b as u64;
    ((p >> 32) as u32, p as u32)
}

/// Philox4x32 with 10 rounds.
#[inline]
pub fn philox4x32_10(ctr: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = ctr;
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k[0] = k[0].wrapping_add(W0);
            k[1] = k[1].wrapping_add(W1);
        }
        let (hi0, lo0) = mulhilo(M0, c[0]);
        let (hi1, lo1) = mulhilo(M1, c[2]);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
    }
    c
}

/// Where a noise mask comes from: a training run's seed and its step counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct NoiseSeed {
    /// Seed of the run.
    pub seed: u64,
    /// Training step (or any counter that must change between forwards).
    pub step: u64,
}

impl NoiseSeed {
    /// A seed at a given step.
    pub fn new(seed: u64, step: u64) -> Self {
        Self { seed, step }
    }

    /// The four Philox lanes for blocks `4·group .. 4·group + 3` of noise stage `stage`.
    #[inline]
    pub fn lanes(&self, stage: u32, group: u32) -> [u32; 4] {
        let ctr = [group, stage, self.step as u32, (self.step >> 32) as u32];
        philox4x32_10(ctr, [self.seed as u32, (self.seed >> 32) as u32])
    }

    /// Whether block `block` is selected in stage `stage` with threshold `threshold_24`
    /// (see [`selection_threshold`]).
    #[inline]
    pub fn selected(&self, stage: u32, block: u64, threshold_24: u32) -> bool {
        let lanes = self.lanes(stage, (block >> 2) as u32);
        (lanes[(block & 3) as usize] >> 8) < threshold_24
    }
}

/// A uniform 64-bit draw number `index` of stream `stream` of a seed, for host-side sampling
/// (k-means initialisation, repair perturbations): two lanes of Philox4x32-10 with counter
/// `(index_lo, index_hi, stream, 0xFFFF_FFFF)`, apart from the noise masks' counters (whose
/// last word is a step's high half) for every step below 2^64 − 2^32.
pub fn draw_u64(seed: u64, stream: u32, index: u64) -> u64 {
    let r = philox4x32_10(
        [index as u32, (index >> 32) as u32, stream, u32::MAX],
        [seed as u32, (seed >> 32) as u32],
    );
    (r[0] as u64) | ((r[1] as u64) << 32)
}

/// A uniform draw in `[0, 1)` (53 bits) of [`draw_u64`].
pub fn draw_unit(seed: u64, stream: u32, index: u64) -> f64 {
    (draw_u64(seed, stream, index) >> 11) as f64 / (1u64 << 53) as f64
}

/// A standard normal draw (Box–Muller on two [`draw_unit`] values).
pub fn draw_normal(seed: u64, stream: u32, index: u64) -> f64 {
    let u1 = draw_unit(seed, stream, 2 * index).max(f64::MIN_POSITIVE);
    let u2 = draw_unit(seed, stream, 2 * index + 1);
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// The 24-bit threshold of selection probability `p ∈ [0, 1]`: `round(p · 2^24)`.
pub fn selection_threshold(p: f64) -> u32 {
    (p.clamp(0.0, 1.0) * (1u64 << 24) as f64).round() as u32
}

impl crate::Context {
    /// Philox4x32-10 of each `(counter, key)` pair computed by the context's backend (the WGSL
    /// implementation on a device): for checking that a backend draws the same bits as
    /// [`philox4x32_10`].
    pub fn philox(&self, counters: &[[u32; 4]], keys: &[[u32; 2]]) -> crate::Result<Vec<[u32; 4]>> {
        use crate::runtime::batch::{Batch, sized};
        use crate::runtime::gpu::PipelineKey;
        use crate::runtime::shaders::{Family, Precision};
        crate::noise::check_len("keys", counters.len() as u64, keys.len() as u64)?;
        let Some(g) = self.gpu() else {
            return Ok(counters
                .iter()
                .zip(keys)
                .map(|(c, k)| philox4x32_10(*c, *k))
                .collect());
        };
        if counters.is_empty() {
            return Ok(Vec::new());
        }
        let pipeline = g.pipeline(PipelineKey {
            family: Family::Philox,
            precision: Precision::F32,
            entry: "philox_batch",
            overrides: vec![],
        })?;
        let n = counters.len() as u64;
        let mut batch = Batch::new(g, "philox")?;
        let c = batch.storage_init(bytemuck::cast_slice(counters));
        let k = batch.storage_init(bytemuck::cast_slice(keys));
        let out = batch.scratch(n * 16);
        batch.dispatch(
            &pipeline,
            &[sized(&c, n * 16), sized(&k, n * 8), sized(&out, n * 16)],
            n.div_ceil(64),
        )?;
        let r = batch.read(&out, 0, n * 16);
        let mut bytes = batch.finish()?;
        Ok(bytemuck::pod_collect_to_vec(&Batch::take(&mut bytes, r)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers_random123() {
        assert_eq!(
            philox4x32_10([0; 4], [0; 2]),
            [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
        );
        assert_eq!(
            philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
        );
        assert_eq!(
            philox4x32_10(
                [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
                [0xa4093822, 0x299f31d0]
            ),
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
        );
    }

    #[test]
    fn thresholds_cover_the_ends() {
        assert_eq!(selection_threshold(0.0), 0);
        assert_eq!(selection_threshold(1.0), 1 << 24);
        let s = NoiseSeed::new(1, 2);
        assert!((0..1000).all(|b| s.selected(0, b, 1 << 24)));
        assert!((0..1000).all(|b| !s.selected(0, b, 0)));
    }
}
