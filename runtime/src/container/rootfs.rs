//! The container's filesystem view, planned in the parent (every path a ready CString, so the
//! child allocates nothing) and carried out by the child through [`Sys`].
//!
//! Order: make every mount a slave of the host (events flow in, never out), bind the rootfs
//! onto itself (pivot_root needs a mount point), mount /proc, /sys and a small /dev into it;
//! after joining the cgroup namespace, the cgroup view; then pivot_root into it, and from the
//! inside mask and write-protect the kernel interfaces Docker hides.

use std::ffi::{CStr, CString};
use std::fmt;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::MsFlags;

use super::extra::{Extra, Mount};
use super::sys::{Kind, Sys};
use crate::cgroups::ContainerView;

/// One step of building the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    Mount {
        source: Option<CString>,
        target: CString,
        fstype: Option<CString>,
        flags: MsFlags,
        data: Option<CString>,
    },
    /// A directory that may exist already.
    Mkdir(CString),
    /// Bind `source` (a host device node) over a new empty file at `target`: works in a user
    /// namespace, where mknod of devices is refused.
    BindFile {
        source: CString,
        target: CString,
    },
    Symlink {
        target: CString,
        link: CString,
    },
    /// Remount the mount at this path read-only, keeping its locked flags.
    RemountReadOnly(CString),
    /// Hide a path: /dev/null over a file, an empty read-only tmpfs over a directory.
    Mask(CString),
    /// Bind a path onto itself, then make that bind read-only.
    ReadOnlyPath(CString),
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Mount {
                source,
                target,
                fstype,
                ..
            } => {
                let name = |s: &Option<CString>| {
                    s.as_deref()
                        .map_or("none", |s| s.to_str().unwrap_or("?"))
                        .to_string()
                };
                write!(
                    f,
                    "mounting {} ({}) on {target:?}",
                    name(source),
                    name(fstype)
                )
            }
            Op::Mkdir(path) => write!(f, "creating directory {path:?}"),
            Op::BindFile { source, target } => write!(f, "binding {source:?} to {target:?}"),
            Op::Symlink { target, link } => write!(f, "linking {link:?} to {target:?}"),
            Op::RemountReadOnly(path) => write!(f, "remounting {path:?} read-only"),
            Op::Mask(path) => write!(f, "masking {path:?}"),
            Op::ReadOnlyPath(path) => write!(f, "making {path:?} read-only"),
        }
    }
}

/// Paths Docker hides from containers (moby oci/defaults.go).
pub const MASKED: [&str; 10] = [
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths Docker leaves visible but read-only.
pub const READ_ONLY: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

const NOSUID_NODEV_NOEXEC: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

/// The choices the mount plan depends on.
#[derive(Debug, Clone)]
pub(crate) struct Layout<'a> {
    pub(crate) rootfs: &'a Path,
    /// The root is an overlay with these mount options, mounted on `rootfs`.
    pub(crate) overlay: Option<&'a str>,
    pub(crate) read_only: bool,
    pub(crate) privileged: bool,
    /// The container has its own network namespace (needed for a fresh sysfs).
    pub(crate) own_netns: bool,
    pub(crate) userns: bool,
    pub(crate) cgroups: ContainerView,
    /// An OCI bundle's mounts and kernel paths.
    pub(crate) extra: &'a Extra,
}

/// The three phases of the mount plan.
#[derive(Debug, Clone, Default)]
pub(crate) struct Plan {
    /// Before the cgroup namespace exists, with host paths under the rootfs.
    pub(crate) prepare: Vec<Op>,
    /// After joining the cgroup namespace (cgroupfs shows the namespace's root).
    pub(crate) cgroup_view: Vec<Op>,
    /// After pivot_root, with container paths.
    pub(crate) finish: Vec<Op>,
}

fn cstring(text: impl Into<Vec<u8>>) -> CString {
    // Every caller builds from a Path or a constant, neither of which can hold a NUL.
    CString::new(text).expect("paths hold no NUL bytes")
}

fn mount(source: &str, target: CString, fstype: &str, flags: MsFlags, data: &str) -> Op {
    Op::Mount {
        source: Some(cstring(source)),
        target,
        fstype: Some(cstring(fstype)),
        flags,
        data: (!data.is_empty()).then(|| cstring(data)),
    }
}

