//! The report's charts. Each is first described as a [`Figure`] (marks in data coordinates,
//! axis labels with units, a legend), then drawn by one renderer into SVG and PNG, so both
//! files always show the same thing and every chart shares the same look and colours.
//!
//! Text is drawn with DejaVu Sans, embedded in the binary (assets/DejaVuSans.ttf, licence
//! next to it): PNGs render the same on a host without any font installed.

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::coord::combinators::IntoLogRange;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use plotters::style::FontStyle;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::analysis::Collection;
use crate::measures::{self, Missing};
use crate::plan::Plan;

const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";
pub const WIDTH: u32 = 900;
pub const HEIGHT: u32 = 500;
/// Above this ratio between the largest and smallest value, a chart uses a log scale.
pub const LOG_SCALE_RATIO: f64 = 20.0;

type Rgb = (u8, u8, u8);

/// Something drawn in data coordinates; x is a category position (0, 1, 2...) or a count.
#[derive(Debug, Clone)]
enum Mark {
    Point {
        x: f64,
        y: f64,
        rgb: Rgb,
    },
    Line {
        from: (f64, f64),
        to: (f64, f64),
        rgb: Rgb,
        width: u32,
    },
    Bar {
        x0: f64,
        x1: f64,
        y0: f64,
        y1: f64,
        rgb: Rgb,
    },
    /// Text centred on a point (the isolation matrix's cells).
    Text {
        x: f64,
        y: f64,
        text: String,
    },
}

/// One chart, ready to draw.
#[derive(Debug, Clone)]
pub struct Figure {
    /// File stem: `<name>.svg`, `<name>.png`.
    pub name: &'static str,
    pub title: String,
    /// Names of the categories at x = 0, 1, 2...; empty for a numeric x axis.
    categories: Vec<String>,
    /// Names of the categories at y = 0, 1, 2...; empty for a numeric y axis.
    y_categories: Vec<String>,
    x_desc: String,
    y_desc: String,
    x_range: (f64, f64),
    y_range: (f64, f64),
    log_y: bool,
    marks: Vec<Mark>,
    legend: Vec<(String, Rgb)>,
    /// One line under the chart saying how to read it.
    pub note: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("drawing chart {name}: {message}")]
    Draw { name: &'static str, message: String },
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A chart that could be drawn, or what it lacks.
pub type Outcome = Result<Figure, Missing>;

/// Every chart of a report, in order.
pub fn all(c: &Collection, plan: &Plan) -> Vec<(&'static str, Outcome)> {
    vec![
        ("Start-up time per target", startup(c)),
        ("Start-up breakdown per phase", phases(c)),
        ("Memory per instance", memory(c)),
        ("Disk footprint", footprint(c)),
        ("Run-time overhead relative to native", overhead(c)),
        ("Density", density(c)),
        ("Isolation matrix", isolation(c)),
        ("Capacity plan", planning(c, plan)),
    ]
}

fn scale(values: impl Iterator<Item = f64>, bar_base: bool) -> ((f64, f64), bool) {
    let (lo, hi) = values
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return ((0.0, 1.0), false);
    }
    if hi / lo > LOG_SCALE_RATIO {
        ((lo / 2.0, hi * 2.0), true)
    } else {
        // Bars start at 0; strip plots zoom on the data with a margin.
        let bottom = if bar_base { 0.0 } else { (lo * 0.8).max(0.0) };
        ((bottom, hi * 1.15), false)
    }
}

