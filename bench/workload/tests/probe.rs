//! `probe` against what the test process itself can see.

mod common;

use std::process::{Command, Stdio};

use common::*;

const PROBE_KEYS: &[&str] = &[
    "mode",
    "hostname",
    "pid",
    "ppid",
    "uid",
    "gid",
    "euid",
    "uid_map",
    "gid_map",
    "cap_eff",
    "cap_prm",
    "cap_bnd",
    "seccomp_mode",
    "no_new_privs",
    "mounts",
    "root_fs_type",
    "net_interfaces",
    "cgroup",
    "cgroup_limits",
    "visible_pids",
    "host_marker",
    "host_marker_visible",
];

/// Runs `probe` with `extra` args; returns the JSON and the child's pid.
fn probe(extra: &[&str]) -> (serde_json::Value, u32) {
    let child = Command::new(BIN)
        .arg("probe")
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn probe");
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    (ok_json(&["probe"], &out, "probe"), pid)
}

#[test]
fn probe_sees_this_host() {
    let (json, child_pid) = probe(&[]);
    for key in PROBE_KEYS {
        assert!(json.get(key).is_some(), "{key} missing in {json}");
    }
    assert_eq!(u64_of(&json, "pid"), u64::from(child_pid));
    assert_eq!(u64_of(&json, "ppid"), u64::from(std::process::id()));

    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(json["hostname"], hostname.trim());

    // SAFETY: the id getters take no arguments and cannot fail.
    let (uid, gid, euid) = unsafe { (libc::getuid(), libc::getgid(), libc::geteuid()) };
    assert_eq!(u64_of(&json, "uid"), u64::from(uid));
    assert_eq!(u64_of(&json, "gid"), u64::from(gid));
    assert_eq!(u64_of(&json, "euid"), u64::from(euid));

    let names: Vec<&str> = json["net_interfaces"]
        .as_array()
        .expect("net_interfaces is an array")
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(names.contains(&"lo"), "{names:?}");
    assert!(names.windows(2).all(|w| w[0] <= w[1]), "sorted: {names:?}");

    for map in ["uid_map", "gid_map"] {
        let triples = json[map].as_array().expect("id map is an array here");
        assert!(!triples.is_empty());
        for t in triples {
            let t = t.as_array().unwrap();
            assert_eq!(t.len(), 3);
            assert!(t.iter().all(serde_json::Value::is_u64));
        }
    }
    for cap in ["cap_eff", "cap_prm", "cap_bnd"] {
        let hex = json[cap].as_str().unwrap();
        assert_eq!(hex.len(), 16, "{cap}: {hex}");
        assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()), "{cap}: {hex}");
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let cap_bnd = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .unwrap()
        .trim();
    assert_eq!(json["cap_bnd"], cap_bnd);
    assert!(json["seccomp_mode"].is_u64());
    assert!(json["no_new_privs"].is_boolean());
    assert!(u64_of(&json, "mounts") > 0);
    assert!(json["root_fs_type"].is_string());
    let cgroup = json["cgroup"].as_array().expect("cgroup is an array");
    assert!(!cgroup.is_empty() && cgroup.iter().all(serde_json::Value::is_string));
    let limits = json["cgroup_limits"].as_object().expect("object");
    assert!(!limits.is_empty());
    assert!(u64_of(&json, "visible_pids") >= 2, "{json}");
    assert_eq!(json["host_marker"], serde_json::Value::Null);
    assert_eq!(json["host_marker_visible"], false);
}

#[test]
fn host_marker_visibility() {
    let marker = tempfile::NamedTempFile::new().unwrap();
    let path = marker.path().to_str().unwrap();
    let (json, _) = probe(&["--host-marker", path]);
    assert_eq!(json["host_marker"], path);
    assert_eq!(json["host_marker_visible"], true);

    let missing = format!("{path}.does-not-exist");
    let (json, _) = probe(&["--host-marker", &missing]);
    assert_eq!(json["host_marker"], missing.as_str());
    assert_eq!(json["host_marker_visible"], false);
}
