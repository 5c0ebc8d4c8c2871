//! The disk footprint run set (`kind: footprint`): what a container image, a container and
//! a VM target cost on disk, counted as allocated blocks (`st_blocks * 512`, hard links
//! once; see `isolab_runtime::image::du`), not apparent sizes.
//!
//! Everything is built fresh in a temporary image store on the disk (`/var/tmp`, not a
//! tmpfs, whose blocks would not be a disk's): the busybox image, the scratch image of the
//! workload, and one running container of the busybox image that has written a file (its
//! upper layer is measured while it runs). The VM side is what the VM targets boot: the mini
//! VM's program (the workload ELF), and for the Linux VM the fetched kernel and the
//! workload's initramfs; it has no disk image.

use std::collections::HashSet;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use isolab_microvm::kernel;
use isolab_microvm::linux::initramfs;
use isolab_reports::schema::{
    Footprint, FootprintFile, ResultKind, ResultSet, SCHEMA_VERSION, WorkloadInfo,
};
use isolab_runtime::image::{Base, BuildOptions, DiskUsage, ImageError, Store, allocated_bytes};

use crate::fingerprint;
use crate::harness::{ErrorKind, Outcome, free_stem, prepare_out_dir, write_results};
use crate::workload::{Mode, Sizes, Workload, WorkloadError};

/// Where the temporary store goes: on the disk, so allocated blocks are the disk's.
const STORE_PARENT: &str = "/var/tmp";
/// The images measured, by name.
pub const BUSYBOX_IMAGE: &str = "busybox";
pub const SCRATCH_IMAGE: &str = "scratch-workload";
/// What the measured container writes; then it waits for its stdin to close (`cat` ends
/// with status 0 at end of file).
const CONTAINER_SCRIPT: &str = "echo isolab > /written && echo written && cat >/dev/null";