impl Layout<'_> {
    fn under_root(&self, relative: &str) -> CString {
        use std::os::unix::ffi::OsStrExt;
        cstring(self.rootfs.join(relative).as_os_str().as_bytes())
    }

    pub(crate) fn plan(&self) -> Plan {
        Plan {
            prepare: self.prepare(),
            cgroup_view: self.cgroup_view(),
            finish: self.finish(),
        }
    }

    fn prepare(&self) -> Vec<Op> {
        let root = self.under_root("");
        // Either way the root becomes a mount point of its own, as pivot_root needs.
        let root_mount = match self.overlay {
            Some(data) => mount("overlay", root, "overlay", MsFlags::empty(), data),
            None => Op::Mount {
                source: Some(root.clone()),
                target: root,
                fstype: None,
                flags: MsFlags::MS_BIND | MsFlags::MS_REC,
                data: None,
            },
        };
        let mut ops = vec![
            Op::Mount {
                source: None,
                target: cstring("/"),
                fstype: None,
                flags: MsFlags::MS_SLAVE | MsFlags::MS_REC,
                data: None,
            },
            root_mount,
        ];
        for dir in ["proc", "sys", "dev"] {
            ops.push(Op::Mkdir(self.under_root(dir)));
        }
        ops.push(mount(
            "proc",
            self.under_root("proc"),
            "proc",
            NOSUID_NODEV_NOEXEC,
            "",
        ));
        let sys_flags = if self.privileged {
            NOSUID_NODEV_NOEXEC
        } else {
            NOSUID_NODEV_NOEXEC | MsFlags::MS_RDONLY
        };
        if self.own_netns || !self.userns {
            ops.push(mount(
                "sysfs",
                self.under_root("sys"),
                "sysfs",
                sys_flags,
                "",
            ));
        } else {
            // A user namespace may mount sysfs only with a network namespace of its own;
            // with the host's network it gets the host's /sys, read-only.
            ops.push(Op::Mount {
                source: Some(cstring("/sys")),
                target: self.under_root("sys"),
                fstype: None,
                flags: MsFlags::MS_BIND | MsFlags::MS_REC,
                data: None,
            });
            if !self.privileged {
                ops.push(Op::RemountReadOnly(self.under_root("sys")));
            }
        }
        ops.extend(self.dev());
        for m in &self.extra.mounts {
            ops.extend(self.extra_mount(m));
        }
        ops
    }

    /// A mount of the config's: its missing parent directories (in the root or in the
    /// fresh /dev), the mount, then a bind's flags and the propagation.
    fn extra_mount(&self, m: &Mount) -> Vec<Op> {
        use std::os::unix::ffi::OsStrExt;
        let path = |p: &Path| cstring(p.as_os_str().as_bytes());
        let mut ops: Vec<Op> = m
            .target
            .ancestors()
            .skip(1)
            .take_while(|dir| dir.starts_with(self.rootfs) && *dir != self.rootfs)
            .map(|dir| Op::Mkdir(path(dir)))
            .collect();
        ops.reverse();
        let target = path(&m.target);
        match (&m.source, m.file) {
            (Some(source), true) => ops.push(Op::BindFile {
                source: path(source),
                target: target.clone(),
            }),
            _ => {
                ops.push(Op::Mkdir(target.clone()));
                ops.push(Op::Mount {
                    source: m.source.as_deref().map(path),
                    target: target.clone(),
                    fstype: m.fstype.as_deref().map(cstring),
                    flags: m.flags,
                    data: m.data.as_deref().map(cstring),
                });
            }
        }
        if !m.remount.is_empty() {
            ops.push(Op::Mount {
                source: None,
                target: target.clone(),
                fstype: None,
                flags: MsFlags::MS_BIND | MsFlags::MS_REMOUNT | m.remount,
                data: None,
            });
        }
        if !m.propagation.is_empty() {
            ops.push(Op::Mount {
                source: None,
                target,
                fstype: None,
                flags: m.propagation,
                data: None,
            });
        }
        ops
    }

    fn dev(&self) -> Vec<Op> {
        let mut ops = vec![mount(
            "tmpfs",
            self.under_root("dev"),
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
            "mode=755,size=65536k",
        )];
        for device in DEVICES {
            ops.push(Op::BindFile {
                source: cstring(format!("/dev/{device}")),
                target: self.under_root(&format!("dev/{device}")),
            });
        }
        for dir in ["dev/pts", "dev/shm", "dev/mqueue"] {
            ops.push(Op::Mkdir(self.under_root(dir)));
        }
        ops.push(mount(
            "devpts",
            self.under_root("dev/pts"),
            "devpts",
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            "newinstance,ptmxmode=0666,mode=0620,gid=5",
        ));
        ops.push(mount(
            "shm",
            self.under_root("dev/shm"),
            "tmpfs",
            NOSUID_NODEV_NOEXEC,
            "mode=1777,size=65536k",
        ));
        ops.push(mount(
            "mqueue",
            self.under_root("dev/mqueue"),
            "mqueue",
            NOSUID_NODEV_NOEXEC,
            "",
        ));
        let links = [
            ("pts/ptmx", "dev/ptmx"),
            ("/proc/self/fd", "dev/fd"),
            ("/proc/self/fd/0", "dev/stdin"),
            ("/proc/self/fd/1", "dev/stdout"),
            ("/proc/self/fd/2", "dev/stderr"),
        ];
        for (target, link) in links {
            ops.push(Op::Symlink {
                target: cstring(target),
                link: self.under_root(link),
            });
        }
        ops
    }

    fn cgroup_view(&self) -> Vec<Op> {
        let target = self.under_root("sys/fs/cgroup");
        let flags = if self.privileged {
            NOSUID_NODEV_NOEXEC
        } else {
            NOSUID_NODEV_NOEXEC | MsFlags::MS_RDONLY
        };
        match &self.cgroups {
            ContainerView::Unified => vec![mount("cgroup", target, "cgroup2", flags, "")],
            ContainerView::Hierarchies(hierarchies) => {
                let mut ops = vec![mount(
                    "tmpfs",
                    target,
                    "tmpfs",
                    NOSUID_NODEV_NOEXEC,
                    "mode=755",
                )];
                for (dir, controllers) in hierarchies {
                    let path = self.under_root(&format!("sys/fs/cgroup/{dir}"));
                    ops.push(Op::Mkdir(path.clone()));
                    ops.push(mount("cgroup", path, "cgroup", flags, controllers));
                    // Co-mounted controllers are also reachable by each name, as on the host.
                    for controller in controllers.split(',').filter(|c| c != dir) {
                        ops.push(Op::Symlink {
                            target: cstring(dir.as_str()),
                            link: self.under_root(&format!("sys/fs/cgroup/{controller}")),
                        });
                    }
                }
                if !self.privileged {
                    ops.push(Op::RemountReadOnly(self.under_root("sys/fs/cgroup")));
                }
                ops
            }
        }
    }

    fn finish(&self) -> Vec<Op> {
        let mut ops = Vec::new();
        if !self.privileged {
            match &self.extra.masked_paths {
                Some(paths) => ops.extend(paths.iter().map(|p| Op::Mask(cstring(p.as_str())))),
                None => ops.extend(MASKED.iter().map(|p| Op::Mask(cstring(*p)))),
            }
            match &self.extra.readonly_paths {
                Some(paths) => {
                    ops.extend(paths.iter().map(|p| Op::ReadOnlyPath(cstring(p.as_str()))))
                }
                None => ops.extend(READ_ONLY.iter().map(|p| Op::ReadOnlyPath(cstring(*p)))),
            }
        }
        if self.read_only {
            ops.push(Op::RemountReadOnly(cstring("/")));
        }
        ops
    }
}

