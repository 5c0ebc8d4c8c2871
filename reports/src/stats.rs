//! Descriptive statistics over a target's runs.
//!
//! Definitions (they matter when two reports are compared):
//! - median: the middle value, or the mean of the two middle values for an even count;
//! - p95: linear interpolation between closest ranks (R's and NumPy's default, "type 7"):
//!   h = (n − 1) × 0.95, p95 = x[⌊h⌋] + (h − ⌊h⌋) × (x[⌊h⌋+1] − x[⌊h⌋]) over sorted x;
//! - MAD: the raw median absolute deviation, median(|x − median|), NOT scaled;
//! - outlier: |x − median| > 3 × 1.4826 × MAD, i.e. more than three robust standard deviations
//!   (1.4826 × MAD estimates σ for normal data) from the median. When MAD is 0 every value
//!   that differs from the median at all is flagged.
//!
//! Comparisons (`isolab compare`, the report's overhead error bars):
//! - [`mann_whitney`]: the two-sided Mann–Whitney U test with the normal approximation, a tie
//!   correction of the variance and a continuity correction of 0.5. Rank based, so it needs no
//!   assumption about the shape of start-up time distributions (which are skewed).
//! - [`bootstrap_ratio_ci`]: a percentile bootstrap of the ratio of two medians, with a fixed
//!   seed so the same data always give the same interval.

use std::collections::BTreeMap;

use crate::schema::{RunRecord, Summary};

/// Scales the MAD to a consistent estimator of the standard deviation for normal data.
pub const MAD_TO_SIGMA: f64 = 1.4826;
/// How many robust standard deviations from the median make an outlier.
pub const OUTLIER_SIGMAS: f64 = 3.0;

/// Summarises labelled samples `(run index, value)`; `None` when there are none.
/// Outliers are reported by their labels, in ascending order.
pub fn summarize(samples: &[(u32, f64)]) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted: Vec<f64> = samples.iter().map(|&(_, v)| v).collect();
    sorted.sort_by(f64::total_cmp);
    let median = median_of_sorted(&sorted);
    let mut deviations: Vec<f64> = sorted.iter().map(|v| (v - median).abs()).collect();
    deviations.sort_by(f64::total_cmp);
    let mad = median_of_sorted(&deviations);
    let limit = OUTLIER_SIGMAS * MAD_TO_SIGMA * mad;
    let mut outliers: Vec<u32> = samples
        .iter()
        .filter(|&&(_, v)| (v - median).abs() > limit)
        .map(|&(run, _)| run)
        .collect();
    outliers.sort_unstable();
    Some(Summary {
        count: sorted.len() as u32,
        min: sorted[0],
        max: sorted[sorted.len() - 1],
        mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
        median,
        p95: quantile_of_sorted(&sorted, 0.95),
        mad,
        outliers,
    })
}

/// Per metric (see [`RunRecord::metrics`]), the summary over the runs that have it.
pub fn summarize_runs(runs: &[RunRecord]) -> BTreeMap<String, Summary> {
    let mut samples: BTreeMap<String, Vec<(u32, f64)>> = BTreeMap::new();
    for run in runs {
        for (metric, value) in run.metrics() {
            samples.entry(metric).or_default().push((run.index, value));
        }
    }
    samples
        .into_iter()
        .filter_map(|(metric, values)| Some((metric, summarize(&values)?)))
        .collect()
}

/// The outcome of [`mann_whitney`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannWhitney {
    /// U of the first sample: how many (first, second) pairs have first > second, ties
    /// counting one half.
    pub u: f64,
    /// The normal approximation's z, continuity-corrected; 0 when every value is tied.
    pub z: f64,
    /// Two-sided p-value.
    pub p: f64,
}