fn startup(c: &Collection) -> Outcome {
    let (set, rows) = measures::startup(c)?;
    // Log scale when the targets' medians differ by orders of magnitude; the range still
    // covers every run.
    let (_, log_y) = scale(rows.iter().map(|r| r.median_ms), false);
    let all = || rows.iter().flat_map(|r| r.ms.iter().copied());
    let (lo, hi) = (
        all().fold(f64::INFINITY, f64::min),
        all().fold(0.0, f64::max),
    );
    let (lo, hi) = if log_y {
        (lo / 2.0, hi * 2.0)
    } else {
        ((lo * 0.8).max(0.0), hi * 1.15)
    };
    let mut marks = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let x = i as f64;
        let rgb = c.colour(&row.target);
        for (j, &ms) in row.ms.iter().enumerate() {
            // Deterministic jitter spreads equal values apart.
            let jitter = ((j * 7) % 11) as f64 / 10.0 - 0.5;
            marks.push(Mark::Point {
                x: x + jitter * 0.3,
                y: ms,
                rgb,
            });
        }
        for (y, width, half) in [(row.median_ms, 4, 0.3), (row.p95_ms, 2, 0.18)] {
            marks.push(Mark::Line {
                from: (x - half, y),
                to: (x + half, y),
                rgb: (0, 0, 0),
                width,
            });
        }
    }
    Ok(Figure {
        name: "startup",
        title: "Start-up: spawn to ready".into(),
        categories: rows.iter().map(|r| r.target.clone()).collect(),
        y_categories: Vec::new(),
        x_desc: "target".into(),
        y_desc: format!(
            "time to ISOLAB-READY (ms{})",
            if log_y { ", log scale" } else { "" }
        ),
        x_range: (-0.5, rows.len() as f64 - 0.5),
        y_range: (lo, hi),
        log_y,
        marks,
        legend: vec![(
            "black bars: median (long), p95 (short)".to_owned(),
            (0, 0, 0),
        )],
        note: format!(
            "Dots: the {} runs of each target; long black bar: median; short black bar: p95. From {}.",
            set.set.runs_per_target,
            set.path.display()
        ),
    })
}

/// Colours of the start-up phases (a palette apart from the targets' own, which only the
/// total of a target without phases uses).
const PHASE_COLOURS: [(&str, Rgb); 9] = [
    ("launch", (166, 206, 227)),
    ("prepare", (178, 223, 138)),
    ("monitor", (141, 211, 199)),
    ("namespaces", (253, 191, 111)),
    ("boot", (231, 41, 138)),
    ("cgroup", (251, 154, 153)),
    ("mounts", (202, 178, 214)),
    ("confine", (255, 237, 111)),
    ("ready", (160, 160, 160)),
];
/// Bars taller than this many times the tallest recorded breakdown are cut (their total
/// written above): a linear axis keeps the segments comparable.
const PHASE_CUT_RATIO: f64 = 1.6;
/// The axis goes this far above the tallest bar, so the legend's lines (one per phase)
/// stay above the bars.
const PHASE_LEGEND_ROOM: f64 = 2.2;

