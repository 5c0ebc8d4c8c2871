//! `isolab image`: the image store (import, build, ls, rm, inspect, export, du); the work is
//! in `isolab_runtime::image`.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, anyhow};
use clap::{Args, Subcommand, ValueEnum};
use isolab_reports::schema::{ResultKind, ResultSet, SCHEMA_VERSION, WorkloadInfo};
use isolab_runtime::image::{Base, BuildOptions, DiskUsage, ImageError, Store};

use crate::failure::Failure;

#[derive(Debug, Args)]
pub struct ImageArgs {
    /// The store's directory [default: $ISOLAB_STORE, else /var/lib/isolab].
    #[arg(long, global = true, value_name = "DIR")]
    store: Option<PathBuf>,
    #[command(subcommand)]
    command: ImageCommand,
}

#[derive(Debug, Subcommand)]
enum ImageCommand {
    /// Import a rootfs tar, an OCI layout (directory or tar) or a docker/podman save archive.
    Import {
        file: PathBuf,
        /// Name it NAME[:TAG] (default: the name the archive carries).
        #[arg(long)]
        name: Option<String>,
    },
    /// Build a benchmark image: busybox, scratch (only the workload) or debian (debootstrap).
    Build {
        /// NAME[:TAG] of the new image.
        name: String,
        #[arg(long, value_enum)]
        from: BaseArg,
        /// Add the workload binary at /isolab-workload.
        #[arg(long)]
        add_workload: bool,
        /// The workload binary [default: isolab-workload next to the isolab executable].
        #[arg(long, value_name = "PATH", requires = "add_workload")]
        workload_bin: Option<PathBuf>,
    },
    /// List images.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Remove images, and the layers no other image uses.
    Rm {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Print an image's record, names and OCI config as JSON.
    Inspect { image: String },
    /// Write an image as an OCI image layout tar.
    Export { image: String, file: PathBuf },
    /// Disk use: allocated bytes (st_blocks * 512, not apparent sizes) per layer, per image
    /// (unique and shared) and per container (its upper layer).
    Du {
        #[arg(long)]
        json: bool,
        /// Also write the figures as a result file (`kind: footprint`, the bench schema), for
        /// reports to put beside VM disk, initramfs and kernel sizes.
        #[arg(long, value_name = "FILE")]
        results: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum BaseArg {
    Busybox,
    Scratch,
    Debian,
}

pub(crate) fn failure(error: ImageError) -> Failure {
    if error.is_bad_input() {
        Failure::BadInput(anyhow!(error))
    } else if error.is_host_lacking() {
        Failure::HostLacks(anyhow!(error))
    } else {
        Failure::CheckFailed(anyhow!(error))
    }
}

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(value).expect("reports serialize")
}

/// The workload binary the images are built with: `$ISOLAB_WORKLOAD`, else next to isolab.
fn workload_info() -> Result<WorkloadInfo, Failure> {
    let path = match std::env::var_os("ISOLAB_WORKLOAD") {
        Some(path) => PathBuf::from(path),
        None => std::env::current_exe()
            .context("locating the isolab executable")
            .map_err(Failure::HostLacks)?
            .with_file_name("isolab-workload"),
    };
    let (sha256, size_bytes) =
        isolab_bench::workload::hash_file(&path).map_err(|e| Failure::HostLacks(anyhow!(e)))?;
    Ok(WorkloadInfo {
        path: path.display().to_string(),
        sha256,
        size_bytes,
        mode: "footprint".into(),
        args: Vec::new(),
    })
}

/// `usage` as a `kind: footprint` result set in `path`.
fn write_footprint(usage: &DiskUsage, path: &std::path::Path) -> Result<(), Failure> {
    let footprint = isolab_bench::footprint::section(usage, Vec::new());
    let set = ResultSet {
        schema_version: SCHEMA_VERSION,
        kind: ResultKind::Footprint,
        host: isolab_bench::fingerprint::collect(),
        command: super::bench::invocation(),
        workload: workload_info()?,
        runs_per_target: 0,
        warmup: 0,
        targets: Vec::new(),
        footprint: Some(footprint),
        blast_radius: None,
    };
    std::fs::write(path, json(&set))
        .with_context(|| format!("writing {}", path.display()))
        .map_err(Failure::BadInput)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

pub fn run(args: ImageArgs) -> Result<(), Failure> {
    let store = Store::open(Store::default_root(args.store.as_deref())).map_err(failure)?;
    match args.command {
        ImageCommand::Import { file, name } => {
            let start = Instant::now();
            let record = store.import(&file, name.as_deref()).map_err(failure)?;
            eprintln!(
                "imported {} ({} layers) in {:.1} ms",
                &record.id[..12],
                record.layers.len(),
                start.elapsed().as_secs_f64() * 1e3
            );
            println!("sha256:{}", record.id);
        }
        ImageCommand::Build {
            name,
            from,
            add_workload,
            workload_bin,
        } => {
            let workload = if add_workload {
                Some(match workload_bin {
                    Some(path) => path,
                    None => std::env::current_exe()
                        .context("locating the isolab executable")
                        .map_err(Failure::HostLacks)?
                        .with_file_name("isolab-workload"),
                })
            } else {
                None
            };
            let base = match from {
                BaseArg::Busybox => Base::Busybox,
                BaseArg::Scratch => Base::Scratch,
                BaseArg::Debian => Base::Debian,
            };
            let record = store
                .build(&BuildOptions {
                    base,
                    name,
                    workload,
                })
                .map_err(failure)?;
            println!("sha256:{}", record.id);
        }
        ImageCommand::Ls { json: as_json } => {
            let images = store.list().map_err(failure)?;
            if as_json {
                println!("{}", json(&images));
            } else {
                println!("{:<12}  {:>6}  {:>12}  NAMES", "ID", "LAYERS", "BLOB BYTES");
                for image in images {
                    println!(
                        "{:<12}  {:>6}  {:>12}  {}",
                        &image.id[..12],
                        image.layers,
                        image.size,
                        image.names.join(", ")
                    );
                }
            }
        }
        ImageCommand::Rm { images } => {
            for image in images {
                let id = store.remove(&image).map_err(failure)?;
                println!("removed sha256:{id}");
            }
        }
        ImageCommand::Inspect { image } => {
            let id = store.resolve(&image).map_err(failure)?;
            let record = store.record(&id).map_err(failure)?;
            let config = store.config(&id).map_err(failure)?;
            let names = store
                .names()
                .map_err(failure)?
                .remove(&id)
                .unwrap_or_default();
            println!(
                "{}",
                json(&serde_json::json!({"record": record, "names": names, "config": config}))
            );
        }
        ImageCommand::Export { image, file } => {
            let out = File::create(&file)
                .with_context(|| format!("creating {}", file.display()))
                .map_err(Failure::BadInput)?;
            store.export(&image, BufWriter::new(out)).map_err(failure)?;
        }
        ImageCommand::Du {
            json: as_json,
            results,
        } => {
            let usage = store.disk_usage().map_err(failure)?;
            if let Some(path) = results {
                write_footprint(&usage, &path)?;
            }
            if as_json {
                println!("{}", json(&usage));
            } else {
                println!("# {}", usage.units);
                println!(
                    "{:<12}  {:>14}  {:>12}  IMAGES",
                    "LAYER", "UNPACKED", "BLOB"
                );
                for layer in &usage.layers {
                    println!(
                        "{:<12}  {:>14}  {:>12}  {}",
                        &layer.diff_id[..12],
                        layer.unpacked_bytes,
                        layer.blob_bytes,
                        layer.images
                    );
                }
                println!(
                    "{:<12}  {:>14}  {:>12}  {:>10}  NAMES",
                    "IMAGE", "UNIQUE", "SHARED", "TOTAL"
                );
                for image in &usage.images {
                    println!(
                        "{:<12}  {:>14}  {:>12}  {:>10}  {}",
                        &image.id[..12],
                        image.unique_bytes,
                        image.shared_bytes,
                        image.total_bytes,
                        image.names.join(", ")
                    );
                }
                for container in &usage.containers {
                    println!(
                        "container {}: upper {} bytes",
                        container.id, container.upper_bytes
                    );
                }
                println!("store: {} bytes", usage.store_bytes);
            }
        }
    }
    Ok(())
}
