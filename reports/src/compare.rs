//! `isolab compare`: two result files of the same workload on the same host, target by target
//! and metric by metric.
//!
//! A metric regressed when its median moved in the worse direction by more than the
//! threshold AND the two-sided Mann–Whitney U test (see [`crate::stats::mann_whitney`]) gives
//! p < [`ALPHA`]; improved likewise in the better direction; otherwise unchanged.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::analysis::{host_differences, samples};
use crate::measures::{Better, RUNTIME_MODES};
use crate::schema::{ResultSet, SchemaError};
use crate::stats::{mann_whitney, median};

/// Significance level of the test.
pub const ALPHA: f64 = 0.05;

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error(
        "{new} comes from another host than {baseline} ({differences}); compare runs of one host"
    )]
    OtherHost {
        baseline: PathBuf,
        new: PathBuf,
        differences: String,
    },
    #[error("{baseline} measures workload `{base_mode}` but {new} measures `{new_mode}`")]
    OtherWorkload {
        baseline: PathBuf,
        new: PathBuf,
        base_mode: String,
        new_mode: String,
    },
    #[error("{baseline} and {new} have no target in common")]
    NothingInCommon { baseline: PathBuf, new: PathBuf },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Regressed,
    Improved,
    Unchanged,
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub target: String,
    pub metric: String,
    pub unit: &'static str,
    pub baseline_median: f64,
    pub new_median: f64,
    /// (new − baseline) / baseline.
    pub change: f64,
    pub p: f64,
    pub status: Status,
    pub smaller_is_better: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub baseline: PathBuf,
    pub new: PathBuf,
    pub threshold: f64,
    pub alpha: f64,
    pub rows: Vec<Row>,
    /// Targets measured in only one of the files.
    pub unmatched: Vec<String>,
}

/// Compares `new` against `baseline` with a relative `threshold` (0.05 = 5 %).
pub fn compare(baseline: &Path, new: &Path, threshold: f64) -> Result<Comparison, CompareError> {
    let base = ResultSet::load(baseline)?;
    let next = ResultSet::load(new)?;
    if !base.host.same_host(&next.host) {
        return Err(CompareError::OtherHost {
            baseline: baseline.to_owned(),
            new: new.to_owned(),
            differences: host_differences(&base.host, &next.host),
        });
    }
    if base.workload.mode != next.workload.mode {
        return Err(CompareError::OtherWorkload {
            baseline: baseline.to_owned(),
            new: new.to_owned(),
            base_mode: base.workload.mode.clone(),
            new_mode: next.workload.mode.clone(),
        });
    }
    let mut metrics: Vec<(&str, &'static str, Better)> = vec![
        ("ready_ns", "ns", Better::Lower),
        ("exit_ns", "ns", Better::Lower),
        ("pss_kib", "KiB", Better::Lower),
    ];
    metrics.extend(
        RUNTIME_MODES
            .iter()
            .filter(|(mode, _, _)| *mode == base.workload.mode)
            .map(|(_, metric, better)| {
                let unit = if metric.ends_with("_mb_s") {
                    "MB/s"
                } else {
                    "ns"
                };
                (*metric, unit, *better)
            }),
    );
    let mut rows = Vec::new();
    let mut unmatched = Vec::new();
    for target in &base.targets {
        let Some(other) = next.targets.iter().find(|t| t.name == target.name) else {
            unmatched.push(target.name.clone());
            continue;
        };
        for &(metric, unit, better) in &metrics {
            let (a, b) = (samples(target, metric), samples(other, metric));
            let (Some(ma), Some(mb), Some(test)) = (median(&a), median(&b), mann_whitney(&a, &b))
            else {
                continue;
            };
            let change = if ma == 0.0 { 0.0 } else { (mb - ma) / ma };
            let worse = match better {
                Better::Lower => change,
                Better::Higher => -change,
            };
            let status = match (test.p < ALPHA, worse) {
                (true, w) if w > threshold => Status::Regressed,
                (true, w) if w < -threshold => Status::Improved,
                _ => Status::Unchanged,
            };
            rows.push(Row {
                target: target.name.clone(),
                metric: metric.to_owned(),
                unit,
                baseline_median: ma,
                new_median: mb,
                change,
                p: test.p,
                status,
                smaller_is_better: better == Better::Lower,
            });
        }
    }
    unmatched.extend(
        next.targets
            .iter()
            .filter(|t| !base.targets.iter().any(|b| b.name == t.name))
            .map(|t| t.name.clone()),
    );
    if rows.is_empty() {
        return Err(CompareError::NothingInCommon {
            baseline: baseline.to_owned(),
            new: new.to_owned(),
        });
    }
    Ok(Comparison {
        baseline: baseline.to_owned(),
        new: new.to_owned(),
        threshold,
        alpha: ALPHA,
        rows,
        unmatched,
    })
}