fn phases(c: &Collection) -> Outcome {
    let (set, rows) = measures::start_up_phases(c)?;
    let tallest_recorded = rows
        .iter()
        .filter(|r| r.recorded)
        .map(|r| r.sum_ms())
        .fold(0.0, f64::max);
    let tallest = rows.iter().map(|r| r.sum_ms()).fold(0.0, f64::max);
    let ceiling = tallest.min(tallest_recorded * PHASE_CUT_RATIO);
    let top = ceiling * PHASE_LEGEND_ROOM;
    let mut marks = Vec::new();
    let mut cut = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let x = i as f64;
        let mut y = 0.0f64;
        for (name, ms) in &row.phases {
            let rgb = match PHASE_COLOURS.iter().find(|(n, _)| n == name) {
                Some((_, rgb)) => *rgb,
                None => c.colour(&row.target),
            };
            marks.push(Mark::Bar {
                x0: x - 0.3,
                x1: x + 0.3,
                y0: y.min(ceiling),
                y1: (y + ms).min(ceiling),
                rgb,
            });
            y += ms;
        }
        if y > ceiling {
            cut.push(row.target.clone());
            marks.push(Mark::Text {
                x,
                y: ceiling + top * 0.03,
                text: format!("↑ {y:.0} ms"),
            });
        }
    }
    let mut legend: Vec<(String, Rgb)> = measures::PHASES
        .iter()
        .filter(|(name, _)| rows.iter().any(|r| r.phases.iter().any(|(n, _)| n == name)))
        .map(|(name, label)| {
            let rgb = PHASE_COLOURS
                .iter()
                .find(|(n, _)| n == name)
                .map_or((0, 0, 0), |(_, rgb)| *rgb);
            ((*label).to_owned(), rgb)
        })
        .collect();
    legend.reverse();
    Ok(Figure {
        name: "phases",
        title: "Start-up, phase by phase (mean of each phase)".into(),
        categories: rows
            .iter()
            .map(|r| {
                if r.recorded {
                    r.target.clone()
                } else {
                    format!("{} (total)", r.target)
                }
            })
            .collect(),
        y_categories: Vec::new(),
        x_desc: "target (\"total\": it records no phases)".into(),
        y_desc: "time from spawn (ms)".into(),
        x_range: (-0.5, rows.len() as f64 - 0.5),
        y_range: (0.0, top),
        log_y: false,
        marks,
        legend,
        note: format!(
            "Each bar stacks the mean of each phase over the {} runs, bottom first, in the \
             order they happened: a run's phases add up to its time to ready, so the bar is \
             the mean time to ready (the start-up chart shows medians). isolab's container \
             and mini VM write a time stamp as each phase ends (to the descriptor \
             $ISOLAB_PHASE_FD names); other targets show their total in their own colour.{} \
             From {}.",
            set.set.runs_per_target,
            if cut.is_empty() {
                String::new()
            } else {
                format!(
                    " Cut at the top, with their total written above: {}.",
                    cut.join(", ")
                )
            },
            set.path.display()
        ),
    })
}

fn footprint(c: &Collection) -> Outcome {
    let (set, disk) = measures::disk_footprint(c)?;
    let mib = |bytes: u64| bytes as f64 / 1048576.0;
    let mut bars: Vec<(String, u64, Rgb)> = Vec::new();
    // Short category names, so five or more fit side by side; the legend says what each
    // colour is, the table under the chart has the details.
    let untagged = |name: &str| name.trim_end_matches(":latest").to_owned();
    for image in &disk.images {
        bars.push((
            untagged(&image.name),
            image.bytes,
            c.colour("container-image"),
        ));
    }
    for container in &disk.containers {
        let of = container
            .image
            .as_ref()
            .map_or(String::new(), |i| format!(" of {}", untagged(&i.name)));
        bars.push((
            format!("container{of}"),
            container.upper_bytes,
            c.colour("container"),
        ));
    }
    for vm in &disk.vms {
        bars.push((vm.target.clone(), vm.bytes(), c.colour(&vm.target)));
    }
    let positive = || bars.iter().map(|b| mib(b.1)).filter(|v| *v > 0.0);
    let lo = positive().fold(f64::INFINITY, f64::min);
    let hi = positive().fold(0.0, f64::max);
    if !lo.is_finite() {
        return Err(Missing::new(
            "disk footprint with any bytes in it",
            "isolab measure (its footprint stage)",
        ));
    }
    // The top of the axis leaves the upper quarter or so to the legend, above the tallest
    // bar's value: that value sits at 70 % of the axis's decades.
    let lo = lo / 4.0;
    let hi = lo * 10f64.powf((hi * 2.0 / lo).log10() / 0.7);
    let mut marks = Vec::new();
    for (i, (_, bytes, rgb)) in bars.iter().enumerate() {
        let x = i as f64;
        let top = mib(*bytes).max(lo);
        marks.push(Mark::Bar {
            x0: x - 0.3,
            x1: x + 0.3,
            y0: lo,
            y1: top,
            rgb: *rgb,
        });
        marks.push(Mark::Text {
            x,
            y: top * 1.8,
            text: measures::format_bytes(*bytes),
        });
    }
    let legend = [
        (
            "container image: layers + metadata",
            c.colour("container-image"),
        ),
        (
            "a container's upper layer after a write",
            c.colour("container"),
        ),
    ]
    .into_iter()
    .map(|(label, rgb)| (label.to_owned(), rgb))
    .chain(disk.vms.iter().map(|vm| {
        let roles: Vec<&str> = vm.files.iter().map(|(role, _)| role.as_str()).collect();
        (
            format!("{}: what it boots ({})", vm.target, roles.join(" + ")),
            c.colour(&vm.target),
        )
    }))
    .collect();
    Ok(Figure {
        name: "footprint",
        title: "Disk footprint: container images vs what VMs boot".into(),
        categories: bars.iter().map(|b| b.0.clone()).collect(),
        y_categories: Vec::new(),
        x_desc: "container image, container (its upper layer) or VM target".into(),
        y_desc: "allocated on disk (MiB, log scale)".into(),
        x_range: (-0.5, bars.len() as f64 - 0.5),
        y_range: (lo, hi),
        log_y: true,
        marks,
        legend,
        note: format!(
            "Counted as {}. Images and the container were built and run in a fresh image \
             store; the container wrote one small file. The mini VM boots the workload ELF \
             itself (its kernel is part of the monitor, as a container's runtime is part of \
             isolab); the Linux VM boots the fetched kernel and an initramfs holding the \
             workload, with no disk image.{} From {}.",
            disk.units,
            if disk.vms.iter().any(|v| v.target == "vm-linux") {
                ""
            } else {
                " The Linux VM is missing: no kernel was fetched (isolab kernel fetch)."
            },
            set.path.display()
        ),
    })
}

