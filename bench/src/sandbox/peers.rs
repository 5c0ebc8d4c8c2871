//! Linux micro-VMs side by side on standard KVM: one sandbox boot runs `isolab bench
//! --target vm-linux,qemu-microvm` (the same kernel — the ELF vmlinux of the sandbox's own
//! Debian cloud kernel, or the host's `$ISOLAB_VM_KERNEL` —, initramfs and memory under isolab's monitor and under QEMU's microvm machine)
//! and hands the result files back. With [`PeersSpec::count`] it is a density run instead:
//! `--workload idle --count N`, one instance per step, in the sandbox's memory. The sandbox carries QEMU with the shared libraries
//! `ldd` names and the microvm firmware, as the guest has no package manager.
//!
//! Firecracker and cloud-hypervisor would join when installed on the host; this build
//! only says whether they are ([`other_vmms`]).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use isolab_microvm::linux::peer::{QEMU, QEMU_MICROVM_FIRMWARE, find_on_path};
use isolab_reports::schema::ResultSet;

use super::{GuestFile, RunSpec, Sandbox, SandboxError, SandboxOutput};
use crate::target::VM_KERNEL_ENV;

/// The targets compared, isolab's first.
pub const TARGETS: [&str; 2] = ["vm-linux", "qemu-microvm"];
/// VMMs that would be compared too, were they installed.
pub const OTHER_VMMS: [&str; 2] = ["firecracker", "cloud-hypervisor"];
/// Where the guest kernel, the ELF vmlinux, lies in the sandbox.
const GUEST_KERNEL: &str = "/root/vmlinux";
/// MemAvailable a density run keeps free in the sandbox (`--keep-free`): the bench's
/// default, 2 GiB, is all of the sandbox's memory.
pub const DENSITY_KEEP_FREE: &str = "256M";
/// Marks the start of each result file in the command's stdout: `@@@ file NAME`.
const FILE_MARK: &str = "@@@ file ";

