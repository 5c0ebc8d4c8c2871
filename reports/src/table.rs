//! The plain-text summary table printed after a run set.

use crate::schema::{FIGURE_PREFIX, ResultSet, Summary};

/// Figures that best characterise a mode (syscall, mem, io, net, cpu), most telling first; the
/// table shows the first one any target reported. All figures stay in the JSON and CSV files.
const HEADLINE_FIGURES: [&str; 5] = [
    "ns_per_call",
    "ns_per_page",
    "write_mb_s",
    "rtt_median_ns",
    "elapsed_ns",
];

/// One row per target: run count; the start-up metric (time to `ISOLAB-READY` when every
/// target has it, else time to exit) as median, p95, min and MAD in milliseconds, with its
/// outlier count; the median time to exit when the former is the ready time; median PSS and
/// max RSS; the median of the mode's headline figure. A caption line explains the columns.
pub fn render(set: &ResultSet) -> String {
    let has = |metric: &str| set.targets.iter().all(|t| t.stats.contains_key(metric));
    let timed = if !set.targets.is_empty() && has("ready_ns") {
        "ready"
    } else {
        "exit"
    };
    let timed_metric = format!("{timed}_ns");
    let headline = HEADLINE_FIGURES.iter().find(|figure| {
        set.targets
            .iter()
            .any(|t| t.stats.contains_key(&format!("{FIGURE_PREFIX}{figure}")))
    });

    let mut header: Vec<String> = [
        "target",
        "runs",
        &format!("{timed} ms"),
        "p95",
        "min",
        "MAD",
        "outliers",
    ]
    .map(String::from)
    .into();
    if timed == "ready" {
        header.push("exit ms".into());
    }
    header.extend(["PSS KiB", "maxRSS KiB"].map(String::from));
    if let Some(figure) = headline {
        header.push((*figure).to_owned());
    }
    let caption = format!(
        "{timed} ms: median milliseconds from spawn to {}; p95, min, MAD (raw) and outliers \
         (> 3 scaled MADs from the median) of the same; other columns: medians\n",
        if timed == "ready" {
            "ISOLAB-READY"
        } else {
            "exit"
        }
    );

    let rows = set.targets.iter().map(|target| {
        let stat = |metric: &str| target.stats.get(metric);
        let ms = |value: Option<f64>| value.map_or_else(dash, |ns| format!("{:.3}", ns / 1e6));
        let timed_stats = stat(&timed_metric);
        let of = |pick: fn(&Summary) -> f64| timed_stats.map(pick);
        let mut row = vec![
            target.name.clone(),
            target.runs.len().to_string(),
            ms(of(|s| s.median)),
            ms(of(|s| s.p95)),
            ms(of(|s| s.min)),
            ms(of(|s| s.mad)),
            timed_stats.map_or_else(dash, |s| s.outliers.len().to_string()),
        ];
        if timed == "ready" {
            row.push(ms(stat("exit_ns").map(|s| s.median)));
        }
        row.push(number(stat("pss_kib").map(|s| s.median)));
        row.push(number(stat("max_rss_kib").map(|s| s.median)));
        if let Some(figure) = headline {
            row.push(number(
                stat(&format!("{FIGURE_PREFIX}{figure}")).map(|s| s.median),
            ));
        }
        row
    });
    layout(&header, rows) + &caption
}

fn dash() -> String {
    "-".to_owned()
}

fn number(value: Option<f64>) -> String {
    match value {
        None => dash(),
        Some(v) if v.fract() == 0.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.3}"),
    }
}

/// Aligns columns: the first (names) to the left, the others (numbers) to the right.
pub fn layout(header: &[String], rows: impl Iterator<Item = Vec<String>>) -> String {
    let rows: Vec<Vec<String>> = std::iter::once(header.to_vec()).chain(rows).collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|col| {
            rows.iter()
                .map(|r| r[col].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(col, (cell, &width))| {
                if col == 0 {
                    format!("{cell:<width$}")
                } else {
                    format!("{cell:>width$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::tests::sample_set;

    #[test]
    fn renders_ready_times_in_ms_and_the_headline_figure() {
        let text = render(&sample_set());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[2].starts_with("ready ms: median milliseconds from spawn to ISOLAB-READY"));
        let header: Vec<&str> = lines[0].split("  ").filter(|c| !c.is_empty()).collect();
        let cells: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(header.len(), cells.len(), "{text}");
        assert_eq!(header[2].trim(), "ready ms");
        assert_eq!(header.last().unwrap().trim(), "ns_per_call");
        assert_eq!(
            cells,
            [
                "native", "3", "1.001", "1.002", "1.000", "0.001", "0", "2.001", "900", "1200",
                "51"
            ]
        );
    }

    #[test]
    fn falls_back_to_exit_time_without_ready() {
        let mut set = sample_set();
        set.targets[0].stats.remove("ready_ns");
        let text = render(&set);
        let header: Vec<&str> = text.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(
            header[..6],
            ["target", "runs", "exit", "ms", "p95", "min"],
            "{text}"
        );
        assert!(!text.contains("outliers  exit ms"), "{text}");
    }
}
