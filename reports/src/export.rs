//! Writers that turn a result set into files: JSON (the schema itself) and CSV (one row per run).

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::schema::{ExitStatus, ResultSet, numeric_figures};

/// A file format a result set can be written in.
pub trait Exporter {
    /// The file name extension, without the dot.
    fn extension(&self) -> &'static str;
    fn export(&self, set: &ResultSet, out: &mut dyn Write) -> io::Result<()>;
}

/// The complete result set, pretty-printed in the versioned schema.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

impl Exporter for Json {
    fn extension(&self) -> &'static str {
        "json"
    }

    fn export(&self, set: &ResultSet, out: &mut dyn Write) -> io::Result<()> {
        serde_json::to_writer_pretty(&mut *out, set)?;
        writeln!(out)
    }
}

/// One row per measured run, for spreadsheets and plotting tools. The fixed columns are
/// [`Csv::FIXED_COLUMNS`]; then one column per numeric figure any run reported, named by its
/// dotted path and sorted, empty where a run lacks it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Csv;

impl Csv {
    pub const FIXED_COLUMNS: [&'static str; 7] = [
        "target",
        "index",
        "ready_ns",
        "exit_ns",
        "status",
        "pss_kib",
        "max_rss_kib",
    ];
}

impl Exporter for Csv {
    fn extension(&self) -> &'static str {
        "csv"
    }

    fn export(&self, set: &ResultSet, out: &mut dyn Write) -> io::Result<()> {
        let runs = || {
            set.targets
                .iter()
                .flat_map(|t| t.runs.iter().map(move |r| (t, r)))
        };
        let figure_columns: BTreeSet<String> = runs()
            .flat_map(|(_, run)| numeric_figures(&run.figures).into_keys())
            .collect();
        let mut writer = csv::Writer::from_writer(out);
        writer.write_record(
            Csv::FIXED_COLUMNS
                .iter()
                .copied()
                .chain(figure_columns.iter().map(String::as_str)),
        )?;
        let optional = |value: Option<u64>| value.map(|v| v.to_string()).unwrap_or_default();
        for (target, run) in runs() {
            let figures = numeric_figures(&run.figures);
            let mut row = vec![
                target.name.clone(),
                run.index.to_string(),
                optional(run.ready_ns),
                run.exit_ns.to_string(),
                match run.exit_status {
                    ExitStatus::Code(code) => code.to_string(),
                    ExitStatus::Signal(signal) => format!("signal:{signal}"),
                },
                optional(run.pss_kib),
                run.max_rss_kib.to_string(),
            ];
            // The figure's JSON text, not an f64, so large integers stay exact.
            row.extend(figure_columns.iter().map(|column| {
                figures
                    .get(column)
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            }));
            writer.write_record(&row)?;
        }
        writer.flush()
    }
}

/// Why a result file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("writing {path}")]
pub struct ExportError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Writes `set` to a new file at `path`; an existing file is never overwritten.
pub fn export_to_file(
    exporter: &dyn Exporter,
    set: &ResultSet,
    path: &Path,
) -> Result<(), ExportError> {
    let error = |source| ExportError {
        path: path.to_owned(),
        source,
    };
    let file = File::create_new(path).map_err(error)?;
    let mut out = BufWriter::new(file);
    exporter.export(set, &mut out).map_err(error)?;
    out.into_inner()
        .map_err(|e| error(e.into_error()))?
        .sync_all()
        .map_err(error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::tests::sample_set;

    fn export_string(exporter: &dyn Exporter, set: &ResultSet) -> String {
        let mut out = Vec::new();
        exporter.export(set, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn csv_has_fixed_then_figure_columns_and_one_row_per_run() {
        let mut set = sample_set();
        set.targets[0].runs[2].exit_status = ExitStatus::Signal(9);
        let text = export_string(&Csv, &set);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "target,index,ready_ns,exit_ns,status,pss_kib,max_rss_kib,detail.calls,ns_per_call"
        );
        assert_eq!(lines[1], "native,0,1000000,2000000,0,,1200,1000,50");
        assert_eq!(
            lines[3],
            "native,2,1002000,2002000,signal:9,900,1200,1000,52"
        );
        assert_eq!(lines.len(), 4);
    }

    #[test]
    fn json_export_parses_back() {
        let set = sample_set();
        let text = export_string(&Json, &set);
        assert_eq!(ResultSet::parse(&text, Path::new("x")).unwrap(), set);
    }

    #[test]
    fn export_to_file_refuses_to_overwrite_and_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        export_to_file(&Json, &sample_set(), &path).unwrap();
        let err = export_to_file(&Json, &sample_set(), &path).unwrap_err();
        assert_eq!(err.to_string(), format!("writing {}", path.display()));
        assert_eq!(err.source.kind(), io::ErrorKind::AlreadyExists);
    }
}