/// Carries out `ops`; on failure returns the op and the error for the report to the parent.
pub(crate) fn apply<'a>(sys: &impl Sys, ops: &'a [Op]) -> Result<(), (&'a Op, Errno)> {
    ops.iter()
        .try_for_each(|op| apply_one(sys, op).map_err(|e| (op, e)))
}

fn apply_one(sys: &impl Sys, op: &Op) -> nix::Result<()> {
    match op {
        Op::Mount {
            source,
            target,
            fstype,
            flags,
            data,
        } => sys.mount(
            source.as_deref(),
            target,
            fstype.as_deref(),
            *flags,
            data.as_deref(),
        ),
        Op::Mkdir(path) => match sys.mkdir(path) {
            Err(Errno::EEXIST) => Ok(()),
            other => other,
        },
        Op::BindFile { source, target } => {
            match sys.create_file(target) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(e),
            }
            sys.mount(Some(source), target, None, MsFlags::MS_BIND, None)
        }
        Op::Symlink { target, link } => sys.symlink(target, link),
        Op::RemountReadOnly(path) => remount_read_only(sys, path),
        Op::Mask(path) => match sys.kind(path) {
            Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(e),
            Ok(Kind::Directory) => sys.mount(
                Some(c"tmpfs"),
                path,
                Some(c"tmpfs"),
                MsFlags::MS_RDONLY,
                None,
            ),
            Ok(Kind::Other) => sys.mount(Some(c"/dev/null"), path, None, MsFlags::MS_BIND, None),
        },
        Op::ReadOnlyPath(path) => match sys.kind(path) {
            Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(e),
            Ok(_) => {
                sys.mount(
                    Some(path),
                    path,
                    None,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None,
                )?;
                remount_read_only(sys, path)
            }
        },
    }
}

