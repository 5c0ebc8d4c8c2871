//! `isolab report`: one self-contained `report.html` (inline CSS and SVG, no script, nothing
//! fetched), `summary.md` with the same tables, and every chart as SVG and PNG.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use crate::analysis::{Collection, LoadError};
use crate::charts::{self, ChartError};
use crate::claims::{self, Claim};
use crate::measures;
use crate::plan::{self, Plan, PlanError, PlanInput};
use crate::table;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("--out {path}: cannot create the directory")]
    OutDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Chart(#[from] ChartError),
    #[error("planning for the measured host")]
    Plan(#[from] PlanError),
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The report's sections, computed once and rendered twice (HTML and Markdown).
#[derive(Debug)]
struct Sections {
    claims: Vec<Claim>,
    plan: Plan,
}

/// Writes the report of `paths` into `out`; returns the files written.
pub fn write(paths: &[PathBuf], out: &Path) -> Result<Vec<PathBuf>, ReportError> {
    let c = Collection::load(paths)?;
    fs::create_dir_all(out).map_err(|source| ReportError::OutDir {
        path: out.to_owned(),
        source,
    })?;
    let host = c.host();
    let input = PlanInput {
        host_mem_kib: host.mem_total_kib,
        host_cpus: f64::from(host.cores),
        workload_mem_kib: plan::DEFAULT_WORKLOAD_MEM_KIB,
        workload_cpu: plan::DEFAULT_WORKLOAD_CPU,
        reserve_mem_kib: plan::DEFAULT_RESERVE_MEM_KIB.min(host.mem_total_kib / 2),
        reserve_cpu: plan::DEFAULT_RESERVE_CPU.min(f64::from(host.cores) / 2.0),
    };
    let sections = Sections {
        claims: claims::check(&c),
        plan: plan::plan(input, &c)?,
    };
    let mut files = Vec::new();
    let mut html_charts = String::new();
    let mut md_charts = String::new();
    for (title, outcome) in charts::all(&c, &sections.plan) {
        match outcome {
            Ok(figure) => {
                let svg = figure.write(out)?;
                files.push(out.join(format!("{}.svg", figure.name)));
                files.push(out.join(format!("{}.png", figure.name)));
                let table = chart_table(figure.name, &c);
                let _ = writeln!(
                    html_charts,
                    "<section><h3>{}</h3>{}<p class=\"note\">{}</p>{}</section>",
                    esc(title),
                    strip_xml_declaration(&svg),
                    esc(&figure.note),
                    table.as_ref().map_or(String::new(), |t| html_table(t, &[]))
                );
                let _ = write!(
                    md_charts,
                    "### {title}\n\n![{title}]({}.png)\n\n{}\n\n{}",
                    figure.name,
                    figure.note,
                    table.as_ref().map_or(String::new(), |t| md_table(t) + "\n")
                );
            }
            Err(missing) => {
                let _ = writeln!(
                    html_charts,
                    "<section><h3>{}</h3><p class=\"missing\">{}</p></section>",
                    esc(title),
                    esc(&missing.sentence())
                );
                let _ = write!(md_charts, "### {title}\n\n_{}_\n\n", missing.sentence());
            }
        }
    }
    let html = html(&c, &sections, &html_charts);
    let md = markdown(&c, &sections, &md_charts);
    for (name, text) in [("report.html", html), ("summary.md", md)] {
        let path = out.join(name);
        fs::write(&path, text).map_err(|source| ReportError::Write {
            path: path.clone(),
            source,
        })?;
        files.push(path);
    }
    Ok(files)
}

/// Plotters' SVG starts with an XML declaration, which is not allowed inside HTML.
fn strip_xml_declaration(svg: &str) -> &str {
    match svg.strip_prefix("<?xml") {
        Some(rest) => rest
            .split_once("?>")
            .map_or(svg, |(_, body)| body.trim_start()),
        None => svg,
    }
}

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Rows of a table: header first. Rendered as HTML or Markdown.
type Rows = Vec<Vec<String>>;

fn host_rows(c: &Collection) -> Rows {
    let h = c.host();
    vec![
        vec!["field".into(), "value".into()],
        vec!["kernel".into(), h.kernel.clone()],
        vec![
            "CPU".into(),
            format!("{} ({} logical CPUs)", h.cpu_model, h.cores),
        ],
        vec![
            "memory".into(),
            format!("{:.1} GiB", h.mem_total_kib as f64 / 1048576.0),
        ],
        vec!["cgroup mode".into(), h.cgroup_mode.clone()],
        vec!["KVM".into(), h.kvm_kind.clone()],
        vec!["isolab revision".into(), h.git_revision.clone()],
    ]
}

fn command_rows(c: &Collection) -> Rows {
    let mut rows = vec![vec![
        "file".into(),
        "workload".into(),
        "measured".into(),
        "command".into(),
    ]];
    rows.extend(c.sets.iter().map(|l| {
        vec![
            l.path.display().to_string(),
            l.set.workload.mode.clone(),
            l.set.host.date.clone(),
            l.command_line(),
        ]
    }));
    rows
}

fn claim_rows(claims: &[Claim]) -> Rows {
    let mut rows = vec![vec![
        "#".into(),
        "claim".into(),
        "measured".into(),
        "command".into(),
        "data source".into(),
        "verdict".into(),
    ]];
    rows.extend(claims.iter().map(|c| {
        vec![
            c.number.to_string(),
            c.claim.to_owned(),
            if c.measured.is_empty() {
                "-".into()
            } else {
                c.measured.clone()
            },
            if c.commands.is_empty() {
                "-".into()
            } else {
                c.commands.join("; ")
            },
            c.source.clone(),
            c.verdict.to_string(),
        ]
    }));
    rows
}

/// The figures a chart draws, as a table under it, for the charts whose values a reader
/// wants to read off exactly.
fn chart_table(chart: &str, c: &Collection) -> Option<Rows> {
    match chart {
        "phases" => phase_rows(c),
        "footprint" => footprint_rows(c),
        "density" => density_rows(c),
        _ => None,
    }
}

/// Per target of the density set: instances reached and why it stopped, memory per
/// instance (marginal and average; PSS of the runtime's side and the instance's own) and
/// start time per instance as the count grew.
fn density_rows(c: &Collection) -> Option<Rows> {
    let (_, costs) = measures::density_costs(c).ok()?;
    let kib = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}"));
    let mut rows = vec![
        [
            "target",
            "reached",
            "stopped",
            "marginal KiB",
            "average KiB",
            "runtime PSS KiB",
            "instance PSS KiB",
            "start ms/instance (first → last step)",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for d in &costs {
        rows.push(vec![
            d.target.clone(),
            match d.requested {
                Some(asked) => format!("{} of {asked}", d.instances),
                None => d.instances.to_string(),
            },
            d.stopped.clone(),
            format!("{:.0}", d.per_instance_kib),
            format!("{:.0}", d.average_kib),
            kib(d.runtime_slope_kib),
            kib(d.instance_slope_kib),
            format!("{:.2} → {:.2}", d.start_ms_first, d.start_ms_last),
        ]);
    }
    Some(rows)
}

/// Every measured item of the footprint, in bytes and readable units.
fn footprint_rows(c: &Collection) -> Option<Rows> {
    let (_, disk) = measures::disk_footprint(c).ok()?;
    let row = |what: String, detail: String, bytes: u64| {
        vec![
            what,
            detail,
            bytes.to_string(),
            measures::format_bytes(bytes),
        ]
    };
    let mut rows = vec![vec![
        "what".to_owned(),
        "made of".to_owned(),
        "bytes".to_owned(),
        "size".to_owned(),
    ]];
    for image in &disk.images {
        rows.push(row(
            format!("image {}", image.name),
            "layers (unpacked and blob) + metadata".to_owned(),
            image.bytes,
        ));
    }
    for k in &disk.containers {
        rows.push(row(
            format!("container {}", k.id),
            format!(
                "its upper layer{}",
                k.image
                    .as_ref()
                    .map_or(String::new(), |i| format!(" over image {}", i.name))
            ),
            k.upper_bytes,
        ));
    }
    for vm in &disk.vms {
        for (role, bytes) in &vm.files {
            rows.push(row(vm.target.clone(), role.clone(), *bytes));
        }
    }
    Some(rows)
}

/// Mean of each start-up phase per target (ms), their sum (the mean time to ready) and the
/// median time to ready.
fn phase_rows(c: &Collection) -> Option<Rows> {
    let (_, rows) = measures::start_up_phases(c).ok()?;
    let names: Vec<&str> = measures::PHASES
        .iter()
        .map(|(name, _)| *name)
        .chain([measures::TOTAL_PHASE])
        .filter(|name| rows.iter().any(|r| r.phases.iter().any(|(n, _)| n == name)))
        .collect();
    let mut table = vec![
        std::iter::once("target".to_owned())
            .chain(names.iter().map(|n| format!("{n} (ms)")))
            .chain([
                "sum = mean ready (ms)".to_owned(),
                "median ready (ms)".to_owned(),
            ])
            .collect::<Vec<_>>(),
    ];
    for row in &rows {
        let cells = names.iter().map(|name| {
            row.phases
                .iter()
                .find(|(n, _)| n == name)
                .map_or("-".to_owned(), |(_, ms)| format!("{ms:.3}"))
        });
        table.push(
            std::iter::once(row.target.clone())
                .chain(cells)
                .chain([
                    format!("{:.3}", row.sum_ms()),
                    format!("{:.3}", row.median_ready_ms),
                ])
                .collect(),
        );
    }
    Some(table)
}

/// Each run set's own summary table (the one `isolab bench` prints).
fn result_tables(c: &Collection) -> Vec<(String, String)> {
    c.sets
        .iter()
        .filter(|l| l.set.footprint.is_none())
        .map(|l| {
            (
                format!("workload `{}`", l.set.workload.mode),
                table::render(&l.set),
            )
        })
        .collect()
}

fn html_table(rows: &Rows, row_classes: &[&str]) -> String {
    let mut out = String::from("<table>\n<thead><tr>");
    for cell in &rows[0] {
        let _ = write!(out, "<th>{}</th>", esc(cell));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for (i, row) in rows[1..].iter().enumerate() {
        match row_classes.get(i) {
            Some(class) => {
                let _ = write!(out, "<tr class=\"{class}\">");
            }
            None => out.push_str("<tr>"),
        }
        for cell in row {
            let _ = write!(out, "<td>{}</td>", esc(cell));
        }
        out.push_str("</tr>\n");
    }
    out + "</tbody></table>\n"
}

fn md_table(rows: &Rows) -> String {
    let line = |row: &Vec<String>| {
        format!(
            "| {} |\n",
            row.iter()
                .map(|c| c.replace('|', "\\|").replace('\n', " "))
                .collect::<Vec<_>>()
                .join(" | ")
        )
    };
    let mut out = line(&rows[0]);
    out += &format!("|{}\n", " --- |".repeat(rows[0].len()));
    for row in &rows[1..] {
        out += &line(row);
    }
    out
}

const CSS: &str = "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:4px 8px;vertical-align:top;text-align:left}\
th{background:#eee}tr.holds td:last-child{background:#c8e6c9}tr.does-not-hold td:last-child{background:#ffcdd2}\
tr.depends td:last-child{background:#fff3c4}tr.not-measured td:last-child{background:#e0e0e0}\
.missing{color:#555;font-style:italic}.note{color:#444;font-size:90%}pre{background:#f6f6f6;padding:8px;overflow-x:auto}\
svg{max-width:100%;height:auto}";

fn intro(c: &Collection) -> String {
    let mut text = format!(
        "Host fingerprint and the exact commands that produced the data are below; every \
         result comes from this one host (files from another host are refused). Targets \
         measured: {}.",
        c.target_names().join(", ")
    );
    if !c.superseded.is_empty() {
        let names: Vec<String> = c
            .superseded
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let _ = write!(
            text,
            " Left out, superseded by newer files of the same workload: {}.",
            names.join(", ")
        );
    }
    text
}

fn html(c: &Collection, s: &Sections, charts: &str) -> String {
    let classes: Vec<&str> = s.claims.iter().map(|c| c.verdict.class()).collect();
    let mut tables = String::new();
    for (title, text) in result_tables(c) {
        let _ = writeln!(tables, "<h3>{}</h3><pre>{}</pre>", esc(&title), esc(&text));
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>isolab report</title>\n<style>{CSS}</style>\n</head>\n<body>\n\
         <h1>isolab report: container or VM?</h1>\n<p>{}</p>\n\
         <h2 id=\"host\">Host</h2>\n{}\n<h2 id=\"commands\">Commands</h2>\n{}\n\
         <h2 id=\"claims\">The classic claims, checked</h2>\n{}\n\
         <p class=\"note\">Verdicts are computed from the data with the thresholds in \
         isolab-reports' claims module; a claim without data is \"not measured\".</p>\n\
         <h2 id=\"charts\">Charts</h2>\n{charts}\n\
         <h2 id=\"plan\">Capacity plan</h2>\n<pre>{}</pre>\n\
         <h2 id=\"results\">Results</h2>\n{tables}</body>\n</html>\n",
        esc(&intro(c)),
        html_table(&host_rows(c), &[]),
        html_table(&command_rows(c), &[]),
        html_table(&claim_rows(&s.claims), &classes),
        esc(&s.plan.render()),
    )
}

fn markdown(c: &Collection, s: &Sections, charts: &str) -> String {
    let mut tables = String::new();
    for (title, text) in result_tables(c) {
        let _ = write!(tables, "### {title}\n\n```\n{text}```\n\n");
    }
    format!(
        "# isolab report: container or VM?\n\n{}\n\n## Host\n\n{}\n## Commands\n\n{}\n\
         ## The classic claims, checked\n\n{}\n## Charts\n\n{charts}## Capacity plan\n\n\
         ```\n{}```\n\n## Results\n\n{tables}",
        intro(c),
        md_table(&host_rows(c)),
        md_table(&command_rows(c)),
        md_table(&claim_rows(&s.claims)),
        s.plan.render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{ALL_FIXTURES, FULL_FIXTURES};

    fn fixtures(names: &[&str]) -> Vec<PathBuf> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        names.iter().map(|n| dir.join(n)).collect()
    }

    #[test]
    fn writes_valid_html_markdown_and_every_measured_chart() {
        let out = tempfile::tempdir().unwrap();
        let files = write(&fixtures(&ALL_FIXTURES), out.path()).unwrap();
        for chart in ["startup", "memory", "overhead", "plan"] {
            let svg = fs::read_to_string(out.path().join(format!("{chart}.svg"))).unwrap();
            assert!(svg.contains("<svg"), "{chart}");
            let png = fs::read(out.path().join(format!("{chart}.png"))).unwrap();
            assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{chart}");
        }
        assert!(files.contains(&out.path().join("report.html")));

        let text = fs::read_to_string(out.path().join("report.html")).unwrap();
        let doc = scraper::Html::parse_document(&text);
        assert!(doc.errors.is_empty(), "{:?}", doc.errors);
        let select = |css: &str| scraper::Selector::parse(css).unwrap();
        assert_eq!(doc.select(&select("script")).count(), 0);
        assert_eq!(doc.select(&select("link, img, [src]")).count(), 0);
        assert_eq!(doc.select(&select("svg")).count(), 4);
        let claims: Vec<String> = doc
            .select(&select("#claims + table tbody tr"))
            .map(|row| row.value().attr("class").unwrap_or_default().to_owned())
            .collect();
        assert_eq!(claims.len(), 9);
        assert_eq!(claims[0], "does-not-hold");
        assert_eq!(claims[2], "depends");
        assert_eq!(claims[1], "not-measured");
        assert!(text.contains("AMD EPYC") && text.contains("--workload ready"));
        assert!(text.contains("not measured: start-up phases"));

        let md = fs::read_to_string(out.path().join("summary.md")).unwrap();
        assert!(md.contains("| 3 | Containers run at native speed"));
        assert!(md.contains("![Start-up time per target](startup.png)"));
    }

    #[test]
    fn probe_and_density_sets_add_their_charts_and_name_the_claims_sources() {
        let out = tempfile::tempdir().unwrap();
        write(&fixtures(&FULL_FIXTURES), out.path()).unwrap();
        for chart in ["isolation", "density"] {
            assert!(out.path().join(format!("{chart}.png")).is_file(), "{chart}");
        }
        let text = fs::read_to_string(out.path().join("report.html")).unwrap();
        let doc = scraper::Html::parse_document(&text);
        assert!(doc.errors.is_empty(), "{:?}", doc.errors);
        let cell = |row: usize, col: usize| {
            let css = format!("#claims + table tbody tr:nth-child({row}) td:nth-child({col})");
            let selector = scraper::Selector::parse(&css).unwrap();
            doc.select(&selector)
                .next()
                .unwrap()
                .text()
                .collect::<String>()
        };
        assert!(cell(4, 5).starts_with("density run set"), "{}", cell(4, 5));
        assert!(cell(6, 5).contains("probe.json"), "{}", cell(6, 5));
        assert_eq!(cell(6, 6), "holds");
        assert!(text.contains("not measured: start-up phases"));
        assert!(text.contains("record their phases"));
    }

    #[test]
    fn phases_and_footprint_sets_add_their_charts_tables_and_claims() {
        let out = tempfile::tempdir().unwrap();
        let mut names = ALL_FIXTURES.to_vec();
        names.extend(["ready-phases.json", "footprint.json"]);
        write(&fixtures(&names), out.path()).unwrap();
        for chart in ["phases", "footprint"] {
            let png = fs::read(out.path().join(format!("{chart}.png"))).unwrap();
            assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{chart}");
        }
        let text = fs::read_to_string(out.path().join("report.html")).unwrap();
        let doc = scraper::Html::parse_document(&text);
        assert!(doc.errors.is_empty(), "{:?}", doc.errors);
        let select = |css: &str| scraper::Selector::parse(css).unwrap();
        let headings: Vec<String> = doc
            .select(&select("section table th"))
            .map(|th| th.text().collect())
            .collect();
        for heading in [
            "namespaces (ms)",
            "total (ms)",
            "median ready (ms)",
            "bytes",
        ] {
            assert!(
                headings.iter().any(|h| h == heading),
                "{heading}: {headings:?}"
            );
        }
        let claims: Vec<String> = doc
            .select(&select("#claims + table tbody tr"))
            .map(|row| row.value().attr("class").unwrap_or_default().to_owned())
            .collect();
        assert_eq!(claims[1], "does-not-hold");
        assert_eq!(claims[8], "holds");
        // The ready set with phases is newer than ready.json, which it supersedes.
        assert!(text.contains("superseded"), "{text}");
        let md = fs::read_to_string(out.path().join("summary.md")).unwrap();
        assert!(md.contains("![Disk footprint](footprint.png)"));
        assert!(md.contains("| image busybox:latest |"), "{md}");
    }

    #[test]
    fn a_partial_set_says_what_is_missing() {
        let out = tempfile::tempdir().unwrap();
        write(&fixtures(&["cpu.json"]), out.path()).unwrap();
        let md = fs::read_to_string(out.path().join("summary.md")).unwrap();
        assert!(md.contains("not measured: the `ready` run set"), "{md}");
        assert!(!out.path().join("startup.png").exists());
    }

    #[test]
    fn refuses_mixed_hosts() {
        let out = tempfile::tempdir().unwrap();
        let err = write(
            &fixtures(&["ready.json", "ready-other-host.json"]),
            out.path(),
        )
        .unwrap_err();
        assert!(
            matches!(err, ReportError::Load(LoadError::OtherHost { .. })),
            "{err}"
        );
    }
}