fn memory(c: &Collection) -> Outcome {
    let (set, rows) = measures::memory(c)?;
    let mib = |kib: f64| kib / 1024.0;
    let ((_, hi), _) = scale(rows.iter().map(|r| mib(r.pss_kib)), true);
    let workload_rgb = (200, 200, 200);
    let mut marks = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let x = i as f64;
        let base = mib(row.pss_kib - row.overhead_kib);
        marks.push(Mark::Bar {
            x0: x - 0.3,
            x1: x + 0.3,
            y0: 0.0,
            y1: base,
            rgb: workload_rgb,
        });
        marks.push(Mark::Bar {
            x0: x - 0.3,
            x1: x + 0.3,
            y0: base,
            y1: mib(row.pss_kib),
            rgb: c.colour(&row.target),
        });
    }
    Ok(Figure {
        name: "memory",
        title: "Host memory per instance (median peak PSS)".into(),
        categories: rows.iter().map(|r| r.target.clone()).collect(),
        y_categories: Vec::new(),
        x_desc: "target".into(),
        y_desc: "PSS per instance (MiB)".into(),
        x_range: (-0.5, rows.len() as f64 - 0.5),
        y_range: (0.0, hi),
        log_y: false,
        marks,
        legend: vec![("as native (the workload itself)".into(), workload_rgb)],
        note: format!(
            "Grey: native's PSS; coloured: what the target adds. A VM's PSS is its monitor's, \
             guest pages it touched included; configured guest RAM it never touched costs \
             nothing and is not shown. From {}.",
            set.path.display()
        ),
    })
}