#[derive(Debug, thiserror::Error)]
pub enum PeersError {
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error("the sandbox's kernel")]
    Kernel(#[from] isolab_microvm::kernel::KernelError),
    #[error("running ldd on {path}")]
    Ldd {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{QEMU} is not on PATH: install Debian's qemu-system-x86 (`isolab setup`)")]
    NoQemu,
    #[error("the bench in the sandbox failed (status {status}); its output:\n{stdout}\n{stderr}")]
    Bench {
        status: u8,
        stdout: String,
        stderr: String,
    },
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("result file {name} from the sandbox is not a result set")]
    BadResult {
        name: String,
        #[source]
        source: serde_json::Error,
    },
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct PeersSpec {
    /// The workload's mode and arguments, e.g. `["ready"]`.
    pub workload: Vec<String>,
    pub runs: u32,
    pub warmup: u32,
    /// A density run instead of `runs`: up to this many idle instances per target, started
    /// one per step, as each Linux boot under TCG takes seconds (`workload` and `warmup`
    /// are not used).
    pub count: Option<u32>,
    /// The whole sandbox run, boot included.
    pub timeout: Duration,
}

/// The result sets written, with their files.
#[derive(Debug)]
pub struct PeersOutcome {
    pub files: Vec<PathBuf>,
    pub results: Vec<ResultSet>,
    pub sandbox: SandboxOutput,
}

/// Runs the bench in one sandbox boot and writes its result files into `out` (named
/// `sandbox-<name>`, so they never replace a result of this host). `bin_dir` holds the
/// `isolab` and `isolab-workload` to carry.
pub fn run(
    sandbox: &Sandbox,
    bin_dir: &Path,
    spec: &PeersSpec,
    out: &Path,
    stderr: &mut (dyn std::io::Write + Send),
) -> Result<PeersOutcome, PeersError> {
    let qemu = find_on_path(QEMU).ok_or(PeersError::NoQemu)?;
    let mut run = RunSpec::new(["sh", "-c", &script(spec)])
        .isolab_binaries(bin_dir)
        .timeout(spec.timeout);
    run.env
        .push((VM_KERNEL_ENV.to_owned(), GUEST_KERNEL.to_owned()));
    let scratch = tempfile::tempdir().map_err(|source| PeersError::Write {
        path: std::env::temp_dir(),
        source,
    })?;
    // The host's ISOLAB_VM_KERNEL, when set, names the vmlinux both boot instead (e.g.
    // `isolab kernel build --minimal`'s).
    let vmlinux = match std::env::var_os(VM_KERNEL_ENV).filter(|k| !k.is_empty()) {
        Some(kernel) => PathBuf::from(kernel),
        None => {
            let vmlinux = scratch.path().join("vmlinux");
            isolab_microvm::kernel::write_vmlinux(&sandbox.kernel().vmlinuz, &vmlinux)?;
            vmlinux
        }
    };
    run.files.push(GuestFile {
        host: vmlinux,
        guest: GUEST_KERNEL.to_owned(),
        strip_debug: false,
    });
    run.files.extend(with_libraries(&qemu)?);
    run.files
        .extend(QEMU_MICROVM_FIRMWARE.iter().map(|path| GuestFile {
            host: PathBuf::from(path),
            guest: (*path).to_owned(),
            strip_debug: false,
        }));
    let output = sandbox.run_streaming(&run, &mut std::io::sink(), stderr)?;
    let stdout = output.stdout_text();
    if output.status != 0 {
        return Err(PeersError::Bench {
            status: output.status,
            stdout,
            stderr: output.stderr_text(),
        });
    }
    let mut files = Vec::new();
    let mut results = Vec::new();
    for (name, text) in result_files(&stdout) {
        let set: ResultSet =
            serde_json::from_str(text).map_err(|source| PeersError::BadResult {
                name: name.to_owned(),
                source,
            })?;
        let path = out.join(format!("sandbox-{name}"));
        fs::write(&path, text).map_err(|source| PeersError::Write {
            path: path.clone(),
            source,
        })?;
        files.push(path);
        results.push(set);
    }
    Ok(PeersOutcome {
        files,
        results,
        sandbox: output,
    })
}

/// Which of [`OTHER_VMMS`] this host has installed.
pub fn other_vmms() -> Vec<(&'static str, bool)> {
    OTHER_VMMS
        .iter()
        .map(|vmm| (*vmm, find_on_path(vmm).is_some()))
        .collect()
}

/// The command run in the sandbox: the bench (its table on stderr), then every JSON
/// result file on stdout after its mark.
fn script(spec: &PeersSpec) -> String {
    let measure = match spec.count {
        Some(count) => {
            format!("--workload idle --count {count} --step 1 --keep-free {DENSITY_KEEP_FREE}")
        }
        None => format!(
            "--runs {} --warmup {} --workload {}",
            spec.runs,
            spec.warmup,
            shell_words::join(&spec.workload)
        ),
    };
    format!(
        "isolab bench --target {} --out /root/results {measure} >&2 || exit\n\
         for f in /root/results/*.json; do echo \"{FILE_MARK}${{f##*/}}\"; cat \"$f\"; echo; done\n",
        TARGETS.join(","),
    )
}

/// `(name, text)` of each file in the script's stdout.
fn result_files(stdout: &str) -> Vec<(&str, &str)> {
    let mut files = Vec::new();
    let mut rest = stdout;
    while let Some(at) = rest.find(FILE_MARK) {
        let after = &rest[at + FILE_MARK.len()..];
        let (name, body) = after.split_once('\n').unwrap_or((after, ""));
        let end = body.find(FILE_MARK).unwrap_or(body.len());
        files.push((name.trim(), body[..end].trim()));
        rest = &body[end..];
    }
    files
}

/// `executable` and the shared libraries it loads (the dynamic loader included), each at
/// its host path in the guest.
fn with_libraries(executable: &Path) -> Result<Vec<GuestFile>, PeersError> {
    let output = Command::new("ldd")
        .arg(executable)
        .output()
        .map_err(|source| PeersError::Ldd {
            path: executable.to_owned(),
            source,
        })?;
    let mut paths = vec![executable.to_owned()];
    paths.extend(library_paths(&String::from_utf8_lossy(&output.stdout)));
    Ok(paths
        .into_iter()
        .map(|host| GuestFile {
            guest: host.to_string_lossy().into_owned(),
            host,
            strip_debug: false,
        })
        .collect())
}

/// The absolute paths in `ldd` output: `libz.so.1 => /lib/…/libz.so.1 (0x…)` and
/// `/lib64/ld-linux-x86-64.so.2 (0x…)`; the vDSO has none.
fn library_paths(ldd: &str) -> Vec<PathBuf> {
    ldd.lines()
        .filter_map(|line| {
            line.split_whitespace()
                .find(|word| word.starts_with('/'))
                .map(PathBuf::from)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_the_libraries_and_the_loader() {
        let ldd = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                   \tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            library_paths(ldd),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libz.so.1"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
    }

    #[test]
    fn result_files_are_split_at_their_marks() {
        let stdout = "@@@ file a.json\n{\"x\":1}\n\n@@@ file b.json\n{}\n";
        assert_eq!(
            result_files(stdout),
            [("a.json", "{\"x\":1}"), ("b.json", "{}")]
        );
        assert!(result_files("nothing").is_empty());
    }

    #[test]
    fn the_script_benches_both_targets_and_prints_the_files() {
        let script = script(&PeersSpec {
            workload: vec!["ready".into()],
            runs: 5,
            warmup: 1,
            count: None,
            timeout: Duration::from_secs(60),
        });
        assert!(
            script.contains(
                "--target vm-linux,qemu-microvm --out /root/results --runs 5 --warmup 1 \
                 --workload ready >&2 || exit"
            ),
            "{script}"
        );
    }

    #[test]
    fn a_density_script_starts_idle_instances_one_per_step() {
        let script = script(&PeersSpec {
            workload: vec!["ready".into()],
            runs: 5,
            warmup: 1,
            count: Some(3),
            timeout: Duration::from_secs(60),
        });
        assert!(
            script.contains("--workload idle --count 3 --step 1 --keep-free 256M >&2"),
            "{script}"
        );
        assert!(!script.contains("--runs"), "{script}");
    }
}
