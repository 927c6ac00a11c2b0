//! Cutting tensors larger than one storage binding into bound windows, and 2-D dispatch grids.

use crate::error::{Result, invalid};

/// A range of elements bound and dispatched together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    /// First element.
    pub start: u64,
    /// Elements.
    pub len: u64,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Windows of at most `max_bytes` covering `len` elements of `elem_bytes` each. Every window
/// but the last holds a multiple of `unit` elements and starts at a byte offset that is a
/// multiple of 256 (the largest storage offset alignment of any adapter).
pub(crate) fn windows(len: u64, elem_bytes: u64, unit: u64, max_bytes: u64) -> Result<Vec<Window>> {
    let unit_bytes = unit * elem_bytes;
    let granule = unit_bytes / gcd(unit_bytes, 256) * 256;
    let window_bytes = max_bytes / granule * granule;
    if window_bytes == 0 {
        return Err(invalid(
            "row bytes",
            unit_bytes,
            "a row must fit in one storage binding window",
        ));
    }
    let per_window = window_bytes / elem_bytes;
    let mut out = Vec::with_capacity(len.div_ceil(per_window) as usize);
    let mut start = 0;
    while start < len {
        let n = per_window.min(len - start);
        out.push(Window { start, len: n });
        start += n;
    }
    Ok(out)
}

/// A 2-D grid of `groups` workgroups (each dimension is capped at 65535); shaders linearise it
/// as `wid.y * nwg.x + wid.x` and skip the surplus.
pub(crate) fn grid(groups: u64) -> Result<(u32, u32)> {
    const MAX: u64 = 65535;
    let x = groups.clamp(1, MAX);
    let y = groups.div_ceil(x).max(1);
    if y > MAX {
        return Err(invalid(
            "workgroups",
            groups,
            "more than 65535² workgroups in one window",
        ));
    }
    Ok((x as u32, y as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_exactly_and_align() {
        let w = windows(1000, 4, 12, 1024).unwrap();
        assert_eq!(w.iter().map(|w| w.len).sum::<u64>(), 1000);
        for win in &w[..w.len() - 1] {
            assert_eq!(win.len % 12, 0);
            assert_eq!((win.start * 4) % 256, 0);
        }
        assert!(windows(10, 4, 1000, 1024).is_err());
    }

    #[test]
    fn grid_is_two_dimensional_beyond_65535() {
        assert_eq!(grid(10).unwrap(), (10, 1));
        assert_eq!(grid(70000).unwrap(), (65535, 2));
        assert_eq!(grid(0).unwrap(), (1, 1));
    }
}