fn remount_read_only(sys: &impl Sys, path: &CStr) -> nix::Result<()> {
    let locked = sys.locked_flags(path)?;
    sys.mount(
        None,
        path,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | locked,
        None,
    )
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use super::*;

    /// Records calls as text; `kinds` says what exists, everything else is ENOENT.
    #[derive(Debug)]
    struct Recorder {
        calls: RefCell<Vec<String>>,
        kinds: HashMap<&'static str, Kind>,
        locked: MsFlags,
    }

    impl Default for Recorder {
        fn default() -> Self {
            Recorder {
                calls: RefCell::default(),
                kinds: HashMap::new(),
                locked: MsFlags::empty(),
            }
        }
    }

    impl Sys for Recorder {
        fn mount(
            &self,
            source: Option<&CStr>,
            target: &CStr,
            fstype: Option<&CStr>,
            flags: MsFlags,
            _data: Option<&CStr>,
        ) -> nix::Result<()> {
            self.calls.borrow_mut().push(format!(
                "mount {source:?} {target:?} {fstype:?} {}",
                super::super::sys::MountFlags(flags)
            ));
            Ok(())
        }
        fn umount_detach(&self, target: &CStr) -> nix::Result<()> {
            self.calls.borrow_mut().push(format!("umount {target:?}"));
            Ok(())
        }
        fn pivot_root(&self, new_root: &CStr, put_old: &CStr) -> nix::Result<()> {
            self.calls
                .borrow_mut()
                .push(format!("pivot_root {new_root:?} {put_old:?}"));
            Ok(())
        }
        fn chdir(&self, path: &CStr) -> nix::Result<()> {
            self.calls.borrow_mut().push(format!("chdir {path:?}"));
            Ok(())
        }
        fn mkdir(&self, path: &CStr) -> nix::Result<()> {
            self.calls.borrow_mut().push(format!("mkdir {path:?}"));
            Err(Errno::EEXIST)
        }
        fn create_file(&self, path: &CStr) -> nix::Result<()> {
            self.calls.borrow_mut().push(format!("create {path:?}"));
            Ok(())
        }
        fn symlink(&self, target: &CStr, link: &CStr) -> nix::Result<()> {
            self.calls
                .borrow_mut()
                .push(format!("symlink {target:?} {link:?}"));
            Ok(())
        }
        fn kind(&self, path: &CStr) -> nix::Result<Kind> {
            self.kinds
                .get(path.to_str().unwrap())
                .copied()
                .ok_or(Errno::ENOENT)
        }
        fn locked_flags(&self, _path: &CStr) -> nix::Result<MsFlags> {
            Ok(self.locked)
        }
    }

    fn layout(rootfs: &Path) -> Layout<'_> {
        Layout {
            rootfs,
            overlay: None,
            read_only: false,
            privileged: false,
            own_netns: true,
            userns: false,
            cgroups: ContainerView::Unified,
            extra: Box::leak(Box::default()),
        }
    }

    #[test]
    fn masking_picks_null_for_files_and_tmpfs_for_directories() {
        let sys = Recorder {
            kinds: HashMap::from([
                ("/proc/kcore", Kind::Other),
                ("/proc/acpi", Kind::Directory),
            ]),
            ..Recorder::default()
        };
        let ops = [
            Op::Mask(cstring("/proc/kcore")),
            Op::Mask(cstring("/proc/acpi")),
            Op::Mask(cstring("/proc/absent")),
        ];
        apply(&sys, &ops).unwrap();
        assert_eq!(
            *sys.calls.borrow(),
            [
                r#"mount Some("/dev/null") "/proc/kcore" None MS_BIND"#,
                r#"mount Some("tmpfs") "/proc/acpi" Some("tmpfs") MS_RDONLY"#,
            ]
        );
    }

    #[test]
    fn read_only_remounts_keep_locked_flags() {
        let sys = Recorder {
            kinds: HashMap::from([("/proc/sys", Kind::Directory)]),
            locked: MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            ..Recorder::default()
        };
        apply(&sys, &[Op::ReadOnlyPath(cstring("/proc/sys"))]).unwrap();
        assert_eq!(
            *sys.calls.borrow(),
            [
                r#"mount Some("/proc/sys") "/proc/sys" None MS_BIND|MS_REC"#,
                r#"mount None "/proc/sys" None MS_RDONLY|MS_NOSUID|MS_NODEV|MS_REMOUNT|MS_BIND"#,
            ]
        );
    }

    #[test]
    fn existing_directories_are_no_error() {
        let sys = Recorder::default();
        apply(&sys, &[Op::Mkdir(cstring("/r/proc"))]).unwrap();
    }

    #[test]
    fn privileged_keeps_kernel_interfaces_visible() {
        let root = Path::new("/r");
        let normal = layout(root).plan();
        assert_eq!(normal.finish.len(), MASKED.len() + READ_ONLY.len());
        let privileged = Layout {
            privileged: true,
            ..layout(root)
        }
        .plan();
        assert!(privileged.finish.is_empty());
        let read_only = Layout {
            read_only: true,
            ..layout(root)
        }
        .plan();
        assert_eq!(
            read_only.finish.last(),
            Some(&Op::RemountReadOnly(cstring("/")))
        );
    }

    #[test]
    fn propagation_is_cut_before_anything_is_mounted() {
        let plan = layout(Path::new("/r")).plan();
        assert!(matches!(
            &plan.prepare[0],
            Op::Mount { flags, .. } if *flags == MsFlags::MS_SLAVE | MsFlags::MS_REC
        ));
        assert!(matches!(
            &plan.prepare[1],
            Op::Mount { source: Some(s), target, .. } if s == target && target.as_bytes() == b"/r/"
        ));
    }

    #[test]
    fn userns_with_host_network_binds_sysfs() {
        let plan = Layout {
            userns: true,
            own_netns: false,
            ..layout(Path::new("/r"))
        }
        .plan();
        assert!(
            plan.prepare
                .contains(&Op::RemountReadOnly(cstring("/r/sys")))
        );
    }

    #[test]
    fn v1_view_mounts_each_hierarchy_and_links_co_mounted_names() {
        let plan = Layout {
            cgroups: ContainerView::Hierarchies(vec![
                ("cpu,cpuacct".into(), "cpu,cpuacct".into()),
                ("memory".into(), "memory".into()),
            ]),
            ..layout(Path::new("/r"))
        }
        .plan();
        let links: Vec<_> = plan
            .cgroup_view
            .iter()
            .filter_map(|op| match op {
                Op::Symlink { link, .. } => Some(link.to_str().unwrap().to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(links, ["/r/sys/fs/cgroup/cpu", "/r/sys/fs/cgroup/cpuacct"]);
        assert_eq!(
            plan.cgroup_view.last(),
            Some(&Op::RemountReadOnly(cstring("/r/sys/fs/cgroup")))
        );
    }
}
