//! The root filesystem a lab's containers run in, built inside its workspace: busybox with a
//! relative link per applet (so they resolve inside the container too) and the workload
//! binary that sits next to the isolab executable. Everything is owned by host root and
//! world-readable, which is what `isolab run --userns` needs: there, container root is an
//! unprivileged host id and sees these files as `nobody`'s.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::LabError;
use crate::observe;

pub const BUSYBOX: &str = "/bin/busybox";
/// Where the workload is inside the root filesystem, as in every isolab image.
pub const WORKLOAD: &str = "/isolab-workload";

/// The running isolab executable: labs start containers with the very build being used.
pub fn isolab() -> Result<PathBuf, LabError> {
    std::env::current_exe().map_err(LabError::io("locating", "/proc/self/exe"))
}

/// `isolab run --rootfs ROOT ARGS... -- COMMAND...`.
pub fn run(root: &Path, args: &[&str], command: &[&str]) -> Result<Command, LabError> {
    let mut run = Command::new(isolab()?);
    run.arg("run")
        .arg("--rootfs")
        .arg(root)
        .args(args)
        .arg("--")
        .args(command);
    Ok(run)
}

/// The workload binary built next to the isolab executable.
pub fn workload() -> Result<PathBuf, LabError> {
    let workload = isolab()?.with_file_name(WORKLOAD.trim_start_matches('/'));
    if !workload.is_file() {
        return Err(LabError::Unsupported(format!(
            "{} is missing: the labs run the workload built next to isolab (cargo build -p isolab-workload)",
            workload.display()
        )));
    }
    Ok(workload)
}

pub fn build(root: &Path) -> Result<(), LabError> {
    let workload = workload()?;
    // The mount points too: container root under --userns could not create them.
    for dir in ["", "bin", "proc", "sys", "dev", "tmp"] {
        let path = root.join(dir);
        fs::create_dir_all(&path).map_err(LabError::io("creating", &path))?;
        let mode = if dir == "tmp" { 0o1777 } else { 0o755 };
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .map_err(LabError::io("setting the mode of", &path))?;
    }
    let target = root.join(WORKLOAD.trim_start_matches('/'));
    fs::copy(&workload, &target).map_err(LabError::io("copying", &workload))?;
    let bin = root.join("bin");
    fs::copy(BUSYBOX, bin.join("busybox")).map_err(LabError::io("copying", BUSYBOX))?;
    let list = observe::output(Command::new(BUSYBOX).arg("--list"))?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let link = bin.join(applet);
        // `busybox --install -s` would link to its host path, which the root lacks.
        if applet != "busybox" && !applet.contains('/') {
            symlink("busybox", &link).map_err(LabError::io("linking", &link))?;
        }
    }
    Ok(())
}
