//! Lab 4 (network namespaces), end to end as root: the untouched starter fails every step
//! with a hint, the reference solution passes, a student's half-built state fails where it
//! should, and reset leaves no namespace, veth, bridge, lease or container behind.

mod common;
#[path = "common/lab.rs"]
mod lab;

use std::path::Path;

use serde_json::Value;

use lab::isolab;

fn check(dir: &Path) -> (i32, Vec<Value>) {
    let (code, report) = lab::check_json(dir, 4);
    (code, report["steps"].as_array().unwrap().clone())
}

/// What lab 4 can leave on the host: links named like its own or like isolab's veths, nsfs
/// mounts of network namespaces below the labs' directory, leases and records of its
/// container. (isolab0 itself is checked apart: reset removes it when no container is on it.)
#[derive(Debug, PartialEq, Eq)]
struct NetState {
    links: Vec<String>,
    netns_mounts: Vec<String>,
    container: Vec<String>,
}

fn net_state(dir: &Path) -> NetState {
    let mut links: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("lab4") || (n.starts_with("isl") && n.len() == 11))
        .collect();
    links.sort();
    let netns_mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(" - nsfs "))
        .filter(|l| {
            l.split(' ')
                .nth(4)
                .is_some_and(|p| Path::new(p).starts_with(dir))
        })
        .map(str::to_owned)
        .collect();
    let leases = std::fs::read_dir("/run/isolab/.net/leases")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter(|lease| lease.contains("\"lab4c\""));
    let container = leases
        .chain(
            Path::new("/run/isolab/lab4c")
                .exists()
                .then(|| "/run/isolab/lab4c".to_owned()),
        )
        .collect();
    NetState {
        links,
        netns_mounts,
        container,
    }
}

fn passed(steps: &[Value], name: &str) -> bool {
    steps
        .iter()
        .find(|s| s["step"].as_str().unwrap().starts_with(name))
        .unwrap_or_else(|| panic!("no step {name}: {steps:#?}"))["passed"]
        == true
}

#[test]
fn lab4_starter_fails_solution_passes_reset_cleans() {
    // Lab 4 uses the bridge isolab0 too: not beside the bridge tests.
    let _serial = common::serial("net-bridge");
    let dir = tempfile::tempdir().unwrap();
    let before = net_state(dir.path());

    isolab(dir.path())
        .args(["lab", "start", "4"])
        .assert()
        .success();
    let (code, steps) = check(dir.path());
    assert_eq!(code, 1, "{steps:#?}");
    for step in &steps {
        assert_eq!(step["passed"], false, "the starter passes {step}");
        assert!(!step["hint"].as_str().unwrap().is_empty(), "{step}");
    }

    // Half the work: a namespace and a bridge, but no cable. The ping must fail.
    let ws = dir.path().join("4");
    std::fs::write(ws.join("netns-a"), "").unwrap();
    std::process::Command::new("unshare")
        .arg(format!("--net={}", ws.join("netns-a").display()))
        .arg("true")
        .status()
        .unwrap();
    let made = std::process::Command::new("ip")
        .args(["link", "add", "lab4br0", "type", "bridge"])
        .status()
        .unwrap();
    assert!(made.success());
    let (code, steps) = check(dir.path());
    assert_eq!(code, 1);
    assert!(passed(&steps, "a persistent network namespace on netns-a"));
    assert!(!passed(&steps, "a persistent network namespace on netns-b"));
    // Present but down.
    assert!(!passed(&steps, "a bridge lab4br0"));
    assert!(!passed(&steps, "ping from netns-a"));

    isolab(dir.path())
        .args(["lab", "reset", "4"])
        .assert()
        .success();
    isolab(dir.path())
        .args(["lab", "solution", "4", "--i-am-instructor", "--apply"])
        .assert()
        .success();
    let (code, steps) = check(dir.path());
    assert_eq!(code, 0, "the reference solution must pass: {steps:#?}");

    isolab(dir.path())
        .args(["lab", "reset", "4"])
        .assert()
        .success();
    assert!(!ws.exists());
    let after = net_state(dir.path());
    assert_eq!(after, before, "lab 4 left something behind");
    let leases_held =
        std::fs::read_dir("/run/isolab/.net/leases").is_ok_and(|mut d| d.next().is_some());
    assert!(
        leases_held || !Path::new("/sys/class/net/isolab0").exists(),
        "isolab0 stayed with no container on it"
    );
}