/// The two-sided Mann–Whitney U test of `a` against `b`; `None` when either is empty.
pub fn mann_whitney(a: &[f64], b: &[f64]) -> Option<MannWhitney> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let mut all: Vec<(f64, bool)> = a
        .iter()
        .map(|&v| (v, true))
        .chain(b.iter().map(|&v| (v, false)))
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let (mut rank_sum_a, mut tie_term) = (0.0, 0.0);
    let mut start = 0;
    while start < all.len() {
        let end = start
            + all[start..]
                .iter()
                .take_while(|v| v.0 == all[start].0)
                .count();
        // Tied values share the mean of the ranks they span (ranks are 1-based).
        let mean_rank = (start + 1 + end) as f64 / 2.0;
        let tied = (end - start) as f64;
        tie_term += tied.powi(3) - tied;
        rank_sum_a += mean_rank * all[start..end].iter().filter(|v| v.1).count() as f64;
        start = end;
    }
    let n = n1 + n2;
    let u = rank_sum_a - n1 * (n1 + 1.0) / 2.0;
    let mean = n1 * n2 / 2.0;
    let variance = n1 * n2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)));
    if variance <= 0.0 {
        return Some(MannWhitney { u, z: 0.0, p: 1.0 });
    }
    let z = ((u - mean).abs() - 0.5).max(0.0).copysign(u - mean) / variance.sqrt();
    let p = (2.0 * (1.0 - standard_normal_cdf(z.abs()))).min(1.0);
    Some(MannWhitney { u, z, p })
}

/// Φ(x), from the complementary error function (Abramowitz & Stegun 7.1.26, |error| < 1.5e-7).
fn standard_normal_cdf(x: f64) -> f64 {
    let t = x.abs() / std::f64::consts::SQRT_2;
    let k = 1.0 / (1.0 + 0.327_591_1 * t);
    let poly = k
        * (0.254_829_592
            + k * (-0.284_496_736
                + k * (1.421_413_741 + k * (-1.453_152_027 + k * 1.061_405_429))));
    let erfc = poly * (-t * t).exp();
    if x >= 0.0 {
        1.0 - erfc / 2.0
    } else {
        erfc / 2.0
    }
}

/// Resamples drawn by [`bootstrap_ratio_ci`].
pub const BOOTSTRAP_RESAMPLES: usize = 2000;
/// Its fixed seed: reports of the same data are identical.
pub const BOOTSTRAP_SEED: u64 = 0x1501_AB5E_ED00_0001;

/// The 95 % percentile-bootstrap interval of median(num) / median(den); `None` when either
/// sample is empty or a resampled denominator median is 0.
pub fn bootstrap_ratio_ci(num: &[f64], den: &[f64]) -> Option<(f64, f64)> {
    if num.is_empty() || den.is_empty() {
        return None;
    }
    // xorshift64*: tiny, deterministic, and plenty for picking resample indices.
    let mut state = BOOTSTRAP_SEED;
    let mut next_index = |len: usize| {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % len
    };
    let mut resample_median = |sample: &[f64]| {
        let mut drawn: Vec<f64> = (0..sample.len())
            .map(|_| sample[next_index(sample.len())])
            .collect();
        drawn.sort_by(f64::total_cmp);
        median_of_sorted(&drawn)
    };
    let mut ratios = Vec::with_capacity(BOOTSTRAP_RESAMPLES);
    for _ in 0..BOOTSTRAP_RESAMPLES {
        let n = resample_median(num);
        let d = resample_median(den);
        if d == 0.0 {
            return None;
        }
        ratios.push(n / d);
    }
    ratios.sort_by(f64::total_cmp);
    Some((
        quantile_of_sorted(&ratios, 0.025),
        quantile_of_sorted(&ratios, 0.975),
    ))
}

/// The median of unsorted values; `None` when there are none.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    Some(median_of_sorted(&sorted))
}

fn median_of_sorted(sorted: &[f64]) -> f64 {
    quantile_of_sorted(sorted, 0.5)
}

