//! `isolab run --net bridge`, end to end as root: two containers make real TCP round trips
//! through their veth pairs and the bridge `isolab0`; `--net none` reaches nothing;
//! concurrent starts get distinct addresses; and no veth or lease is left after `rm`, after
//! a failed start, or after the runtime is SIGKILLed and `gc` runs. Traffic goes only
//! between the tests' own namespaces (and the bridge's host address).
//!
//! Needs root, the workload built next to isolab, and /bin/busybox (busybox-static).

mod common;

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use serde_json::Value;

const LEASES: &str = "/run/isolab/.net/leases";
/// The prefix of every container name this file uses.
const PREFIX: &str = "nb-";
const PORT: &str = "7070";

struct Rootfs(tempfile::TempDir);

/// The workload at /isolab-workload and busybox's sleep and sh.
fn rootfs() -> Rootfs {
    let dir = tempfile::tempdir().unwrap();
    let workload = assert_cmd::cargo::cargo_bin("isolab").with_file_name("isolab-workload");
    assert!(
        workload.exists(),
        "run `cargo build -p isolab-workload` first"
    );
    std::fs::copy(&workload, dir.path().join("isolab-workload")).unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox")).expect("/bin/busybox (busybox-static)");
    for applet in ["sh", "sleep", "cat"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    Rootfs(dir)
}

impl Rootfs {
    fn path(&self) -> &str {
        self.0.path().to_str().unwrap()
    }
}

fn isolab(args: &[&str]) -> Output {
    Command::cargo_bin("isolab")
        .unwrap()
        .args(args)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap()
}

fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The leases of this file's containers: (name, address).
fn leases() -> Vec<(String, Ipv4Addr)> {
    all_leases()
        .into_iter()
        .filter(|(name, _)| name.starts_with(PREFIX))
        .collect()
}

/// Every lease on the host: (name, address).
fn all_leases() -> Vec<(String, Ipv4Addr)> {
    let mut found: Vec<(String, Ipv4Addr)> = std::fs::read_dir(LEASES)
        .map(|d| {
            d.flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .filter_map(|e| std::fs::read(e.path()).ok())
                .map(|text| serde_json::from_slice::<Value>(&text).unwrap())
                .map(|lease| {
                    (
                        lease["name"].as_str().unwrap().to_string(),
                        lease["address"].as_str().unwrap().parse().unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

fn address_of(name: &str) -> Ipv4Addr {
    leases()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no lease for {name}: {:?}", leases()))
        .1
}

/// The host ends of veth pairs named like isolab's (`isl` + 8 hex digits).
fn host_links() -> Vec<String> {
    let mut links: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 11 && n.starts_with("isl"))
        .collect();
    links.sort();
    links
}

/// The veth's host end for `address`, as isolab names it.
fn host_link(address: Ipv4Addr) -> String {
    format!("isl{:08x}", u32::from(address))
}

/// Runs `test` alone among the bridge tests and checks that none of its leases and no veth
/// is left: a link that is new since the start must belong to another user's container
/// (one with a lease under another name), started meanwhile on the same host.
fn leaves_nothing_behind(test: impl FnOnce()) {
    let _serial = common::serial("net-bridge");
    assert_eq!(
        leases(),
        [],
        "leases of an earlier run of these tests are left"
    );
    let before = host_links();
    test();
    assert_eq!(leases(), [], "a lease is left");
    let others: Vec<String> = all_leases()
        .into_iter()
        .map(|(_, address)| host_link(address))
        .collect();
    let left: Vec<String> = host_links()
        .into_iter()
        .filter(|l| !before.contains(l) && !others.contains(l))
        .collect();
    assert_eq!(left, Vec::<String>::new(), "a veth is left");
}

fn start_server(root: &Rootfs, name: &str) -> Ipv4Addr {
    let run = isolab(&[
        "run",
        "-d",
        "--net",
        "bridge",
        "--name",
        name,
        "--rootfs",
        root.path(),
        "--",
        "/isolab-workload",
        "net",
        "--listen",
        PORT,
    ]);
    assert_eq!(code(&run), 0, "{}", stderr(&run));
    address_of(name)
}

fn ping(root: &Rootfs, net: &str, name: &str, peer: Ipv4Addr) -> Output {
    isolab(&[
        "run",
        "--net",
        net,
        "--name",
        name,
        "--rootfs",
        root.path(),
        "--",
        "/isolab-workload",
        "net",
        "--peer",
        &format!("{peer}:{PORT}"),
        "--n",
        "50",
        "--mib",
        "1",
    ])
}

#[test]
fn two_containers_make_round_trips_over_the_bridge_and_none_reaches_nothing() {
    let root = rootfs();
    leaves_nothing_behind(|| {
        let server = start_server(&root, "nb-server");
        assert_eq!(server.octets()[..3], [10, 77, 0], "{server}");
        // Its host end is a port of the bridge.
        let master =
            std::fs::read_link(format!("/sys/class/net/{}/master", host_link(server))).unwrap();
        assert!(master.ends_with("isolab0"), "{}", master.display());

        let client = ping(&root, "bridge", "nb-client", server);
        assert_eq!(code(&client), 0, "{}", stderr(&client));
        let figures: Value = serde_json::from_str(stdout(&client).lines().last().unwrap()).unwrap();
        assert_eq!(figures["mode"], "net");
        assert_eq!(figures["n"], 50);
        assert_eq!(figures["peer"], format!("{server}:{PORT}"));
        assert!(figures["rtt_median_ns"].as_u64().unwrap() > 0, "{figures}");
        assert!(figures["mb_s"].as_f64().unwrap() > 0.0, "{figures}");

        // The client had eth0 with an address of its own and a default route via the
        // bridge: what its namespace looked like, from inside.
        let inside = isolab(&[
            "run",
            "--net",
            "bridge",
            "--name",
            "nb-look",
            "--rootfs",
            root.path(),
            "--",
            "/bin/sh",
            "-c",
            "cat /sys/class/net/eth0/operstate /proc/net/route",
        ]);
        assert_eq!(code(&inside), 0, "{}", stderr(&inside));
        let out = stdout(&inside);
        assert!(out.starts_with("up\n"), "{out}");
        // Default route (destination 0) via 10.77.0.1, little-endian hex in /proc/net/route.
        assert!(
            out.lines()
                .any(|l| l.starts_with("eth0\t00000000\t01004D0A")),
            "{out}"
        );

        // With --net none the same client cannot reach the server.
        let isolated = ping(&root, "none", "nb-none", server);
        assert_eq!(code(&isolated), 1, "{}", stdout(&isolated));
        assert!(
            stderr(&isolated).contains("unreachable"),
            "{}",
            stderr(&isolated)
        );

        let rm = isolab(&["rm", "-f", "nb-server"]);
        assert_eq!(code(&rm), 0, "{}", stderr(&rm));
    });
}

#[test]
fn concurrent_starts_get_distinct_addresses_and_rm_frees_them() {
    let root = rootfs();
    leaves_nothing_behind(|| {
        let names: Vec<String> = (0..6).map(|i| format!("nb-many-{i}")).collect();
        let started: Vec<Output> = std::thread::scope(|scope| {
            let handles: Vec<_> = names
                .iter()
                .map(|name| {
                    let root = root.path();
                    scope.spawn(move || {
                        isolab(&[
                            "run", "-d", "--net", "bridge", "--name", name, "--rootfs", root, "--",
                            "sleep", "1000",
                        ])
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for run in &started {
            assert_eq!(code(run), 0, "{}", stderr(run));
        }
        let mut addresses: Vec<Ipv4Addr> = names.iter().map(|n| address_of(n)).collect();
        addresses.sort();
        addresses.dedup();
        assert_eq!(addresses.len(), names.len(), "{:?}", leases());
        for address in &addresses {
            assert!(
                Path::new(&format!("/sys/class/net/{}", host_link(*address))).exists(),
                "{address}"
            );
        }
        let mut rm = vec!["rm", "-f"];
        rm.extend(names.iter().map(String::as_str));
        let rm = isolab(&rm);
        assert_eq!(code(&rm), 0, "{}", stderr(&rm));
    });
}

#[test]
fn a_failed_start_leaves_no_veth_or_lease() {
    let root = rootfs();
    leaves_nothing_behind(|| {
        // The network is set up before the command is looked up, so this fails after it.
        let run = isolab(&[
            "run",
            "--net",
            "bridge",
            "--name",
            "nb-fail",
            "--rootfs",
            root.path(),
            "--",
            "/nonexistent",
        ]);
        assert_eq!(code(&run), 127, "{}", stderr(&run));
        let detached = isolab(&[
            "run",
            "-d",
            "--net",
            "bridge",
            "--name",
            "nb-fail-d",
            "--rootfs",
            root.path(),
            "--",
            "/nonexistent",
        ]);
        assert_eq!(code(&detached), 127, "{}", stderr(&detached));
    });
}

#[test]
fn gc_reclaims_what_a_killed_runtime_left() {
    let root = rootfs();
    leaves_nothing_behind(|| {
        let mut run = std::process::Command::new(assert_cmd::cargo::cargo_bin("isolab"))
            .args([
                "run",
                "--net",
                "bridge",
                "--name",
                "nb-kill",
                "--rootfs",
                root.path(),
                "--",
                "sleep",
                "1000",
            ])
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let address = loop {
            if let Some((_, address)) = leases().into_iter().find(|(n, _)| n == "nb-kill") {
                if Path::new(&format!("/sys/class/net/{}", host_link(address))).exists() {
                    break address;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the container never got its lease"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        run.kill().unwrap();
        run.wait().unwrap();
        // The lease outlives its killed holder until gc.
        assert!(leases().iter().any(|(n, _)| n == "nb-kill"));

        let gc = isolab(&["gc"]);
        assert_eq!(code(&gc), 0, "{}", stderr(&gc));
        assert!(
            stdout(&gc).contains(&format!("lease {address} of container nb-kill")),
            "{}",
            stdout(&gc)
        );
        // The foreground run's cgroup has no record; gc takes it once it is old enough.
        let deadline = Instant::now() + Duration::from_secs(60);
        let cgroup_left = || {
            [
                "/sys/fs/cgroup/isolab/nb-kill",
                "/sys/fs/cgroup/pids/isolab/nb-kill",
            ]
            .iter()
            .any(|p| Path::new(p).exists())
        };
        while cgroup_left() {
            assert!(Instant::now() < deadline, "the killed run's cgroup stayed");
            std::thread::sleep(Duration::from_secs(1));
            isolab(&["gc"]);
        }
    });
}
