//! Exact quantile bins of an unsorted sample without sorting it: one counting pass over the
//! top 16 bits of each value's order-preserving key, one pass collecting the few buckets that
//! hold the wanted order statistics, and a selection inside those buckets. The reference
//! bin counts come from the same bucket counts, so the sample is read twice in all.

use crate::error::Result;

/// Buckets of the first pass: the top 16 bits of the key (sign, exponent, 4 mantissa bits).
const BUCKET_BITS: u32 = 16;
const NONE: u8 = u8::MAX;

/// An order-preserving integer key of a non-NaN `f64`; `-0.0` shares `+0.0`'s key (they are
/// equal values).
fn key(v: f64) -> u64 {
    let bits = (v + 0.0).to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

fn bucket(v: f64) -> usize {
    (key(v) >> (64 - BUCKET_BITS)) as usize
}

/// Samples at least this long are read by one task per thread.
const PARALLEL_MIN: usize = 1 << 18;

/// `pass` over `x` in one contiguous part per rayon thread (one part when `x` is short), the
/// parts' results combined in order by `combine`.
pub(crate) fn parallel_passes<T: Send>(
    x: &[f64],
    pass: impl Fn(&[f64]) -> T + Sync,
    combine: impl Fn(T, T) -> T + Sync,
) -> T {
    use rayon::prelude::*;
    let threads = rayon::current_num_threads();
    if x.len() < PARALLEL_MIN || threads < 2 {
        return pass(x);
    }
    let parts: Vec<T> = x.par_chunks(x.len().div_ceil(threads)).map(&pass).collect();
    let mut parts = parts.into_iter();
    let first = parts.next().unwrap_or_else(|| pass(&[]));
    parts.fold(first, combine)
}

/// The values at the given sorted positions of `x` (as if `x` were sorted), by recursive
/// selection: `O(n log k)` for `k` positions (numpy's `partition` with several `kth`).
fn order_statistics(
    x: &mut [f64],
    positions: &[usize],
    out: &mut Vec<(usize, f64)>,
    offset: usize,
) {
    if positions.is_empty() || x.is_empty() {
        return;
    }
    let mid = positions.len() / 2;
    let p = positions[mid] - offset;
    let (left, pivot, right) = x.select_nth_unstable_by(p, f64::total_cmp);
    out.push((positions[mid], *pivot));
    order_statistics(left, &positions[..mid], out, offset);
    order_statistics(right, &positions[mid + 1..], out, offset + p + 1);
}

/// Interior edges at the quantiles `k / n_bins` (numpy's linear interpolation, duplicates
/// removed) of a sample, and the sample's share in each bin (`edges.len() + 1` shares; bin of
/// `v` = number of edges `<= v`). An empty sample or one with NaN is refused (checked in the
/// counting pass).
pub(crate) fn quantile_bins(x: &[f64], n_bins: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    super::check_bins(n_bins)?;
    let n = x.len();
    let (counts, nan) = parallel_passes(
        x,
        |part| {
            let mut counts = vec![0u64; 1 << BUCKET_BITS];
            let mut nan = 0u64;
            for &v in part {
                nan += u64::from(v.is_nan());
                counts[bucket(v)] += 1;
            }
            (counts, nan)
        },
        |(mut a, na), (b, nb)| {
            a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
            (a, na + nb)
        },
    );
    if nan > 0 || n == 0 {
        super::check_sample("reference", x)?;
    }
    // below[b]: values in buckets before b.
    let mut below = Vec::with_capacity(counts.len() + 1);
    let mut total = 0u64;
    for &c in &counts {
        below.push(total);
        total += c;
    }
    below.push(total);
    let qs: Vec<(usize, usize, f64)> = (1..n_bins)
        .map(|k| {
            let pos = k as f64 / n_bins as f64 * (n - 1) as f64;
            (pos.floor() as usize, pos.ceil() as usize, pos - pos.floor())
        })
        .collect();
    let mut positions: Vec<usize> = qs.iter().flat_map(|q| [q.0, q.1]).collect();
    positions.sort_unstable();
    positions.dedup();
    // The bucket of each wanted position, and a slot for each such bucket.
    let bucket_of = |p: usize| below.partition_point(|&b| b <= p as u64) - 1;
    let mut slot = vec![NONE; counts.len()];
    let mut collected: Vec<usize> = Vec::new();
    for &p in &positions {
        let b = bucket_of(p);
        if slot[b] == NONE {
            slot[b] = collected.len() as u8;
            collected.push(b);
        }
    }
    let mut buffers: Vec<Vec<f64>> = parallel_passes(
        x,
        |part| {
            let mut buffers = vec![Vec::new(); collected.len()];
            for &v in part {
                let s = slot[bucket(v)];
                if s != NONE {
                    buffers[s as usize].push(v);
                }
            }
            buffers
        },
        |mut a, b| {
            a.iter_mut().zip(b).for_each(|(a, b)| a.extend(b));
            a
        },
    );
    let mut found = Vec::with_capacity(positions.len());
    for (s, &b) in collected.iter().enumerate() {
        let start = below[b] as usize;
        let local: Vec<usize> = positions
            .iter()
            .filter(|&&p| bucket_of(p) == b)
            .map(|&p| p - start)
            .collect();
        let mut here = Vec::with_capacity(local.len());
        order_statistics(&mut buffers[s], &local, &mut here, 0);
        found.extend(here.into_iter().map(|(p, v)| (p + start, v)));
    }
    found.sort_unstable_by_key(|f| f.0);
    let at = |p: usize| found[found.partition_point(|f| f.0 < p)].1;
    let mut edges: Vec<f64> = qs
        .iter()
        .map(|&(lo, hi, frac)| super::interpolate(at(lo), at(hi), frac))
        .collect();
    edges.dedup();
    // Values < each edge (a value equal to an edge is in the bin above it): whole buckets
    // below the edge's bucket, plus the collected values of its bucket. An edge lies between two consecutive order statistics, so a bucket it falls
    // in that was not collected holds no values; if rounding ever puts it elsewhere, count.
    let less_than = |e: f64| -> u64 {
        let b = bucket(e);
        if slot[b] != NONE {
            below[b] + buffers[slot[b] as usize].iter().filter(|&&v| v < e).count() as u64
        } else if counts[b] == 0 {
            below[b]
        } else {
            x.iter().filter(|&&v| v < e).count() as u64
        }
    };
    let mut shares = Vec::with_capacity(edges.len() + 1);
    let mut prev = 0u64;
    for &e in &edges {
        let c = less_than(e);
        shares.push((c - prev) as f64 / n as f64);
        prev = c;
    }
    shares.push((n as u64 - prev) as f64 / n as f64);
    Ok((edges, shares))
}

#[cfg(test)]
mod tests {
    use super::quantile_bins;
    use crate::stats::{bin_shares, quantile_edges_sorted};

    /// Bucketed selection against sorting, on samples that stress the buckets: one heavy
    /// bucket, ties, signed zeros, infinities, subnormals, huge ranges, tiny samples.
    #[test]
    fn bucketed_bins_equal_sorted_bins() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let samples: Vec<Vec<f64>> = vec![
            vec![3.0],
            vec![2.0, 1.0],
            (0..1000).map(|_| next() * 2.0 - 1.0).collect(),
            (0..5000).map(|_| 1000.0 + next() * 1e-6).collect(),
            (0..3000).map(|i| ((i * 7) % 5) as f64).collect(),
            (0..2000)
                .map(|i| match i % 6 {
                    0 => -0.0,
                    1 => 0.0,
                    2 => f64::INFINITY,
                    3 => f64::NEG_INFINITY,
                    4 => 5e-324 * (i as f64),
                    _ => (next() - 0.5) * 1e300,
                })
                .collect(),
            (0..4000).map(|_| (next() - 0.5).powi(9) * 1e10).collect(),
        ];
        for (k, x) in samples.iter().enumerate() {
            let mut sorted = x.clone();
            sorted.sort_by(f64::total_cmp);
            for bins in [2, 3, 10, 37] {
                let (edges, shares) = quantile_bins(x, bins).unwrap();
                let want = quantile_edges_sorted(&sorted, bins).unwrap();
                assert_eq!(edges.len(), want.len(), "sample {k} bins {bins}");
                for (a, b) in edges.iter().zip(&want) {
                    assert!(
                        a == b || (a.is_nan() && b.is_nan()),
                        "sample {k} bins {bins}: {a} vs {b}"
                    );
                }
                assert_eq!(shares, bin_shares(x, &edges), "sample {k} bins {bins}");
            }
        }
        assert!(quantile_bins(&[1.0], 1).is_err());
    }
}