fn overhead(c: &Collection) -> Outcome {
    let (rows, missing) = measures::overheads(c);
    if rows.is_empty() {
        return Err(missing.into_iter().next().unwrap_or_else(no_other_target));
    }
    let modes: Vec<&str> = measures::RUNTIME_MODES
        .iter()
        .map(|(m, _, _)| *m)
        .filter(|m| rows.iter().any(|r| r.mode == *m))
        .collect();
    let targets: Vec<&str> = c
        .target_names()
        .into_iter()
        .filter(|t| rows.iter().any(|r| r.target == *t))
        .collect();
    let ((lo, hi), log_y) = scale(
        rows.iter().flat_map(|r| [r.ci.0, r.ci.1, 1.0]).chain([0.5]),
        true,
    );
    let base = if log_y { lo } else { 0.0 };
    let width = 0.8 / targets.len() as f64;
    let mut marks = Vec::new();
    for row in &rows {
        let m = modes.iter().position(|m| *m == row.mode).unwrap_or(0) as f64;
        let t = targets.iter().position(|t| *t == row.target).unwrap_or(0) as f64;
        let x0 = m - 0.4 + t * width;
        let mid = x0 + width / 2.0;
        marks.push(Mark::Bar {
            x0: x0 + 0.01,
            x1: x0 + width - 0.01,
            y0: base,
            y1: row.ratio,
            rgb: c.colour(&row.target),
        });
        marks.push(Mark::Line {
            from: (mid, row.ci.0),
            to: (mid, row.ci.1),
            rgb: (0, 0, 0),
            width: 2,
        });
        for y in [row.ci.0, row.ci.1] {
            marks.push(Mark::Line {
                from: (mid - width / 4.0, y),
                to: (mid + width / 4.0, y),
                rgb: (0, 0, 0),
                width: 2,
            });
        }
    }
    marks.push(Mark::Line {
        from: (-0.5, 1.0),
        to: (modes.len() as f64 - 0.5, 1.0),
        rgb: (90, 90, 90),
        width: 1,
    });
    Ok(Figure {
        name: "overhead",
        title: "Run-time cost relative to native".into(),
        categories: modes
            .iter()
            .map(|m| {
                let metric = measures::RUNTIME_MODES
                    .iter()
                    .find(|(n, _, _)| n == m)
                    .map_or("", |r| r.1);
                format!(
                    "{m} ({})",
                    metric.trim_start_matches(crate::schema::FIGURE_PREFIX)
                )
            })
            .collect(),
        y_categories: Vec::new(),
        x_desc: "workload (figure compared)".into(),
        y_desc: format!(
            "cost vs native (×, 1 = native{})",
            if log_y { ", log scale" } else { "" }
        ),
        x_range: (-0.5, modes.len() as f64 - 0.5),
        y_range: (if log_y { lo } else { 0.0 }, hi),
        log_y,
        marks,
        legend: targets
            .iter()
            .map(|t| ((*t).to_owned(), c.colour(t)))
            .collect(),
        note: "Bars: median cost over native's (time, or native's throughput over the target's \
               for io); whiskers: 95 % bootstrap interval (2000 resamples, fixed seed); grey \
               line: native. Lower is better."
            .into(),
    })
}

fn density(c: &Collection) -> Outcome {
    let (set, costs) = measures::density_costs(c)?;
    let mut marks = Vec::new();
    let mut legend = Vec::new();
    let (mut max_x, mut max_y, mut min_y) = (1.0f64, 1.0f64, 0.0f64);
    for target in &set.set.targets {
        let Some(density) = &target.density else {
            continue;
        };
        let rgb = c.colour(&target.name);
        let mut last = (0.0, 0.0);
        for step in &density.steps {
            let point = (f64::from(step.running), step.host_used_kib as f64 / 1024.0);
            marks.push(Mark::Line {
                from: last,
                to: point,
                rgb,
                width: 2,
            });
            marks.push(Mark::Point {
                x: point.0,
                y: point.1,
                rgb,
            });
            max_x = max_x.max(point.0);
            max_y = max_y.max(point.1);
            // The rest of the host can free memory while instances start: below the baseline.
            min_y = min_y.min(point.1);
            last = point;
        }
        let label = match costs.iter().find(|d| d.target == target.name) {
            Some(d) => format!(
                "{}: {:.2} MiB per instance",
                target.name,
                d.per_instance_kib / 1024.0
            ),
            None => target.name.clone(),
        };
        legend.push((label, rgb));
    }
    if legend.is_empty() {
        return Err(measures::density());
    }
    Ok(Figure {
        name: "density",
        title: "Host memory used vs instances running".into(),
        categories: Vec::new(),
        y_categories: Vec::new(),
        x_desc: "instances running".into(),
        y_desc: "host memory used (MiB, MemTotal − MemAvailable)".into(),
        x_range: (0.0, max_x * 1.05),
        y_range: (min_y * 1.15, max_y * 1.15),
        log_y: false,
        marks,
        legend,
        note: format!(
            "Host memory used above the baseline taken before the first start, after each \
             start step; per-instance figures are least-squares slopes over the steps (host \
             memory, or the PSS sum where the host figure falls below it). From {}.",
            set.path.display()
        ),
    })
}

