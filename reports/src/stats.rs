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
