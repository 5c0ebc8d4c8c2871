//! `probe [--host-marker PATH]`: what can this process see of its machine?
//!
//! Every field whose source cannot be read is `null` (the probe also runs under a minimal
//! kernel without /proc or /sys); the probe itself never fails.
//!
//! `cgroup_limits` values: a number when the file holds one, the file's trimmed text
//! otherwise (so an unlimited v2 limit is the string `"max"`, and `cpu_max` is e.g.
//! `"max 100000"`), and `null` when the file cannot be read (no such controller, no /sys,
//! or the root cgroup, which has no limit files).

use std::ffi::OsStr;
use std::fs;

use crate::json::{Object, Value};

pub fn run(host_marker: Option<&OsStr>) -> Object {
    let uts = uname();
    let status = fs::read_to_string("/proc/self/status").ok();
    let status_field = |key: &str| status.as_deref().and_then(|s| field(s, key));
    let mounts = fs::read_to_string("/proc/self/mounts").ok();
    let cgroup = fs::read_to_string("/proc/self/cgroup").ok();
    let cgroups = cgroup.as_deref().map(parse_cgroup);

    let no_new_privs = status_field("NoNewPrivs")
        .map(|v| v != "0")
        .or_else(prctl_no_new_privs);

    Object::mode("probe")
        .with("hostname", uts.as_ref().map(|u| u.0.clone()))
        .with("kernel_release", uts.map(|u| u.1))
        .with("pid", std::process::id())
        // SAFETY: these id getters take no arguments and cannot fail.
        .with("ppid", i64::from(unsafe { libc::getppid() }))
        // SAFETY: as above.
        .with("uid", unsafe { libc::getuid() })
        // SAFETY: as above.
        .with("gid", unsafe { libc::getgid() })
        // SAFETY: as above.
        .with("euid", unsafe { libc::geteuid() })
        // SAFETY: as above.
        .with("egid", unsafe { libc::getegid() })
        .with("uid_map", id_map("/proc/self/uid_map"))
        .with("gid_map", id_map("/proc/self/gid_map"))
        .with("cap_eff", status_field("CapEff"))
        .with("cap_prm", status_field("CapPrm"))
        .with("cap_bnd", status_field("CapBnd"))
        .with(
            "seccomp_mode",
            status_field("Seccomp").and_then(|v| v.parse::<i64>().ok()),
        )
        .with("no_new_privs", no_new_privs)
        .with("mounts", mounts.as_deref().map(|m| m.lines().count()))
        .with("root_fs_type", mounts.as_deref().and_then(root_fs_type))
        .with("net_interfaces", net_interfaces())
        .with(
            "cgroup",
            cgroups
                .as_ref()
                .map(|lines| lines.iter().map(CgroupLine::display).collect::<Vec<_>>()),
        )
        .with("cgroup_limits", cgroups.as_deref().map(cgroup_limits))
        .with("visible_pids", visible_pids())
        .with("cpus_allowed", cpus_allowed())
        .with(
            "host_marker",
            host_marker.map(|p| p.to_string_lossy().into_owned()),
        )
        .with(
            "host_marker_visible",
            // symlink_metadata: a dangling symlink still "exists" as a name here.
            host_marker.is_some_and(|p| fs::symlink_metadata(p).is_ok()),
        )
}

/// (nodename, release) from uname(2), which needs no /proc.
fn uname() -> Option<(String, String)> {
    // SAFETY: `utsname` is plain old data (arrays of c_char); all-zero is a valid value.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a valid, writable `struct utsname`.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return None;
    }
    let text = |chars: &[libc::c_char]| {
        let bytes: Vec<u8> = chars
            .iter()
            .map(|&c| c as u8)
            .take_while(|&b| b != 0)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    Some((text(&uts.nodename), text(&uts.release)))
}

/// The value of a `Key:\tvalue` line in /proc/self/status.
fn field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k == key).then(|| v.trim())
    })
}

/// Fallback for kernels whose status file lacks `NoNewPrivs` (or that have no /proc).
fn prctl_no_new_privs() -> Option<bool> {
    // SAFETY: PR_GET_NO_NEW_PRIVS reads a flag of the calling thread and takes no pointers;
    // the unused arguments must be zero.
    let rc = unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) };
    (rc >= 0).then_some(rc == 1)
}

/// `[[inside, outside, count], ...]` from a uid_map/gid_map file.
fn id_map(path: &str) -> Option<Vec<Vec<u64>>> {
    parse_id_map(&fs::read_to_string(path).ok()?)
}

fn parse_id_map(text: &str) -> Option<Vec<Vec<u64>>> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let nums: Option<Vec<u64>> = line.split_whitespace().map(|n| n.parse().ok()).collect();
            nums.filter(|n| n.len() == 3)
        })
        .collect()
}

