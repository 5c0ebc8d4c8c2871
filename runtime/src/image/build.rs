//! `isolab image build`: the images the benchmarks use, made from what Debian ships.
//!
//! - busybox: `/bin/busybox` from the `busybox-static` package and its applet links;
//! - scratch: nothing but the workload binary;
//! - debian: a `debootstrap --variant=minbase` root (large, for the footprint comparison).
//!
//! The root is assembled in staging, packed into a gzipped layer tar with fixed times (so a
//! rebuild of the same inputs yields the same layer), and imported like any rootfs tar.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use oci_spec::image::{ConfigBuilder, ImageConfiguration};

use super::pack::pack;
use super::store::{ImageRecord, Store};
use super::{ImageError, io_err};

/// Where the workload binary goes in every image.
pub const WORKLOAD_PATH: &str = "/isolab-workload";
const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    Busybox,
    Scratch,
    Debian,
}

#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub base: Base,
    pub name: String,
    /// The workload binary to add at [`WORKLOAD_PATH`]; scratch needs one.
    pub workload: Option<PathBuf>,
}

impl Store {
    pub fn build(&self, options: &BuildOptions) -> Result<ImageRecord, ImageError> {
        let mut staging = self.staging()?;
        let root = staging.path("rootfs");
        fs::create_dir(&root).map_err(io_err("creating", &root))?;
        let cmd = match options.base {
            Base::Busybox => {
                make_dirs(&root, &MOUNT_POINTS)?;
                busybox_root(&root)?;
                "/bin/sh"
            }
            Base::Scratch => {
                if options.workload.is_none() {
                    return Err(ImageError::BadName(
                        "scratch needs --add-workload: it holds only the workload".into(),
                    ));
                }
                make_dirs(&root, &MOUNT_POINTS)?;
                WORKLOAD_PATH
            }
            Base::Debian => {
                debian_root(&root)?;
                "/bin/bash"
            }
        };
        if let Some(workload) = &options.workload {
            let target = root.join(WORKLOAD_PATH.trim_start_matches('/'));
            fs::copy(workload, &target).map_err(io_err("copying the workload", workload))?;
            fs::set_permissions(&target, fs::Permissions::from_mode(0o755))
                .map_err(io_err("setting the mode of", &target))?;
        }
        let layer = staging.path("layer.tar.gz");
        pack(&root, &layer).map_err(io_err("packing", &root))?;
        let mut config = ImageConfiguration::default();
        config.set_config(Some(
            ConfigBuilder::default()
                .env(vec![PATH_ENV.to_string()])
                .cmd(vec![cmd.to_string()])
                .build()
                .expect("all fields set"),
        ));
        self.import_rootfs(&layer, config, Some(&options.name))
    }
}

/// The mount points every container needs, in the image: a start then has no need to copy
/// `/` up into its upper layer to create them.
const MOUNT_POINTS: [(&str, u32); 3] = [("dev", 0o755), ("proc", 0o555), ("sys", 0o555)];

/// Creates each directory under `root` with its mode.
fn make_dirs(root: &Path, dirs: &[(&str, u32)]) -> Result<(), ImageError> {
    for (dir, mode) in dirs {
        let path = root.join(dir);
        fs::create_dir_all(&path).map_err(io_err("creating", &path))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(*mode))
            .map_err(io_err("setting the mode of", &path))?;
    }
    Ok(())
}

fn busybox_root(root: &Path) -> Result<(), ImageError> {
    let busybox = busybox_binary()?;
    make_dirs(
        root,
        &[
            ("bin", 0o755),
            ("sbin", 0o755),
            ("usr/bin", 0o755),
            ("usr/sbin", 0o755),
            ("etc", 0o755),
            ("root", 0o700),
            ("tmp", 0o1777),
        ],
    )?;
    let target = root.join("bin/busybox");
    fs::copy(&busybox, &target).map_err(io_err("copying", &busybox))?;
    let list = Command::new(&busybox)
        .arg("--list-full")
        .output()
        .map_err(io_err("running", &busybox))?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim().trim_start_matches('/');
        if applet.is_empty() || applet == "bin/busybox" || applet.contains("..") {
            continue;
        }
        let link = root.join(applet);
        if let Some(dir) = link.parent() {
            fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
        }
        symlink("/bin/busybox", &link).map_err(io_err("linking", &link))?;
    }
    for (file, text) in [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        ),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
    ] {
        let path = root.join(file);
        fs::write(&path, text).map_err(io_err("writing", &path))?;
    }
    Ok(())
}

/// `/bin/busybox` as the `busybox-static` package installed it (dpkg knows where).
fn busybox_binary() -> Result<PathBuf, ImageError> {
    let lacking = || {
        ImageError::HostLacks(
            "the busybox image needs Debian's busybox-static package; run: isolab setup".into(),
        )
    };
    let output = Command::new("dpkg-query")
        .args(["-L", "busybox-static"])
        .output()
        .map_err(|_| lacking())?;
    if !output.status.success() {
        return Err(lacking());
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(PathBuf::from)
        .find(|p| p.ends_with("bin/busybox") && p.is_file())
        .ok_or_else(lacking)
}

fn debian_root(root: &Path) -> Result<(), ImageError> {
    let status = Command::new("debootstrap")
        .args(["--variant=minbase", "stable"])
        .arg(root)
        .status()
        .map_err(|_| {
            ImageError::HostLacks(
                "the debian image needs debootstrap: apt-get install debootstrap".into(),
            )
        })?;
    if !status.success() {
        return Err(ImageError::HostLacks(format!(
            "debootstrap failed ({status}); it needs a Debian mirror it can reach"
        )));
    }
    Ok(())
}