/// What a footprint run needs; the CLI fills it.
#[derive(Debug, Clone)]
pub struct FootprintConfig {
    /// The workload binary, when not taken from `$ISOLAB_WORKLOAD` or next to `isolab`.
    pub workload_bin: Option<PathBuf>,
    pub out_dir: PathBuf,
    /// The argv that asked for it, recorded in the results.
    pub command: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum FootprintError {
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    #[error(transparent)]
    Out(#[from] crate::harness::BenchError),
    #[error("creating a temporary image store in {STORE_PARENT}")]
    Store(#[source] io::Error),
    #[error("building the {image} image for the footprint")]
    Build {
        image: &'static str,
        #[source]
        source: ImageError,
    },
    #[error("measuring the image store")]
    Usage(#[source] ImageError),
    #[error("running a container of the {BUSYBOX_IMAGE} image ({command}): {reason}")]
    Container { command: String, reason: String },
    #[error("building the Linux VM's initramfs")]
    Initramfs(#[source] initramfs::InitramfsError),
    #[error("measuring {path}")]
    Measure {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Export(#[from] isolab_reports::export::ExportError),
}

impl FootprintError {
    /// Whose problem it is, as for a run set.
    pub fn kind(&self) -> ErrorKind {
        match self {
            FootprintError::Workload(e) if e.is_missing_build() => ErrorKind::HostLacks,
            FootprintError::Out(e) => e.kind(),
            FootprintError::Build { source, .. } if source.is_host_lacking() => {
                ErrorKind::HostLacks
            }
            FootprintError::Container { .. } => ErrorKind::TargetFailed,
            FootprintError::Workload(_) | FootprintError::Export(_) => ErrorKind::BadInput,
            FootprintError::Store(_)
            | FootprintError::Build { .. }
            | FootprintError::Usage(_)
            | FootprintError::Initramfs(_)
            | FootprintError::Measure { .. } => ErrorKind::HostLacks,
        }
    }
}

/// Builds, measures and writes the footprint set into `config.out_dir`.
pub fn run(config: &FootprintConfig) -> Result<Outcome, FootprintError> {
    let workload = Workload::prepare(
        Mode::Ready,
        &Sizes::default(),
        config.workload_bin.as_deref(),
    )?;
    prepare_out_dir(&config.out_dir)?;
    let host = fingerprint::collect();
    let dir = tempfile::Builder::new()
        .prefix("isolab-footprint-")
        .tempdir_in(STORE_PARENT)
        .map_err(FootprintError::Store)?;
    let store_root = dir.path().join("store");
    let store = Store::open(&store_root).map_err(|source| FootprintError::Build {
        image: BUSYBOX_IMAGE,
        source,
    })?;
    for (image, base, workload) in [
        (BUSYBOX_IMAGE, Base::Busybox, None),
        (
            SCRATCH_IMAGE,
            Base::Scratch,
            Some(PathBuf::from(&workload.path)),
        ),
    ] {
        store
            .build(&BuildOptions {
                base,
                name: image.to_owned(),
                workload,
            })
            .map_err(|source| FootprintError::Build { image, source })?;
    }
    let usage = with_container_written(&store_root, || {
        store.disk_usage().map_err(FootprintError::Usage)
    })?;

    let mut vm_files = vec![file("vm-mini", "program", Path::new(&workload.path))?];
    if let Ok(kernel) = kernel::stored(&kernel::default_cache()) {
        let initrd = initramfs::ensure(dir.path(), Path::new(&workload.path))
            .map_err(FootprintError::Initramfs)?;
        vm_files.push(file("vm-linux", "kernel", &kernel.vmlinux)?);
        vm_files.push(file("vm-linux", "initramfs", &initrd)?);
    }

    let results = ResultSet {
        schema_version: SCHEMA_VERSION,
        kind: ResultKind::Footprint,
        host,
        command: config.command.clone(),
        workload: WorkloadInfo {
            mode: "footprint".to_owned(),
            args: Vec::new(),
            ..workload.info()
        },
        runs_per_target: 0,
        warmup: 0,
        targets: Vec::new(),
        footprint: Some(section(&usage, vm_files)),
        blast_radius: None,
    };
    let stem = free_stem(&config.out_dir, "footprint", &results.host.date, "disk");
    let files = write_results(&results, &config.out_dir, &stem)?;
    Ok(Outcome { results, files })
}

/// The store's figures as the result schema's section (the two mirror each other field by
/// field), with the VM files added.
pub fn section(usage: &DiskUsage, vm_files: Vec<FootprintFile>) -> Footprint {
    let footprint: Footprint = serde_json::to_value(usage)
        .and_then(serde_json::from_value)
        .expect("the footprint section mirrors DiskUsage");
    Footprint {
        vm_files,
        ..footprint
    }
}

fn file(target: &str, role: &str, path: &Path) -> Result<FootprintFile, FootprintError> {
    let bytes =
        allocated_bytes(path, &mut HashSet::new()).map_err(|source| FootprintError::Measure {
            path: path.to_owned(),
            source,
        })?;
    Ok(FootprintFile {
        target: target.to_owned(),
        role: role.to_owned(),
        path: path.display().to_string(),
        bytes,
    })
}

/// Runs `measure` while a container of the busybox image runs, after it has written a
/// file into its root; the container ends (and its upper layer goes) afterwards.
fn with_container_written<T>(
    store: &Path,
    measure: impl FnOnce() -> Result<T, FootprintError>,
) -> Result<T, FootprintError> {
    // This very binary, even when a rebuild has replaced its file since it started.
    let mut command = Command::new("/proc/self/exe");
    command
        .arg("run")
        .arg("--store")
        .arg(store)
        .args([
            "--name",
            &format!("isolab-footprint-{}", std::process::id()),
        ])
        .args([BUSYBOX_IMAGE, "--", "sh", "-c", CONTAINER_SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let shown = format!("{command:?}");
    let failed = |reason: String| FootprintError::Container {
        command: shown.clone(),
        reason,
    };
    let mut child = command.spawn().map_err(|e| failed(e.to_string()))?;
    let written = child.stdout.take().is_some_and(|out| {
        BufReader::new(out)
            .lines()
            .next()
            .is_some_and(|line| line.is_ok_and(|l| l == "written"))
    });
    let measured = written.then(measure);
    let finished = finish(child);
    match (measured, finished) {
        (Some(measured), Ok(())) => measured,
        (Some(measured), Err(reason)) => measured.and(Err(failed(reason))),
        (None, Err(reason)) => Err(failed(reason)),
        (None, Ok(())) => Err(failed("it exited without writing its file".to_owned())),
    }
}

/// Closes the container's stdin, which ends its `read`, and waits for it.
fn finish(child: Child) -> Result<(), String> {
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    match output.status.success() {
        true => Ok(()),
        false => Err(format!(
            "{}; stderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use isolab_runtime::image::ContainerUsage;

    #[test]
    fn the_section_carries_the_store_figures_and_the_vm_files() {
        let usage = DiskUsage {
            units: "bytes allocated",
            layers: Vec::new(),
            images: Vec::new(),
            containers: vec![ContainerUsage {
                id: "c1".into(),
                image: Some("ab".into()),
                upper_bytes: 8192,
            }],
            store_bytes: 1 << 20,
        };
        let workload = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(workload.path(), vec![1u8; 10_000]).unwrap();
        let program = file("vm-mini", "program", workload.path()).unwrap();
        // 10 000 bytes take whole blocks: at least 12 KiB on a 4 KiB-block filesystem.
        assert!(
            program.bytes >= 10_000 && program.bytes % 512 == 0,
            "{program:?}"
        );
        let footprint = section(&usage, vec![program.clone()]);
        assert_eq!(footprint.containers[0].upper_bytes, 8192);
        assert_eq!(footprint.store_bytes, 1 << 20);
        assert_eq!(footprint.vm_files, [program]);
        let missing = file("vm-linux", "kernel", Path::new("/nonexistent/vmlinux")).unwrap();
        assert_eq!(
            missing.bytes, 0,
            "allocated_bytes counts a missing path as empty"
        );
    }
}