/// One entry of github-action-benchmark's `customSmallerIsBetter` input.
#[derive(Debug, Clone, Serialize)]
pub struct BenchmarkEntry {
    pub name: String,
    pub unit: &'static str,
    pub value: f64,
    pub extra: String,
}

impl Comparison {
    pub fn regressed(&self) -> bool {
        self.rows.iter().any(|r| r.status == Status::Regressed)
    }

    /// The new medians of every smaller-is-better metric, for github-action-benchmark's
    /// `customSmallerIsBetter` tool (throughputs are left out: they are bigger-is-better).
    pub fn benchmark_entries(&self) -> Vec<BenchmarkEntry> {
        self.rows
            .iter()
            .filter(|r| r.smaller_is_better)
            .map(|r| BenchmarkEntry {
                name: format!("{}/{}", r.target, r.metric),
                unit: r.unit,
                value: r.new_median,
                extra: format!("baseline {} {}, p = {:.4}", r.baseline_median, r.unit, r.p),
            })
            .collect()
    }

    /// A Markdown table, regressions first.
    pub fn render_markdown(&self) -> String {
        let mut out = format!(
            "Comparing {} (new) against {} (baseline): threshold {:.1}%, Mann–Whitney U p < {}\n\n",
            self.new.display(),
            self.baseline.display(),
            self.threshold * 100.0,
            self.alpha
        );
        out += "| status | target | metric | baseline median | new median | change | p |\n";
        out += "| --- | --- | --- | ---: | ---: | ---: | ---: |\n";
        for status in [Status::Regressed, Status::Improved, Status::Unchanged] {
            for r in self.rows.iter().filter(|r| r.status == status) {
                out += &format!(
                    "| {} | {} | {} | {:.0} {} | {:.0} {} | {:+.1}% | {:.4} |\n",
                    match status {
                        Status::Regressed => "regressed",
                        Status::Improved => "improved",
                        Status::Unchanged => "unchanged",
                    },
                    r.target,
                    r.metric,
                    r.baseline_median,
                    r.unit,
                    r.new_median,
                    r.unit,
                    r.change * 100.0,
                    r.p
                );
            }
        }
        if !self.unmatched.is_empty() {
            out += &format!(
                "\nTargets in only one file (not compared): {}\n",
                self.unmatched.join(", ")
            );
        }
        out
    }
}

/// Parses `5%` or `0.05` into a fraction.
pub fn parse_threshold(text: &str) -> Result<f64, String> {
    let (number, scale) = match text.trim().strip_suffix('%') {
        Some(n) => (n, 100.0),
        None => (text.trim(), 1.0),
    };
    match number.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v / scale),
        _ => Err(format!("`{text}`: expected a threshold such as 5% or 0.05")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    #[test]
    fn an_injected_20_percent_regression_is_found() {
        let c = compare(
            &fixture("ready.json"),
            &fixture("ready-regressed-20pct.json"),
            0.05,
        )
        .unwrap();
        assert!(c.regressed(), "{}", c.render_markdown());
        assert!(
            c.rows
                .iter()
                .any(|r| r.metric == "ready_ns" && r.status == Status::Regressed)
        );
        // PSS was not touched.
        assert!(
            c.rows
                .iter()
                .filter(|r| r.metric == "pss_kib")
                .all(|r| r.status == Status::Unchanged)
        );
        let back = compare(
            &fixture("ready-regressed-20pct.json"),
            &fixture("ready.json"),
            0.05,
        )
        .unwrap();
        assert!(!back.regressed() && back.rows.iter().any(|r| r.status == Status::Improved));
    }

    #[test]
    fn the_same_data_is_unchanged() {
        let c = compare(&fixture("cpu.json"), &fixture("cpu.json"), 0.05).unwrap();
        assert!(c.rows.iter().all(|r| r.status == Status::Unchanged));
        assert!(c.rows.iter().any(|r| r.metric == "figures.elapsed_ns"));
        let entries = c.benchmark_entries();
        assert_eq!(entries.len(), c.rows.len());
        assert_eq!(entries[0].name, "native/exit_ns");
    }

    #[test]
    fn other_host_and_other_workload_are_refused() {
        let err = compare(
            &fixture("ready.json"),
            &fixture("ready-other-host.json"),
            0.05,
        )
        .unwrap_err();
        assert!(err.to_string().contains("another host"), "{err}");
        let err = compare(&fixture("ready.json"), &fixture("cpu.json"), 0.05).unwrap_err();
        assert!(matches!(err, CompareError::OtherWorkload { .. }), "{err}");
    }

    #[test]
    fn thresholds_parse() {
        assert_eq!(parse_threshold("5%"), Ok(0.05));
        assert_eq!(parse_threshold("0.1"), Ok(0.1));
        assert!(parse_threshold("x%").is_err());
    }
}