/// The file system type of the last mount whose mount point is `/`.
fn root_fs_type(mounts: &str) -> Option<String> {
    mounts.lines().rev().find_map(|line| {
        let mut f = line.split_whitespace();
        let (_src, target, fstype) = (f.next()?, f.next()?, f.next()?);
        (target == "/").then(|| fstype.to_owned())
    })
}

/// Interface names from /proc/net/dev, sorted.
fn net_interfaces() -> Option<Vec<String>> {
    let text = fs::read_to_string("/proc/net/dev").ok()?;
    Some(parse_net_dev(&text))
}

fn parse_net_dev(text: &str) -> Vec<String> {
    let mut names: Vec<String> = text
        .lines()
        .skip(2) // two header lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, _)| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// One line of /proc/self/cgroup: `hierarchy-id:controllers:path`.
#[derive(Debug, Clone, PartialEq)]
struct CgroupLine {
    controllers: String,
    path: String,
}

impl CgroupLine {
    fn is_v2(&self) -> bool {
        self.controllers.is_empty()
    }

    /// The `cgroup` array entry: the path for the v2 hierarchy, `controllers:path` for a v1
    /// hierarchy (a v1 path alone would not say which controller it belongs to).
    fn display(&self) -> String {
        if self.is_v2() {
            self.path.clone()
        } else {
            format!("{}:{}", self.controllers, self.path)
        }
    }

    /// The directory of this cgroup under `root` (`/sys/fs/cgroup` or a v1 controller's
    /// mount).
    fn dir(&self, root: &str) -> String {
        format!("{root}{}", self.path.trim_end_matches('/'))
    }
}

fn parse_cgroup(text: &str) -> Vec<CgroupLine> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            Some(CgroupLine {
                controllers: controllers.to_owned(),
                path: path.to_owned(),
            })
        })
        .collect()
}

/// v2 limit files, read from `/sys/fs/cgroup/<path>/`.
const V2_LIMITS: &[(&str, &str)] = &[
    ("memory_max_bytes", "memory.max"),
    ("memory_high_bytes", "memory.high"),
    ("memory_swap_max_bytes", "memory.swap.max"),
    ("pids_max", "pids.max"),
    ("cpu_max", "cpu.max"),
    ("cpu_weight", "cpu.weight"),
    ("cpuset_cpus_effective", "cpuset.cpus.effective"),
];

/// v1 limit files: (key, controller, file), read from
/// `/sys/fs/cgroup/<controllers>/<path>/`.
const V1_LIMITS: &[(&str, &str, &str)] = &[
    ("memory_limit_in_bytes", "memory", "memory.limit_in_bytes"),
    (
        "memory_memsw_limit_in_bytes",
        "memory",
        "memory.memsw.limit_in_bytes",
    ),
    ("pids_max", "pids", "pids.max"),
    ("cpu_cfs_quota_us", "cpu", "cpu.cfs_quota_us"),
    ("cpu_cfs_period_us", "cpu", "cpu.cfs_period_us"),
    ("cpu_shares", "cpu", "cpu.shares"),
    ("cpuset_effective_cpus", "cpuset", "cpuset.effective_cpus"),
];

/// The limits of our own cgroup. Pure v2 → the v2 keys; v1 or hybrid (where the
/// controllers live on v1 hierarchies) → the v1 keys.
fn cgroup_limits(lines: &[CgroupLine]) -> Object {
    let mut limits = Object::default();
    if lines.iter().all(CgroupLine::is_v2) {
        let dir = lines.first().map(|l| l.dir("/sys/fs/cgroup"));
        for (key, file) in V2_LIMITS {
            let value = dir.as_ref().map_or(Value::Null, |d| read_limit(d, file));
            limits.push(key, value);
        }
    } else {
        for (key, controller, file) in V1_LIMITS {
            let line = lines
                .iter()
                .find(|l| l.controllers.split(',').any(|c| c == *controller));
            let value = line.map_or(Value::Null, |l| {
                read_limit(&l.dir(&format!("/sys/fs/cgroup/{}", l.controllers)), file)
            });
            limits.push(key, value);
        }
    }
    limits
}

fn read_limit(dir: &str, file: &str) -> Value {
    match fs::read_to_string(format!("{dir}/{file}")) {
        Ok(text) => limit_value(text.trim()),
        Err(_) => Value::Null,
    }
}

/// A number when the text is one (v1 quotas may be -1), the text itself otherwise.
fn limit_value(text: &str) -> Value {
    if let Ok(n) = text.parse::<u64>() {
        Value::Uint(n)
    } else if let Ok(n) = text.parse::<i64>() {
        Value::Int(n)
    } else {
        Value::Str(text.to_owned())
    }
}