/// Cell colours of the isolation matrix, and the legend that names them.
const MATRIX_KEY: [(measures::Seen, Rgb, &str); 4] = [
    (
        measures::Seen::Isolated,
        (129, 199, 132),
        "its own (isolated from the host)",
    ),
    (
        measures::Seen::SameAsHost,
        (239, 154, 154),
        "the same as the host",
    ),
    (
        measures::Seen::Absent,
        (220, 220, 220),
        "absent (nothing to read there)",
    ),
    (
        measures::Seen::Host,
        (179, 205, 227),
        "native: the host's own view",
    ),
];
/// Column headings of the isolation matrix, per probe field.
const MATRIX_HEADINGS: [&str; 8] = [
    "pid",
    "pids seen",
    "hostname",
    "net devices",
    "CapEff",
    "seccomp",
    "uid map",
    "host file",
];
/// Longest cell text (in characters, the ellipsis of a cut one included), so cells never
/// overlap.
const MATRIX_CELL_CHARS: usize = 12;

fn isolation(c: &Collection) -> Outcome {
    let (set, rows) = measures::probes(c)?;
    let host = &rows[0];
    let n = rows.len();
    let mut marks = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        // Native at the top, the rest in run-set order below it.
        let y = (n - 1 - i) as f64;
        for (x, field) in measures::PROBE_FIELDS.iter().enumerate() {
            let seen = row.seen(field, host);
            let rgb = MATRIX_KEY
                .iter()
                .find(|(s, _, _)| *s == seen)
                .map_or((255, 255, 255), |k| k.1);
            let x = x as f64;
            marks.push(Mark::Bar {
                x0: x - 0.48,
                x1: x + 0.48,
                y0: y - 0.45,
                y1: y + 0.45,
                rgb,
            });
            let text = row.cell(field);
            let text = if text.chars().count() > MATRIX_CELL_CHARS {
                let kept: String = text.chars().take(MATRIX_CELL_CHARS - 1).collect();
                format!("{kept}…")
            } else {
                text
            };
            marks.push(Mark::Text { x, y, text });
        }
    }
    Ok(Figure {
        name: "isolation",
        title: "Isolation matrix: what the workload sees from inside each target".into(),
        categories: MATRIX_HEADINGS.iter().map(|h| (*h).to_owned()).collect(),
        y_categories: rows.iter().rev().map(|r| r.target.clone()).collect(),
        x_desc: "probe field".into(),
        // The row names say it; a description would collide with the longest of them.
        y_desc: String::new(),
        x_range: (-0.5, measures::PROBE_FIELDS.len() as f64 - 0.5),
        // The band above the rows holds the key's four lines: about a third of the rows'
        // height keeps it off the top row whatever the number of targets.
        y_range: (-0.5, n as f64 - 0.5 + (n as f64 / 3.0 + 0.8)),
        log_y: false,
        marks,
        legend: MATRIX_KEY
            .iter()
            .map(|(_, rgb, label)| ((*label).to_owned(), *rgb))
            .collect(),
        note: format!(
            "Each cell is the probe's figure (isolab-workload probe --host-marker WORKLOAD, \
             first run): its pid (≤ {} counts as a pid space of its own), how many pids it \
             sees, hostname, network devices, effective capabilities (counted), seccomp mode (2 = \
             filter), uid map (inside→outside ×count), and whether it sees the workload's \
             host path. Green: its own; red: the host's; grey: nothing to read. From {}.",
            measures::OWN_PID_SPACE_MAX_PID,
            set.path.display()
        ),
    })
}