/// Type-7 quantile of a non-empty sorted slice; at q = 0.5 it is the usual median.
fn quantile_of_sorted(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    match sorted.get(lo + 1) {
        Some(&next) => sorted[lo] + (h - lo as f64) * (next - sorted[lo]),
        None => sorted[lo],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labelled(values: &[f64]) -> Vec<(u32, f64)> {
        values
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as u32, v))
            .collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn empty_has_no_summary() {
        assert_eq!(summarize(&[]), None);
    }

    #[test]
    fn odd_count() {
        // sorted 1 2 3 4 100: median 3; deviations 2 1 0 1 97 -> sorted 0 1 1 2 97, MAD 1;
        // limit 4.4478: only 100 is out. h = 3.8: p95 = 4 + 0.8 × 96 = 80.8.
        let s = summarize(&labelled(&[3.0, 1.0, 100.0, 2.0, 4.0])).unwrap();
        assert_eq!(s.count, 5);
        assert!(close(s.min, 1.0) && close(s.max, 100.0));
        assert!(close(s.mean, 22.0));
        assert!(close(s.median, 3.0));
        assert!(close(s.mad, 1.0));
        assert!(close(s.p95, 80.8), "{}", s.p95);
        assert_eq!(s.outliers, [2]);
    }

    #[test]
    fn even_count_median_is_mean_of_middle_pair() {
        // sorted 1 2 4 10: median 3; deviations 2 1 1 7 -> 1 1 2 7, MAD 1.5;
        // limit 6.6717: 10 (deviation 7) is out. h = 2.85: p95 = 4 + 0.85 × 6 = 9.1.
        let s = summarize(&labelled(&[10.0, 2.0, 4.0, 1.0])).unwrap();
        assert!(close(s.median, 3.0));
        assert!(close(s.mad, 1.5));
        assert!(close(s.p95, 9.1), "{}", s.p95);
        assert_eq!(s.outliers, [0]);
    }

    #[test]
    fn single_sample() {
        let s = summarize(&[(7, 5.0)]).unwrap();
        assert_eq!((s.count, s.median, s.p95, s.mad), (1, 5.0, 5.0, 0.0));
        assert!(s.outliers.is_empty());
    }

    #[test]
    fn zero_mad_flags_any_difference() {
        let s = summarize(&labelled(&[5.0, 5.0, 5.0, 6.0])).unwrap();
        assert_eq!(s.mad, 0.0);
        assert_eq!(s.outliers, [3]);
    }

    #[test]
    fn outliers_are_reported_by_label_in_order() {
        let s = summarize(&[(9, 1000.0), (4, 1.0), (2, 2.0), (7, 1.5), (1, -1000.0)]).unwrap();
        assert_eq!(s.outliers, [1, 9]);
    }

    #[test]
    fn mann_whitney_matches_a_hand_calculation() {
        // a = 1 2 3, b = 4 5 6: ranks of a 1 2 3, R = 6, U = 0; mean 4.5, var = 9/12 × 7 =
        // 5.25; z = -(4.5 - 0.5)/√5.25 = -1.7457; p = 2(1 − Φ(1.7457)) = 0.0809.
        let t = mann_whitney(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]).unwrap();
        assert!(close(t.u, 0.0));
        assert!((t.z + 1.745_743).abs() < 1e-5, "{}", t.z);
        assert!((t.p - 0.080_856).abs() < 1e-4, "{}", t.p);
    }

    #[test]
    fn mann_whitney_ties_and_identical_samples() {
        // a = 1 2 2, b = 2 3 4: 2 is tied thrice (ranks 2,3,4 → 3). R = 1 + 3 + 3 = 7,
        // U = 1; tie term 24 → var = 9/12 × (7 − 24/30) = 4.65.
        let t = mann_whitney(&[1.0, 2.0, 2.0], &[2.0, 3.0, 4.0]).unwrap();
        assert!(close(t.u, 1.0));
        assert!((t.z + 3.0 / 4.65f64.sqrt()).abs() < 1e-9, "{}", t.z);
        let same = mann_whitney(&[5.0, 5.0], &[5.0, 5.0]).unwrap();
        assert_eq!((same.z, same.p), (0.0, 1.0));
        assert_eq!(mann_whitney(&[], &[1.0]), None);
    }

    #[test]
    fn bootstrap_is_deterministic_and_brackets_the_ratio() {
        let num = [20.0, 21.0, 22.0, 19.0, 20.5];
        let den = [10.0, 10.5, 9.5, 10.2, 9.8];
        let (lo, hi) = bootstrap_ratio_ci(&num, &den).unwrap();
        assert_eq!(bootstrap_ratio_ci(&num, &den), Some((lo, hi)));
        assert!(lo <= 2.0 && 2.0 <= hi && hi - lo < 0.5, "{lo} {hi}");
        assert_eq!(bootstrap_ratio_ci(&num, &[0.0]), None);
    }

    #[test]
    fn runs_are_summarised_per_present_metric() {
        let set = crate::schema::tests::sample_set();
        let stats = &set.targets[0].stats;
        let names: Vec<&str> = stats.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "exit_ns",
                "figures.detail.calls",
                "figures.ns_per_call",
                "max_rss_kib",
                "pss_kib",
                "ready_ns"
            ]
        );
        assert_eq!(stats["pss_kib"].count, 2);
        assert!(close(stats["ready_ns"].median, 1_001_000.0));
    }
}