/// The number of numeric entries in /proc (the processes this pid namespace shows).
fn visible_pids() -> Option<usize> {
    let entries = fs::read_dir("/proc").ok()?;
    Some(
        entries
            .filter_map(Result::ok)
            .filter(|e| {
                let name = e.file_name();
                let b = name.as_encoded_bytes();
                !b.is_empty() && b.iter().all(u8::is_ascii_digit)
            })
            .count(),
    )
}

/// The number of CPUs in our affinity mask (sched_getaffinity(2); no /proc or /sys).
fn cpus_allowed() -> Option<u32> {
    let mut mask = [0u64; 64]; // room for 4096 CPUs
    // SAFETY: the kernel writes at most `size_of_val(&mask)` bytes into `mask`, which is
    // valid and writable for that long.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_sched_getaffinity,
            0,
            std::mem::size_of_val(&mask),
            mask.as_mut_ptr(),
        )
    };
    (rc > 0).then(|| mask.iter().map(|w| w.count_ones()).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_id_maps() {
        assert_eq!(
            parse_id_map("         0          0 4294967295\n"),
            Some(vec![vec![0, 0, 4_294_967_295]])
        );
        assert_eq!(
            parse_id_map("0 1000 1\n1 100000 65536\n"),
            Some(vec![vec![0, 1000, 1], vec![1, 100_000, 65536]])
        );
        assert_eq!(parse_id_map(""), Some(vec![]));
        assert_eq!(parse_id_map("0 x 1\n"), None);
    }

    #[test]
    fn status_fields() {
        let status = "Name:\tx\nCapEff:\t000001ffffffffff\nSeccomp:\t2\nNoNewPrivs:\t1\n";
        assert_eq!(field(status, "CapEff"), Some("000001ffffffffff"));
        assert_eq!(field(status, "Seccomp"), Some("2"));
        assert_eq!(field(status, "Cap"), None);
    }

    #[test]
    fn root_fs_type_takes_the_last_root_mount() {
        let mounts = "rootfs / rootfs rw 0 0\n\
                      proc /proc proc rw 0 0\n\
                      overlay / overlay rw,lowerdir=/a 0 0\n\
                      tmpfs /tmp tmpfs rw 0 0\n";
        assert_eq!(root_fs_type(mounts), Some("overlay".into()));
        assert_eq!(root_fs_type("proc /proc proc rw 0 0\n"), None);
    }

    #[test]
    fn net_dev_names_are_sorted() {
        let text = "Inter-|   Receive |  Transmit\n face |bytes packets\n\
                    \x20 eth0: 1 2 3\n    lo: 4 5 6\n  br-1:7 8\n";
        assert_eq!(parse_net_dev(text), vec!["br-1", "eth0", "lo"]);
    }

    #[test]
    fn cgroup_lines_and_dirs() {
        let v2 = parse_cgroup("0::/user.slice/x.scope\n");
        assert!(v2[0].is_v2());
        assert_eq!(v2[0].display(), "/user.slice/x.scope");
        assert_eq!(
            v2[0].dir("/sys/fs/cgroup"),
            "/sys/fs/cgroup/user.slice/x.scope"
        );
        let root = parse_cgroup("0::/\n");
        assert_eq!(root[0].dir("/sys/fs/cgroup"), "/sys/fs/cgroup");

        let v1 = parse_cgroup("4:cpu,cpuacct:/docker/ab\n1:name=systemd:/docker/ab\n0::/\n");
        assert_eq!(v1.len(), 3);
        assert_eq!(v1[0].display(), "cpu,cpuacct:/docker/ab");
        assert!(!v1.iter().all(CgroupLine::is_v2));
        // A path with a colon survives.
        assert_eq!(parse_cgroup("0::/a:b\n")[0].path, "/a:b");
    }

    #[test]
    fn limit_values() {
        assert_eq!(limit_value("max"), Value::Str("max".into()));
        assert_eq!(limit_value("536870912"), Value::Uint(536_870_912));
        assert_eq!(limit_value("-1"), Value::Int(-1));
        assert_eq!(limit_value("max 100000"), Value::Str("max 100000".into()));
    }

    #[test]
    fn cgroup_limits_have_null_for_unreadable_files() {
        let lines = parse_cgroup("0::/isolab-no-such-cgroup-for-sure\n");
        let rendered = cgroup_limits(&lines).render();
        assert!(
            rendered.starts_with(r#"{"memory_max_bytes":null,"#),
            "{rendered}"
        );
        let lines = parse_cgroup("3:memory:/isolab-no-such\n");
        let rendered = cgroup_limits(&lines).render();
        assert!(
            rendered.contains(r#""memory_limit_in_bytes":null"#),
            "{rendered}"
        );
        assert!(rendered.contains(r#""pids_max":null"#), "{rendered}");
    }
}