fn planning(c: &Collection, plan: &Plan) -> Outcome {
    if plan.fits.is_empty() {
        return Err(plan
            .not_measured
            .first()
            .map(|(_, m)| m.clone())
            .unwrap_or_else(no_other_target));
    }
    let ((lo, hi), log_y) = scale(plan.fits.iter().map(|f| f.instances.max(1) as f64), true);
    let base = if log_y { lo } else { 0.0 };
    let marks = plan
        .fits
        .iter()
        .enumerate()
        .map(|(i, f)| Mark::Bar {
            x0: i as f64 - 0.3,
            x1: i as f64 + 0.3,
            y0: base,
            y1: f.instances.max(1) as f64,
            rgb: c.colour(&f.per_instance.target),
        })
        .collect();
    let i = &plan.input;
    Ok(Figure {
        name: "plan",
        title: format!(
            "Instances of a {} MiB / {} CPU workload that fit this host",
            i.workload_mem_kib / 1024,
            i.workload_cpu
        ),
        categories: plan
            .fits
            .iter()
            .map(|f| {
                format!(
                    "{} ({}, {} binds)",
                    f.per_instance.class,
                    f.per_instance.target,
                    match f.binds {
                        crate::plan::Binding::Memory => "memory",
                        crate::plan::Binding::Cpu => "CPU",
                    }
                )
            })
            .collect(),
        y_categories: Vec::new(),
        x_desc: "class (measured target, binding resource)".into(),
        y_desc: format!("instances{}", if log_y { " (log scale)" } else { "" }),
        x_range: (-0.5, plan.fits.len() as f64 - 0.5),
        y_range: (if log_y { lo } else { 0.0 }, hi),
        log_y,
        marks,
        legend: Vec::new(),
        note: format!(
            "Host: {:.1} GiB, {} CPUs, {:.1} GiB and {} CPUs reserved; per-instance overheads \
             measured (see the plan table).",
            i.host_mem_kib as f64 / 1048576.0,
            i.host_cpus,
            i.reserve_mem_kib as f64 / 1048576.0,
            i.reserve_cpu
        ),
    })
}

fn no_other_target() -> Missing {
    Missing::new(
        "a target besides native",
        "isolab bench --target native,container,vm-mini",
    )
}

fn register_font() -> Result<(), String> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT)
            .map_err(|_| "the embedded font does not parse".to_owned());
    });
    result
}

impl Figure {
    /// Writes `<name>.svg` and `<name>.png` into `dir`; returns the SVG text.
    pub fn write(&self, dir: &Path) -> Result<String, ChartError> {
        let error = |message: String| ChartError::Draw {
            name: self.name,
            message,
        };
        register_font().map_err(error)?;
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
            self.draw(&root).map_err(error)?;
        }
        let svg_path = dir.join(format!("{}.svg", self.name));
        std::fs::write(&svg_path, &svg).map_err(|source| ChartError::Write {
            path: svg_path,
            source,
        })?;
        let png_path = dir.join(format!("{}.png", self.name));
        let root = BitMapBackend::new(&png_path, (WIDTH, HEIGHT)).into_drawing_area();
        self.draw(&root).map_err(error)?;
        Ok(svg)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (lo, hi) = self.y_range;
        if self.log_y {
            self.draw_with(root, (lo..hi).log_scale())
        } else {
            self.draw_with(root, lo..hi)
        }
    }

    fn draw_with<DB, Y>(&self, root: &DrawingArea<DB, Shift>, y: Y) -> Result<(), String>
    where
        DB: DrawingBackend,
        Y: AsRangedCoord<Value = f64>,
        Y::CoordDescType: ValueFormatter<f64>,
    {
        let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FAMILY, 22))
            .margin(12)
            .x_label_area_size(55)
            // Wide enough for the longest row name of a category axis (~8 px a character).
            .y_label_area_size(
                self.y_categories
                    .iter()
                    .map(|c| 8 * c.chars().count() as u32 + 25)
                    .fold(80, u32::max),
            )
            .build_cartesian_2d(self.x_range.0..self.x_range.1, y)
            .map_err(err)?;
        let categories = &self.categories;
        let label = |x: &f64| {
            if categories.is_empty() {
                return format!("{x:.0}");
            }
            let i = x.round();
            match categories.get(i as usize) {
                Some(name) if (x - i).abs() < 1e-6 && i >= 0.0 => name.clone(),
                _ => String::new(),
            }
        };
        let mut mesh = chart.configure_mesh();
        let y_categories = &self.y_categories;
        // Up to three significant digits, without a trailing ".0".
        let y_label = |v: &f64| {
            if !y_categories.is_empty() {
                let i = v.round();
                return match y_categories.get(i as usize) {
                    Some(name) if (v - i).abs() < 1e-6 && i >= 0.0 => name.clone(),
                    _ => String::new(),
                };
            }
            let text = format!(
                "{:.*}",
                (2 - v.abs().max(1e-9).log10().floor() as i32).clamp(0, 3) as usize,
                v
            );
            match text.contains('.') {
                true => text.trim_end_matches('0').trim_end_matches('.').to_owned(),
                false => text,
            }
        };
        mesh.x_desc(&self.x_desc)
            .y_label_formatter(&y_label)
            .light_line_style(WHITE)
            .y_desc(&self.y_desc)
            .x_label_formatter(&label)
            .label_style((FAMILY, 14))
            .axis_desc_style((FAMILY, 15))
            .disable_x_mesh();
        if !categories.is_empty() {
            mesh.x_labels(categories.len());
        }
        if !y_categories.is_empty() {
            // One label per row: a tick on every whole position of the range.
            mesh.y_labels((self.y_range.1 - self.y_range.0).ceil() as usize + 1)
                .disable_y_mesh();
        }
        mesh.draw().map_err(err)?;
        for mark in &self.marks {
            let colour = |rgb: &Rgb| RGBColor(rgb.0, rgb.1, rgb.2);
            match mark {
                Mark::Point { x, y, rgb } => chart
                    .draw_series(std::iter::once(Circle::new(
                        (*x, *y),
                        4,
                        colour(rgb).mix(0.75).filled(),
                    )))
                    .map(|_| ()),
                Mark::Line {
                    from,
                    to,
                    rgb,
                    width,
                } => chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![*from, *to],
                        colour(rgb).stroke_width(*width),
                    )))
                    .map(|_| ()),
                Mark::Bar {
                    x0,
                    x1,
                    y0,
                    y1,
                    rgb,
                } => chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(*x0, *y0), (*x1, *y1)],
                        colour(rgb).filled(),
                    )))
                    .map(|_| ()),
                Mark::Text { x, y, text } => chart
                    .draw_series(std::iter::once(Text::new(
                        text.clone(),
                        (*x, *y),
                        TextStyle::from((FAMILY, 13)).pos(Pos::new(HPos::Center, VPos::Center)),
                    )))
                    .map(|_| ()),
            }
            .map_err(err)?;
        }
        if !self.legend.is_empty() {
            for (name, rgb) in &self.legend {
                let rgb = RGBColor(rgb.0, rgb.1, rgb.2);
                chart
                    .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())
                    .map_err(err)?
                    .label(name)
                    .legend(move |(x, y)| {
                        Rectangle::new([(x, y - 6), (x + 14, y + 6)], rgb.filled())
                    });
            }
            chart
                .configure_series_labels()
                .label_font((FAMILY, 14))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperLeft)
                .draw()
                .map_err(err)?;
        }
        root.present().map_err(err)
    }
}
